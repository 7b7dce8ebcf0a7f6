//! The fleet web view (docs/cloud.md, "The web view"): server-rendered HTML under `/ui/`, plain CSS, no script.
//!
//! An admin token is given once at `/ui/login` and becomes a session: a random secret in a cookie (`HttpOnly`,
//! `SameSite=Strict`, `Path=/ui`, `Secure` when the public URL is https), of which the store keeps only the SHA-256,
//! with the session's CSRF token. Every request reads the session and its token again, so revoking the token ends
//! the session at once. Every form carries the CSRF token and is refused without it, or from another origin; a
//! viewer's session sees no form and is refused any change. Each change is the admin API's, made and audited by
//! the store in one transaction under the token's name.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use fleet_wire::admin::Role;
use fleet_wire::node::{NodeStatus, ReportKind, WaitOn};
use fleet_wire::rollout::{CreateDeployment, DeploymentInfo, DeploymentState, PauseReason, RolloutPolicy};
use serde::Deserialize;

use crate::api::{ApiError, App};
use crate::store::{hash_secret, new_secret, Actor, NodeSlice};

pub mod charts;
pub mod html;

use html::{badge, button, esc, link, or_dash, page, progress, table, url_part, Viewer};

/// The session cookie's name.
pub const COOKIE: &str = "edge_session";

/// How long a session lasts from its login.
pub const SESSION_SECS: i64 = 12 * 3600;

/// The style sheet.
const STYLE: &str = include_str!("style.css");

/// How often a page of work in progress reloads itself, in seconds.
const REFRESH_SECS: u32 = 5;

/// The most nodes a list shows.
const MAX_LISTED: u32 = 500;

/// The web view's routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/ui", get(|| async { redirect("/ui/") }))
        .route("/ui/", get(overview))
        .route("/ui/style.css", get(style))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/nodes", get(nodes))
        .route("/ui/nodes/{id}", get(node))
        .route("/ui/nodes/{id}/logs", get(node_logs))
        .route("/ui/nodes/{id}/{verb}", post(change_node))
        .route("/ui/deployments", get(deployments).post(create_deployment))
        .route("/ui/deployments/{id}", get(deployment))
        .route("/ui/deployments/{id}/{verb}", post(change_deployment))
        .route("/ui/audit", get(audit))
}

/// Why a page is not shown.
#[derive(Debug)]
pub enum WebError {
    /// No live session: to the login page.
    Login,
    /// Refused or failed: a page saying why.
    Page(StatusCode, String),
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> WebError {
        WebError::Page(e.status, e.message)
    }
}

impl From<crate::error::Error> for WebError {
    fn from(e: crate::error::Error) -> WebError {
        ApiError::from(e).into()
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::Login => redirect("/ui/login"),
            WebError::Page(status, message) => {
                let body = format!(
                    "<p class=\"error\" id=\"error\">{}</p><p>{}</p>",
                    esc(&message),
                    link("/ui/", "Back to the overview")
                );
                html(status, page(status.canonical_reason().unwrap_or("Refused"), None, None, &body))
            }
        }
    }
}

type Result<T> = std::result::Result<T, WebError>;

fn refused(status: StatusCode, message: impl Into<String>) -> WebError {
    WebError::Page(status, message.into())
}

/// An HTML response, with the headers every page carries: no script, no frame, no cache, no referrer sent to another
/// site (within this one the browser sends `Origin` with each form, which `same_origin` checks).
fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
             base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A 303 to `to` (after a form, a GET of the page that shows its result).
fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/ui/")));
    r
}

async fn respond(f: impl std::future::Future<Output = Result<Response>>) -> Response {
    f.await.unwrap_or_else(IntoResponse::into_response)
}

async fn style() -> Response {
    let mut r = STYLE.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    r
}

/// A live session: who, and the CSRF token its forms carry.
struct Session {
    actor: Actor,
    csrf: String,
}

impl Session {
    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            name: &self.actor.name,
            role: self.actor.role.word(),
            csrf: &self.csrf,
            may_change: self.actor.role >= Role::Operator,
        }
    }
}

/// The session cookie's secret, when the request has one.
fn cookie_secret(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

async fn session(app: &App, headers: &HeaderMap) -> Result<Session> {
    let secret = cookie_secret(headers).ok_or(WebError::Login)?;
    let (actor, csrf) = app.store.session(&hash_secret(secret), app.now()).await?.ok_or(WebError::Login)?;
    Ok(Session { actor, csrf })
}

/// Whether a form came from a page of this endpoint: its `Origin` (sent by browsers with every POST) is this
/// host's, and the browser does not call it cross-site.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if text(header::HeaderName::from_static("sec-fetch-site")) == Some("cross-site") {
        return false;
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
        }
        (Some(_), None) => false,
    }
}

