//! What the endpoint's integration tests share: an endpoint on a loopback port over a real store (a SQLite file in a
//! temporary directory, or a database of its own on a PostgreSQL server the test binary starts), a node that signs
//! its requests as `edge-agent` does, and an admin client; plus `both!`, which makes each test body one test per
//! backend.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use ed25519_dalek::SigningKey;
use edge_cloud::api::{self, App, Config};
use edge_cloud::clock::FixedClock;
use edge_cloud::store::postgres::PgStore;
use edge_cloud::store::sqlite::SqliteStore;
use edge_cloud::store::{hash_secret, new_secret, Actor, Store};
use fleet_wire::admin::Role;
use fleet_wire::node::{self, Hardware, Inventory, NodeId};
use fleet_wire::signature;
use testkit::postgres::Postgres;

/// The endpoint's time in every test: signatures are made at it.
pub const NOW: u64 = 1_800_000_000;

/// A bundle at `version` of a 300 kB payload, made at `created` (Unix seconds) and signed by `key`, written in `dir`
/// as `VERSION.bundle`; returns its path.
pub fn build_bundle(
    dir: &std::path::Path,
    key: &image_layout::keys::SecretKey,
    version: &str,
    created: u64,
) -> PathBuf {
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    build_bundle_with(dir, key, version, created, payload)
}

/// As `build_bundle`, with `len` bytes of noise as the payload, which zstd leaves as large as it is.
pub fn build_noise_bundle(
    dir: &std::path::Path,
    key: &image_layout::keys::SecretKey,
    version: &str,
    created: u64,
    len: usize,
) -> PathBuf {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let payload = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    build_bundle_with(dir, key, version, created, payload)
}

fn build_bundle_with(
    dir: &std::path::Path,
    key: &image_layout::keys::SecretKey,
    version: &str,
    created: u64,
    payload: Vec<u8>,
) -> PathBuf {
    use image_layout::writer::{self, BuildOptions, PayloadInput};
    let created = time::OffsetDateTime::from_unix_timestamp(created as i64).expect("time");
    let opts = BuildOptions::new(version, 1, "qemu-x86_64", created);
    let out = dir.join(format!("{version}.bundle"));
    let input = PayloadInput {
        name: "rootfs".into(),
        reader: Box::new(std::io::Cursor::new(payload)),
        path: dir.join("rootfs.img"),
    };
    writer::build(&opts, vec![input], std::slice::from_ref(key), &out, &|_| {}).expect("build a bundle");
    out
}

/// Records a bundle at `version`, hosted elsewhere, straight in the store (as an upload's verification would), its
/// manifest hash `hash_byte` 64 times; returns the hash.
pub fn add_bundle(env: &Env, version: &str, hash_byte: char) -> String {
    let hash: String = std::iter::repeat_n(hash_byte, 64).collect();
    let info = fleet_wire::admin::BundleInfo {
        manifest_hash: hash.clone(),
        name: "stack".into(),
        version: version.into(),
        security_version: 1,
        compatible: "qemu-x86_64".into(),
        size_bytes: 1234,
        stored: false,
        urls: vec![format!("https://cdn.example/{version}.bundle")],
        created_at: String::new(),
    };
    let new = edge_cloud::store::NewBundle { info, manifest: serde_json::json!({ "version": version }) };
    env.rt.block_on(env.store.add_bundle(&Actor::bootstrap(), &new, NOW as i64)).expect("add a bundle");
    hash
}

/// A test body run once per backend: `both!(name, ...)` makes `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::support::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::support::Backend::Postgres) } )*
        }
    };
}

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// One PostgreSQL server for the tests of this binary that run at the same time; stopped when the last lets go.
fn shared_postgres() -> Arc<Postgres> {
    static SHARED: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pg) = shared.upgrade() {
        return pg;
    }
    let pg = Arc::new(Postgres::start());
    *shared = Arc::downgrade(&pg);
    pg
}

fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("t{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A running endpoint and what it stands on.
pub struct Env {
    pub backend: Backend,
    pub store: Arc<dyn Store>,
    pub app: Arc<App>,
    pub clock: FixedClock,
    pub url: String,
    server: Option<tokio::task::JoinHandle<()>>,
    pub rt: tokio::runtime::Runtime,
    pub pg: Option<Arc<Postgres>>,
    pub db_url: Option<String>,
    pub data: tempfile::TempDir,
}

impl Env {
    /// An endpoint on a fresh database.
    pub fn new(backend: Backend) -> Env {
        Env::with_config(backend, |_| {})
    }

    /// An endpoint on a fresh database, its config changed by `tune`.
    pub fn with_config(backend: Backend, tune: impl FnOnce(&mut Config)) -> Env {
        let data = tempfile::tempdir().expect("temporary directory");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
        let (pg, db_url) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let pg = shared_postgres();
                let url = pg.create_database(&unique_name());
                (Some(pg), Some(url))
            }
        };
        let clock = FixedClock::at(NOW);
        let mut config = Config::new(data.path());
        tune(&mut config);
        let store = open_store(&rt, backend, data.path(), db_url.as_deref());
        let app = Arc::new(App::new(store.clone(), Arc::new(clock.clone()), config));
        let (addr, server) = rt.block_on(edge_cloud::server::start_loopback(api::router(app.clone()))).expect("serve");
        Env { backend, store, app, clock, url: format!("http://{addr}"), server: Some(server), rt, pg, db_url, data }
    }

    /// Another endpoint (a replica, or the same one restarted) on the same database, with its own pool.
    pub fn replica(&self) -> (String, Arc<dyn Store>, tokio::task::JoinHandle<()>) {
        let store = open_store(&self.rt, self.backend, self.data.path(), self.db_url.as_deref());
        let app = Arc::new(App::new(store.clone(), self.app.clock.clone(), self.app.config.clone()));
        let (addr, server) = self.rt.block_on(edge_cloud::server::start_loopback(api::router(app))).expect("serve");
        (format!("http://{addr}"), store, server)
    }

    /// Stops this endpoint and starts it again on the same database (a new pool, a new port).
    pub fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
        let (url, store, server) = self.replica();
        self.url = url;
        self.store = store.clone();
        self.app = Arc::new(App::new(store, self.app.clock.clone(), self.app.config.clone()));
        self.server = Some(server);
    }

    /// The whole database as text.
    pub fn dump(&self) -> String {
        self.rt.block_on(self.store.dump()).expect("dump")
    }

    /// An admin token of `role`, made straight in the store as `edge-cloud admin-token create` does.
    pub fn admin(&self, role: Role) -> Admin {
        let (id, secret) = new_secret();
        let name = format!("{}-{id}", role.word());
        self.rt
            .block_on(self.store.create_admin_token(
                &Actor::bootstrap(),
                &id,
                &hash_secret(&secret),
                &name,
                role,
                NOW as i64,
            ))
            .expect("admin token");
        Admin { url: self.url.clone(), secret }
    }

    /// A new node with a key from `seed`.
    pub fn node(&self, seed: u8) -> Node {
        Node::new(&self.url, seed)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.path().to_owned()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

fn open_store(
    rt: &tokio::runtime::Runtime,
    backend: Backend,
    data: &std::path::Path,
    url: Option<&str>,
) -> Arc<dyn Store> {
    match backend {
        Backend::Sqlite => Arc::new(rt.block_on(SqliteStore::open(data)).expect("open SQLite")),
        Backend::Postgres => Arc::new(rt.block_on(PgStore::open(url.expect("a URL"))).expect("open PostgreSQL")),
    }
}

/// An HTTP reply.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {} {}", self.status, String::from_utf8_lossy(&self.body)))
    }

    /// The refusal's `error` word.
    pub fn error(&self) -> String {
        self.json::<node::ErrorReply>().error
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }

    /// The status and the `error` word, for asserting a refusal in one line.
    pub fn refusal(&self) -> (u16, String) {
        (self.status, self.error())
    }
}

