//! The node API's client: one blocking `ureq` agent, every request signed with the node key
//! (`fleet_wire::signature::sign_node_request`, with the body's `Content-Digest`), and every answer classified into
//! what the loop decides on ([`Contact`]).
//!
//! The endpoint is trusted through one CA certificate file and nothing else: the TLS root store is exactly that CA
//! (no platform or webpki roots). Redirects are not followed (the path is signed), no proxy is read from the
//! environment, and every answer's body is read up to a bound.

use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use fleet_wire::node::{self, DesiredState, EnrollReply, EnrollRequest, ErrorReply, Inventory, NodeId, ReportAck};
use serde::de::DeserializeOwned;

use crate::config::{Config, Scheme};
use crate::error::{Error, Result};

/// The largest answer body read.
pub const MAX_REPLY_BYTES: u64 = node::MAX_BODY_BYTES as u64;

/// How a contact with the endpoint ended, as the loop tells them apart.
#[derive(Debug)]
pub enum Contact<T> {
    /// The endpoint answered as asked.
    Ok(T),
    /// The endpoint refuses this node (401, 403: a revoked token, a rejected or decommissioned node).
    Rejected(u16),
    /// The endpoint refused this request (another 4xx); `error` is the refusal's word when it sent one.
    Refused(u16, Option<String>),
    /// The endpoint could not be reached or failed (connect, TLS, timeout, 5xx, 408, 429, an answer that does not
    /// parse): try again after a backoff.
    Down(Error),
}

impl<T> Contact<T> {
    /// The same contact with its answer mapped.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Contact<U> {
        match self {
            Contact::Ok(t) => Contact::Ok(f(t)),
            Contact::Rejected(s) => Contact::Rejected(s),
            Contact::Refused(s, e) => Contact::Refused(s, e),
            Contact::Down(e) => Contact::Down(e),
        }
    }
}

/// A desired state poll's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Polled {
    /// A new desired state and its ETag.
    Changed(Box<DesiredState>, Option<String>),
    /// 304: the desired state is the one whose ETag was sent.
    NotModified,
}

/// An answer as received.
struct Answer {
    status: u16,
    etag: Option<String>,
    body: Vec<u8>,
}

/// The node API's client (cloned for the telemetry's shipper, which sends on its own thread).
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    authority: String,
    scheme: &'static str,
    node: NodeId,
    key: SigningKey,
}

