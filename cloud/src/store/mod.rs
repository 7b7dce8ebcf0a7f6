//! The endpoint's storage: one `Store` trait over two concrete `sqlx` pools, SQLite (`sqlite`, the default: one file
//! under `--data DIR`) and PostgreSQL (`postgres`, for several replicas on one database). Every change is one
//! transaction that takes its locks first, so two replicas (or two connections of one) never interleave halfway.
//!
//! The trait returns boxed futures rather than using `async fn`: the endpoint picks its backend from a flag at run
//! time, so the router holds an `Arc<dyn Store>`, and `async fn` in a trait cannot be called through `dyn`. One
//! allocation per call is nothing beside a database round trip. The SQL itself is written once (`sql`, a macro
//! instantiated per backend with its connection type and how a write transaction begins): both databases take the
//! same `$N` parameters, `ON CONFLICT`, `RETURNING` and `LIMIT`, and the schema (migrations/sqlite,
//! migrations/postgres) keeps to types both have.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use fleet_wire::admin::{
    ActionInfo, AdminTokenInfo, AuditPage, BundleInfo, CreateEnrollmentToken, DiagnosticsInfo, EnrollmentTokenInfo,
    EventPage, GroupInfo, LabelChange, NodeDetail, NodeSummary, Role,
};
use fleet_wire::node::{Action, ActionKind, Diagnostics, Inventory, NodeStatus, ReportAck, ReportBatch};
use fleet_wire::rollout::{CreateDeployment, DeploymentInfo, MemberList, SetSite, SiteInfo};

use crate::error::Result;

pub mod postgres;
pub(crate) mod rollout_sql;
pub(crate) mod sql;
pub mod sqlite;
pub mod telemetry_sql;

/// A future a store method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Who makes an admin change: an admin token (the audit's "who").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The token's id.
    pub id: String,
    /// The token's name.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Actor {
    /// The actor of changes made offline on the endpoint's machine (`edge-cloud admin-token create`).
    pub fn bootstrap() -> Actor {
        Actor { id: "-".into(), name: "bootstrap".into(), role: Role::Admin }
    }
}

/// What a node request's signature is checked with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeKey {
    /// The public key, as the node sent it ([`fleet_wire::node::encode_public_key`]).
    pub public_key: String,
    /// Where the node stands.
    pub status: NodeStatus,
}

/// A verified node request's replay id and how long to keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// [`fleet_wire::signature::ReplayId::to_hex`].
    pub id: String,
    /// When the signature window has passed it, in seconds since the epoch.
    pub expires_at: i64,
}

/// An enrollment, verified: the key signed the request and its id is the key's.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// `NodeId::of_key(public_key)`.
    pub node_id: String,
    /// The public key as sent.
    pub public_key: String,
    /// The SHA-256 of the token as sent ([`hash_secret`]).
    pub token_hash: String,
    /// The inventory.
    pub inventory: Inventory,
}

/// What an enrollment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enrolled {
    /// Where the node stands now.
    pub status: NodeStatus,
    /// Whether the node is new (201) or was enrolled already with this key (200).
    pub created: bool,
}

/// A node's desired state as the store knows it; the API adds the poll interval and the store's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Where the node stands.
    pub status: NodeStatus,
    /// Its pin's bundle, else its deployment's (once it was told to start), else the last bundle a deployment
    /// brought it, else its group's; when accepted.
    pub bundle: Option<BundleInfo>,
    /// When the bundle is a deployment's: when the node may flip to it.
    pub flip: Option<fleet_wire::node::FlipRule>,
    /// Its queued actions, oldest first, when accepted.
    pub actions: Vec<Action>,
}

/// How long the endpoint keeps each node's reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// At most this many reports per node (the newest).
    pub max_reports: u32,
    /// None older than this, in seconds.
    pub max_age_secs: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention { max_reports: 1000, max_age_secs: 90 * 24 * 3600 }
    }
}

