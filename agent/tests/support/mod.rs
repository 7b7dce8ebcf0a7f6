//! What the agent's integration tests share: a stand-in for the fleet endpoint on loopback, used only to inject
//! faults (503s, a link dropped after the request was taken, refusals) and to record what the agent sent, each
//! request's signature verified with `fleet_wire::signature::verify_node_request`; and a node tree in a temporary
//! directory with the agent's and the updater's configs.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use fleet_wire::node::{DesiredState, EnrollReply, EnrollRequest, NodeStatus, Report, ReportAck, ReportBatch};

/// One request as the endpoint took it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The signature verified against the node's key (the one its enrollment carried).
    pub verified: bool,
    /// The status answered (0: the link was dropped).
    pub status: u16,
}

/// What the endpoint does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 503.
    Unavailable,
    /// Take the request (store a batch), then drop the link without answering.
    DropAfter,
    /// Answer 403.
    Forbidden,
}

#[derive(Default)]
pub struct Inner {
    pub seen: Vec<Seen>,
    pub keys: HashMap<String, VerifyingKey>,
    pub reports: BTreeMap<u64, Report>,
    pub conflicts: Vec<u64>,
    pub status: Option<NodeStatus>,
    pub desired: Option<DesiredState>,
    pub faults: Vec<Fault>,
    pub always: Option<Fault>,
    pub diagnostics: Vec<(String, serde_json::Value)>,
    /// Replay ids of the signatures taken, as the endpoint keeps them; a second request with one is refused.
    pub replay_ids: std::collections::HashSet<[u8; 32]>,
    /// Requests refused as replays.
    pub replays: usize,
    /// Bundles served under `/bundles/`, unsigned requests, whole (no Range), as a plain store might.
    pub files: HashMap<String, Vec<u8>>,
}

/// The stand-in endpoint.
#[derive(Clone)]
pub struct Endpoint {
    pub port: u16,
    inner: Arc<Mutex<Inner>>,
}

impl Endpoint {
    pub fn start(status: NodeStatus) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let inner = Arc::new(Mutex::new(Inner { status: Some(status), ..Inner::default() }));
        let shared = inner.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || serve(conn, &shared));
            }
        });
        Endpoint { port, inner }
    }

    /// The same endpoint over TLS with the certificate chain and key in PEM.
    pub fn start_tls(status: NodeStatus, cert_pem: &[u8], key_pem: &[u8]) -> Endpoint {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut certs = Vec::new();
        let mut key = None;
        for item in ureq::tls::parse_pem(cert_pem).chain(ureq::tls::parse_pem(key_pem)) {
            match item.expect("pem") {
                ureq::tls::PemItem::Certificate(c) => certs.push(CertificateDer::from(c.der().to_vec())),
                ureq::tls::PemItem::PrivateKey(k) => {
                    key = Some(PrivateKeyDer::try_from(k.der().to_vec()).expect("a private key"))
                }
                _ => {}
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key.expect("a key"))
            .expect("server config");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let inner = Arc::new(Mutex::new(Inner { status: Some(status), ..Inner::default() }));
        let shared = inner.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (shared, config) = (shared.clone(), config.clone());
                std::thread::spawn(move || {
                    conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
                    let Ok(tls) = rustls::ServerConnection::new(config) else { return };
                    serve_stream(rustls::StreamOwned::new(tls, conn), &shared);
                });
            }
        });
        Endpoint { port, inner }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The reports stored, in seq order.
    pub fn reports(&self) -> Vec<Report> {
        self.lock().reports.values().cloned().collect()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }
}

fn serve(conn: TcpStream, shared: &Arc<Mutex<Inner>>) {
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
    serve_stream(conn, shared);
}