/// The session of a form: from this origin, with the session's CSRF token.
async fn form_session(app: &App, headers: &HeaderMap, csrf: &str) -> Result<Session> {
    if !same_origin(headers) {
        return Err(refused(StatusCode::FORBIDDEN, "the form came from another site"));
    }
    let s = session(app, headers).await?;
    // Both are random hex of the same length; the comparison's time tells nothing of the session's token.
    let same = s.csrf.len() == csrf.len() && s.csrf.bytes().zip(csrf.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0;
    if !same {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or not this session's; reload the page",
        ));
    }
    Ok(s)
}

/// The session of a form that changes something: a form's session, of an operator.
async fn change_session(app: &App, headers: &HeaderMap, csrf: &str) -> Result<Session> {
    let s = form_session(app, headers, csrf).await?;
    if s.actor.role < Role::Operator {
        return Err(refused(
            StatusCode::FORBIDDEN,
            format!("admin token {} is a {}: the view is read-only for it", s.actor.name, s.actor.role),
        ));
    }
    Ok(s)
}

fn form<T>(f: std::result::Result<Form<T>, FormRejection>) -> Result<T> {
    f.map(|Form(t)| t)
        .map_err(|e| refused(StatusCode::BAD_REQUEST, format!("the form is not complete: {}", e.body_text())))
}

// ---- login

async fn login_page() -> Response {
    html(StatusCode::OK, login_html(None))
}

fn login_html(error: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(e) = error {
        let _ = write!(body, "<p class=\"error\" id=\"error\">{}</p>", esc(e));
    }
    body.push_str(
        "<form class=\"stack\" method=\"post\" action=\"/ui/login\">\
         <label for=\"token\">Admin token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required>\
         <p class=\"hint\">The token is sent once; the session it opens lasts 12 hours, or until the token is revoked \
         or you log out.</p><button type=\"submit\" class=\"primary\">Log in</button></form>",
    );
    page("Log in", None, None, &body)
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    f: std::result::Result<Form<LoginForm>, FormRejection>,
) -> Response {
    respond(async {
        if !same_origin(&headers) {
            return Err(refused(StatusCode::FORBIDDEN, "the form came from another site"));
        }
        let token = form(f)?.token;
        let Some(actor) = app.store.admin_actor(&hash_secret(token.trim())).await? else {
            return Ok(html(
                StatusCode::UNAUTHORIZED,
                login_html(Some("That admin token is not known, or it was revoked.")),
            ));
        };
        let (_, secret) = new_secret();
        let (_, csrf) = new_secret();
        let now = app.now();
        app.store.create_session(&actor, &hash_secret(&secret), &csrf, now, now + SESSION_SECS).await?;
        let secure = app.config.public_url.as_deref().is_some_and(|u| u.starts_with("https://"));
        let cookie = format!(
            "{COOKIE}={secret}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}{}",
            if secure { "; Secure" } else { "" }
        );
        let mut r = redirect("/ui/");
        r.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie)
                .map_err(|_| refused(StatusCode::INTERNAL_SERVER_ERROR, "a cookie could not be made"))?,
        );
        Ok(r)
    })
    .await
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    f: std::result::Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    respond(async {
        form_session(&app, &headers, &form(f)?.csrf).await?;
        if let Some(secret) = cookie_secret(&headers) {
            app.store.end_session(&hash_secret(secret)).await?;
        }
        let mut r = redirect("/ui/login");
        let gone = format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0");
        r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&gone).expect("a literal cookie"));
        Ok(r)
    })
    .await
}

// ---- the overview and nodes

fn status_badge(status: NodeStatus) -> String {
    let kind = match status {
        NodeStatus::Accepted => "ok",
        NodeStatus::Pending => "warn",
        _ => "bad",
    };
    badge(kind, status.word())
}

fn node_link(id: &str) -> String {
    let short: String = id.chars().take(16).collect();
    format!("<a class=\"mono\" href=\"/ui/nodes/{}\">{}</a>", url_part(id), esc(&short))
}

/// A count's key as the view shows it and filters on it: `(none)` for no value.
const NONE: &str = "(none)";

fn keyed(counts: &BTreeMap<Option<String>, u64>) -> BTreeMap<&str, u64> {
    counts.iter().map(|(k, n)| (k.as_deref().unwrap_or(NONE), *n)).collect()
}

/// A filter's value from the view: `(none)` for nodes without one.
fn field(value: Option<&str>) -> Option<Option<String>> {
    value.map(|v| (v != NONE).then(|| v.to_owned()))
}

fn counts_card(title: &str, id: &str, counts: &BTreeMap<&str, u64>, href: impl Fn(&str) -> String) -> String {
    let mut s = format!("<div id=\"{id}\"><h2>{}</h2><table><tbody>", esc(title));
    for (k, n) in counts {
        let _ = write!(s, "<tr><td>{}</td><td>{n}</td></tr>", link(&href(k), k));
    }
    if counts.is_empty() {
        s.push_str("<tr><td class=\"none\">none</td></tr>");
    }
    s.push_str("</tbody></table></div>");
    s
}

