//! The endpoint's HTTP API: the router, the state every handler shares, and what every refusal looks like
//! (`ApiError`, a `fleet_wire::node::ErrorReply` body with a status code and a stable word; the table is
//! docs/fleet-protocol.md, "Status codes"). The node API is `node`, the admin API `admin`, the bundle store
//! `bundles`; this module owns what they share: reading a JSON body into a boundary type, and the deadline.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use fleet_wire::node::ErrorReply;
use serde::de::DeserializeOwned;

use crate::clock::Clock;
use crate::error::{Error, Refusal};
use crate::store::{Retention, Store};

pub mod admin;
pub mod bundles;
pub mod node;

/// What the endpoint is told at start (docs/cloud.md, "`edge-cloud serve`").
#[derive(Debug, Clone)]
pub struct Config {
    /// The poll interval suggested to nodes.
    pub poll_interval_secs: u32,
    /// The endpoint's URL as nodes reach it (behind a proxy it cannot know it), for bundle URLs; without it the
    /// desired state names only external URLs.
    pub public_url: Option<String>,
    /// How long reports are kept.
    pub retention: Retention,
    /// How long and how much of each node's logs are kept.
    pub log_retention: crate::store::telemetry_sql::LogRetention,
    /// Where nodes' metrics are forwarded; without it they are not queued (the web view's chart points are kept).
    pub remote_write: Option<crate::forward::RemoteWrite>,
    /// The longest a request may take, body included (bundle uploads have `upload_timeout`).
    pub request_timeout: Duration,
    /// The longest a bundle upload may take.
    pub upload_timeout: Duration,
    /// Where bundles are stored (`DIR/bundles`).
    pub bundle_dir: std::path::PathBuf,
    /// The fleet keyring uploads are verified against; without it uploads are refused.
    pub keyring: Option<Arc<image_layout::keys::Keyring>>,
}