/// Serves HTTP/1.1 requests on one connection, plain or TLS, until it closes or a fault drops it.
fn serve_stream<S: Read + Write>(conn: S, shared: &Arc<Mutex<Inner>>) {
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let len = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, extra, reply) = handle(shared, &method, &path, &headers, &body);
        if status == 0 {
            return;
        }
        let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", reply.len());
        for (k, v) in extra {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let conn = reader.get_mut();
        if conn.write_all(out.as_bytes()).and_then(|()| conn.write_all(&reply)).and_then(|()| conn.flush()).is_err() {
            return;
        }
    }
}

fn handle(
    shared: &Arc<Mutex<Inner>>,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
    if method == "GET" && path.starts_with("/bundles/") {
        return match s.files.get(path) {
            Some(bytes) => (200, vec![], bytes.clone()),
            None => (404, vec![], Vec::new()),
        };
    }
    if method == "POST" && path == fleet_wire::node::ENROLL_PATH {
        if let Ok(req) = serde_json::from_slice::<EnrollRequest>(body) {
            if let Ok(key) = fleet_wire::node::decode_public_key(&req.public_key) {
                let id = fleet_wire::node::NodeId::of_key(&key);
                s.keys.insert(id.to_string(), key);
            }
        }
    }
    let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let req = fleet_wire::signature::Request { method, scheme: "http", authority: "", path, query: None, headers: &hs };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
    let options = fleet_wire::signature::VerifyOptions { label: None, now, window: fleet_wire::signature::NODE_WINDOW };
    let keys = s.keys.clone();
    let verified = match fleet_wire::signature::verify_node_request(&req, body, &options, |id| keys.get(id).copied()) {
        Ok(v) if s.replay_ids.insert(v.replay_id.0) => true,
        Ok(_) => {
            s.replays += 1;
            false
        }
        Err(_) => false,
    };
    let fault = if s.faults.is_empty() { s.always } else { Some(s.faults.remove(0)) };
    let mut seen = Seen {
        method: method.to_owned(),
        path: path.to_owned(),
        headers: headers.to_vec(),
        body: body.to_vec(),
        verified,
        status: 0,
    };
    let (status, extra, reply) = match fault {
        Some(Fault::Unavailable) => (503, vec![], b"{\"error\":\"unavailable\",\"message\":\"down\"}".to_vec()),
        Some(Fault::Forbidden) => (403, vec![], b"{\"error\":\"node-rejected\",\"message\":\"no\"}".to_vec()),
        _ if !verified => (401, vec![], b"{\"error\":\"bad-signature\",\"message\":\"no\"}".to_vec()),
        drop => {
            let r = answer(&mut s, method, path, headers, body);
            if drop == Some(Fault::DropAfter) {
                (0, vec![], Vec::new())
            } else {
                r
            }
        }
    };
    seen.status = status;
    s.seen.push(seen);
    (status, extra, reply)
}