fn deployment_progress(d: &DeploymentInfo) -> String {
    progress(d.n_committed, d.n_nodes, &format!("{} of {} committed, {} failed", d.n_committed, d.n_nodes, d.n_failed))
}

fn deployment_badge(d: &DeploymentInfo) -> String {
    match (d.state, d.pause.as_ref().map(|p| p.reason)) {
        (DeploymentState::Running, _) if d.complete => badge("ok", "complete"),
        (DeploymentState::Running, _) => badge("info", "running"),
        (DeploymentState::Paused, Some(PauseReason::Brake)) => badge("bad", "paused by the brake"),
        (DeploymentState::Paused, Some(PauseReason::Approval)) => badge("warn", "waiting for approval"),
        (DeploymentState::Paused, _) => badge("warn", "paused"),
        (DeploymentState::Aborted, _) => badge("bad", "aborted"),
    }
}

async fn overview(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    respond(async {
        let s = session(&app, &headers).await?;
        let v = s.viewer();
        let counts = app.store.node_counts().await?;
        let by_status: BTreeMap<&str, u64> = counts.by_status.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        let mut body = String::from("<section class=\"cards\">");
        body.push_str(&counts_card("Nodes by status", "by-status", &by_status, |k| {
            format!("/ui/nodes?status={}", url_part(k))
        }));
        body.push_str(&counts_card("By version", "by-version", &keyed(&counts.by_version), |k| {
            format!("/ui/nodes?version={}", url_part(k))
        }));
        body.push_str(&counts_card("By site", "by-site", &keyed(&counts.by_site), |k| {
            format!("/ui/nodes?site={}", url_part(k))
        }));
        body.push_str("</section><h2>Pending nodes</h2>");
        let slice = NodeSlice { status: Some(NodeStatus::Pending), limit: MAX_LISTED, ..NodeSlice::default() };
        let waiting = app.store.node_page(&slice).await?;
        if waiting.total > waiting.nodes.len() as u64 {
            let _ = write!(
                body,
                "<p class=\"hint\">{} pending: the first {} shown, {}.</p>",
                waiting.total,
                waiting.nodes.len(),
                link("/ui/nodes?status=pending", "all of them")
            );
        }
        let pending: Vec<Vec<String>> = waiting
            .nodes
            .iter()
            .map(|n| {
                let id = n.id.as_str();
                let mut actions = String::new();
                if v.may_change {
                    actions.push_str(&button(&v, &format!("/ui/nodes/{}/accept", url_part(id)), "Accept", "primary"));
                    actions.push_str(&button(&v, &format!("/ui/nodes/{}/reject", url_part(id)), "Reject", "danger"));
                }
                vec![node_link(id), esc(&n.hostname), or_dash(n.site.as_deref()), esc(&n.enrolled_at), actions]
            })
            .collect();
        body.push_str(&table("pending", &["Node", "Host", "Site", "Enrolled", ""], &pending));
        body.push_str("<h2>Deployments in progress</h2>");
        let rows: Vec<Vec<String>> = app
            .store
            .list_deployments()
            .await?
            .iter()
            .filter(|d| d.state != DeploymentState::Aborted && !d.complete)
            .map(|d| {
                vec![
                    link(&format!("/ui/deployments/{}", url_part(&d.id)), &d.name),
                    esc(&d.bundle.version),
                    deployment_badge(d),
                    deployment_progress(d),
                ]
            })
            .collect();
        body.push_str(&table("active-deployments", &["Deployment", "Version", "State", "Progress"], &rows));
        Ok(html(StatusCode::OK, page("Fleet overview", Some(&v), None, &body)))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
struct NodeQuery {
    status: Option<String>,
    site: Option<String>,
    version: Option<String>,
    after: Option<String>,
    /// Nodes a page, at most (and by default) `MAX_LISTED`.
    limit: Option<u32>,
}

async fn nodes(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    q: std::result::Result<Query<NodeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    respond(async {
        let s = session(&app, &headers).await?;
        let Query(q) = q.map_err(|e| refused(StatusCode::BAD_REQUEST, e.body_text()))?;
        let nonempty = |o: &Option<String>| o.clone().filter(|x| !x.is_empty());
        let (site, version, after) = (nonempty(&q.site), nonempty(&q.version), nonempty(&q.after));
        let status = match nonempty(&q.status) {
            None => None,
            Some(w) => Some(
                NodeStatus::from_word(&w)
                    .ok_or_else(|| refused(StatusCode::BAD_REQUEST, format!("status {w:?} is not a node status")))?,
            ),
        };
        let slice = NodeSlice {
            status,
            site: field(site.as_deref()),
            version: field(version.as_deref()),
            after: after.clone(),
            // One more than shown, to know whether there is a next page.
            limit: q.limit.unwrap_or(MAX_LISTED).clamp(1, MAX_LISTED) + 1,
        };
        let mut listed = app.store.node_page(&slice).await?;
        let more = listed.nodes.len() == slice.limit as usize;
        listed.nodes.truncate(slice.limit as usize - 1);
        let mut body = String::from(
            "<form class=\"filters\" method=\"get\" action=\"/ui/nodes\">\
             <label>Status <select name=\"status\"><option value=\"\">any</option>",
        );
        for st in [NodeStatus::Pending, NodeStatus::Accepted, NodeStatus::Rejected, NodeStatus::Decommissioned] {
            let sel = if status == Some(st) { " selected" } else { "" };
            let _ = write!(body, "<option{sel}>{}</option>", st.word());
        }
        let _ = write!(
            body,
            "</select></label><label>Site <input name=\"site\" value=\"{}\"></label>\
             <label>Version <input name=\"version\" value=\"{}\"></label>\
             <button type=\"submit\">Filter</button></form>",
            esc(site.as_deref().unwrap_or("")),
            esc(version.as_deref().unwrap_or(""))
        );
        let rows: Vec<Vec<String>> = listed
            .nodes
            .iter()
            .map(|n| {
                vec![
                    node_link(n.id.as_str()),
                    esc(&n.hostname),
                    status_badge(n.status),
                    or_dash(n.site.as_deref()),
                    or_dash(n.booted_version.as_deref()),
                    or_dash(n.phase.as_deref()),
                    or_dash(n.last_report.as_deref()),
                    or_dash(n.last_seen.as_deref()),
                ]
            })
            .collect();
        let _ = write!(body, "<p class=\"hint\" id=\"count\">{} nodes", listed.total);
        if after.is_some() || more {
            let _ = write!(body, " ({} on this page, by id)", listed.nodes.len());
        }
        body.push_str("</p>");
        body.push_str(&table(
            "nodes",
            &["Node", "Host", "Status", "Site", "Version", "Phase", "Last report", "Last seen"],
            &rows,
        ));
        // The next page: the same filters, after this page's last node.
        if let (true, Some(last)) = (more, listed.nodes.last()) {
            let mut href = String::from("/ui/nodes?");
            let limit = q.limit.map(|_| (slice.limit - 1).to_string());
            for (k, v) in [
                ("status", status.map(|s| s.word().to_owned())),
                ("site", site),
                ("version", version),
                ("limit", limit),
            ] {
                if let Some(v) = v {
                    let _ = write!(href, "{k}={}&", url_part(&v));
                }
            }
            let _ = write!(href, "after={}", url_part(last.id.as_str()));
            let _ = write!(body, "<p id=\"next\">{}</p>", link(&href, "Next page"));
        }
        Ok(html(StatusCode::OK, page("Nodes", Some(&s.viewer()), None, &body)))
    })
    .await
}

fn wait_words(reason: Option<&str>) -> &'static str {
    match reason.and_then(WaitOn::from_word) {
        Some(WaitOn::Paused) => "its deployment is paused",
        Some(WaitOn::Window) => "its site's maintenance window",
        Some(WaitOn::UpdateLock) => "an application's update lock",
        None => "something the node did not name",
    }
}

async fn node(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    respond(async {
        let s = session(&app, &headers).await?;
        let v = s.viewer();
        let d = app.store.node_detail(&id).await?;
        let n = &d.node;
        let mut body = String::new();
        if n.last_report.as_deref() == Some(ReportKind::Waiting.word()) {
            let last = d.events.iter().find(|e| e.report.kind == ReportKind::Waiting);
            let version = last.and_then(|e| e.report.version.as_deref()).unwrap_or("an update");
            let _ = write!(
                body,
                "<p class=\"notice\" id=\"waiting\">{} is verified and waits for its flip: {}.</p>",
                esc(version),
                wait_words(last.and_then(|e| e.report.reason.as_deref()))
            );
        }
        if v.may_change && n.status == NodeStatus::Pending {
            body.push_str("<div id=\"controls\">");
            body.push_str(&button(&v, &format!("/ui/nodes/{}/accept", url_part(&id)), "Accept", "primary"));
            body.push_str(&button(&v, &format!("/ui/nodes/{}/reject", url_part(&id)), "Reject", "danger"));
            body.push_str("</div>");
        }
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let hw = &d.inventory.hardware;
        let facts: Vec<Vec<String>> = [
            ("Id", format!("<span class=\"mono\">{}</span>", esc(n.id.as_str()))),
            ("Status", status_badge(n.status)),
            ("Host", esc(&n.hostname)),
            ("Site", or_dash(n.site.as_deref())),
            ("Labels", esc(&labels.join(", "))),
            ("Group", or_dash(n.group.as_deref())),
            ("Pinned to", or_dash(n.pinned_bundle.as_deref())),
            (
                "Running",
                format!("{} on slot {}", or_dash(n.booted_version.as_deref()), or_dash(n.booted_slot.as_deref())),
            ),
            ("Update", format!("{} (last report: {})", or_dash(n.phase.as_deref()), or_dash(n.last_report.as_deref()))),
            (
                "Hardware",
                esc(&format!(
                    "{} {} ({}), {} × {}, {} MiB",
                    hw.vendor,
                    hw.product,
                    d.inventory.arch,
                    hw.cpu_count,
                    hw.cpu_model,
                    hw.memory_bytes >> 20
                )),
            ),
            ("Kernel, agent", esc(&format!("{}, edge-agent {}", d.inventory.kernel, d.inventory.agent_version))),
            ("Last seen", or_dash(n.last_seen.as_deref())),
            ("Enrolled", esc(&n.enrolled_at)),
        ]
        .into_iter()
        .map(|(k, v)| vec![esc(k), v])
        .collect();
        body.push_str(&table("facts", &["", ""], &facts));
        body.push_str("<h2>Slots</h2>");
        let slots: Vec<Vec<String>> = d
            .inventory
            .slots
            .iter()
            .map(|sl| {
                let b = sl.bundle.as_ref();
                vec![
                    esc(&sl.slot),
                    if sl.booted { badge("info", "booted") } else { String::new() },
                    esc(&sl.state),
                    or_dash(b.map(|b| format!("{} {}", b.name, b.version)).as_deref()),
                    b.map_or_else(String::new, |b| {
                        format!(
                            "<span class=\"mono\">{}</span>",
                            esc(&b.manifest_hash.chars().take(16).collect::<String>())
                        )
                    }),
                ]
            })
            .collect();
        body.push_str(&table("slots", &["Slot", "", "State", "Bundle", "Manifest"], &slots));
        body.push_str("<h2>History</h2>");
        let events: Vec<Vec<String>> = d
            .events
            .iter()
            .map(|e| {
                let r = &e.report;
                vec![
                    esc(&r.time),
                    r.seq.to_string(),
                    esc(r.kind.word()),
                    or_dash(r.version.as_deref()),
                    esc(&r.message),
                    or_dash(r.reason.as_deref()),
                ]
            })
            .collect();
        body.push_str(&table("history", &["Time", "Seq", "Kind", "Version", "Message", "Reason"], &events));
        let now_ms = i64::try_from(app.clock.now()).unwrap_or(i64::MAX).saturating_mul(1000);
        let points = app.store.chart_points(&id, now_ms - crate::store::telemetry_sql::CHART_KEEP_MS).await?;
        body.push_str("<h2>Metrics, last day</h2>");
        body.push_str(&charts::charts(&points));
        let query = crate::store::LogQuery { after: 0, since_ms: None, grep: None, limit: NODE_PAGE_LINES, tail: true };
        let logs = app.store.node_logs(&id, &query).await?;
        let _ = write!(
            body,
            "<h2>Logs</h2><p class=\"hint\">The newest {NODE_PAGE_LINES} lines. {}</p>",
            link(&format!("/ui/nodes/{}/logs", url_part(&id)), "Search and follow the logs")
        );
        body.push_str(&log_table(&logs.lines));
        Ok(html(StatusCode::OK, page(&format!("Node {}", n.hostname), Some(&v), None, &body)))
    })
    .await
}

/// Lines the node page shows.
const NODE_PAGE_LINES: u32 = 20;
/// Lines the logs page shows.
const LOG_PAGE_LINES: u32 = 500;

/// A syslog level's badge.
fn level_badge(level: u8) -> String {
    let (kind, word) = match level {
        0..=3 => ("bad", ["emerg", "alert", "crit", "err"][usize::from(level)]),
        4 => ("warn", "warning"),
        5 => ("info", "notice"),
        6 => ("ok", "info"),
        _ => ("info", "debug"),
    };
    badge(kind, word)
}

/// Log lines as a table, oldest first.
fn log_table(lines: &[fleet_wire::telemetry::LogEntry]) -> String {
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let lost = if l.lost > 0 { badge("warn", &format!("{} lost before", l.lost)) } else { String::new() };
            vec![
                esc(&l.time),
                esc(&l.source),
                level_badge(l.level),
                format!("<span class=\"mono\">{}</span>", esc(&l.text)),
                lost,
            ]
        })
        .collect();
    table("logs", &["Time", "Source", "Level", "Line", ""], &rows)
}