impl Client {
    /// A client for the endpoint in `config`, signing as `node` with `key`; reads the CA certificate for
    /// `https`.
    pub fn new(config: &Config, node: NodeId, key: SigningKey) -> Result<Client> {
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .proxy(None)
            .timeout_global(Some(config.request_timeout))
            .user_agent(concat!("edge-agent/", env!("CARGO_PKG_VERSION")));
        let scheme = match config.scheme {
            Scheme::Https => {
                let roots = load_ca(&config.ca_file)?;
                let tls = ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::Rustls)
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
                    .build();
                builder = builder.tls_config(tls);
                "https"
            }
            Scheme::Http => "http",
        };
        let authority = config.endpoint.split_once("://").map_or("", |(_, a)| a).to_owned();
        Ok(Client { agent: builder.build().new_agent(), base: config.endpoint.clone(), authority, scheme, node, key })
    }

    /// The node id the client signs as.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// `POST /v1/enroll`.
    pub fn enroll(&self, request: &EnrollRequest, now: u64) -> Contact<(u16, EnrollReply)> {
        let body = serde_json::to_vec(request).expect("an enrollment serializes");
        match self.send("POST", node::ENROLL_PATH, Some(&body), &[], now) {
            Ok(a) if a.status == 200 || a.status == 201 => parse("POST", &self.url(node::ENROLL_PATH), &a.body)
                .map_or_else(Contact::Down, |r| Contact::Ok((a.status, r))),
            Ok(a) => classify("POST", self.url(node::ENROLL_PATH), a),
            Err(e) => Contact::Down(e),
        }
    }

    /// `GET /v1/nodes/{id}/desired`, with `If-None-Match` when an ETag is known.
    pub fn desired(&self, etag: Option<&str>, now: u64) -> Contact<Polled> {
        let path = node::desired_path(&self.node);
        let extra: Vec<(&str, &str)> = etag.iter().map(|e| ("If-None-Match", *e)).collect();
        match self.send("GET", &path, None, &extra, now) {
            Ok(a) if a.status == 304 => Contact::Ok(Polled::NotModified),
            Ok(a) if a.status == 200 => parse::<DesiredState>("GET", &self.url(&path), &a.body)
                .map_or_else(Contact::Down, |d| Contact::Ok(Polled::Changed(Box::new(d), a.etag))),
            Ok(a) => classify("GET", self.url(&path), a),
            Err(e) => Contact::Down(e),
        }
    }

    /// `PUT /v1/nodes/{id}/inventory`.
    pub fn put_inventory(&self, inventory: &Inventory, now: u64) -> Contact<()> {
        let body = serde_json::to_vec(inventory).expect("an inventory serializes");
        self.put(&node::inventory_path(&self.node), &body, now)
    }

    /// `POST /v1/nodes/{id}/reports`.
    pub fn post_reports(&self, batch: &node::ReportBatch, now: u64) -> Contact<ReportAck> {
        let path = node::reports_path(&self.node);
        let body = serde_json::to_vec(batch).expect("a batch serializes");
        match self.send("POST", &path, Some(&body), &[], now) {
            Ok(a) if a.status == 200 => {
                parse("POST", &self.url(&path), &a.body).map_or_else(Contact::Down, Contact::Ok)
            }
            Ok(a) => classify("POST", self.url(&path), a),
            Err(e) => Contact::Down(e),
        }
    }

    /// `POST /v1/nodes/{id}/telemetry` with a body already compressed with zstd (docs/fleet-protocol.md,
    /// "Telemetry").
    pub fn post_telemetry(&self, zstd_body: &[u8], now: u64) -> Contact<fleet_wire::telemetry::TelemetryAck> {
        let path = fleet_wire::telemetry::telemetry_path(&self.node);
        match self.send("POST", &path, Some(zstd_body), &[("Content-Encoding", "zstd")], now) {
            Ok(a) if a.status == 200 => {
                parse("POST", &self.url(&path), &a.body).map_or_else(Contact::Down, Contact::Ok)
            }
            Ok(a) => classify("POST", self.url(&path), a),
            Err(e) => Contact::Down(e),
        }
    }

    /// `PUT /v1/nodes/{id}/actions/{action}/diagnostics`.
    pub fn put_diagnostics(&self, action: &str, body: &[u8], now: u64) -> Contact<()> {
        self.put(&node::diagnostics_path(&self.node, action), body, now)
    }

    fn put(&self, path: &str, body: &[u8], now: u64) -> Contact<()> {
        match self.send("PUT", path, Some(body), &[], now) {
            Ok(a) if (200..300).contains(&a.status) => Contact::Ok(()),
            Ok(a) => classify("PUT", self.url(path), a),
            Err(e) => Contact::Down(e),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends one signed request, with `extra` headers (unsigned: `If-None-Match`, `Content-Encoding`, whose effect
    /// the signed digest covers), and reads its answer.
    fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&[u8]>,
        extra: &[(&str, &str)],
        now: u64,
    ) -> Result<Answer> {
        let url = self.url(path);
        let digest = body.map(fleet_wire::digest::content_digest);
        let headers: Vec<(&str, &str)> = digest.iter().map(|d| ("content-digest", d.as_str())).collect();
        let request = fleet_wire::signature::Request {
            method,
            scheme: self.scheme,
            authority: &self.authority,
            path,
            query: None,
            headers: &headers,
        };
        // Signed as the node policy asks (docs/fleet-protocol.md, "What a node signs"), with a random `nonce`: ed25519
        // signatures are deterministic, so without one the same request signed twice within a second (two polls a
        // short backoff apart, a restart right after a request) would have the same replay id and be refused.
        let sig = fleet_wire::signature::sign_node_request(&request, self.node.as_str(), now, &nonce(), &self.key)
            .map_err(|source| Error::Wire { source })?;
        let http = |source| Error::Http { method, url: url.clone(), source: Box::new(source) };
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Signature-Input", &sig.signature_input)
            .header("Signature", &sig.signature);
        if let Some(d) = &digest {
            builder = builder.header("Content-Digest", d).header("Content-Type", "application/json");
        }
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        let response = match body {
            Some(b) => {
                let req = builder.body(b.to_vec()).map_err(|e| http(ureq::Error::Http(e)))?;
                self.agent.run(req)
            }
            None => {
                let req = builder.body(()).map_err(|e| http(ureq::Error::Http(e)))?;
                self.agent.run(req)
            }
        };
        let mut response = response.map_err(http)?;
        let status = response.status().as_u16();
        let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.body_mut().with_config().limit(MAX_REPLY_BYTES).read_to_vec().map_err(http)?;
        log::debug!("{method} {url}: {status}");
        Ok(Answer { status, etag, body })
    }
}

/// The CA certificates of a PEM file: at least one.
pub fn load_ca(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let pem = image_layout::fsutil::read_bounded(path, 1 << 20)
        .map_err(|source| Error::ReadCa { path: path.to_owned(), source })?;
    updater::http::pem_certificates(&pem).map_err(|detail| Error::ParseCa { path: path.to_owned(), detail })
}

fn parse<T: DeserializeOwned>(method: &'static str, url: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::BadReply { method, url: url.to_owned(), detail: e.to_string() })
}

/// A status other than the expected ones: 401 and 403 refuse the node, 408, 429 and 5xx are the endpoint
/// failing, any other is a refusal of the request.
fn classify<T>(method: &'static str, url: String, a: Answer) -> Contact<T> {
    let error = serde_json::from_slice::<ErrorReply>(&a.body).ok().map(|e| e.error);
    match a.status {
        401 | 403 => Contact::Rejected(a.status),
        408 | 429 | 500..=599 => Contact::Down(Error::Status { method, url, status: a.status, error }),
        s => Contact::Refused(s, error),
    }
}

/// 16 random bytes in hex: a signature's `nonce`.
fn nonce() -> String {
    use rand_core::RngCore as _;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_differ_and_are_signature_parameters() {
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b);
        assert!(a.len() == 32 && a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
    }
}