impl Config {
    /// The defaults, with bundles under `data_dir/bundles`.
    pub fn new(data_dir: &std::path::Path) -> Config {
        Config {
            poll_interval_secs: 60,
            public_url: None,
            retention: Retention::default(),
            log_retention: crate::store::telemetry_sql::LogRetention::default(),
            remote_write: None,
            request_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(3600),
            bundle_dir: data_dir.join("bundles"),
            keyring: None,
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct App {
    /// The database.
    pub store: Arc<dyn Store>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The configuration.
    pub config: Config,
    /// The endpoint's own metrics.
    pub metrics: Arc<crate::metrics::CloudMetrics>,
    /// Node keys already read from the store, by node id.
    keys: KeyCache,
}

/// Node keys read from the store, so that a node's every request does not read its key again. Nothing in it can go
/// stale: a node id is the hash of its key (`NodeId::of_key`), so the key of an id never changes, and whether the
/// node may still act (rejected, decommissioned) is decided by the store in each request's own transaction, never
/// from here. It is bounded: when full it is emptied and fills again from the store.
#[derive(Debug, Default)]
struct KeyCache(std::sync::Mutex<std::collections::HashMap<String, ed25519_dalek::VerifyingKey>>);

/// The most keys the cache holds (about 100 bytes each).
const KEY_CACHE_MAX: usize = 1 << 20;

impl App {
    /// The state the handlers share.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: Config) -> App {
        App { store, clock, config, metrics: Arc::default(), keys: KeyCache::default() }
    }

    /// The key of node `id`, from the cache or else the store; `None` when no node has that id.
    pub(crate) async fn node_key(&self, id: &str) -> Result<Option<ed25519_dalek::VerifyingKey>, ApiError> {
        if let Some(key) = self.keys.0.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(Some(*key));
        }
        let Some(stored) = self.store.node_key(id).await? else { return Ok(None) };
        let Ok(key) = fleet_wire::node::decode_public_key(&stored.public_key) else { return Ok(None) };
        let mut keys = self.keys.0.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= KEY_CACHE_MAX {
            keys.clear();
        }
        keys.insert(id.to_owned(), key);
        Ok(Some(key))
    }

    /// Now, in seconds since the epoch, as the store takes it.
    pub fn now(&self) -> i64 {
        i64::try_from(self.clock.now()).unwrap_or(i64::MAX)
    }
}

/// The whole API.
pub fn router(app: Arc<App>) -> Router {
    let timed = node::routes()
        .merge(admin::routes())
        .merge(bundles::routes())
        .merge(crate::web::routes())
        .layer(axum::middleware::from_fn_with_state(app.clone(), deadline));
    timed.merge(bundles::upload_routes()).fallback(not_found).with_state(app)
}

/// Cuts a request that takes longer than the deadline, its body's arrival included, so that a slow client holds
/// no worker for longer; the server goes on serving the others.
async fn deadline(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(app.config.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", "the request took longer than its deadline")
            .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such path")
}

/// A refusal: its status code, its stable word and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// The `error` word.
    pub error: &'static str,
    /// The `message`.
    pub message: String,
}

impl ApiError {
    /// A refusal.
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, error, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorReply { error: self.error.to_owned(), message: self.message };
        json_response(self.status, &body)
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> ApiError {
        match err {
            Error::Refused(r) => r.into(),
            Error::Database { source: sqlx::Error::PoolTimedOut, .. } => {
                log::warn!("database: no connection within the pool's timeout");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database is busy; retry")
            }
            other => {
                log::error!("{}", crate::error::chain(&other));
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the endpoint failed; see its log")
            }
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        let (status, word) = match &r {
            Refusal::TokenUnknown => (StatusCode::FORBIDDEN, "token-unknown"),
            Refusal::TokenRevoked => (StatusCode::FORBIDDEN, "token-revoked"),
            Refusal::TokenExpired => (StatusCode::FORBIDDEN, "token-expired"),
            Refusal::TokenExhausted => (StatusCode::FORBIDDEN, "token-exhausted"),
            Refusal::NodeUnknown { .. } => (StatusCode::UNAUTHORIZED, "unknown-node"),
            Refusal::NodeRejected { .. } => (StatusCode::FORBIDDEN, "node-rejected"),
            Refusal::NodeDecommissioned { .. } => (StatusCode::FORBIDDEN, "node-decommissioned"),
            Refusal::Replayed => (StatusCode::CONFLICT, "replayed"),
            Refusal::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found"),
            Refusal::Invalid { .. } => (StatusCode::BAD_REQUEST, "bad-field"),
            Refusal::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
        };
        ApiError::new(status, word, r.to_string())
    }
}

impl From<fleet_wire::Error> for ApiError {
    /// A body that serde read but the protocol's bounds refuse.
    fn from(err: fleet_wire::Error) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-field", err.to_string())
    }
}

/// A JSON reply.
pub fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).expect("reply bodies serialize");
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The body's bytes, or 413 when it is past the route's limit.
pub fn body_bytes(body: Result<axum::body::Bytes, BytesRejection>) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "the body is larger than this path takes")
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad-body", rejection.body_text())
        }
    })
}

/// Reads a JSON body into a boundary type; a refusal names the field serde stopped at (an unknown field, a wrong
/// type) as `bad-json`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = if path == "." { inner.to_string() } else { format!("{path}: {inner}") };
        ApiError::new(StatusCode::BAD_REQUEST, "bad-json", message)
    })?;
    de.end().map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, "bad-json", err.to_string()))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_wire::admin::SetGroup;

    #[test]
    fn json_refusals_name_the_field() {
        let err = parse_json::<SetGroup>(br#"{"group": "a", "colour": 1}"#).expect_err("unknown field");
        assert_eq!((err.status, err.error), (StatusCode::BAD_REQUEST, "bad-json"));
        assert!(err.message.contains("colour"), "{}", err.message);
        let err = parse_json::<fleet_wire::node::ReportAck>(br#"{"stored": "x"}"#).expect_err("wrong type");
        assert!(err.message.starts_with("stored:"), "{}", err.message);
        let err = parse_json::<SetGroup>(br#"{"group": null} x"#).expect_err("trailing bytes");
        assert_eq!(err.error, "bad-json");
        assert_eq!(parse_json::<SetGroup>(br#"{"group": null}"#).expect("good"), SetGroup { group: None });
    }
}