/// The node list's filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFilter {
    /// Only this status.
    pub status: Option<NodeStatus>,
    /// Only nodes with this label (node's or admin's), `key` or `key=value`.
    pub label: Option<(String, Option<String>)>,
    /// Only this group.
    pub group: Option<String>,
}

/// One page of the node list, for the web view: the nodes matching, by id, after `after`.
#[derive(Debug, Clone, Default)]
pub struct NodeSlice {
    /// Only this status.
    pub status: Option<NodeStatus>,
    /// Only this site: `Some(None)` for nodes without one.
    pub site: Option<Option<String>>,
    /// Only nodes running this version: `Some(None)` for nodes that have reported none.
    pub version: Option<Option<String>>,
    /// The page begins after this node id.
    pub after: Option<String>,
    /// At most this many nodes.
    pub limit: u32,
}

/// A page of nodes and how many match in all.
#[derive(Debug, Clone, Default)]
pub struct NodePage {
    /// How many nodes match, on every page.
    pub total: u64,
    /// This page's nodes, by id.
    pub nodes: Vec<NodeSummary>,
}

/// The fleet's node counts, by status, by running version and by site (`None`: no version or site), counted by the
/// database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCounts {
    /// By status word.
    pub by_status: BTreeMap<String, u64>,
    /// By the version each node runs.
    pub by_version: BTreeMap<Option<String>, u64>,
    /// By site.
    pub by_site: BTreeMap<Option<String>, u64>,
}

/// A bundle to record, after its signatures and manifest were verified.
#[derive(Debug, Clone)]
pub struct NewBundle {
    /// What the admin API shows of it.
    pub info: BundleInfo,
    /// The manifest, as JSON.
    pub manifest: serde_json::Value,
}

/// The rollouts' part of the store (docs/rollouts.md): deployments and sites. Each method is one transaction; every
/// change writes its audit row in it.
pub trait Rollouts {
    /// Creates a deployment of the nodes its selector matches now (refused, naming them, when some are in a
    /// deployment under way); nodes that match later join it.
    fn create_deployment<'a>(
        &'a self,
        actor: &'a Actor,
        req: &'a CreateDeployment,
        now: i64,
    ) -> StoreFuture<'a, DeploymentInfo>;
    /// Every deployment, newest first.
    fn list_deployments(&self) -> StoreFuture<'_, Vec<DeploymentInfo>>;
    /// One deployment.
    fn deployment<'a>(&'a self, id: &'a str) -> StoreFuture<'a, DeploymentInfo>;
    /// A deployment's nodes, by id; with `first`, only that many, those that failed first, then those updating,
    /// waiting and committed.
    fn deployment_nodes<'a>(&'a self, id: &'a str, first: Option<u32>) -> StoreFuture<'a, MemberList>;
    /// `pause`, `resume` or `abort` a deployment.
    fn set_deployment_state<'a>(
        &'a self,
        actor: &'a Actor,
        id: &'a str,
        verb: &'a str,
        now: i64,
    ) -> StoreFuture<'a, DeploymentInfo>;
    /// Sets a site's time zone and windows (making the site when new).
    fn set_site<'a>(&'a self, actor: &'a Actor, name: &'a str, req: &'a SetSite, now: i64)
        -> StoreFuture<'a, SiteInfo>;
    /// Every site, with whether it is inside a window at `now`.
    fn list_sites(&self, now: i64) -> StoreFuture<'_, Vec<SiteInfo>>;
}

/// Which of a node's log lines to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// Lines after this `seq` (0: from the first).
    pub after: u64,
    /// Lines logged at or after this time (ms since the epoch, the node's clock).
    pub since_ms: Option<i64>,
    /// Lines holding this text (case-sensitive).
    pub grep: Option<String>,
    /// At most this many.
    pub limit: u32,
    /// With `after` 0: the newest `limit` lines (still oldest first) instead of the first.
    pub tail: bool,
}

