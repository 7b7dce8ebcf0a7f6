//! The endpoint as other crates' tests and the demo run it (feature `harness`, off in the shipped binary): the real
//! router over a real store, served on one loopback port for its whole life, stopped and started again on the same
//! port and database as an operator's restart would (a stop drops the runtime, so open connections go too), and
//! the admin API called as `edge-cloud`'s client verbs call it.
//!
//! A module of the crate, not of a test, so that the agent's tests and the QEMU scenarios drive one harness.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleet_wire::admin::{EventPage, Role};
use fleet_wire::node::Report;

use crate::api::{self, App, Config};
use crate::clock::SystemClock;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{hash_secret, new_secret, Actor, Store};

/// Which database the endpoint stands on.
#[derive(Debug, Clone)]
pub enum Database {
    /// A SQLite file in the endpoint's data directory.
    Sqlite,
    /// A PostgreSQL database, by URL (the caller runs the server).
    Postgres(String),
}

/// An endpoint on a loopback port; its data directory and database outlive each start and stop.
pub struct Endpoint {
    database: Database,
    data: tempfile::TempDir,
    keyring: PathBuf,
    port: u16,
    /// The port's listener from [`Endpoint::new`] until the first start, so no other test takes the port
    /// between the two.
    reserved: Option<TcpListener>,
    public_url: String,
    running: Option<tokio::runtime::Runtime>,
    admin: String,
    tls: Option<Tls>,
}

/// The files of an endpoint that serves TLS.
#[derive(Debug, Clone)]
struct Tls {
    cert: PathBuf,
    key: PathBuf,
    /// What the harness's own admin calls verify the endpoint against.
    ca: PathBuf,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({}, {:?})", self.url(), self.database)
    }
}

impl Endpoint {
    /// An endpoint (not yet serving) over `database`, trusting bundles signed by `keyring`, with a first admin
    /// token made straight in the database as `edge-cloud admin-token create` makes it. Nodes are told to fetch
    /// bundles from `public_url`, or from the loopback URL when `None`. Panics on failure: it is a fixture.
    pub fn new(database: Database, keyring: &Path, public_url: Option<&str>) -> Endpoint {
        let reserved = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = reserved.local_addr().expect("address").port();
        let data = tempfile::tempdir().expect("a temporary directory");
        let public_url = public_url.map_or_else(|| format!("http://127.0.0.1:{port}"), str::to_owned);
        let mut ep = Endpoint {
            database,
            data,
            keyring: keyring.to_owned(),
            port,
            reserved: Some(reserved),
            public_url,
            running: None,
            admin: String::new(),
            tls: None,
        };
        let rt = runtime();
        let store = ep.open(&rt);
        let (id, secret) = new_secret();
        let now = i64::try_from(crate::clock::Clock::now(&SystemClock)).unwrap_or(i64::MAX);
        rt.block_on(store.create_admin_token(
            &Actor::bootstrap(),
            &id,
            &hash_secret(&secret),
            "test",
            Role::Admin,
            now,
        ))
        .expect("the first admin token");
        ep.admin = secret;
        ep
    }

    /// Serves TLS from the next start on, with the certificate chain `cert` and its key `key` (PEM), as
    /// `edge-cloud serve --tls-cert --tls-key` does; the harness's own calls verify it against the CA `ca`.
    pub fn with_tls(mut self, cert: &Path, key: &Path, ca: &Path) -> Endpoint {
        self.tls = Some(Tls { cert: cert.to_owned(), key: key.to_owned(), ca: ca.to_owned() });
        self
    }

    /// The URL on 127.0.0.1 (`https://` once [`Endpoint::with_tls`]).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The first admin token's secret.
    pub fn admin_token(&self) -> &str {
        &self.admin
    }

    fn open(&self, rt: &tokio::runtime::Runtime) -> Arc<dyn Store> {
        match &self.database {
            Database::Sqlite => Arc::new(rt.block_on(SqliteStore::open(self.data.path())).expect("open SQLite")),
            Database::Postgres(url) => Arc::new(rt.block_on(PgStore::open(url)).expect("open PostgreSQL")),
        }
    }