/// The logs page's query: text to look for, how far back, and whether to follow.
#[derive(Debug, Default, Deserialize)]
struct LogsForm {
    #[serde(default)]
    grep: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    follow: Option<String>,
}

/// The ages the logs page offers, by their word.
const SINCE: [(&str, &str, i64); 5] = [
    ("15m", "15 minutes", 900),
    ("1h", "an hour", 3600),
    ("1d", "a day", 86_400),
    ("7d", "a week", 604_800),
    ("", "all kept", 0),
];

/// `/ui/nodes/{id}/logs`: a node's newest log lines matching a text and an age; following reloads the page every
/// few seconds (no script).
async fn node_logs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: std::result::Result<Query<LogsForm>, axum::extract::rejection::QueryRejection>,
) -> Response {
    respond(async {
        let s = session(&app, &headers).await?;
        let v = s.viewer();
        let Query(f) = q.map_err(|e| refused(StatusCode::BAD_REQUEST, e.body_text()))?;
        let grep = f.grep.trim().to_owned();
        if grep.chars().count() > 256 || grep.chars().any(char::is_control) {
            return Err(refused(StatusCode::BAD_REQUEST, "the text to look for is at most 256 printable characters"));
        }
        let Some(&(since, _, secs)) = SINCE.iter().find(|(w, _, _)| *w == f.since) else {
            return Err(refused(StatusCode::BAD_REQUEST, format!("since {:?}: 15m, 1h, 1d, 7d or empty", f.since)));
        };
        let follow = f.follow.is_some();
        let detail = app.store.node_detail(&id).await?;
        let now_ms = i64::try_from(app.clock.now()).unwrap_or(i64::MAX).saturating_mul(1000);
        let query = crate::store::LogQuery {
            after: 0,
            since_ms: (secs > 0).then(|| now_ms - secs * 1000),
            grep: (!grep.is_empty()).then(|| grep.clone()),
            limit: LOG_PAGE_LINES,
            tail: true,
        };
        let logs = app.store.node_logs(&id, &query).await?;
        let mut body = String::new();
        let _ = write!(
            body,
            "<p>{}</p><form class=\"filters\" method=\"get\" action=\"/ui/nodes/{}/logs\">\
             <label>Lines holding <input type=\"search\" name=\"grep\" value=\"{}\"></label><label>from the last <select name=\"since\">",
            link(&format!("/ui/nodes/{}", url_part(&id)), &format!("Back to node {}", detail.node.hostname)),
            url_part(&id),
            esc(&grep)
        );
        for (word, label, _) in SINCE {
            let selected = if word == since { " selected" } else { "" };
            let _ = write!(body, "<option value=\"{word}\"{selected}>{label}</option>");
        }
        let checked = if follow { " checked" } else { "" };
        let _ = write!(
            body,
            "</select></label><label><input type=\"checkbox\" name=\"follow\" value=\"1\"{checked}> follow</label>\
             <button type=\"submit\">Show</button></form><p class=\"hint\" id=\"count\">{} lines (the newest {LOG_PAGE_LINES} at most){}.</p>",
            logs.lines.len(),
            if follow { format!(", reloaded every {REFRESH_SECS} s") } else { String::new() }
        );
        body.push_str(&log_table(&logs.lines));
        let title = format!("Logs of {}", detail.node.hostname);
        Ok(html(StatusCode::OK, page(&title, Some(&v), follow.then_some(REFRESH_SECS), &body)))
    })
    .await
}