/// The node's telemetry (docs/telemetry.md, "The endpoint's side"): its logs, and the queue of metric records the
/// forwarder sends to the TSDB.
pub trait Telemetry {
    /// Stores a batch's records past the node's acknowledged `seq` once (log lines, metric records queued for the
    /// TSDB when `queue`, chart points), keeps its counters, prunes its logs past `retention`'s size, and answers with
    /// the new acknowledged `seq`.
    fn record_telemetry<'a>(
        &'a self,
        node: &'a str,
        replay: &'a Replay,
        batch: &'a fleet_wire::telemetry::TelemetryBatch,
        retention: telemetry_sql::LogRetention,
        queue: bool,
        now: i64,
    ) -> StoreFuture<'a, telemetry_sql::Taken>;
    /// A node's log lines as `query` asks.
    fn node_logs<'a>(&'a self, node: &'a str, query: &'a LogQuery) -> StoreFuture<'a, fleet_wire::telemetry::LogPage>;
    /// A node's telemetry counters (all zero for a node that never sent a batch).
    fn telemetry_status<'a>(&'a self, node: &'a str) -> StoreFuture<'a, fleet_wire::telemetry::TelemetryStatus>;
    /// A node's chart points since `since_ms`: (metric, time in ms, value), by metric and time.
    fn chart_points<'a>(&'a self, node: &'a str, since_ms: i64) -> StoreFuture<'a, Vec<(String, i64, f64)>>;
    /// The oldest `limit` metric records waiting to be forwarded, in the order they came.
    fn queued_metrics(&self, limit: u32) -> StoreFuture<'_, Vec<telemetry_sql::QueuedMetrics>>;
    /// The queued records with these ids (those still there), in id order.
    fn queued_metrics_by_id<'a>(&'a self, ids: &'a [i64]) -> StoreFuture<'a, Vec<telemetry_sql::QueuedMetrics>>;
    /// Takes (or keeps) the forwarder's lease for `holder` until `now + lease_secs`, unless another holds it;
    /// returns the ids of the request on its way (empty when none), `None` when another holder has the lease.
    fn forwarder_claim<'a>(&'a self, holder: &'a str, now: i64, lease_secs: i64) -> StoreFuture<'a, Option<Vec<i64>>>;
    /// Records the ids of a request about to be sent (while `holder` has the lease; `false` when it lost it).
    fn forwarder_begin<'a>(&'a self, holder: &'a str, ids: &'a [i64], now: i64) -> StoreFuture<'a, bool>;
    /// The request with `ids` was answered: its records go from the queue, counted as forwarded or (`refused`) as
    /// refused for good by the TSDB; nothing is on its way any more.
    fn forwarder_done<'a>(&'a self, holder: &'a str, ids: &'a [i64], refused: bool, now: i64) -> StoreFuture<'a, ()>;
    /// Records forwarded and refused, ever.
    fn forwarder_counts(&self) -> StoreFuture<'_, (u64, u64)>;
    /// How many metric records wait.
    fn metric_queue_len(&self) -> StoreFuture<'_, u64>;
    /// Deletes log lines received before `retention`'s age and chart points older than a day; returns how many
    /// lines went.
    fn prune_telemetry(&self, retention: telemetry_sql::LogRetention, now: i64) -> StoreFuture<'_, u64>;
}

