//! The bundle store: uploads verified against the fleet keyring before they are kept, external bundles registered
//! by URL and head, and `GET /v1/bundles/<manifest_hash>.bundle` with `Range`, `ETag` and `If-Range` as the
//! updater's HTTP source expects them (docs/cloud.md, "The bundle store").
//!
//! The download needs no node signature: bundles are signed and every node verifies what it installs, so a
//! bundle's contents are not secret, and any static host or CDN can serve the same file.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use fleet_wire::admin::{BundleInfo, RegisterExternal, Role};
use image_layout::reader::{Head, Policy, StreamReader};
use tokio::io::AsyncWriteExt as _;

use super::admin::authorize;
use super::{json_response, parse_json, ApiError, App};
use crate::store::{hex, NewBundle};

/// The most bytes of a bundle's head (header, manifest, signatures) an external registration sends.
pub const MAX_HEAD_BYTES: usize = image_layout::format::HEADER_LEN
    + image_layout::format::MAX_MANIFEST_LEN as usize
    + image_layout::format::MAX_SIGNATURES as usize * image_layout::format::SIGNATURE_RECORD_LEN;

/// The routes under the deadline: the download and external registration.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/bundles/{file}", get(download))
        .route("/v1/admin/bundles/external", post(register).layer(DefaultBodyLimit::max(MAX_HEAD_BYTES * 2)))
}

/// The upload route, which has its own, longer deadline and no body limit.
pub fn upload_routes() -> Router<Arc<App>> {
    Router::new().route("/v1/admin/bundles", post(upload).layer(DefaultBodyLimit::disable()))
}

fn refused(err: image_layout::Error) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bundle-refused", crate::error::chain(&err))
}

fn keyring(app: &App) -> Result<Arc<image_layout::keys::Keyring>, ApiError> {
    app.config.keyring.clone().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no-keyring", "the endpoint has no fleet keyring (--keyring)")
    })
}

fn policy(app: &App) -> Policy {
    let now = time::OffsetDateTime::from_unix_timestamp(app.now()).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Policy::at(now, 1)
}

fn info_of(verified: &image_layout::reader::Verified, size: u64, stored: bool, urls: Vec<String>) -> NewBundle {
    let m = &verified.manifest;
    NewBundle {
        info: BundleInfo {
            manifest_hash: hex(&verified.manifest_hash()),
            name: m.name.clone(),
            version: m.version.clone(),
            security_version: m.security_version,
            compatible: m.compatible.clone(),
            size_bytes: size,
            stored,
            urls,
            created_at: String::new(),
        },
        manifest: serde_json::from_slice(&verified.manifest_bytes).unwrap_or(serde_json::Value::Null),
    }
}