async fn change_node(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
    f: std::result::Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    respond(async {
        let csrf = form(f)?.csrf;
        let s = change_session(&app, &headers, &csrf).await?;
        let status = match verb.as_str() {
            "accept" => NodeStatus::Accepted,
            "reject" => NodeStatus::Rejected,
            _ => return Err(refused(StatusCode::NOT_FOUND, format!("no node verb {verb}"))),
        };
        app.store.set_node_status(&s.actor, &id, status, app.now()).await?;
        Ok(redirect(&format!("/ui/nodes/{}", url_part(&id))))
    })
    .await
}

// ---- deployments

async fn deployments(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    respond(async {
        let s = session(&app, &headers).await?;
        let v = s.viewer();
        let list = app.store.list_deployments().await?;
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|d| {
                vec![
                    link(&format!("/ui/deployments/{}", url_part(&d.id)), &d.name),
                    esc(&format!("{} {}", d.bundle.name, d.bundle.version)),
                    format!("<code>{}</code>", esc(&d.selector)),
                    deployment_badge(d),
                    deployment_progress(d),
                    esc(&d.created_at),
                ]
            })
            .collect();
        let mut body =
            table("deployments", &["Deployment", "Bundle", "Selector", "State", "Progress", "Created"], &rows);
        if v.may_change {
            body.push_str("<h2>Start a deployment</h2>");
            body.push_str(&deployment_form(&v, &app.store.list_bundles().await?));
        }
        Ok(html(StatusCode::OK, page("Deployments", Some(&v), None, &body)))
    })
    .await
}

