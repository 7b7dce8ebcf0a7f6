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
    a_node_waiting_for_its_flip_says_on_what
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
