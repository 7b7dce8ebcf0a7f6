//! The admin API (docs/fleet-protocol.md, "The admin API"): bearer admin tokens with roles, checked per route
//! (viewer reads; operator changes nodes, enrollment tokens, groups, bundles and actions; admin manages admin
//! tokens and decommissions or merges nodes). Each change is made and audited by the store in one transaction.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use fleet_wire::admin::{
    CreateAdminToken, CreateEnrollmentToken, CreatedToken, GroupList, LabelChange, MergeRequest, NodeList, QueueAction,
    Role, SetBundle, SetGroup, TokenList,
};
use fleet_wire::node::{NodeStatus, MAX_BODY_BYTES};
use fleet_wire::rollout::{CreateDeployment, DeploymentList, SetSite, SiteList};
use serde::Deserialize;

use super::{body_bytes, json_response, parse_json, ApiError, App};
use crate::store::{hash_secret, new_action_id, new_secret, Actor, NodeFilter};

/// The admin API's routes (bundle uploads are `bundles`').
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/admin/nodes", get(list_nodes))
        .route("/v1/admin/nodes/{id}", get(show_node))
        .route("/v1/admin/nodes/{id}/accept", post(accept))
        .route("/v1/admin/nodes/{id}/reject", post(reject))
        .route("/v1/admin/nodes/{id}/decommission", post(decommission))
        .route("/v1/admin/nodes/{id}/labels", put(label))
        .route("/v1/admin/nodes/{id}/group", put(group))
        .route("/v1/admin/nodes/{id}/pin", put(pin))
        .route("/v1/admin/nodes/{id}/merge", post(merge))
        .route("/v1/admin/nodes/{id}/events", get(events))
        .route("/v1/admin/nodes/{id}/logs", get(logs))
        .route("/v1/admin/nodes/{id}/telemetry", get(telemetry_status))
        .route("/metrics", get(metrics))
        .route("/v1/admin/nodes/{id}/actions", post(queue_action))
        .route("/v1/admin/actions/{id}/diagnostics", get(diagnostics))
        .route("/v1/admin/enrollment-tokens", get(list_enrollment_tokens).post(create_enrollment_token))
        .route("/v1/admin/enrollment-tokens/{id}/revoke", post(revoke_enrollment_token))
        .route("/v1/admin/admin-tokens", get(list_admin_tokens).post(create_admin_token))
        .route("/v1/admin/admin-tokens/{id}/revoke", post(revoke_admin_token))
        .route("/v1/admin/groups", get(list_groups))
        .route("/v1/admin/groups/{name}", put(set_group_bundle))
        .route("/v1/admin/bundles", get(list_bundles))
        .route("/v1/admin/audit", get(audit))
        .route("/v1/admin/deployments", get(list_deployments).post(create_deployment))
        .route("/v1/admin/deployments/{id}", get(show_deployment))
        .route("/v1/admin/deployments/{id}/nodes", get(deployment_nodes))
        .route("/v1/admin/deployments/{id}/{verb}", post(change_deployment))
        .route("/v1/admin/sites", get(list_sites))
        .route("/v1/admin/sites/{name}", put(set_site))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The admin token of the request, when it has at least the role `need`.
pub async fn authorize(app: &App, headers: &HeaderMap, need: Role) -> Result<Actor, ApiError> {
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(secret) = value.and_then(|v| v.strip_prefix("Bearer ")).map(str::trim) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no-token",
            "an admin token is needed (Authorization: Bearer)",
        ));
    };
    let actor = app.store.admin_actor(&hash_secret(secret)).await?.ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "bad-token", "the admin token is not known or revoked")
    })?;
    if actor.role < need {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("admin token {} is a {}; this needs a {need}", actor.name, actor.role),
        ));
    }
    Ok(actor)
}

type Body = Result<axum::body::Bytes, BytesRejection>;

/// Runs a handler's body and turns its refusal into a response.
async fn reply(f: impl std::future::Future<Output = Result<Response, ApiError>>) -> Response {
    f.await.unwrap_or_else(IntoResponse::into_response)
}

fn ok<T: serde::Serialize>(body: &T) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, body))
}

/// The node list's query: `status`, `label` (`key` or `key=value`), `group`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeQuery {
    status: Option<String>,
    label: Option<String>,
    group: Option<String>,
}

/// A page's query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<u32>,
    offset: Option<u64>,
}

impl PageQuery {
    fn limit(&self) -> u32 {
        self.limit.unwrap_or(50).clamp(1, 1000)
    }
}

fn bad_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad-query", message)
}