/// Everything the endpoint keeps. Each method is one transaction; every admin change writes its audit row in it.
pub trait Store: Rollouts + Telemetry + Send + Sync + std::fmt::Debug {
    /// The key and status of node `id`, if enrolled.
    fn node_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<NodeKey>>;
    /// Enrolls a node (or updates the inventory of one enrolled with this key), using the token once.
    fn enroll<'a>(&'a self, e: &'a Enrollment, replay: &'a Replay, now: i64) -> StoreFuture<'a, Enrolled>;
    /// The node's desired state; records `last_seen` and the poll's replay id (refusing a replay). The one write
    /// that is not synced before its reply: a power cut of the endpoint may forget a poll, and the node polls
    /// again (docs/cloud.md, "Durability").
    fn desired<'a>(&'a self, node: &'a str, replay: &'a Replay, now: i64) -> StoreFuture<'a, Desired>;
    /// Replaces the node's inventory (and its site and node labels).
    fn put_inventory<'a>(
        &'a self,
        node: &'a str,
        replay: &'a Replay,
        inventory: &'a Inventory,
        now: i64,
    ) -> StoreFuture<'a, ()>;
    /// Stores each report once per (node, seq), folds the new ones into the node's current state, settles actions,
    /// and prunes the node's history past `retention`.
    fn record_reports<'a>(
        &'a self,
        node: &'a str,
        replay: &'a Replay,
        batch: &'a ReportBatch,
        retention: Retention,
        now: i64,
    ) -> StoreFuture<'a, ReportAck>;
    /// Stores the diagnostics of the node's diagnostics action `action`.
    fn put_diagnostics<'a>(
        &'a self,
        node: &'a str,
        replay: &'a Replay,
        action: &'a str,
        diagnostics: &'a Diagnostics,
        now: i64,
    ) -> StoreFuture<'a, ()>;

    /// The admin token with this secret hash, unless revoked.
    fn admin_actor<'a>(&'a self, secret_hash: &'a str) -> StoreFuture<'a, Option<Actor>>;
    /// Opens a web session of `actor` (audited as `web-login`): `secret_hash` is the SHA-256 of its cookie's
    /// secret, `csrf` the token its forms carry; it ends at `expires` (Unix seconds). Ended sessions are pruned.
    fn create_session<'a>(
        &'a self,
        actor: &'a Actor,
        secret_hash: &'a str,
        csrf: &'a str,
        now: i64,
        expires: i64,
    ) -> StoreFuture<'a, ()>;
    /// The actor and CSRF token of the session with this secret hash, while it has not ended and its admin token is
    /// not revoked.
    fn session<'a>(&'a self, secret_hash: &'a str, now: i64) -> StoreFuture<'a, Option<(Actor, String)>>;
    /// Ends the session with this secret hash (logout); nothing when there is none.
    fn end_session<'a>(&'a self, secret_hash: &'a str) -> StoreFuture<'a, ()>;
    /// Nodes matching `filter`, by id.
    fn list_nodes<'a>(&'a self, filter: &'a NodeFilter) -> StoreFuture<'a, Vec<NodeSummary>>;
    /// One page of the nodes matching `slice`, and how many match in all.
    fn node_page<'a>(&'a self, slice: &'a NodeSlice) -> StoreFuture<'a, NodePage>;
    /// How many nodes there are by status, version and site.
    fn node_counts(&self) -> StoreFuture<'_, NodeCounts>;
    /// One node, its inventory, newest events and actions.
    fn node_detail<'a>(&'a self, id: &'a str) -> StoreFuture<'a, NodeDetail>;
    /// Accepts or rejects a node.
    fn set_node_status<'a>(
        &'a self,
        actor: &'a Actor,
        id: &'a str,
        status: NodeStatus,
        now: i64,
    ) -> StoreFuture<'a, NodeSummary>;
    /// Decommissions a node: its requests are refused from then on and its history is deleted.
    fn decommission<'a>(&'a self, actor: &'a Actor, id: &'a str, now: i64) -> StoreFuture<'a, NodeSummary>;
    /// Sets and removes admin labels.
    fn label_node<'a>(
        &'a self,
        actor: &'a Actor,
        id: &'a str,
        change: &'a LabelChange,
        now: i64,
    ) -> StoreFuture<'a, NodeSummary>;
    /// Puts a node into a group (created when new) or out of its group.
    fn set_node_group<'a>(
        &'a self,
        actor: &'a Actor,
        id: &'a str,
        group: Option<&'a str>,
        now: i64,
    ) -> StoreFuture<'a, NodeSummary>;
    /// Pins a node to a bundle, or unpins it.
    fn pin_node<'a>(
        &'a self,
        actor: &'a Actor,
        id: &'a str,
        bundle: Option<&'a str>,
        now: i64,
    ) -> StoreFuture<'a, NodeSummary>;
    /// Gives `into` the admin labels, group and pin of `from`, and decommissions `from` keeping its history, which
    /// is shown with `into`'s.
    fn merge_nodes<'a>(
        &'a self,
        actor: &'a Actor,
        into: &'a str,
        from: &'a str,
        now: i64,
    ) -> StoreFuture<'a, NodeSummary>;
    /// A node's events (and those of identities merged into it), newest first.
    fn events<'a>(&'a self, node: &'a str, limit: u32, offset: u64) -> StoreFuture<'a, EventPage>;

    /// Makes an enrollment token.
    fn create_enrollment_token<'a>(
        &'a self,
        actor: &'a Actor,
        id: &'a str,
        secret_hash: &'a str,
        req: &'a CreateEnrollmentToken,
        now: i64,
    ) -> StoreFuture<'a, EnrollmentTokenInfo>;
    /// Every enrollment token.
    fn list_enrollment_tokens(&self) -> StoreFuture<'_, Vec<EnrollmentTokenInfo>>;
    /// Revokes an enrollment token.
    fn revoke_enrollment_token<'a>(
        &'a self,
        actor: &'a Actor,
        id: &'a str,
        now: i64,
    ) -> StoreFuture<'a, EnrollmentTokenInfo>;
    /// Makes an admin token.
    fn create_admin_token<'a>(
        &'a self,
        actor: &'a Actor,
        id: &'a str,
        secret_hash: &'a str,
        name: &'a str,
        role: Role,
        now: i64,
    ) -> StoreFuture<'a, AdminTokenInfo>;
    /// Every admin token.
    fn list_admin_tokens(&self) -> StoreFuture<'_, Vec<AdminTokenInfo>>;
    /// Revokes an admin token.
    fn revoke_admin_token<'a>(&'a self, actor: &'a Actor, id: &'a str, now: i64) -> StoreFuture<'a, AdminTokenInfo>;

    /// Every group.
    fn list_groups(&self) -> StoreFuture<'_, Vec<GroupInfo>>;
    /// Sets a group's desired bundle (making the group when new).
    fn set_group_bundle<'a>(
        &'a self,
        actor: &'a Actor,
        name: &'a str,
        bundle: Option<&'a str>,
        now: i64,
    ) -> StoreFuture<'a, GroupInfo>;

    /// Records a verified bundle; a bundle known already gains the new URLs and the stored copy.
    fn add_bundle<'a>(&'a self, actor: &'a Actor, bundle: &'a NewBundle, now: i64) -> StoreFuture<'a, BundleInfo>;
    /// Every bundle, newest first.
    fn list_bundles(&self) -> StoreFuture<'_, Vec<BundleInfo>>;
    /// One bundle.
    fn bundle<'a>(&'a self, manifest_hash: &'a str) -> StoreFuture<'a, Option<BundleInfo>>;

    /// Queues an action for a node.
    fn queue_action<'a>(
        &'a self,
        actor: &'a Actor,
        node: &'a str,
        id: &'a str,
        kind: ActionKind,
        now: i64,
    ) -> StoreFuture<'a, ActionInfo>;
    /// The diagnostics of an action.
    fn diagnostics<'a>(&'a self, action: &'a str) -> StoreFuture<'a, DiagnosticsInfo>;

    /// The audit log, newest first.
    fn audit(&self, limit: u32, offset: u64) -> StoreFuture<'_, AuditPage>;

    /// Deletes replay ids the window has passed and reports older than the retention.
    fn prune(&self, retention: Retention, now: i64) -> StoreFuture<'_, ()>;
    /// Every row of every table as text, one line per row, tables in a fixed order, rows sorted: two dumps are
    /// equal exactly when the databases hold the same data.
    fn dump(&self) -> StoreFuture<'_, String>;
}

