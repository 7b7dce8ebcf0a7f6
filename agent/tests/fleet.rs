//! The agent against the real endpoint: `edge-cloud`'s router over a real store (a SQLite file, or a database on
//! a PostgreSQL the test starts), served on a loopback port, stopped and started again on the same port and the same
//! database as an operator's restart would. Nothing here stands in for the endpoint; the admin side is driven
//! through the admin API as `edge-cloud`'s client verbs drive it.
//!
//! Each test runs once per backend.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use edge_cloud::api::{self, App, Config};
use edge_cloud::clock::SystemClock;
use edge_cloud::store::postgres::PgStore;
use edge_cloud::store::sqlite::SqliteStore;
use edge_cloud::store::{hash_secret, new_secret, Actor, Store};
use fleet_wire::admin::{EventPage, NodeDetail, Role};
use fleet_wire::node::{NodeStatus, ReportKind};
use support::{agent, Node};
use testkit::postgres::Postgres;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The endpoint: its database outlives every start and stop; each start is a new runtime, store and listener on
/// the same port, and a stop drops them all (open connections included), as a killed process would.
struct Cloud {
    backend: Backend,
    data: tempfile::TempDir,
    keyring: PathBuf,
    port: u16,
    pg: Option<Postgres>,
    db_url: Option<String>,
    running: Option<tokio::runtime::Runtime>,
    admin: String,
}

