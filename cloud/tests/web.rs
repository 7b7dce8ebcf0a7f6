//! The web view over HTTP against a real endpoint on loopback, on both backends: the login that turns an admin
//! token into a session cookie, what every page needs (a live session) and carries (no script, no frame, no cache),
//! forms refused without the session's CSRF token or from another origin, a viewer's read-only view, sessions ended
//! by logout and by the token's revocation, and text from nodes escaped. tests/browser.rs drives the same view in a
//! real Chromium.

mod support;

use fleet_wire::admin::{AuditPage, NodeDetail, Role};
use fleet_wire::node::{self, NodeStatus};
use support::{Admin, Backend, Env, Reply};

both!(
    a_token_becomes_a_session_and_every_page_needs_one,
    forms_need_the_sessions_csrf_token_and_this_origin,
    a_viewer_reads_and_changes_nothing,
    logout_and_revocation_end_a_session,
    text_from_a_node_is_escaped,
    a_node_waiting_for_its_flip_says_on_what,
    the_overview_counts_and_the_node_list_pages,
    a_node_page_shows_its_logs_and_charts
);

/// Sends without following redirects.
fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build(),
    );
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let result = match body {
        Some(body) => agent.run(
            b.header("content-type", "application/x-www-form-urlencoded")
                .body(body.as_bytes().to_vec())
                .expect("request"),
        ),
        None => agent.run(b.body(()).expect("request")),
    };
    let mut r = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let headers =
        r.headers().iter().map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_vec().expect("body");
    Reply { status, headers, body }
}

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// A browser's session: its cookie and the CSRF token its pages carry.
struct Session {
    url: String,
    cookie: String,
    csrf: String,
}

impl Session {
    fn login(env: &Env, admin: &Admin) -> Session {
        let r = send("POST", &format!("{}/ui/login", env.url), &[], Some(&format!("token={}", admin.secret)));
        assert_eq!(r.status, 303, "{}", text(&r));
        assert_eq!(r.header("location").as_deref(), Some("/ui/"));
        let set = r.header("set-cookie").expect("a session cookie");
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
            assert!(set.contains(flag), "{flag} in {set}");
        }
        assert!(!set.contains("Secure"), "no Secure flag over plain http: {set}");
        let cookie = set.split(';').next().expect("name=value").to_owned();
        assert!(!cookie.contains(&admin.secret), "the cookie is not the token");
        let mut s = Session { url: env.url.clone(), cookie, csrf: String::new() };
        let page = s.get("/ui/");
        assert_eq!(page.status, 200);
        s.csrf = csrf_of(&text(&page));
        s
    }

    fn get(&self, path: &str) -> Reply {
        send("GET", &format!("{}{path}", self.url), &[("cookie", &self.cookie)], None)
    }

    fn post(&self, path: &str, form: &str, origin: Option<&str>) -> Reply {
        let mut headers = vec![("cookie", self.cookie.as_str())];
        if let Some(o) = origin {
            headers.push(("origin", o));
        }
        send("POST", &format!("{}{path}", self.url), &headers, Some(form))
    }
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().expect("a value").to_owned()
}

fn status_of(admin: &Admin, id: &str) -> NodeStatus {
    admin.ok::<NodeDetail>("GET", &format!("/v1/admin/nodes/{id}"), None).node.status
}

fn a_token_becomes_a_session_and_every_page_needs_one(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Operator);
    for path in ["/ui/", "/ui/nodes", "/ui/deployments", "/ui/audit", "/ui/nodes/x"] {
        let r = send("GET", &format!("{}{path}", env.url), &[], None);
        assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/ui/login")), "{path}");
    }
    let r = send("GET", &format!("{}/ui/nodes", env.url), &[("cookie", "edge_session=forged.0000")], None);
    assert_eq!(r.status, 303, "a cookie the store does not know is no session");
    let r = send("POST", &format!("{}/ui/login", env.url), &[], Some("token=not-a-token"));
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    assert!(text(&r).contains("not known"), "{}", text(&r));

    let s = Session::login(&env, &admin);
    for path in ["/ui/", "/ui/nodes", "/ui/deployments", "/ui/audit"] {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}: {}", text(&r));
        let csp = r.header("content-security-policy").expect("a CSP");
        assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
        assert!(!text(&r).contains("<script"), "{path}");
        assert!(text(&r).contains("operator-"), "the viewer's name on {path}");
    }
    let css = send("GET", &format!("{}/ui/style.css", env.url), &[], None);
    assert_eq!((css.status, css.header("content-type").as_deref()), (200, Some("text/css; charset=utf-8")));
    // The login is in the audit log, under the token's name.
    let audit: AuditPage = admin.ok("GET", "/v1/admin/audit", None);
    assert!(audit.entries.iter().any(|e| e.action == "web-login" && e.actor_name.starts_with("operator-")));
}