fn deployment_form(v: &Viewer<'_>, bundles: &[fleet_wire::admin::BundleInfo]) -> String {
    let mut s = format!(
        "<form class=\"stack\" id=\"new-deployment\" method=\"post\" action=\"/ui/deployments\">{}",
        html::csrf_field(v.csrf)
    );
    s.push_str("<label for=\"name\">Name</label><input id=\"name\" name=\"name\" required>");
    s.push_str("<label for=\"bundle\">Bundle</label><select id=\"bundle\" name=\"bundle\">");
    for b in bundles {
        let short: String = b.manifest_hash.chars().take(12).collect();
        let _ = write!(
            s,
            "<option value=\"{}\">{} {} ({short})</option>",
            esc(&b.manifest_hash),
            esc(&b.name),
            esc(&b.version)
        );
    }
    s.push_str("</select>");
    let field = |s: &mut String, id: &str, label: &str, value: &str, hint: &str| {
        let _ = write!(
            s,
            "<label for=\"{id}\">{}</label><input id=\"{id}\" name=\"{id}\" value=\"{}\">\
             <span class=\"hint\">{}</span>",
            esc(label),
            esc(value),
            esc(hint)
        );
    };
    field(
        &mut s,
        "selector",
        "Selector",
        "",
        "labels and inventory, e.g. role = till, memory >= 8GiB; empty: every node",
    );
    field(&mut s, "canary", "Canary", "0", "nodes in the first wave");
    field(&mut s, "waves", "Waves", "100%", "comma-separated shares or counts; the last is 100%");
    field(&mut s, "max_concurrent", "Most updating at once", "", "empty: no limit");
    field(&mut s, "max_per_site", "Most updating at once per site", "", "empty: no limit");
    field(&mut s, "brake", "Brake", "", "failures in a wave that pause it: a count or a share; empty: none");
    field(&mut s, "lock_max_secs", "Longest update-lock hold (s)", "3600", "");
    s.push_str(
        "<label><input type=\"checkbox\" name=\"approve_waves\" value=\"on\"> Each wave waits for approval</label>",
    );
    s.push_str(
        "<label><input type=\"checkbox\" name=\"ignore_windows\" value=\"on\"> \
         Flip outside the sites' maintenance windows</label>",
    );
    s.push_str("<p><button type=\"submit\" class=\"primary\">Start</button></p></form>");
    s
}