fn answer(
    s: &mut Inner,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    if method == "POST" && path == fleet_wire::node::ENROLL_PATH {
        let req: EnrollRequest = serde_json::from_slice(body).expect("an enrollment");
        req.check().expect("a valid enrollment");
        let key = fleet_wire::node::decode_public_key(&req.public_key).expect("key");
        let node_id = fleet_wire::node::NodeId::of_key(&key);
        let again = s.seen.iter().any(|r| r.path == path && r.status == 201);
        let reply = EnrollReply { node_id, status: s.status.unwrap_or(NodeStatus::Pending), poll_interval_secs: 1 };
        return (if again { 200 } else { 201 }, vec![], serde_json::to_vec(&reply).expect("json"));
    }
    if method == "GET" && path.ends_with("/desired") {
        let desired = s.desired.clone().unwrap_or(DesiredState {
            status: s.status.unwrap_or(NodeStatus::Pending),
            poll_interval_secs: 1,
            bundle: None,
            actions: vec![],
        });
        let bytes = serde_json::to_vec(&desired).expect("json");
        let etag = format!("\"{}\"", &blake3::hash(&bytes).to_hex()[..16]);
        let inm = headers.iter().find(|(k, _)| k == "if-none-match").map(|(_, v)| v.as_str());
        if inm == Some(etag.as_str()) {
            return (304, vec![("etag".into(), etag)], Vec::new());
        }
        return (200, vec![("etag".into(), etag)], bytes);
    }
    if method == "PUT" && path.ends_with("/inventory") {
        let inv: fleet_wire::node::Inventory = serde_json::from_slice(body).expect("an inventory");
        inv.check().expect("a valid inventory");
        return (204, vec![], Vec::new());
    }
    if method == "POST" && path.ends_with("/reports") {
        let batch: ReportBatch = serde_json::from_slice(body).expect("a batch");
        batch.check().expect("a valid batch");
        let (mut stored, mut duplicates) = (0, 0);
        for r in batch.reports {
            match s.reports.get(&r.seq) {
                Some(had) if *had != r => s.conflicts.push(r.seq),
                Some(_) => duplicates += 1,
                None => {
                    s.reports.insert(r.seq, r);
                    stored += 1;
                }
            }
        }
        let acked_seq = s.reports.keys().last().copied().unwrap_or(0);
        let ack = ReportAck { stored, duplicates, acked_seq };
        return (200, vec![], serde_json::to_vec(&ack).expect("json"));
    }
    if method == "PUT" && path.ends_with("/diagnostics") {
        let d: fleet_wire::node::Diagnostics = serde_json::from_slice(body).expect("diagnostics");
        s.diagnostics.push((path.to_owned(), serde_json::to_value(d).expect("value")));
        return (204, vec![], Vec::new());
    }
    (404, vec![], b"{\"error\":\"not-found\",\"message\":\"no\"}".to_vec())
}

/// A node tree: the agent's config, token and the updater's config under a temporary directory.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub update_config: PathBuf,
    pub events: PathBuf,
    /// The update lock file an application takes.
    pub update_lock: PathBuf,
}

impl Node {
    pub fn new(endpoint: &str) -> Node {
        Node::with_slots(endpoint, SLOT_BYTES)
    }

    /// A node whose slot files are `slot_bytes` long.
    pub fn with_slots(endpoint: &str, slot_bytes: usize) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let data = root.join("data/edge-update");
        std::fs::create_dir_all(&data).expect("mkdir");
        std::fs::create_dir_all(root.join("etc/keys")).expect("mkdir");
        std::fs::create_dir_all(root.join("esp")).expect("mkdir");
        bundle_key().write_pair(&root.join("etc/keys/test")).expect("keys");
        for s in ["slot-a.img", "slot-b.img"] {
            std::fs::write(root.join(s), vec![0u8; slot_bytes]).expect("slot");
        }
        let state = bootctl::rules::BootState::provisioned(bootctl::rules::Slot::A);
        for (i, b) in bootctl::grubstate::provision(&state).iter().enumerate() {
            std::fs::write(root.join(format!("esp/state{i}.env")), b).expect("state");
        }
        std::fs::write(root.join("cmdline"), "quiet edge.slot=A\n").expect("cmdline");
        let update_config = root.join("etc/update.toml");
        let d = root.display();
        std::fs::write(
            &update_config,
            format!(
                "compatible = \"test-board\"\nkeyring = \"{d}/etc/keys\"\ndata_dir = \"{d}/data/edge-update\"\n\
                 init_socket = \"{d}/run/control.sock\"\n[slots]\na = \"{d}/slot-a.img\"\nb = \"{d}/slot-b.img\"\n\
                 [bootctl]\nbackend = \"grub\"\ngrub_state_dir = \"{d}/esp\"\ncmdline = \"{d}/cmdline\"\nroot = \"{d}\"\n"
            ),
        )
        .expect("update.toml");
        let token = root.join("etc/fleet-token");
        std::fs::write(&token, "fleet-token-1\n").expect("token");
        let config = root.join("etc/agent.toml");
        std::fs::write(
            &config,
            format!(
                "endpoint = {endpoint:?}\nallow_http = true\ntoken_file = {:?}\nupdate_config = {:?}\ninit_socket = {:?}\nsite = \"shop-1\"\nbackoff_base_secs = 2\nbackoff_cap_secs = 16\npoll_floor_secs = 1\npoll_ceiling_secs = 600\njitter = 0.0\nreport_batch = 3\nrequest_timeout_secs = 5\nupdate_lock_file = {:?}\n",
                token.display().to_string(),
                update_config.display().to_string(),
                root.join("run/control.sock").display().to_string(),
                root.join("run/edge-agent/update.lock").display().to_string(),
            ),
        )
        .expect("agent.toml");
        let update_lock = root.join("run/edge-agent/update.lock");
        Node { events: data.join("events.jsonl"), dir, config, update_config, update_lock }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Appends updater event lines as the updater does.
    pub fn event(&self, kind: &str, message: &str) {
        let record = updater::wire::EventRecord {
            schema: updater::wire::EVENT_SCHEMA.to_owned(),
            time: "2026-12-05T10:00:00Z".to_owned(),
            event: serde_json::from_value(serde_json::Value::String(kind.to_owned())).expect("a kind"),
            message: message.to_owned(),
            reason: None,
            target: Some("B".into()),
            version: Some("2.0.0".into()),
            phase: None,
        };
        updater::run::append_line(&self.events, &record).expect("append");
    }
}