fn forms_need_the_sessions_csrf_token_and_this_origin(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Operator);
    let token = admin.enrollment_token("pending");
    let n = env.node(31);
    assert_eq!(n.enroll(&token).status, 201);
    let id = n.id.to_string();
    let s = Session::login(&env, &admin);
    let other = Session::login(&env, &env.admin(Role::Operator));
    assert_ne!(s.csrf, other.csrf);
    let accept = format!("/ui/nodes/{id}/accept");
    let own = env.url.clone();
    for (form, origin, what) in [
        (String::new(), Some(own.as_str()), "no token"),
        ("csrf=".to_owned(), Some(own.as_str()), "an empty token"),
        (format!("csrf={}", other.csrf), Some(own.as_str()), "another session's token"),
        (format!("csrf={}", s.csrf), Some("http://evil.example"), "another origin"),
    ] {
        let r = s.post(&accept, &form, origin);
        assert!(r.status == 400 || r.status == 403, "{what}: {}", r.status);
        assert_eq!(status_of(&admin, &id), NodeStatus::Pending, "{what}");
    }
    // The overview lists the node as pending, with its accept button.
    let overview = text(&s.get("/ui/"));
    assert!(overview.contains(&format!("action=\"{accept}\"")), "{overview}");
    let r = s.post(&accept, &format!("csrf={}", s.csrf), Some(&own));
    assert_eq!((r.status, r.header("location")), (303, Some(format!("/ui/nodes/{id}"))));
    assert_eq!(status_of(&admin, &id), NodeStatus::Accepted);
    let audit: AuditPage = admin.ok("GET", "/v1/admin/audit", None);
    let e = audit.entries.iter().find(|e| e.target == id && e.action.contains("accept")).expect("an audit entry");
    assert!(e.actor_name.starts_with("operator-"));
}

fn a_viewer_reads_and_changes_nothing(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Operator);
    let token = admin.enrollment_token("pending");
    let n = env.node(32);
    assert_eq!(n.enroll(&token).status, 201);
    let id = n.id.to_string();
    let viewer = Session::login(&env, &env.admin(Role::Viewer));
    let operator = Session::login(&env, &admin);
    for path in ["/ui/".to_owned(), format!("/ui/nodes/{id}")] {
        let page = text(&viewer.get(&path));
        assert!(page.contains(&id[..16]), "{path} shows the node");
        assert!(!page.contains("/accept\""), "{path}: no accept button for a viewer");
        assert!(text(&operator.get(&path)).contains("/accept\""), "{path}: an operator's accept button");
    }
    assert!(!text(&viewer.get("/ui/deployments")).contains("new-deployment"), "no deployment form for a viewer");
    assert!(text(&operator.get("/ui/deployments")).contains("new-deployment"), "an operator's deployment form");
    let r = viewer.post(&format!("/ui/nodes/{id}/accept"), &format!("csrf={}", viewer.csrf), Some(&env.url));
    assert_eq!(r.status, 403);
    assert!(text(&r).contains("read-only"), "{}", text(&r));
    assert_eq!(status_of(&admin, &id), NodeStatus::Pending);
}

fn logout_and_revocation_end_a_session(backend: Backend) {
    let env = Env::new(backend);
    let operator = env.admin(Role::Operator);
    let s = Session::login(&env, &operator);
    let r = s.post("/ui/logout", &format!("csrf={}", s.csrf), Some(&env.url));
    assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/ui/login")));
    assert!(r.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")));
    assert_eq!(s.get("/ui/").status, 303, "the session ended in the store, not only in the browser");

    let boss = env.admin(Role::Admin);
    let s = Session::login(&env, &operator);
    assert_eq!(s.get("/ui/").status, 200);
    let id = operator.secret.split('.').next().expect("an id").to_owned();
    let _: serde_json::Value = boss.ok("POST", &format!("/v1/admin/admin-tokens/{id}/revoke"), None);
    assert_eq!(s.get("/ui/").status, 303, "the token's revocation ends its sessions at once");
}

fn text_from_a_node_is_escaped(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Operator);
    let token = admin.enrollment_token("accept");
    let n = env.node(33);
    assert_eq!(n.enroll(&token).status, 201);
    let mut inv = support::inventory("<script>alert(1)</script>");
    inv.site = Some("\"><b>site".into());
    assert!(n.put_inventory(&inv).status < 300);
    let mut r = support::report(1, node::ReportKind::Failed);
    r.message = "<img src=x onerror=alert(1)>".into();
    assert!(n.reports(vec![r]).status < 300);
    let s = Session::login(&env, &admin);
    for path in [format!("/ui/nodes/{}", n.id), "/ui/nodes".to_owned(), "/ui/".to_owned()] {
        let page = text(&s.get(&path));
        assert!(!page.contains("<script>alert") && !page.contains("<img src=x") && !page.contains("<b>site"), "{path}");
    }
    let page = text(&s.get(&format!("/ui/nodes/{}", n.id)));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && page.contains("&lt;img src=x"), "{page}");
}