async fn list_nodes(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<NodeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        let Query(q) = query.map_err(|e| bad_query(e.body_text()))?;
        let status = match q.status.as_deref() {
            None => None,
            Some(s) => {
                Some(NodeStatus::from_word(s).ok_or_else(|| bad_query(format!("status {s:?} is not a status")))?)
            }
        };
        let label = q.label.map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (l, None),
        });
        let filter = NodeFilter { status, label, group: q.group };
        ok(&NodeList { nodes: app.store.list_nodes(&filter).await? })
    })
    .await
}

async fn show_node(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        ok(&app.store.node_detail(&id).await?)
    })
    .await
}

async fn set_status(app: &App, headers: &HeaderMap, id: &str, status: NodeStatus) -> Result<Response, ApiError> {
    let actor = authorize(app, headers, Role::Operator).await?;
    ok(&app.store.set_node_status(&actor, id, status, app.now()).await?)
}

async fn accept(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    reply(set_status(&app, &headers, &id, NodeStatus::Accepted)).await
}

async fn reject(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    reply(set_status(&app, &headers, &id, NodeStatus::Rejected)).await
}

async fn decommission(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    reply(async {
        let actor = authorize(&app, &headers, Role::Admin).await?;
        ok(&app.store.decommission(&actor, &id, app.now()).await?)
    })
    .await
}

async fn label(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Response {
    reply(async {
        let actor = authorize(&app, &headers, Role::Operator).await?;
        let change: LabelChange = parse_json(&body_bytes(body)?)?;
        change.check()?;
        ok(&app.store.label_node(&actor, &id, &change, app.now()).await?)
    })
    .await
}

async fn group(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Response {
    reply(async {
        let actor = authorize(&app, &headers, Role::Operator).await?;
        let req: SetGroup = parse_json(&body_bytes(body)?)?;
        req.check()?;
        ok(&app.store.set_node_group(&actor, &id, req.group.as_deref(), app.now()).await?)
    })
    .await
}

async fn pin(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Response {
    reply(async {
        let actor = authorize(&app, &headers, Role::Operator).await?;
        let req: SetBundle = parse_json(&body_bytes(body)?)?;
        req.check()?;
        ok(&app.store.pin_node(&actor, &id, req.bundle.as_deref(), app.now()).await?)
    })
    .await
}

async fn merge(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Response {
    reply(async {
        let actor = authorize(&app, &headers, Role::Admin).await?;
        let req: MergeRequest = parse_json(&body_bytes(body)?)?;
        ok(&app.store.merge_nodes(&actor, &id, req.from.as_str(), app.now()).await?)
    })
    .await
}

async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        let Query(q) = query.map_err(|e| bad_query(e.body_text()))?;
        ok(&app.store.events(&id, q.limit(), q.offset.unwrap_or(0)).await?)
    })
    .await
}

/// `GET /v1/admin/nodes/{id}/logs`'s query (docs/fleet-protocol.md, "Logs").
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    /// Lines after this `seq`.
    after: Option<u64>,
    /// Lines logged at or after this time, ms since the epoch.
    since_ms: Option<i64>,
    /// Lines holding this text.
    grep: Option<String>,
    /// At most this many (1 to 5,000; 200).
    limit: Option<u32>,
    /// `first`: from the oldest; otherwise, without `after`, the newest.
    from: Option<String>,
}

async fn logs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        let Query(q) = query.map_err(|e| bad_query(e.body_text()))?;
        let tail = match q.from.as_deref() {
            None | Some("last") => true,
            Some("first") => false,
            Some(other) => return Err(bad_query(format!("from={other}: first or last"))),
        };
        if let Some(g) = &q.grep {
            fleet_wire::node::check_text("grep", g, 256)?;
        }
        let query = crate::store::LogQuery {
            after: q.after.unwrap_or(0),
            since_ms: q.since_ms,
            grep: q.grep.filter(|g| !g.is_empty()),
            limit: q.limit.unwrap_or(200).clamp(1, 5000),
            tail,
        };
        ok(&app.store.node_logs(&id, &query).await?)
    })
    .await
}

async fn telemetry_status(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        ok(&app.store.telemetry_status(&id).await?)
    })
    .await
}

/// `GET /metrics`: the endpoint's own metrics in the Prometheus text format, for any admin token (a scraper's
/// `authorization` in its config).
async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        let text = app.metrics.render(app.store.as_ref()).await?;
        let mut response = (StatusCode::OK, text).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        Ok(response)
    })
    .await
}

