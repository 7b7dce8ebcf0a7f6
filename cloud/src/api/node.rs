//! The node API (docs/fleet-protocol.md, "The node API"): enrollment, the desired state, the inventory, reports and
//! diagnostics. Every request is signed by the node (`fleet_wire::signature::verify_node_request`, with the window
//! from the endpoint's clock), names only the node that signed it, and has its replay id recorded in the
//! transaction of its effect, so a request replayed within the window is refused and changes nothing.
//!
//! A `GET` of the desired state records its replay id too, in the transaction that records `last_seen`: a replayed
//! poll is refused like any other replay. That transaction is the one the store commits without waiting for the
//! disk (a forgotten poll costs nothing: the node polls again), which is what lets one machine serve a large fleet.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use fleet_wire::node::{
    decode_public_key, BundleRef, DesiredState, Diagnostics, EnrollReply, EnrollRequest, Inventory, NodeId,
    ReportBatch, MAX_BODY_BYTES, MAX_DIAGNOSTICS_BYTES,
};
use fleet_wire::signature::{self, Verified, VerifyOptions, NODE_WINDOW};
use fleet_wire::Error as WireError;

use super::{body_bytes, json_response, parse_json, ApiError, App};
use crate::store::{hash_secret, hex, Desired, Enrollment, Replay};

/// The node API's routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(fleet_wire::node::ENROLL_PATH, post(enroll))
        .route("/v1/nodes/{id}/desired", get(desired))
        .route("/v1/nodes/{id}/inventory", put(inventory))
        .route("/v1/nodes/{id}/reports", post(reports))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .merge(
            Router::new()
                .route("/v1/nodes/{id}/telemetry", post(telemetry))
                .layer(DefaultBodyLimit::max(fleet_wire::telemetry::MAX_BATCH_BYTES)),
        )
        .merge(
            Router::new()
                .route("/v1/nodes/{id}/actions/{action}/diagnostics", put(diagnostics))
                .layer(DefaultBodyLimit::max(MAX_DIAGNOSTICS_BYTES)),
        )
}

/// Maps a signature or digest refusal to its status and word.
fn signature_refusal(err: &WireError) -> ApiError {
    let (status, word) = match err {
        WireError::MissingHeader { name: "signature-input" | "signature" } => {
            (StatusCode::UNAUTHORIZED, "missing-signature")
        }
        WireError::CreatedTooOld { .. } | WireError::CreatedInFuture { .. } | WireError::Expired { .. } => {
            (StatusCode::UNAUTHORIZED, "stale-signature")
        }
        WireError::UnknownKey { .. } => (StatusCode::UNAUTHORIZED, "unknown-node"),
        WireError::MissingHeader { name: "content-digest" }
        | WireError::ParseContentDigest { .. }
        | WireError::ContentDigestValue { .. }
        | WireError::NoDigestAlgorithm
        | WireError::DigestMismatch { .. } => (StatusCode::BAD_REQUEST, "bad-digest"),
        _ => (StatusCode::UNAUTHORIZED, "bad-signature"),
    };
    ApiError::new(status, word, err.to_string())
}

/// The key id a request claims, read before the key is looked up (the verification reads it again, strictly).
fn claimed_keyid(parts: &Parts) -> Option<String> {
    let value = parts.headers.get("signature-input")?.to_str().ok()?;
    let dict = fleet_wire::sfv::parse_dictionary(value).ok()?;
    let (_, member) = dict.members.first()?;
    let fleet_wire::sfv::Member::InnerList { params, .. } = member else { return None };
    params.iter().find_map(|(k, v)| match (k.as_str(), v) {
        ("keyid", fleet_wire::sfv::BareItem::String(s)) => Some(s.clone()),
        _ => None,
    })
}