impl Cloud {
    fn new(backend: Backend, keyring: &Path) -> Cloud {
        let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("address").port();
        let (pg, db_url) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let pg = Postgres::start();
                let url = pg.create_database("fleet");
                (Some(pg), Some(url))
            }
        };
        let data = tempfile::tempdir().expect("tempdir");
        let mut cloud =
            Cloud { backend, data, keyring: keyring.to_owned(), port, pg, db_url, running: None, admin: String::new() };
        // The first admin token, made straight in the database as `edge-cloud admin-token create` does.
        let rt = runtime();
        let store = cloud.open(&rt);
        let (id, secret) = new_secret();
        rt.block_on(store.create_admin_token(
            &Actor::bootstrap(),
            &id,
            &hash_secret(&secret),
            "test",
            Role::Admin,
            now(),
        ))
        .expect("admin token");
        cloud.admin = secret;
        cloud
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn open(&self, rt: &tokio::runtime::Runtime) -> Arc<dyn Store> {
        match self.backend {
            Backend::Sqlite => Arc::new(rt.block_on(SqliteStore::open(self.data.path())).expect("open SQLite")),
            Backend::Postgres => {
                let url = self.db_url.as_deref().expect("a database");
                Arc::new(rt.block_on(PgStore::open(url)).expect("open PostgreSQL"))
            }
        }
    }

    fn start(&mut self) {
        let rt = runtime();
        let store = self.open(&rt);
        let mut config = Config::new(self.data.path());
        config.poll_interval_secs = 1;
        config.public_url = Some(self.url());
        config.keyring = Some(Arc::new(image_layout::keys::Keyring::load(&self.keyring).expect("keyring")));
        let app = Arc::new(App::new(store, Arc::new(SystemClock), config));
        let addr = format!("127.0.0.1:{}", self.port);
        let listener = rt.block_on(edge_cloud::server::bind(&addr)).expect("bind the endpoint's port again");
        rt.spawn(edge_cloud::server::serve(listener, api::router(app), None));
        self.running = Some(rt);
    }

    fn stop(&mut self) {
        if let Some(rt) = self.running.take() {
            rt.shutdown_background();
        }
    }

    /// An admin API call; returns the status and the body.
    fn admin(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Vec<u8>) {
        let agent = ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build());
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url()))
            .header("Authorization", format!("Bearer {}", self.admin));
        let mut reply = match body {
            Some(b) => agent.run(req.header("Content-Type", "application/json").body(b).expect("request")),
            None => agent.run(req.body(()).expect("request")),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = reply.status().as_u16();
        (status, reply.body_mut().with_config().limit(64 << 20).read_to_vec().expect("body"))
    }

    fn admin_ok<T: serde::de::DeserializeOwned>(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> T {
        let (status, reply) = self.admin(method, path, body.map(|b| serde_json::to_vec(&b).expect("json")));
        assert!((200..300).contains(&status), "{method} {path}: {status} {}", String::from_utf8_lossy(&reply));
        serde_json::from_slice(&reply).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// An enrollment token of `policy`, written where the node's agent reads it.
    fn token_for(&self, node: &Node, policy: &str) {
        let created: serde_json::Value = self.admin_ok(
            "POST",
            "/v1/admin/enrollment-tokens",
            Some(serde_json::json!({"name": "site-1", "policy": policy})),
        );
        let secret = created["secret"].as_str().expect("a secret");
        std::fs::write(node.root().join("etc/fleet-token"), format!("{secret}\n")).expect("token file");
    }

    /// Every report the endpoint holds for `node`, oldest first.
    fn reports(&self, node: &str) -> Vec<fleet_wire::node::Report> {
        let page: EventPage = self.admin_ok("GET", &format!("/v1/admin/nodes/{node}/events?limit=1000"), None);
        assert!(page.next_offset.is_none(), "one page holds them all");
        page.events.into_iter().rev().map(|e| e.report).collect()
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.stop();
        if self.pg.is_some() {
            // The server goes after the last connection to it.
            self.pg = None;
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime")
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() as i64
}

/// Asserts the endpoint holds each of the node's reports once, numbered 1.. without a gap, in the node's order.
fn assert_complete(reports: &[fleet_wire::node::Report]) {
    let seqs: Vec<u64> = reports.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=reports.len() as u64).collect::<Vec<_>>(), "each report once, in order, none missing");
}

/// The endpoint is down from the node's first start: the agent only retries, its reports wait on the data
/// partition (across a restart of the agent too), and when the endpoint comes up the node enrolls and every report
/// arrives once, in order. Then the endpoint restarts in the middle of the node's life: nothing is lost or doubled.
fn endpoint_down_then_back(backend: Backend) {
    let node = Node::new("http://127.0.0.1:9");
    let mut cloud = Cloud::new(backend, &node.root().join("etc/keys/test.pub"));
    // The node's config names the endpoint's port, which is closed for now.
    let config = std::fs::read_to_string(&node.config).expect("agent.toml");
    std::fs::write(&node.config, config.replace("http://127.0.0.1:9", &cloud.url())).expect("agent.toml");
    cloud.start();
    cloud.token_for(&node, "pending");
    cloud.stop();

    let mut a = agent(&node);
    for i in 0..5 {
        node.event("booted", &format!("boot {i}"));
        a.round();
    }
    assert!(a.state().status.is_none(), "not enrolled while the endpoint is down");
    drop(a);
    let mut a = agent(&node);
    node.event("committed", "committed while the endpoint was down");
    a.round();
    assert_eq!(a.n_pending(), 6, "the spool holds every report across the agent's restart");

    cloud.start();
    a.round();
    let id = a.node_id().to_string();
    assert_eq!(a.state().status, Some(NodeStatus::Pending));
    let reports = cloud.reports(&id);
    assert_complete(&reports);
    let messages: Vec<&str> = reports.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(
        &messages[..6],
        &["boot 0", "boot 1", "boot 2", "boot 3", "boot 4", "committed while the endpoint was down"]
    );
    assert_eq!(reports[6].kind, ReportKind::Enrolled);
    assert_eq!(a.n_pending(), 0);

    // Accepted by an admin; then the endpoint restarts while the node keeps recording.
    let _: serde_json::Value = cloud.admin_ok("POST", &format!("/v1/admin/nodes/{id}/accept"), None);
    a.round();
    assert_eq!(a.state().status, Some(NodeStatus::Accepted));
    cloud.stop();
    for i in 0..4 {
        node.event("trial", &format!("trial {i}"));
        a.round();
    }
    cloud.start();
    a.round();
    a.round();
    let reports = cloud.reports(&id);
    assert_complete(&reports);
    assert_eq!(reports.len(), 11);
    assert_eq!(reports.last().map(|r| r.message.as_str()), Some("trial 3"));
    let detail: NodeDetail = cloud.admin_ok("GET", &format!("/v1/admin/nodes/{id}"), None);
    assert_eq!(detail.node.status, NodeStatus::Accepted);
}

/// A node enrolls into the pending pool, is accepted and put in a group whose desired bundle was uploaded to the
/// endpoint's store; the agent fetches it from the store, installs it through the updater and reports each step,
/// which the endpoint then shows.
fn a_bundle_given_through_the_endpoint_is_installed(backend: Backend) {
    let node = Node::new("http://127.0.0.1:9");
    let mut cloud = Cloud::new(backend, &node.root().join("etc/keys/test.pub"));
    let config = std::fs::read_to_string(&node.config).expect("agent.toml");
    std::fs::write(&node.config, config.replace("http://127.0.0.1:9", &cloud.url())).expect("agent.toml");
    cloud.start();
    cloud.token_for(&node, "pending");
    let mut a = agent(&node);
    a.round();
    let id = a.node_id().to_string();
    let pending: NodeDetail = cloud.admin_ok("GET", &format!("/v1/admin/nodes/{id}"), None);
    assert_eq!(pending.node.status, NodeStatus::Pending);

    let (bytes, hash) = support::bundle(&support::bundle_key(), "2.0.0");
    let (status, reply) = cloud.admin("POST", "/v1/admin/bundles", Some(bytes));
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
    let _: serde_json::Value =
        cloud.admin_ok("PUT", "/v1/admin/groups/shops", Some(serde_json::json!({"bundle": hash})));
    let _: serde_json::Value =
        cloud.admin_ok("PUT", &format!("/v1/admin/nodes/{id}/group"), Some(serde_json::json!({"group": "shops"})));
    // Pending: nothing is desired yet, so nothing is installed.
    a.round();
    assert!(!cloud.reports(&id).iter().any(|r| r.kind == ReportKind::Started));
    let _: serde_json::Value = cloud.admin_ok("POST", &format!("/v1/admin/nodes/{id}/accept"), None);
    for _ in 0..3 {
        a.round();
    }
    let reports = cloud.reports(&id);
    assert_complete(&reports);
    let kinds: Vec<ReportKind> = reports.iter().map(|r| r.kind).collect();
    for k in [ReportKind::Downloading, ReportKind::Started, ReportKind::Flipped] {
        assert!(kinds.contains(&k), "{k:?} in {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == ReportKind::Started).count(), 1, "installed once: {kinds:?}");
    // Slot B holds the bundle's payload, byte for byte.
    let payload = support::payload(1 << 20);
    let slot_b = std::fs::read(node.root().join("slot-b.img")).expect("slot B");
    assert_eq!(&slot_b[..payload.len()], &payload[..]);
    // The endpoint shows the node's new slot from its inventory.
    let detail: NodeDetail = cloud.admin_ok("GET", &format!("/v1/admin/nodes/{id}"), None);
    let inventory = detail.inventory;
    let b = inventory.slots.iter().find(|s| s.slot == "B").expect("slot B");
    assert_eq!(b.bundle.as_ref().map(|x| x.manifest_hash.as_str()), Some(hash.as_str()));
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::Backend::Postgres) } )*
        }
    };
}

both!(endpoint_down_then_back, a_bundle_given_through_the_endpoint_is_installed);