thread_local! {
    /// One client per test thread, so that its requests share kept-alive connections and their buffers: an agent
    /// per request connected anew and zeroed 256 KiB of buffers each time, which in a debug build was most of the
    /// time of a test of 1,000 simulated agents (cloud/tests/rollout.rs). An endpoint restarted by a test listens on
    /// a new port, so no request reaches an old one through a kept connection.
    static AGENT: ureq::Agent =
        ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build());
}

/// Sends a request; `body` `None` sends none.
pub fn send(method: &str, url: &str, headers: &[(String, String)], body: Option<&[u8]>) -> Reply {
    let agent = AGENT.with(ureq::Agent::clone);
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (n, v) in headers {
        builder = builder.header(n, v);
    }
    let result = match body {
        Some(b) => agent.run(builder.body(b.to_vec()).expect("request")),
        None => agent.run(builder.body(()).expect("request")),
    };
    let mut response = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let headers =
        response.headers().iter().map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
    let status = response.status().as_u16();
    let body = response.body_mut().with_config().limit(64 << 20).read_to_vec().expect("read the body");
    Reply { status, headers, body }
}

/// A node: its key, and requests signed with it.
pub struct Node {
    pub url: String,
    pub key: SigningKey,
    pub id: NodeId,
}

impl Node {
    pub fn new(url: &str, seed: u8) -> Node {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let id = NodeId::of_key(&key.verifying_key());
        Node { url: url.to_owned(), key, id }
    }

    /// The same node talking to another endpoint (a replica).
    pub fn at(&self, url: &str) -> Node {
        Node { url: url.to_owned(), key: self.key.clone(), id: self.id.clone() }
    }