#[derive(Debug, Deserialize)]
struct DeploymentForm {
    csrf: String,
    name: String,
    bundle: String,
    #[serde(default)]
    selector: String,
    #[serde(default)]
    canary: String,
    #[serde(default)]
    waves: String,
    #[serde(default)]
    max_concurrent: String,
    #[serde(default)]
    max_per_site: String,
    #[serde(default)]
    brake: String,
    #[serde(default)]
    lock_max_secs: String,
    approve_waves: Option<String>,
    ignore_windows: Option<String>,
}

impl DeploymentForm {
    /// The admin API's request this form says; what is wrong names the field.
    fn request(&self) -> Result<CreateDeployment> {
        fn number<T: std::str::FromStr>(field: &str, text: &str) -> Result<Option<T>> {
            let t = text.trim();
            if t.is_empty() {
                return Ok(None);
            }
            t.parse()
                .map(Some)
                .map_err(|_| refused(StatusCode::BAD_REQUEST, format!("{field}: {t:?} is not a whole number")))
        }
        let nonempty = |t: &str| Some(t.trim().to_owned()).filter(|t| !t.is_empty());
        let policy = RolloutPolicy {
            canary: number("canary", &self.canary)?.unwrap_or(0),
            waves: self.waves.split(',').map(|w| w.trim().to_owned()).filter(|w| !w.is_empty()).collect(),
            max_concurrent: number("max_concurrent", &self.max_concurrent)?,
            max_per_site: number("max_per_site", &self.max_per_site)?,
            approve_waves: self.approve_waves.is_some(),
            brake: nonempty(&self.brake),
            windows: self.ignore_windows.is_none(),
            lock_max_secs: number("lock_max_secs", &self.lock_max_secs)?.unwrap_or(3600),
        };
        Ok(CreateDeployment {
            name: self.name.trim().to_owned(),
            bundle: self.bundle.trim().to_owned(),
            selector: self.selector.trim().to_owned(),
            policy,
        })
    }
}

async fn create_deployment(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    f: std::result::Result<Form<DeploymentForm>, FormRejection>,
) -> Response {
    respond(async {
        let f = form(f)?;
        let s = change_session(&app, &headers, &f.csrf).await?;
        let req = f.request()?;
        req.check().map_err(ApiError::from)?;
        let d = app.store.create_deployment(&s.actor, &req, app.now()).await?;
        Ok(redirect(&format!("/ui/deployments/{}", url_part(&d.id))))
    })
    .await
}

