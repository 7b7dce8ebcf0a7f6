//! The agent against the real endpoint: `edge-cloud`'s router over a real store (a SQLite file, or a database on
//! a PostgreSQL the test starts), served on a loopback port, stopped and started again on the same port and the same
//! database as an operator's restart would. Nothing here stands in for the endpoint; the admin side is driven
//! through the admin API as `edge-cloud`'s client verbs drive it.
//!
//! Each test runs once per backend.

mod support;

use edge_cloud::harness::{Database, Endpoint};
use fleet_wire::admin::NodeDetail;
use fleet_wire::node::{NodeStatus, ReportKind};
use support::{agent, Node};
use testkit::postgres::Postgres;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The endpoint on `backend` (and the PostgreSQL under it, stopped after it), trusting the node's bundle key, with
/// `node`'s config pointed at it and an enrollment token of `policy` where the node's agent reads it. Not serving.
fn endpoint(backend: Backend, node: &Node, policy: &str) -> (Endpoint, Option<Postgres>) {
    let pg = matches!(backend, Backend::Postgres).then(Postgres::start);
    let database = match &pg {
        None => Database::Sqlite,
        Some(pg) => Database::Postgres(pg.create_database("fleet")),
    };
    let mut ep = Endpoint::new(database, &node.root().join("etc/keys/test.pub"), None);
    support::point_at(node, &ep.url());
    ep.start(1);
    let secret = ep.enrollment_token(policy);
    std::fs::write(node.root().join("etc/fleet-token"), format!("{secret}\n")).expect("token file");
    ep.stop();
    (ep, pg)
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
    // The node's config names the endpoint's port, which is closed for now.
    let (mut cloud, _pg) = endpoint(backend, &node, "pending");

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

    cloud.start(1);
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
    cloud.start(1);
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
    let (mut cloud, _pg) = endpoint(backend, &node, "pending");
    cloud.start(1);
    let mut a = agent(&node);
    a.round();
    let id = a.node_id().to_string();
    let pending: NodeDetail = cloud.admin_ok("GET", &format!("/v1/admin/nodes/{id}"), None);
    assert_eq!(pending.node.status, NodeStatus::Pending);

    let (bytes, hash) = support::bundle(&support::bundle_key(), "2.0.0");
    assert_eq!(cloud.upload(&bytes), hash);
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

/// The kinds and reasons of the `waiting` reports the endpoint holds of node `id`, in order.
fn waits(cloud: &Endpoint, id: &str) -> Vec<String> {
    let reports = cloud.reports(id);
    assert_complete(&reports);
    reports.iter().filter(|r| r.kind == ReportKind::Waiting).filter_map(|r| r.reason.clone()).collect()
}

/// Whether the updater's journal says the target is verified and held.
fn held(node: &Node) -> bool {
    let j = journal(node);
    j["update"]["phase"] == "verified" && j["update"]["held"] == true
}

/// The updater's journal, as JSON.
fn journal(node: &Node) -> serde_json::Value {
    let journal = std::fs::read_to_string(node.root().join("data/edge-update/journal.json")).expect("journal");
    serde_json::from_str(&journal).expect("json")
}

/// A deployment's flip rule on a real node: the agent installs and verifies at once, then holds the target while
/// the site's maintenance window is closed, while an application holds the update lock, and while the deployment
/// is paused, reporting each wait once; it flips when nothing holds it back any more.
fn a_deployment_flips_only_when_its_rule_allows(backend: Backend) {
    let node = Node::new("http://127.0.0.1:9");
    let (mut cloud, _pg) = endpoint(backend, &node, "accept");
    cloud.start(1);
    let mut a = agent(&node);
    a.round();
    let id = a.node_id().to_string();
    // The site's only window starts two hours from now (UTC), so the node's clock is outside it.
    let hour =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() / 3600) % 24;
    let window = |from: u64, to: u64| format!("daily {:02}:00-{:02}:00", (hour + from) % 24, (hour + to) % 24);
    let site = |w: String| serde_json::json!({"time_zone": "UTC", "windows": [w]});
    let _: serde_json::Value = cloud.admin_ok("PUT", "/v1/admin/sites/shop-1", Some(site(window(2, 3))));
    let (bytes, hash) = support::bundle(&support::bundle_key(), "2.0.0");
    assert_eq!(cloud.upload(&bytes), hash);
    let policy = serde_json::json!({"waves": ["100%"], "lock_max_secs": 86400});
    let body = serde_json::json!({"name": "v2", "bundle": hash, "selector": "site = shop-1", "policy": policy});
    let created: serde_json::Value = cloud.admin_ok("POST", "/v1/admin/deployments", Some(body));
    let deployment = created["id"].as_str().expect("an id").to_owned();

    for _ in 0..3 {
        a.round();
    }
    assert!(held(&node), "installed, verified and held");
    assert_eq!(waits(&cloud, &id), ["window"], "the closed window, reported once");

    // The window opens, but an application holds the update lock.
    let app = updater::run::try_take_lock(&node.update_lock).expect("lock file").expect("the lock is free");
    let _: serde_json::Value = cloud.admin_ok("PUT", "/v1/admin/sites/shop-1", Some(site(window(0, 2))));
    a.round();
    a.round();
    assert!(held(&node), "held while the lock is");
    assert_eq!(waits(&cloud, &id), ["window", "update-lock"]);

    // Paused by the operator: the application lets go, the node still waits.
    let _: serde_json::Value = cloud.admin_ok("POST", &format!("/v1/admin/deployments/{deployment}/pause"), None);
    drop(app);
    a.round();
    a.round();
    assert!(held(&node), "held while the deployment is paused");
    assert_eq!(waits(&cloud, &id), ["window", "update-lock", "paused"]);
    let kinds: Vec<ReportKind> = cloud.reports(&id).iter().map(|r| r.kind).collect();
    assert!(!kinds.contains(&ReportKind::Flipped), "{kinds:?}");

    // Resumed: flipped at the next poll, through the read-back of the held slot.
    let _: serde_json::Value = cloud.admin_ok("POST", &format!("/v1/admin/deployments/{deployment}/resume"), None);
    a.round();
    a.round();
    assert!(!held(&node));
    let kinds: Vec<ReportKind> = cloud.reports(&id).iter().map(|r| r.kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == ReportKind::Verified).count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == ReportKind::Flipped).count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == ReportKind::Started).count(), 1, "downloaded once: {kinds:?}");
    let j = journal(&node);
    assert!(["flipped", "rebooting"].contains(&j["update"]["phase"].as_str().unwrap_or("")), "{j}");
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