    /// The signature headers of a request, made at `created` with `key` under key id `keyid`.
    pub fn sign_as(
        &self,
        keyid: &str,
        key: &SigningKey,
        method: &str,
        path: &str,
        body: &[u8],
        created: u64,
    ) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if !body.is_empty() {
            headers.push(("content-digest".to_owned(), fleet_wire::digest::content_digest(body)));
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        let borrowed: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let (path_only, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let req =
            signature::Request { method, scheme: "http", authority: "", path: path_only, query, headers: &borrowed };
        // Every request its own nonce, as the agent's random ones are.
        static NONCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nonce = format!("test-{}", NONCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let sig = signature::sign_node_request(&req, keyid, created, &nonce, key).expect("sign");
        headers.push(("signature-input".to_owned(), sig.signature_input));
        headers.push(("signature".to_owned(), sig.signature));
        headers
    }

    /// The headers of a request signed by this node at [`NOW`].
    pub fn sign(&self, method: &str, path: &str, body: &[u8]) -> Vec<(String, String)> {
        self.sign_as(self.id.as_str(), &self.key, method, path, body, NOW)
    }

    /// Sends a request signed by this node at [`NOW`].
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        let headers = self.sign(method, path, body);
        self.send_signed(method, path, &headers, body)
    }

    pub fn send_signed(&self, method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> Reply {
        let body = (method != "GET").then_some(body);
        send(method, &format!("{}{path}", self.url), headers, body)
    }

    pub fn enroll_body(&self, token: &str) -> Vec<u8> {
        let req = node::EnrollRequest {
            token: token.to_owned(),
            public_key: node::encode_public_key(&self.key.verifying_key()),
            inventory: inventory("node-1"),
        };
        serde_json::to_vec(&req).expect("serialize")
    }

    pub fn enroll(&self, token: &str) -> Reply {
        self.request("POST", node::ENROLL_PATH, &self.enroll_body(token))
    }

    pub fn desired(&self) -> Reply {
        self.request("GET", &node::desired_path(&self.id), b"")
    }

    pub fn reports(&self, reports: Vec<node::Report>) -> Reply {
        let body = serde_json::to_vec(&node::ReportBatch { reports }).expect("serialize");
        self.request("POST", &node::reports_path(&self.id), &body)
    }

    /// Sends a telemetry batch of `records` with the spool's `counters`, as the agent does: JSON, zstd-compressed.
    pub fn telemetry(
        &self,
        records: Vec<fleet_wire::telemetry::Record>,
        counters: fleet_wire::telemetry::Counters,
    ) -> Reply {
        let batch = fleet_wire::telemetry::TelemetryBatch { records, counters };
        let json = serde_json::to_vec(&batch).expect("serialize");
        self.telemetry_body(&zstd::encode_all(&json[..], 3).expect("zstd"))
    }

    /// Sends `body` (zstd-compressed, or not: a test of refusals) to the telemetry path, signed.
    pub fn telemetry_body(&self, body: &[u8]) -> Reply {
        let path = fleet_wire::telemetry::telemetry_path(&self.id);
        let mut headers = self.sign("POST", &path, body);
        headers.push(("content-encoding".into(), "zstd".into()));
        self.send_signed("POST", &path, &headers, body)
    }

    pub fn put_inventory(&self, inv: &Inventory) -> Reply {
        let body = serde_json::to_vec(inv).expect("serialize");
        self.request("PUT", &node::inventory_path(&self.id), &body)
    }
}

/// A small inventory.
pub fn inventory(hostname: &str) -> Inventory {
    Inventory {
        hostname: hostname.to_owned(),
        site: Some("depot-7".to_owned()),
        labels: [("role".to_owned(), "till".to_owned())].into(),
        hardware: Hardware { vendor: "QEMU".into(), cpu_count: 2, memory_bytes: 1 << 30, ..Default::default() },
        kernel: "6.1.0".into(),
        arch: "x86_64".into(),
        slots: vec![],
        update_phase: None,
        agent_version: "0.1.0".into(),
    }
}

/// A report of `kind` numbered `seq`.
pub fn report(seq: u64, kind: node::ReportKind) -> node::Report {
    node::Report {
        seq,
        time: "2027-01-15T08:00:00Z".into(),
        kind,
        message: format!("report {seq}"),
        reason: None,
        exit_code: None,
        version: None,
        slot: None,
        phase: None,
        progress: None,
        action: None,
    }
}

/// An admin client.
pub struct Admin {
    pub url: String,
    pub secret: String,
}

impl Admin {
    pub fn at(&self, url: &str) -> Admin {
        Admin { url: url.to_owned(), secret: self.secret.clone() }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Reply {
        let headers = vec![("authorization".to_owned(), format!("Bearer {}", self.secret))];
        let bytes = body.map(|b| serde_json::to_vec(&b).expect("serialize"));
        send(
            method,
            &format!("{}{path}", self.url),
            &headers,
            bytes.as_deref().or(Some(b"")).filter(|_| method != "GET"),
        )
    }

    /// A call that must succeed; its body.
    pub fn ok<T: serde::de::DeserializeOwned>(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> T {
        let reply = self.call(method, path, body);
        assert!(reply.status < 300, "{method} {path}: {} {}", reply.status, String::from_utf8_lossy(&reply.body));
        reply.json()
    }

    /// A new enrollment token's secret.
    pub fn enrollment_token(&self, policy: &str) -> String {
        let created: fleet_wire::admin::CreatedToken<fleet_wire::admin::EnrollmentTokenInfo> = self.ok(
            "POST",
            "/v1/admin/enrollment-tokens",
            Some(serde_json::json!({ "name": "batch-1", "policy": policy, "labels": { "fleet": "north" } })),
        );
        created.secret
    }
}

/// What a run of the `edge-cloud` binary ended with.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `edge-cloud` binary with `args` and the environment variables `env` (and no `EDGE_CLOUD_*` of the
/// test's own).
pub fn edge_cloud(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edge-cloud"));
    cmd.args(args).env_remove("EDGE_CLOUD_URL").env_remove("EDGE_CLOUD_TOKEN").env_remove("EDGE_CLOUD_CA");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run edge-cloud");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