fn a_node_waiting_for_its_flip_says_on_what(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Viewer);
    let token = env.admin(Role::Operator).enrollment_token("accept");
    let n = env.node(34);
    assert_eq!(n.enroll(&token).status, 201);
    let s = Session::login(&env, &admin);
    let page = |s: &Session| text(&s.get(&format!("/ui/nodes/{}", n.id)));
    assert!(!page(&s).contains("id=\"waiting\""), "not waiting before it says so");
    let mut seq = 0;
    for (reason, words) in [
        ("window", "its site's maintenance window"),
        ("update-lock", "an application's update lock"),
        ("paused", "its deployment is paused"),
    ] {
        seq += 1;
        let mut r = support::report(seq, node::ReportKind::Waiting);
        r.version = Some("2.0.0".into());
        r.reason = Some(reason.into());
        assert!(n.reports(vec![r]).status < 300);
        let p = page(&s);
        assert!(p.contains(&format!("2.0.0 is verified and waits for its flip: {words}.")), "{reason}: {p}");
    }
    // The flip: no longer waiting.
    let mut r = support::report(seq + 1, node::ReportKind::Flipped);
    r.version = Some("2.0.0".into());
    assert!(n.reports(vec![r]).status < 300);
    assert!(!page(&s).contains("id=\"waiting\""));
}

/// The count a card of the overview shows for `key`.
fn card_count(page: &str, card: &str, key: &str) -> Option<u64> {
    let at = page.find(&format!("<div id=\"{card}\">")).unwrap_or_else(|| panic!("card {card} in {page}"));
    let card = &page[at..at + page[at..].find("</div>").expect("the card ends")];
    let cell = format!(">{key}</a></td><td>");
    let from = card.find(&cell)? + cell.len();
    card[from..].split('<').next()?.parse().ok()
}

/// The node ids a list page links to, in order, and its next page's path.
fn listed(page: &str) -> (Vec<String>, Option<String>) {
    let table = &page[page.find("<table id=\"nodes\">").expect("the node table")..];
    let table = &table[..table.find("</table>").expect("the table ends")];
    let ids = table.split("href=\"/ui/nodes/").skip(1).map(|r| r.split('"').next().expect("id").to_owned()).collect();
    let next = page.find("<p id=\"next\"><a href=\"").map(|at| {
        let rest = &page[at + "<p id=\"next\"><a href=\"".len()..];
        rest.split('"').next().expect("href").replace("&amp;", "&")
    });
    (ids, next)
}

fn count_line(page: &str) -> String {
    let at = page.find("id=\"count\">").expect("a count") + "id=\"count\">".len();
    page[at..].split('<').next().expect("text").to_owned()
}