/// Verifies a node request's signature and digest with `key` for the key id it claims.
fn verify(
    app: &App,
    parts: &Parts,
    body: &[u8],
    lookup: impl FnMut(&str) -> Option<ed25519_dalek::VerifyingKey>,
) -> Result<Verified, ApiError> {
    let headers: Vec<(&str, &str)> =
        parts.headers.iter().filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))).collect();
    let authority = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let req = signature::Request {
        method: parts.method.as_str(),
        scheme: "https",
        authority,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &headers,
    };
    let options = VerifyOptions { label: None, now: app.clock.now(), window: NODE_WINDOW };
    signature::verify_node_request(&req, body, &options, lookup).map_err(|e| signature_refusal(&e))
}

/// What a verified node request carries on: the node's id and its replay id.
struct Signed {
    node: String,
    replay: Replay,
}

fn replay_of(verified: &Verified) -> Replay {
    let until = verified.created.saturating_add(NODE_WINDOW.max_age_secs).saturating_add(1);
    Replay { id: verified.replay_id.to_hex(), expires_at: i64::try_from(until).unwrap_or(i64::MAX) }
}

/// Verifies a request to `/v1/nodes/{path_node}/...`: signed by an enrolled node, that node, still allowed.
async fn authenticate(app: &App, parts: &Parts, body: &[u8], path_node: &str) -> Result<Signed, ApiError> {
    let keyid = claimed_keyid(parts);
    let key = match keyid.as_deref().filter(|k| k.parse::<NodeId>().is_ok()) {
        Some(k) => app.node_key(k).await?,
        None => None,
    };
    let verified = verify(app, parts, body, |k| (Some(k) == keyid.as_deref()).then_some(key).flatten())?;
    if verified.keyid != path_node {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong-node",
            format!("node {} may not act on node {path_node}", verified.keyid),
        ));
    }
    // Whether the node may still act (not rejected, not decommissioned) is the store's to decide, in the
    // transaction of the request's effect, so that no replica acts on a status it read before.
    Ok(Signed { node: verified.keyid.clone(), replay: replay_of(&verified) })
}