    /// Serves (again) on the endpoint's port, with a poll interval of `poll_interval_secs`.
    pub fn start(&mut self, poll_interval_secs: u32) {
        let rt = runtime();
        let store = self.open(&rt);
        let mut config = Config::new(self.data.path());
        config.poll_interval_secs = poll_interval_secs;
        config.public_url = Some(self.public_url.clone());
        config.keyring = Some(Arc::new(image_layout::keys::Keyring::load(&self.keyring).expect("the keyring")));
        let app = Arc::new(App::new(store, Arc::new(SystemClock), config));
        let listener = match self.reserved.take() {
            Some(std) => {
                std.set_nonblocking(true).expect("a non-blocking listener");
                let _guard = rt.enter();
                tokio::net::TcpListener::from_std(std).expect("the reserved listener")
            }
            None => self.rebind(&rt),
        };
        let tls = self.tls.as_ref().map(|t| crate::server::tls_acceptor(&t.cert, &t.key).expect("the TLS files"));
        rt.spawn(crate::server::serve(listener, api::router(app), tls));
        self.running = Some(rt);
    }

    /// Binds the port again after a stop. Another process may hold it for a moment (a client's
    /// ephemeral port), so this retries for a few seconds before it gives up.
    fn rebind(&self, rt: &tokio::runtime::Runtime) -> tokio::net::TcpListener {
        let addr = format!("127.0.0.1:{}", self.port);
        let mut tries = 0;
        loop {
            match rt.block_on(crate::server::bind(&addr)) {
                Ok(listener) => return listener,
                Err(e) if tries < 50 => {
                    tries += 1;
                    log::debug!("rebind {addr}: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("bind the endpoint's port again: {e}"),
            }
        }
    }

    /// Stops serving: the listener and every open connection go.
    pub fn stop(&mut self) {
        if let Some(rt) = self.running.take() {
            // Waits for the workers to drop their tasks, the listener among them, so the port is free when
            // this returns; a blocking read still under way is given a moment, not waited for.
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        }
    }

    /// An admin API call with the first admin token; returns the status and the body.
    pub fn admin(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Vec<u8>) {
        let mut config = ureq::Agent::config_builder().http_status_as_error(false);
        if let Some(tls) = &self.tls {
            let pem = std::fs::read(&tls.ca).expect("the CA file");
            let roots = updater::http::pem_certificates(&pem).expect("the CA file holds a certificate");
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::Rustls)
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
                    .build(),
            );
        }
        let agent = ureq::Agent::new_with_config(config.build());
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url()))
            .header("Authorization", format!("Bearer {}", self.admin));
        let mut reply = match body {
            Some(b) => agent.run(req.header("Content-Type", "application/json").body(b).expect("a request")),
            None => agent.run(req.body(()).expect("a request")),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = reply.status().as_u16();
        (status, reply.body_mut().with_config().limit(64 << 20).read_to_vec().expect("the body"))
    }

    /// An admin API call that must succeed, its reply read as `T`.
    pub fn admin_ok<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> T {
        let (status, reply) = self.admin(method, path, body.map(|b| serde_json::to_vec(&b).expect("JSON")));
        assert!((200..300).contains(&status), "{method} {path}: {status} {}", String::from_utf8_lossy(&reply));
        serde_json::from_slice(&reply).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A new enrollment token of `policy` (`pending` or `accept`); returns its secret.
    pub fn enrollment_token(&self, policy: &str) -> String {
        let created: serde_json::Value = self.admin_ok(
            "POST",
            "/v1/admin/enrollment-tokens",
            Some(serde_json::json!({"name": "site-1", "policy": policy})),
        );
        created["secret"].as_str().expect("a secret").to_owned()
    }

    /// Uploads a bundle to the endpoint's store; returns its manifest hash.
    pub fn upload(&self, bundle: &[u8]) -> String {
        let (status, reply) = self.admin("POST", "/v1/admin/bundles", Some(bundle.to_vec()));
        assert_eq!(status, 201, "upload: {}", String::from_utf8_lossy(&reply));
        let info: serde_json::Value = serde_json::from_slice(&reply).expect("the bundle's info");
        info["manifest_hash"].as_str().expect("a manifest hash").to_owned()
    }

    /// Every report the endpoint holds for `node`, oldest first.
    pub fn reports(&self, node: &str) -> Vec<Report> {
        let page: EventPage = self.admin_ok("GET", &format!("/v1/admin/nodes/{node}/events?limit=1000"), None);
        assert!(page.next_offset.is_none(), "one page holds them all");
        page.events.into_iter().rev().map(|e| e.report).collect()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime")
}