/// Points `node`'s config, made for the closed port 9, at the endpoint `url`.
pub fn point_at(node: &Node, url: &str) {
    let config = std::fs::read_to_string(&node.config).expect("agent.toml");
    std::fs::write(&node.config, config.replace("http://127.0.0.1:9", url)).expect("agent.toml");
}

/// The real time (the endpoint checks `created`), no waiting, and a fixed draw.
pub struct TestClock;

impl edge_agent::clock::Clock for TestClock {
    fn now_unix_secs(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs()
    }
    fn sleep(&mut self, _: Duration) {}
    fn random(&mut self) -> f64 {
        0.0
    }
}

/// The agent of `node`, open.
pub fn agent(node: &Node) -> edge_agent::agent::Agent<TestClock> {
    let config = edge_agent::config::Config::load(&node.config).expect("config");
    edge_agent::agent::Agent::open(config, edge_agent::paths::Paths::under(node.root()), TestClock).expect("open")
}

/// The size of each slot file.
pub const SLOT_BYTES: usize = 4 << 20;

/// The key the test node's keyring trusts.
pub fn bundle_key() -> image_layout::keys::SecretKey {
    image_layout::keys::SecretKey::from_seed([3; 32])
}

/// A bundle for the test node signed by `key`, and its manifest hash.
pub fn bundle(key: &image_layout::keys::SecretKey, version: &str) -> (Vec<u8>, String) {
    bundle_of(key, version, 1 << 20)
}

/// As [`bundle`], with a payload of `payload_bytes`.
pub fn bundle_of(key: &image_layout::keys::SecretKey, version: &str, payload_bytes: u32) -> (Vec<u8>, String) {
    use image_layout::writer::{build, BuildOptions, PayloadInput};
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("b.bundle");
    let mut opts = BuildOptions::new(version, 1, "test-board", time::OffsetDateTime::UNIX_EPOCH);
    opts.stack = serde_json::json!({"k3s": "v1.31.2"});
    let payload = payload(payload_bytes);
    let input =
        PayloadInput { name: "rootfs".into(), reader: Box::new(std::io::Cursor::new(payload)), path: "rootfs".into() };
    build(&opts, vec![input], std::slice::from_ref(key), &out, &|_| {}).expect("build");
    let bytes = std::fs::read(&out).expect("read");
    let head = image_layout::reader::Head::read(&mut &bytes[..]).expect("head");
    let hash = blake3::hash(&head.manifest_bytes).to_hex().to_string();
    (bytes, hash)
}

/// The test payload of `n` bytes (the same bytes for the same size).
pub fn payload(n: u32) -> Vec<u8> {
    (0..n).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}