async fn queue_action(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Response {
    reply(async {
        let actor = authorize(&app, &headers, Role::Operator).await?;
        let req: QueueAction = parse_json(&body_bytes(body)?)?;
        let info = app.store.queue_action(&actor, &id, &new_action_id(), req.kind, app.now()).await?;
        Ok(json_response(StatusCode::CREATED, &info))
    })
    .await
}

async fn diagnostics(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        ok(&app.store.diagnostics(&id).await?)
    })
    .await
}

async fn list_enrollment_tokens(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        ok(&TokenList { tokens: app.store.list_enrollment_tokens().await? })
    })
    .await
}

async fn create_enrollment_token(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    reply(async {
        let actor = authorize(&app, &headers, Role::Operator).await?;
        let req: CreateEnrollmentToken = parse_json(&body_bytes(body)?)?;
        req.check()?;
        let (id, secret) = new_secret();
        let token = app.store.create_enrollment_token(&actor, &id, &hash_secret(&secret), &req, app.now()).await?;
        Ok(json_response(StatusCode::CREATED, &CreatedToken { token, secret }))
    })
    .await
}

async fn revoke_enrollment_token(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    reply(async {
        let actor = authorize(&app, &headers, Role::Operator).await?;
        ok(&app.store.revoke_enrollment_token(&actor, &id, app.now()).await?)
    })
    .await
}

async fn list_admin_tokens(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Admin).await?;
        ok(&TokenList { tokens: app.store.list_admin_tokens().await? })
    })
    .await
}

async fn create_admin_token(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    reply(async {
        let actor = authorize(&app, &headers, Role::Admin).await?;
        let req: CreateAdminToken = parse_json(&body_bytes(body)?)?;
        req.check()?;
        let (id, secret) = new_secret();
        let token =
            app.store.create_admin_token(&actor, &id, &hash_secret(&secret), &req.name, req.role, app.now()).await?;
        Ok(json_response(StatusCode::CREATED, &CreatedToken { token, secret }))
    })
    .await
}

async fn revoke_admin_token(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    reply(async {
        let actor = authorize(&app, &headers, Role::Admin).await?;
        ok(&app.store.revoke_admin_token(&actor, &id, app.now()).await?)
    })
    .await
}

async fn list_groups(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        ok(&GroupList { groups: app.store.list_groups().await? })
    })
    .await
}

async fn set_group_bundle(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    reply(async {
        let actor = authorize(&app, &headers, Role::Operator).await?;
        fleet_wire::admin::check_name("group", &name)?;
        let req: SetBundle = parse_json(&body_bytes(body)?)?;
        req.check()?;
        ok(&app.store.set_group_bundle(&actor, &name, req.bundle.as_deref(), app.now()).await?)
    })
    .await
}

async fn list_bundles(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        ok(&fleet_wire::admin::BundleList { bundles: app.store.list_bundles().await? })
    })
    .await
}

async fn audit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        let Query(q) = query.map_err(|e| bad_query(e.body_text()))?;
        ok(&app.store.audit(q.limit(), q.offset.unwrap_or(0)).await?)
    })
    .await
}

async fn list_deployments(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        ok(&DeploymentList { deployments: app.store.list_deployments().await? })
    })
    .await
}

async fn create_deployment(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    reply(async {
        let actor = authorize(&app, &headers, Role::Operator).await?;
        let req: CreateDeployment = parse_json(&body_bytes(body)?)?;
        req.check()?;
        let info = app.store.create_deployment(&actor, &req, app.now()).await?;
        Ok(json_response(StatusCode::CREATED, &info))
    })
    .await
}

async fn show_deployment(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        ok(&app.store.deployment(&id).await?)
    })
    .await
}

async fn deployment_nodes(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        ok(&app.store.deployment_nodes(&id, None).await?)
    })
    .await
}

async fn change_deployment(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
) -> Response {
    reply(async {
        let actor = authorize(&app, &headers, Role::Operator).await?;
        if !["pause", "resume", "abort"].contains(&verb.as_str()) {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", format!("no deployment verb {verb}")));
        }
        ok(&app.store.set_deployment_state(&actor, &id, &verb, app.now()).await?)
    })
    .await
}

async fn list_sites(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    reply(async {
        authorize(&app, &headers, Role::Viewer).await?;
        ok(&SiteList { sites: app.store.list_sites(app.now()).await? })
    })
    .await
}

async fn set_site(State(app): State<Arc<App>>, headers: HeaderMap, Path(name): Path<String>, body: Body) -> Response {
    reply(async {
        let actor = authorize(&app, &headers, Role::Operator).await?;
        fleet_wire::admin::check_name("site", &name)?;
        let req: SetSite = parse_json(&body_bytes(body)?)?;
        req.check()?;
        ok(&app.store.set_site(&actor, &name, &req, app.now()).await?)
    })
    .await
}