async fn deployment(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    respond(async {
        let s = session(&app, &headers).await?;
        let v = s.viewer();
        let d = app.store.deployment(&id).await?;
        let members = app.store.deployment_nodes(&id, Some(MAX_LISTED)).await?;
        let mut body = format!("<p id=\"state\">{} {}</p>", deployment_badge(&d), deployment_progress(&d));
        if let Some(p) = &d.pause {
            let class = if p.reason == PauseReason::Brake { "notice bad" } else { "notice" };
            let what = match p.reason {
                PauseReason::Brake => "The failure brake paused this deployment",
                PauseReason::Approval => "The next wave waits for an operator's approval (Resume)",
                PauseReason::Operator => "Paused by an operator",
            };
            let _ =
                write!(body, "<p class=\"{class}\" id=\"pause\">{what} at {}: {}</p>", esc(&p.since), esc(&p.detail));
        }
        if v.may_change && d.state != DeploymentState::Aborted {
            body.push_str("<div id=\"controls\">");
            let at = |verb: &str| format!("/ui/deployments/{}/{verb}", url_part(&id));
            match d.state {
                DeploymentState::Running => body.push_str(&button(&v, &at("pause"), "Pause", "")),
                _ => body.push_str(&button(&v, &at("resume"), "Resume", "primary")),
            }
            body.push_str(&button(&v, &at("abort"), "Abort", "danger"));
            body.push_str("</div>");
        }
        let policy = &d.policy;
        let facts: Vec<Vec<String>> = [
            ("Bundle", esc(&format!("{} {} ({})", d.bundle.name, d.bundle.version, d.bundle.manifest_hash))),
            ("Selector", format!("<code>{}</code>", esc(&d.selector))),
            (
                "Limits",
                esc(&format!(
                    "{} at once, {} per site",
                    policy.max_concurrent.map_or("no limit".to_owned(), |n| n.to_string()),
                    policy.max_per_site.map_or("no limit".to_owned(), |n| n.to_string())
                )),
            ),
            ("Brake", or_dash(policy.brake.as_deref())),
            ("Windows", esc(if policy.windows { "flips inside each site's windows" } else { "flips at any time" })),
            (
                "Nodes",
                esc(&format!(
                    "{} in all: {} waiting, {} updating, {} committed, {} failed",
                    d.n_nodes, d.n_waiting, d.n_updating, d.n_committed, d.n_failed
                )),
            ),
            ("Created", esc(&format!("{} by {}", d.created_at, d.created_by))),
        ]
        .into_iter()
        .map(|(k, v)| vec![esc(k), v])
        .collect();
        body.push_str(&table("facts", &["", ""], &facts));
        body.push_str("<h2>Waves</h2>");
        let waves: Vec<Vec<String>> = d
            .waves
            .iter()
            .map(|w| {
                let now = if w.index == d.wave && !d.complete { badge("info", "current") } else { String::new() };
                vec![
                    format!("{} {now}", esc(&w.size)),
                    progress(
                        w.committed,
                        w.target,
                        &format!("{} begun of {}, {} committed, {} failed", w.begun, w.target, w.committed, w.failed),
                    ),
                ]
            })
            .collect();
        body.push_str(&table("waves", &["Wave", "Progress"], &waves));
        body.push_str("<h2>Nodes</h2>");
        if d.n_nodes > members.nodes.len() as u64 {
            let _ = write!(
                body,
                "<p class=\"hint\" id=\"members-shown\">The first {} of {}: those that failed first, then those \
                 updating, waiting and committed.</p>",
                members.nodes.len(),
                d.n_nodes
            );
        }
        let rows: Vec<Vec<String>> = members
            .nodes
            .iter()
            .map(|m| {
                vec![
                    node_link(&m.node),
                    or_dash(m.site.as_deref()),
                    esc(m.state.word()),
                    or_dash(m.wave.map(|w| w.to_string()).as_deref()),
                    or_dash(m.started_at.as_deref()),
                    or_dash(m.finished_at.as_deref()),
                    or_dash(m.result.as_deref()),
                ]
            })
            .collect();
        body.push_str(&table("members", &["Node", "Site", "State", "Wave", "Started", "Finished", "Result"], &rows));
        let live = d.state != DeploymentState::Aborted && !d.complete;
        Ok(html(StatusCode::OK, page(&format!("Deployment {}", d.name), Some(&v), live.then_some(REFRESH_SECS), &body)))
    })
    .await
}

async fn change_deployment(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
    f: std::result::Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    respond(async {
        let csrf = form(f)?.csrf;
        let s = change_session(&app, &headers, &csrf).await?;
        if !["pause", "resume", "abort"].contains(&verb.as_str()) {
            return Err(refused(StatusCode::NOT_FOUND, format!("no deployment verb {verb}")));
        }
        app.store.set_deployment_state(&s.actor, &id, &verb, app.now()).await?;
        Ok(redirect(&format!("/ui/deployments/{}", url_part(&id))))
    })
    .await
}

// ---- audit

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    offset: Option<u64>,
}

async fn audit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    q: std::result::Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    respond(async {
        let s = session(&app, &headers).await?;
        let Query(q) = q.map_err(|e| refused(StatusCode::BAD_REQUEST, e.body_text()))?;
        let p = app.store.audit(100, q.offset.unwrap_or(0)).await?;
        let rows: Vec<Vec<String>> = p
            .entries
            .iter()
            .map(|e| {
                vec![
                    esc(&e.at),
                    esc(&e.actor_name),
                    esc(&e.action),
                    format!("<span class=\"mono\">{}</span>", esc(&e.target)),
                    format!("<code>{}</code>", esc(&e.change.to_string())),
                ]
            })
            .collect();
        let mut body = table("audit", &["At", "Who", "Action", "Target", "Change"], &rows);
        if let Some(next) = p.next_offset {
            let _ = write!(body, "<p>{}</p>", link(&format!("/ui/audit?offset={next}"), "Older entries"));
        }
        Ok(html(StatusCode::OK, page("Audit log", Some(&s.viewer()), None, &body)))
    })
    .await
}