async fn enroll(
    State(app): State<Arc<App>>,
    parts: Parts,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Response {
    match enroll_inner(&app, &parts, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn enroll_inner(
    app: &App,
    parts: &Parts,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let req: EnrollRequest = parse_json(&body)?;
    req.check()?;
    let key = decode_public_key(&req.public_key)?;
    let node_id = NodeId::of_key(&key);
    // Proof of possession: the request verifies only when signed by the key it enrolls, under that key's id.
    let verified = verify(app, parts, &body, |k| (k == node_id.as_str()).then_some(key)).map_err(|e| {
        if e.error == "unknown-node" {
            ApiError::new(StatusCode::UNAUTHORIZED, "key-mismatch", "keyid is not the id of public_key")
        } else {
            e
        }
    })?;
    let enrollment = Enrollment {
        node_id: node_id.to_string(),
        public_key: req.public_key.clone(),
        token_hash: hash_secret(&req.token),
        inventory: req.inventory,
    };
    let enrolled = app.store.enroll(&enrollment, &replay_of(&verified), app.now()).await?;
    let reply = EnrollReply { node_id, status: enrolled.status, poll_interval_secs: app.config.poll_interval_secs };
    let status = if enrolled.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json_response(status, &reply))
}

/// The desired state's body and its `ETag`: a hash of exactly these bytes.
pub fn desired_body(app: &App, desired: Desired) -> (Vec<u8>, String) {
    let flip = desired.flip;
    let bundle = desired.bundle.map(|b| {
        let mut urls = Vec::new();
        if let (true, Some(base)) = (b.stored, &app.config.public_url) {
            urls.push(format!("{}/v1/bundles/{}.bundle", base.trim_end_matches('/'), b.manifest_hash));
        }
        urls.extend(b.urls.iter().cloned());
        BundleRef {
            name: b.name,
            version: b.version,
            security_version: b.security_version,
            manifest_hash: b.manifest_hash,
            size_bytes: b.size_bytes,
            urls,
            flip,
        }
    });
    let state = DesiredState {
        status: desired.status,
        poll_interval_secs: app.config.poll_interval_secs,
        bundle,
        actions: desired.actions,
    };
    let body = serde_json::to_vec(&state).expect("the desired state serializes");
    use sha2::Digest as _;
    let etag = format!("\"{}\"", &hex(&sha2::Sha256::digest(&body))[..32]);
    (body, etag)
}

/// Whether `If-None-Match` names `etag` (or is `*`); weak tags compare by their opaque part.
fn matches_etag(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(|t| t.trim()).any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

async fn desired(State(app): State<Arc<App>>, Path(id): Path<String>, parts: Parts) -> Response {
    let result = async {
        let signed = authenticate(&app, &parts, b"", &id).await?;
        let desired = app.store.desired(&signed.node, &signed.replay, app.now()).await?;
        let (body, etag) = desired_body(&app, desired);
        let etag_value = HeaderValue::from_str(&etag).expect("an ETag is ASCII");
        let fresh = parts
            .headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| matches_etag(v, &etag));
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        };
        response.headers_mut().insert(header::ETAG, etag_value);
        Ok::<_, ApiError>(response)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn inventory(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    parts: Parts,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let body = body_bytes(body)?;
        let signed = authenticate(&app, &parts, &body, &id).await?;
        let inventory: Inventory = parse_json(&body)?;
        inventory.check()?;
        app.store.put_inventory(&signed.node, &signed.replay, &inventory, app.now()).await?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn reports(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    parts: Parts,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let body = body_bytes(body)?;
        let signed = authenticate(&app, &parts, &body, &id).await?;
        let batch: ReportBatch = parse_json(&body)?;
        batch.check()?;
        let ack =
            app.store.record_reports(&signed.node, &signed.replay, &batch, app.config.retention, app.now()).await?;
        Ok::<_, ApiError>(json_response(StatusCode::OK, &ack))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Inflates a telemetry body sent with `Content-Encoding: zstd` (or takes it as it is without one), refusing one
/// that inflates past [`fleet_wire::telemetry::MAX_BATCH_RAW_BYTES`] or is not zstd.
fn inflate(parts: &Parts, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    use std::io::Read as _;
    let encoding = parts.headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    match encoding.trim() {
        "identity" => Ok(body.to_vec()),
        "zstd" => {
            let max = fleet_wire::telemetry::MAX_BATCH_RAW_BYTES;
            let bad = |e: std::io::Error| ApiError::new(StatusCode::BAD_REQUEST, "bad-body", format!("zstd: {e}"));
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(body)
                .map_err(bad)?
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(bad)?;
            if out.len() > max {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    format!("the body inflates past {max} bytes"),
                ));
            }
            Ok(out)
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad-encoding",
            format!("content-encoding {other:?}: zstd or none"),
        )),
    }
}

async fn telemetry(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    parts: Parts,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let body = body_bytes(body)?;
        // The signature covers the bytes as sent (compressed): checked before anything is inflated.
        let signed = authenticate(&app, &parts, &body, &id).await?;
        let raw = inflate(&parts, &body)?;
        let batch: fleet_wire::telemetry::TelemetryBatch = parse_json(&raw)?;
        batch.check()?;
        let queue = app.config.remote_write.is_some();
        let ack = app
            .store
            .record_telemetry(&signed.node, &signed.replay, &batch, app.config.log_retention, queue, app.now())
            .await?;
        app.metrics.telemetry(ack.n_logs, ack.n_metrics, u64::from(ack.ack.duplicates));
        let ack = ack.ack;
        Ok::<_, ApiError>(json_response(StatusCode::OK, &ack))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn diagnostics(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(String, String)>,
    parts: Parts,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let body = body_bytes(body)?;
        let signed = authenticate(&app, &parts, &body, &id).await?;
        let diagnostics: Diagnostics = parse_json(&body)?;
        fleet_wire::node::check_time("collected", &diagnostics.collected)?;
        app.store.put_diagnostics(&signed.node, &signed.replay, &action, &diagnostics, app.now()).await?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_match_as_if_none_match_lists_them() {
        let tag = "\"abc\"";
        assert!(matches_etag("\"abc\"", tag));
        assert!(matches_etag("\"x\", W/\"abc\"", tag));
        assert!(matches_etag("*", tag));
        assert!(!matches_etag("\"abd\"", tag));
        assert!(!matches_etag("abc", tag));
    }
}
