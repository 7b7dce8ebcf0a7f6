//! The bundle store: uploads verified against the fleet keyring before they are kept, external bundles registered
//! by URL and head, and `GET /v1/bundles/<manifest_hash>.bundle` with `Range`, `ETag` and `If-Range` as the
//! updater's HTTP source expects them (docs/cloud.md, "The bundle store").

use std::sync::Arc;

use axum::Router;

use super::App;

/// The routes under the deadline: the download and external registration.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
}

/// The upload route, which has its own, longer deadline.
pub fn upload_routes() -> Router<Arc<App>> {
    Router::new()
}

/// The most bytes of a bundle's head (header, manifest, signatures) an external registration sends.
pub const MAX_HEAD_BYTES: usize = image_layout::format::HEADER_LEN
    + image_layout::format::MAX_MANIFEST_LEN as usize
    + image_layout::format::MAX_SIGNATURES as usize * image_layout::format::SIGNATURE_RECORD_LEN;