/// `POST /v1/admin/bundles`: streams the body to a temporary file in the store, verifies the whole bundle (the
/// signatures against the keyring, the manifest, every index and chunk, its length), and only then renames it to
/// `<manifest_hash>.bundle` and records it; a bundle that does not verify leaves nothing behind.
async fn upload(State(app): State<Arc<App>>, req: Request) -> Response {
    let result = async {
        let actor = authorize(&app, req.headers(), Role::Operator).await?;
        let keyring = keyring(&app)?;
        let dir = app.config.bundle_dir.clone();
        let internal = |what: &'static str| {
            let dir = dir.clone();
            move |source: std::io::Error| ApiError::from(crate::Error::Io { what, path: dir, source })
        };
        std::fs::create_dir_all(&dir).map_err(internal("create the bundle store"))?;
        let temp = tempfile::Builder::new().suffix(".upload").tempfile_in(&dir).map_err(internal("make a file in"))?;
        let mut file = tokio::fs::File::from_std(temp.reopen().map_err(internal("open an upload in"))?);
        let body = req.into_body();
        let deadline = app.config.upload_timeout;
        let copy = async {
            let mut body = std::pin::pin!(body);
            let mut size = 0u64;
            while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                let frame = frame.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-body", e.to_string()))?;
                if let Ok(data) = frame.into_data() {
                    size += data.len() as u64;
                    file.write_all(&data).await.map_err(internal("write an upload in"))?;
                }
            }
            file.sync_all().await.map_err(internal("sync an upload in"))?;
            Ok::<_, ApiError>(size)
        };
        let size = tokio::time::timeout(deadline, copy)
            .await
            .map_err(|_| ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", "the upload took too long"))??;
        let policy = policy(&app);
        let path = temp.path().to_owned();
        let verified = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let file = std::fs::File::open(&path).map_err(|source| {
                ApiError::from(crate::Error::Io { what: "open an upload", path: path.clone(), source })
            })?;
            let mut reader = StreamReader::open(std::io::BufReader::new(file), &keyring, &policy).map_err(refused)?;
            while reader.next_chunk().map_err(refused)?.is_some() {}
            let verified = reader.verified().clone();
            reader.finish(true).map_err(refused)?;
            Ok(verified)
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
        if verified.bundle_len() != size {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bundle-refused",
                format!("{size} bytes sent, the manifest says {}", verified.bundle_len()),
            ));
        }
        let new = info_of(&verified, size, true, Vec::new());
        let target = dir.join(format!("{}.bundle", new.info.manifest_hash));
        // Durability: the file was synced above; once renamed it is whole under its final name, and the row that
        // points at it is written only after. A cut between the two leaves a file no row names, which a second
        // upload of the same bundle replaces.
        temp.persist(&target).map_err(|e| internal("keep a bundle in")(e.error))?;
        let info = app.store.add_bundle(&actor, &new, app.now()).await?;
        Ok(json_response(StatusCode::CREATED, &info))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/admin/bundles/external`: a bundle on another host, registered by its URL and its head, which is
/// verified against the keyring as an upload's is (its chunks are the node's to verify as it installs).
async fn register(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let result = async {
        let actor = authorize(&app, &headers, Role::Operator).await?;
        let keyring = keyring(&app)?;
        let req: RegisterExternal = parse_json(&super::body_bytes(body)?)?;
        req.check()?;
        use base64::Engine as _;
        let head = base64::engine::general_purpose::STANDARD
            .decode(&req.head)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad-field", "head: expected standard base64"))?;
        let verified =
            Head::read(&mut head.as_slice()).map_err(refused)?.verify(&keyring, &policy(&app)).map_err(refused)?;
        if verified.bundle_len() != req.size_bytes {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bundle-refused",
                format!("size_bytes {} but the manifest says {}", req.size_bytes, verified.bundle_len()),
            ));
        }
        let new = info_of(&verified, req.size_bytes, false, vec![req.url.clone()]);
        let info = app.store.add_bundle(&actor, &new, app.now()).await?;
        Ok(json_response(StatusCode::CREATED, &info))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// One byte range of a bundle of `total` bytes, from a `Range` header: `bytes=a-b`, `bytes=a-` or `bytes=-n`.
/// `None` is a range that cannot be satisfied; several ranges are answered with the whole bundle.
pub fn parse_range(value: &str, total: u64) -> Option<Option<(u64, u64)>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return Some(None);
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            if n == 0 || total == 0 {
                return None;
            }
            (total.saturating_sub(n), total - 1)
        }
        (a, "") => (a.parse().ok()?, total.checked_sub(1)?),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(total.checked_sub(1)?)),
    };
    if start > end || start >= total {
        return None;
    }
    Some(Some((start, end)))
}

/// `GET` (and `HEAD`) `/v1/bundles/<manifest_hash>.bundle`.
async fn download(State(app): State<Arc<App>>, Path(file): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not-found", format!("no bundle {file}"));
        let hash = file.strip_suffix(".bundle").filter(|h| fleet_wire::node::check_hex32("bundle", h).is_ok());
        let hash = hash.ok_or_else(not_found)?;
        let bundle = app.store.bundle(hash).await?.filter(|b| b.stored).ok_or_else(not_found)?;
        let path = app.config.bundle_dir.join(&file);
        let f = tokio::fs::File::open(&path).await.map_err(|_| not_found())?;
        let total = f.metadata().await.map_err(|_| not_found())?.len();
        let mut f = f.into_std().await;
        let etag = format!("\"{}\"", bundle.manifest_hash);
        let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
        let if_range_ok = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|v| v.trim() == etag);
        let wanted = match range.filter(|_| if_range_ok) {
            None => None,
            Some(r) => match parse_range(r, total) {
                Some(r) => r,
                None => {
                    let mut resp = ApiError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "bad-range",
                        format!("{r:?} of {total} bytes"),
                    )
                    .into_response();
                    resp.headers_mut().insert(
                        header::CONTENT_RANGE,
                        HeaderValue::from_str(&format!("bytes */{total}")).expect("ASCII"),
                    );
                    return Ok(resp);
                }
            },
        };
        let (status, start, len) = match wanted {
            Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
            None => (StatusCode::OK, 0, total),
        };
        {
            use std::io::Seek as _;
            f.seek(std::io::SeekFrom::Start(start)).map_err(|_| not_found())?;
        }
        let mut resp = Response::new(Body::new(FileBody::new(f, len)));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("ASCII"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if status == StatusCode::PARTIAL_CONTENT {
            let value = format!("bytes {start}-{}/{total}", start + len - 1);
            h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&value).expect("ASCII"));
        }
        Ok::<_, ApiError>(resp)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// How much of a bundle one read takes: large enough that the blocking pool is visited once per MiB, small
/// enough that a download holds at most two of them (one on its way to the client, one being read).
const READ_CHUNK: usize = 1 << 20;

/// `len` bytes of a file from where it is, as a response body. The read of the next chunk runs on the blocking
/// pool while the last one goes out, so the disk and the socket overlap; no thread is held while the client is
/// slow, because the next read starts only when a chunk is taken.
struct FileBody {
    /// The read under way, which hands the file back with what it read.
    next: Option<tokio::task::JoinHandle<std::io::Result<(std::fs::File, Bytes)>>>,
    /// Bytes not yet asked of a read.
    unread: u64,
    /// Bytes not yet given out.
    remaining: u64,
}

impl FileBody {
    fn new(file: std::fs::File, len: u64) -> Self {
        let mut body = FileBody { next: None, unread: len, remaining: len };
        body.read_ahead(file);
        body
    }

    /// Starts the read of the next chunk, if any is left.
    fn read_ahead(&mut self, mut file: std::fs::File) {
        if self.unread == 0 {
            return;
        }
        let want = self.unread.min(READ_CHUNK as u64) as usize;
        self.unread -= want as u64;
        self.next = Some(tokio::task::spawn_blocking(move || {
            use std::io::Read as _;
            let mut buf = vec![0u8; want];
            file.read_exact(&mut buf)?;
            Ok((file, Bytes::from(buf)))
        }));
    }
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        let Some(next) = self.next.as_mut() else {
            return Poll::Ready(None);
        };
        let done = match Pin::new(next).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(done) => done,
        };
        self.next = None;
        match done.map_err(std::io::Error::other).and_then(|r| r) {
            Err(e) => Poll::Ready(Some(Err(e))),
            Ok((file, chunk)) => {
                self.remaining -= chunk.len() as u64;
                self.read_ahead(file);
                Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

impl Drop for FileBody {
    /// A client that goes away leaves no read behind it.
    fn drop(&mut self) {
        if let Some(next) = self.next.take() {
            next.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Some((90, 99))));
        assert_eq!(parse_range("bytes=95-200", 100), Some(Some((95, 99))), "clipped to the end");
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Some(None), "several ranges: the whole");
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-4", 100), None);
        assert_eq!(parse_range("bytes=-0", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