fn the_overview_counts_and_the_node_list_pages(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Operator);
    let (accept, pending) = (admin.enrollment_token("accept"), admin.enrollment_token("pending"));
    let mut harbour = Vec::new();
    let (mut no_site, mut upgraded) = (String::new(), String::new());
    for (seed, site, token) in [
        (40, Some("harbour"), &accept),
        (41, Some("harbour"), &accept),
        (42, Some("harbour"), &accept),
        (43, Some("dock"), &accept),
        (44, None, &accept),
        (45, Some("harbour"), &pending),
    ] {
        let n = env.node(seed);
        assert_eq!(n.enroll(token).status, 201);
        let mut inv = support::inventory(&format!("host-{seed}"));
        inv.site = site.map(str::to_owned);
        assert!(n.put_inventory(&inv).status < 300);
        match site {
            Some("harbour") if seed != 45 => harbour.push(n.id.to_string()),
            None => no_site = n.id.to_string(),
            _ => {}
        }
        if seed == 40 {
            upgraded = n.id.to_string();
            let mut r = support::report(1, node::ReportKind::Committed);
            r.version = Some("2.0.0".into());
            assert!(n.reports(vec![r]).status < 300);
        }
    }
    harbour.sort();
    let s = Session::login(&env, &admin);
    let page = text(&s.get("/ui/"));
    for (card, key, n) in [
        ("by-status", "accepted", 5),
        ("by-status", "pending", 1),
        ("by-site", "harbour", 4),
        ("by-site", "dock", 1),
        ("by-site", "(none)", 1),
        ("by-version", "2.0.0", 1),
        ("by-version", "(none)", 5),
    ] {
        assert_eq!(card_count(&page, card, key), Some(n), "{card} {key}: {page}");
    }
    assert_eq!(card_count(&page, "by-status", "rejected"), None, "no row for a status no node has");

    // Accepted nodes at harbour, two a page: every one once, in id order, and no link past the last page.
    let first = text(&s.get("/ui/nodes?status=accepted&site=harbour&limit=2"));
    assert!(count_line(&first).starts_with("3 nodes"), "{}", count_line(&first));
    let (mut ids, next) = listed(&first);
    assert_eq!(ids.len(), 2);
    let next = next.expect("a next page");
    assert!(next.contains("status=accepted") && next.contains("site=harbour") && next.contains("limit=2"), "{next}");
    let second = text(&s.get(&next));
    assert!(count_line(&second).starts_with("3 nodes"), "{}", count_line(&second));
    let (more, none) = listed(&second);
    assert_eq!(none, None, "the last page has no next");
    ids.extend(more);
    assert_eq!(ids, harbour);
    // Exactly a page: no next page either.
    let (ids, next) = listed(&text(&s.get("/ui/nodes?status=accepted&site=harbour&limit=3")));
    assert_eq!((ids.len(), next), (3, None));

    // `(none)`, as the overview links it, is the nodes without one.
    let (ids, _) = listed(&text(&s.get("/ui/nodes?site=%28none%29")));
    assert_eq!(ids, vec![no_site]);
    let (ids, _) = listed(&text(&s.get("/ui/nodes?version=2.0.0")));
    assert_eq!(ids, vec![upgraded]);
    assert_eq!(s.get("/ui/nodes?limit=0&status=accepted").status, 200, "a limit is clamped, not refused");
}

fn a_node_page_shows_its_logs_and_charts(backend: Backend) {
    use fleet_wire::telemetry::{Body, Counters, LogLine, Metrics, Record, Sample};
    let env = Env::new(backend);
    let admin = env.admin(Role::Viewer);
    let operator = env.admin(Role::Operator);
    let n = env.node(34);
    assert_eq!(n.enroll(&operator.enrollment_token("accept")).status, 201);
    let now_ms = support::NOW as i64 * 1000;
    let log = |seq: u64, ago_s: i64, level: u8, text: &str| Record {
        seq,
        body: Body::Log(LogLine {
            time_ms: now_ms - ago_s * 1000,
            source: "app".into(),
            level,
            text: text.into(),
            lost: 0,
        }),
    };
    let load = |seq: u64, ago_s: i64, v: f64| Record {
        seq,
        body: Body::Metrics(Metrics {
            time_ms: now_ms - ago_s * 1000,
            samples: vec![Sample { name: "edge_node_load1".into(), labels: Default::default(), value: v }],
        }),
    };
    let records = vec![
        load(1, 7200, 0.25),
        log(2, 7000, 6, "started"),
        load(3, 3600, 0.75),
        log(4, 600, 3, "<script>alert(1)</script> disk error"),
        load(5, 60, 1.25),
        log(6, 30, 6, "tick"),
    ];
    assert_eq!(n.telemetry(records, Counters::default()).status, 200);
    let s = Session::login(&env, &admin);
    let page = text(&s.get(&format!("/ui/nodes/{}", n.id)));
    assert!(page.contains("id=\"charts\"") && page.matches("<polyline").count() == 1, "one chart has data: {page}");
    assert!(page.contains("Load (1 min) <span class=\"figures\">1.25"), "{page}");
    assert!(page.contains("id=\"logs\"") && page.contains(">started<") && page.contains(">tick<"), "{page}");
    assert!(!page.contains("<script>alert") && page.contains("&lt;script&gt;alert(1)&lt;/script&gt; disk error"));
    assert!(!page.contains("http-equiv=\"refresh\""), "the node page does not reload itself");

    let logs = |q: &str| s.get(&format!("/ui/nodes/{}/logs?{q}", n.id));
    let found = text(&logs("grep=error&since=1h"));
    assert!(found.contains("disk error") && !found.contains(">tick<") && !found.contains(">started<"), "{found}");
    assert!(found.contains("1 lines"), "{found}");
    let recent = text(&logs("since=15m"));
    assert!(recent.contains("disk error") && recent.contains(">tick<") && !recent.contains(">started<"), "{recent}");
    let followed = text(&logs("since=&follow=1"));
    assert!(followed.contains("http-equiv=\"refresh\"") && followed.contains("3 lines"), "{followed}");
    assert_eq!(logs("since=3y").status, 400);
    assert_eq!(logs("grep=%01").status, 400);
    assert_eq!(s.get("/ui/nodes/n-00000000000000000000000000000000/logs").status, 404);
    assert!(!followed.contains("<script"), "no script, ever");
}