/// The tables and their columns, in the order `dump` prints them; a test checks this against each backend's schema.
pub const TABLES: &[(&str, &[&str])] = &[
    ("admin_tokens", &["id", "name", "secret_hash", "role", "created_at", "created_by", "revoked_at"]),
    (
        "enrollment_tokens",
        &[
            "id",
            "name",
            "secret_hash",
            "policy",
            "labels",
            "expires_at",
            "max_uses",
            "uses",
            "created_at",
            "created_by",
            "revoked_at",
        ],
    ),
    (
        "bundles",
        &[
            "manifest_hash",
            "name",
            "version",
            "security_version",
            "compatible",
            "size_bytes",
            "stored",
            "urls",
            "manifest",
            "created_at",
            "created_by",
        ],
    ),
    ("groups", &["name", "bundle", "created_at", "updated_at"]),
    (
        "nodes",
        &[
            "id",
            "public_key",
            "status",
            "hostname",
            "site",
            "node_labels",
            "admin_labels",
            "grp",
            "inventory",
            "booted_slot",
            "booted_version",
            "phase",
            "last_seq",
            "last_report_kind",
            "last_report_at",
            "last_seen",
            "enrolled_at",
            "enrollment_token",
            "merged_into",
            "updated_at",
            "baseline",
        ],
    ),
    ("node_pins", &["node", "bundle", "pinned_at", "pinned_by"]),
    ("reports", &["node", "seq", "time", "received_at", "kind", "body"]),
    ("replays", &["id", "node", "expires_at"]),
    ("actions", &["id", "node", "kind", "state", "created_at", "created_by", "finished_at", "result"]),
    ("diagnostics", &["action", "node", "received_at", "body"]),
    ("audit", &["id", "at", "actor_id", "actor_name", "action", "target", "change"]),
    ("sites", &["name", "time_zone", "windows", "created_at", "updated_at"]),
    (
        "node_telemetry",
        &[
            "node",
            "acked_seq",
            "counters",
            "n_logs",
            "n_metrics",
            "n_lost_at_source",
            "n_metrics_refused",
            "last_metric_ms",
            "log_bytes",
            "updated_at",
        ],
    ),
    ("node_logs", &["node", "seq", "time_ms", "received_at", "source", "level", "text", "lost"]),
    ("metric_queue", &["id", "node", "seq", "time_ms", "labels", "samples", "received_at"]),
    ("node_metric_points", &["node", "name", "time_ms", "value"]),
    ("metric_forwarder", &["id", "holder", "lease_until", "in_flight", "n_forwarded", "n_refused", "updated_at"]),
    (
        "deployments",
        &[
            "id",
            "name",
            "bundle",
            "selector",
            "policy",
            "state",
            "pause_reason",
            "pause_detail",
            "paused_at",
            "wave",
            "n_members",
            "n_begun",
            "n_in_flight",
            "n_committed",
            "n_failed",
            "wave_failed",
            "created_at",
            "created_by",
            "updated_at",
        ],
    ),
    (
        "deployment_nodes",
        &["deployment", "node", "state", "wave", "site", "joined_at", "started_at", "finished_at", "result"],
    ),
    ("deployment_sites", &["deployment", "site", "in_flight"]),
    ("web_sessions", &["secret_hash", "token", "csrf", "created_at", "expires_at"]),
];

/// The SHA-256 of a token's secret, lowercase hex: what the database keeps. Tokens are 32 random bytes, so a fast
/// hash is enough; a password hash's cost defends guessable secrets, which these are not.
pub fn hash_secret(secret: &str) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(secret.as_bytes()))
}

/// A new token: its id (8 random bytes, hex) and its secret, `ID.` and 32 random bytes in hex.
pub fn new_secret() -> (String, String) {
    let mut bytes = [0u8; 40];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    let id = hex(&bytes[..8]);
    let secret = format!("{id}.{}", hex(&bytes[8..]));
    (id, secret)
}

/// A new random id for an action: `a-` and 8 random bytes in hex.
pub fn new_action_id() -> String {
    let mut bytes = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    format!("a-{}", hex(&bytes))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The labels a node shows: its own, with an admin's on top.
pub fn merged_labels(node: &BTreeMap<String, String>, admin: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = node.clone();
    labels.extend(admin.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}