both!(
    endpoint_down_then_back,
    a_bundle_given_through_the_endpoint_is_installed,
    a_deployment_flips_only_when_its_rule_allows
);

/// The desired bundle's URLs are mirrors: the first cannot be reached, the second serves another bundle, the third
/// (another endpoint's store, standing in for a CDN) serves the named one; the agent passes over the first two and
/// installs from the third, once.
#[test]
fn an_install_falls_over_to_the_next_url() {
    let node = Node::new("http://127.0.0.1:9");
    // One retry per URL, so the closed port is given up on quickly.
    let update = node.root().join("etc/update.toml");
    let mut toml = std::fs::read_to_string(&update).expect("update.toml");
    toml.push_str("[http]\nmax_retries = 1\n");
    std::fs::write(&update, toml).expect("update.toml");
    let (mut cloud, _pg) = endpoint(Backend::Sqlite, &node, "accept");
    cloud.start(1);
    let mut mirror = Endpoint::new(Database::Sqlite, &node.root().join("etc/keys/test.pub"), None);
    mirror.start(1);
    let (bytes, hash) = support::bundle(&support::bundle_key(), "2.0.0");
    let (other, other_hash) = support::bundle(&support::bundle_key(), "2.0.1");
    assert_eq!(mirror.upload(&bytes), hash);
    assert_eq!(mirror.upload(&other), other_hash);

    let head = {
        let h: &[u8; image_layout::format::HEADER_LEN] =
            bytes[..image_layout::format::HEADER_LEN].try_into().expect("a header");
        let end = image_layout::format::Header::decode(h).expect("the header").body_start() as usize;
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&bytes[..end])
    };
    let urls = [
        format!("http://127.0.0.1:9/v1/bundles/{hash}.bundle"),
        format!("{}/v1/bundles/{other_hash}.bundle", mirror.url()),
        format!("{}/v1/bundles/{hash}.bundle", mirror.url()),
    ];
    for url in &urls {
        let _: serde_json::Value = cloud.admin_ok(
            "POST",
            "/v1/admin/bundles/external",
            Some(serde_json::json!({"url": url, "size_bytes": bytes.len(), "head": head})),
        );
    }
    let mut a = agent(&node);
    a.round();
    let id = a.node_id().to_string();
    let _: serde_json::Value =
        cloud.admin_ok("PUT", "/v1/admin/groups/shops", Some(serde_json::json!({"bundle": hash})));
    let _: serde_json::Value =
        cloud.admin_ok("PUT", &format!("/v1/admin/nodes/{id}/group"), Some(serde_json::json!({"group": "shops"})));
    for _ in 0..3 {
        a.round();
    }
    let reports = cloud.reports(&id);
    assert_complete(&reports);
    let kinds: Vec<ReportKind> = reports.iter().map(|r| r.kind).collect();
    assert!(kinds.contains(&ReportKind::Flipped), "installed: {reports:?}");
    assert!(!kinds.contains(&ReportKind::Refused), "the bundle that is not named is passed over: {reports:?}");
    assert_eq!(kinds.iter().filter(|k| **k == ReportKind::Started).count(), 1, "installed once: {kinds:?}");
    let payload = support::payload(1 << 20);
    let slot_b = std::fs::read(node.root().join("slot-b.img")).expect("slot B");
    assert_eq!(&slot_b[..payload.len()], &payload[..], "slot B holds the named bundle's payload");
    let journal: serde_json::Value = serde_json::from_slice(
        &std::fs::read(node.root().join("data/edge-update/journal.json")).expect("the updater's journal"),
    )
    .expect("JSON");
    assert_eq!(journal["update"]["source"], urls[2].as_str(), "the updater installed from the third URL");
}
