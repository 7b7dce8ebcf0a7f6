//! The store's SQL, written once and instantiated per backend by `store_impl!` (in `sqlite` and `postgres`) with
//! the backend's connection type, the statement that begins a write transaction, and the row locks it takes.
//!
//! Each trait method is one transaction. Writes lock what they read before deciding (SQLite: the whole database,
//! by `BEGIN IMMEDIATE`; PostgreSQL: the rows, by `FOR UPDATE`), so replicas on one PostgreSQL decide on what is
//! committed, never on what they remember. A refusal returns before the commit, so a refused request changes
//! nothing: the transaction is rolled back when it is dropped.

use std::collections::BTreeMap;

use fleet_wire::admin::{ActionState, Event, NodeSummary, Role, TokenPolicy};
use fleet_wire::node::{ActionKind, NodeId, NodeStatus, Report, ReportKind};

use crate::clock::rfc3339;
use crate::error::{Error, Refusal, Result};

/// The error of a failed statement, naming what it was doing.
/// The rows one transaction of the prune deletes: the longest a poll waits behind the prune is one batch.
pub const PRUNE_BATCH: i64 = 100;

pub(crate) fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| Error::Database { what, source }
}

/// A stored JSON document, read back.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|source| Error::StoredJson { what, source })
}

/// A value as JSON text, for a column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("the store's own types serialize")
}

pub(crate) fn node_status(value: &str) -> Result<NodeStatus> {
    NodeStatus::from_word(value).ok_or_else(|| Error::StoredWord { what: "node status", value: value.to_owned() })
}

pub(crate) fn node_id(value: &str) -> Result<NodeId> {
    value.parse().map_err(|_| Error::StoredWord { what: "node id", value: value.to_owned() })
}

pub(crate) fn role(value: &str) -> Result<Role> {
    Role::from_word(value).ok_or_else(|| Error::StoredWord { what: "role", value: value.to_owned() })
}

pub(crate) fn policy(value: &str) -> Result<TokenPolicy> {
    TokenPolicy::from_word(value).ok_or_else(|| Error::StoredWord { what: "token policy", value: value.to_owned() })
}

pub(crate) fn action_kind(value: &str) -> Result<ActionKind> {
    ActionKind::from_word(value).ok_or_else(|| Error::StoredWord { what: "action kind", value: value.to_owned() })
}

pub(crate) fn action_state(value: &str) -> Result<ActionState> {
    ActionState::from_word(value).ok_or_else(|| Error::StoredWord { what: "action state", value: value.to_owned() })
}

/// Refuses requests of a node that is not pending or accepted.
/// Which table of tokens.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TokenKind {
    /// Enrollment tokens.
    Enrollment,
    /// Admin tokens.
    Admin,
}

/// A poll handed to the store's batcher (SQLite), answered on `reply`.
pub(crate) struct PollJob {
    pub node: String,
    pub replay: crate::store::Replay,
    pub now: i64,
    pub reply: tokio::sync::oneshot::Sender<Result<crate::store::Desired>>,
}

impl std::fmt::Debug for PollJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollJob").field("node", &self.node).field("now", &self.now).finish_non_exhaustive()
    }
}

pub(crate) fn active(id: &str, status: NodeStatus) -> Result<()> {
    match status {
        NodeStatus::Pending | NodeStatus::Accepted => Ok(()),
        NodeStatus::Rejected => Err(Refusal::NodeRejected { id: id.to_owned() }.into()),
        NodeStatus::Decommissioned => Err(Refusal::NodeDecommissioned { id: id.to_owned() }.into()),
    }
}

/// A node's row, as `SELECT n.*, p.bundle AS pin` reads it.
#[derive(Debug, Clone)]
pub(crate) struct NodeRow {
    pub id: String,
    pub public_key: String,
    pub status: NodeStatus,
    pub hostname: String,
    pub site: Option<String>,
    pub node_labels: BTreeMap<String, String>,
    pub admin_labels: BTreeMap<String, String>,
    pub grp: Option<String>,
    pub inventory: String,
    pub state: CurrentState,
    pub last_seq: i64,
    pub last_seen: Option<i64>,
    pub enrolled_at: i64,
    pub enrollment_token: Option<String>,
    pub merged_into: Option<String>,
    pub pin: Option<String>,
}

impl NodeRow {
    pub fn summary(&self) -> Result<NodeSummary> {
        Ok(NodeSummary {
            id: node_id(&self.id)?,
            status: self.status,
            hostname: self.hostname.clone(),
            site: self.site.clone(),
            labels: super::merged_labels(&self.node_labels, &self.admin_labels),
            admin_labels: self.admin_labels.clone(),
            group: self.grp.clone(),
            pinned_bundle: self.pin.clone(),
            booted_slot: self.state.booted_slot.clone(),
            booted_version: self.state.booted_version.clone(),
            phase: self.state.phase.clone(),
            last_report: self.state.last_kind.clone(),
            last_seq: u64::try_from(self.last_seq).unwrap_or(0),
            last_seen: self.last_seen.map(rfc3339),
            enrolled_at: rfc3339(self.enrolled_at),
            enrollment_token: self.enrollment_token.clone(),
            merged_into: self.merged_into.as_deref().map(node_id).transpose()?,
        })
    }
}

/// What the endpoint shows as a node's current state, folded from its reports in `seq` order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CurrentState {
    pub booted_slot: Option<String>,
    pub booted_version: Option<String>,
    pub phase: Option<String>,
    pub last_kind: Option<String>,
}

impl CurrentState {
    /// The state after `report`, which is newer than every report folded so far: its phase when it has one, and
    /// for a commit (or a slot marked good by hand) its version and slot as the running ones.
    pub fn fold(&self, report: &Report) -> CurrentState {
        let mut next = self.clone();
        next.last_kind = Some(report.kind.word().to_owned());
        if let Some(phase) = &report.phase {
            next.phase = Some(phase.clone());
        }
        if matches!(report.kind, ReportKind::Committed | ReportKind::MarkedGood) {
            if let Some(v) = &report.version {
                next.booted_version = Some(v.clone());
            }
            if let Some(s) = &report.slot {
                next.booted_slot = Some(s.clone());
            }
        }
        next
    }

    /// The state an inventory says: the booted slot and its bundle's version, and the updater's phase.
    pub fn with_inventory(&self, inventory: &fleet_wire::node::Inventory) -> CurrentState {
        let mut next = self.clone();
        if let Some(booted) = inventory.slots.iter().find(|s| s.booted) {
            next.booted_slot = Some(booted.slot.clone());
            if let Some(b) = &booted.bundle {
                next.booted_version = Some(b.version.clone());
            }
        }
        if let Some(p) = &inventory.update_phase {
            next.phase = Some(p.clone());
        }
        next
    }
}

/// A stored report as an event.
pub(crate) fn event(node: &str, received_at: i64, body: &str) -> Result<Event> {
    Ok(Event { node: node_id(node)?, received: rfc3339(received_at), report: from_json("report", body)? })
}

/// Implements `Store` for a backend: `$store` over a `sqlx::Pool<$db>`, connections `$conn`, write transactions
/// begun with `$begin`, rows locked by `$lock` (a plain table) and `$lock_n` (the nodes table as `n` beside an
/// outer join), and `$poll_durability` run first in a poll's transaction (empty when the poll pool itself is
/// configured not to sync).
macro_rules! store_impl {
    ($store:ident, $db:ty, $conn:ty, $begin:literal, $lock:literal, $lock_n:literal, $poll_durability:literal) => {
        use fleet_wire::admin::{
            ActionInfo, ActionState, AdminTokenInfo, AuditEntry, AuditPage, BundleInfo, CreateEnrollmentToken,
            DiagnosticsInfo, EnrollmentTokenInfo, EventPage, GroupInfo, LabelChange, NodeDetail, NodeSummary, Role,
            TokenPolicy,
        };
        use fleet_wire::node::{
            Action, ActionKind, Diagnostics, Inventory, NodeStatus, ReportAck, ReportBatch, ReportKind,
        };
        use sqlx::Row as _;

        use $crate::clock::rfc3339;
        use $crate::error::{Error, Refusal, Result};
        use $crate::store::sql::{
            active, db, event, from_json, node_status, policy, role, to_json,
            CurrentState, NodeRow, TokenKind,
        };
        use $crate::store::{
            Actor, Desired, Enrolled, Enrollment, NewBundle, NodeCounts, NodeFilter, NodeKey, NodePage, NodeSlice,
            Replay, Retention, Store, StoreFuture, TABLES,
        };

        type Row = <$db as sqlx::Database>::Row;

        const NODE_SELECT: &str = "SELECT n.*, p.bundle AS pin FROM nodes n LEFT JOIN node_pins p ON p.node = n.id";

        fn node_row(row: &Row) -> Result<NodeRow> {
            let get_s = |c: &str| row.try_get::<String, _>(c).map_err(db("read a node"));
            let get_o = |c: &str| row.try_get::<Option<String>, _>(c).map_err(db("read a node"));
            let get_i = |c: &str| row.try_get::<Option<i64>, _>(c).map_err(db("read a node"));
            Ok(NodeRow {
                id: get_s("id")?,
                public_key: get_s("public_key")?,
                status: node_status(&get_s("status")?)?,
                hostname: get_s("hostname")?,
                site: get_o("site")?,
                node_labels: from_json("node labels", &get_s("node_labels")?)?,
                admin_labels: from_json("admin labels", &get_s("admin_labels")?)?,
                grp: get_o("grp")?,
                inventory: get_s("inventory")?,
                state: CurrentState {
                    booted_slot: get_o("booted_slot")?,
                    booted_version: get_o("booted_version")?,
                    phase: get_o("phase")?,
                    last_kind: get_o("last_report_kind")?,
                },
                last_seq: get_i("last_seq")?.unwrap_or(0),
                last_seen: get_i("last_seen")?,
                enrolled_at: get_i("enrolled_at")?.unwrap_or(0),
                enrollment_token: get_o("enrollment_token")?,
                merged_into: get_o("merged_into")?,
                pin: get_o("pin")?,
            })
        }

        /// The node, locked for the rest of the transaction.
        async fn lock_node(conn: &mut $conn, id: &str) -> Result<Option<NodeRow>> {
            let row = sqlx::query(concat!(
                "SELECT n.*, p.bundle AS pin FROM nodes n LEFT JOIN node_pins p ON p.node = n.id WHERE n.id = $1",
                $lock_n
            ))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("read a node"))?;
            row.as_ref().map(node_row).transpose()
        }

        /// Refuses (404) a node id the store does not know, whatever its status.
        async fn require_node(conn: &mut $conn, id: &str) -> Result<()> {
            let exists = sqlx::query("SELECT id FROM nodes WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("read a node"))?;
            match exists {
                Some(_) => Ok(()),
                None => Err(Refusal::NotFound { what: "node", id: id.to_owned() }.into()),
            }
        }

        async fn lock_node_found(conn: &mut $conn, id: &str) -> Result<NodeRow> {
            lock_node(conn, id).await?.ok_or_else(|| Refusal::NotFound { what: "node", id: id.to_owned() }.into())
        }

        /// The node, locked, when it may still make requests.
        async fn lock_active_node(conn: &mut $conn, id: &str) -> Result<NodeRow> {
            let node =
                lock_node(conn, id).await?.ok_or_else(|| Error::from(Refusal::NodeUnknown { id: id.to_owned() }))?;
            active(id, node.status)?;
            Ok(node)
        }

        /// Records a replay id in the transaction of the request's effect, refusing one already held. Expired ids
        /// are deleted by `prune`, every minute, not here: a statement less in every request.
        async fn insert_replay(conn: &mut $conn, node: &str, replay: &Replay, _now: i64) -> Result<()> {
            let done = sqlx::query("INSERT INTO replays (id, node, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(&replay.id)
                .bind(node)
                .bind(replay.expires_at)
                .execute(&mut *conn)
                .await
                .map_err(db("record a replay id"))?;
            if done.rows_affected() == 0 {
                return Err(Refusal::Replayed.into());
            }
            Ok(())
        }

        /// A node's queued actions, oldest first.
        async fn queued_actions(conn: &mut $conn, node: &str) -> Result<Vec<Action>> {
            let rows =
                sqlx::query("SELECT id, kind FROM actions WHERE node = $1 AND state = 'queued' ORDER BY created_at, id")
                    .bind(node)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db("read a node's actions"))?;
            rows.iter()
                .map(|row| {
                    Ok(Action {
                        id: row.try_get("id").map_err(db("read an action"))?,
                        kind: $crate::store::sql::action_kind(
                            &row.try_get::<String, _>("kind").map_err(db("read an action"))?,
                        )?,
                    })
                })
                .collect()
        }

        async fn audit(
            conn: &mut $conn,
            actor: &Actor,
            action: &str,
            target: &str,
            change: serde_json::Value,
            now: i64,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO audit (at, actor_id, actor_name, action, target, change) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(now)
            .bind(&actor.id)
            .bind(&actor.name)
            .bind(action)
            .bind(target)
            .bind(to_json(&change))
            .execute(&mut *conn)
            .await
            .map_err(db("write the audit log"))?;
            Ok(())
        }

        /// Revokes the token `id` of the table `kind` names, with its audit row, in the caller's transaction; a
        /// token revoked already is returned as it is and writes nothing.
        async fn revoke_token<T: serde::Serialize>(
            conn: &mut $conn,
            actor: &Actor,
            kind: TokenKind,
            id: &str,
            now: i64,
            read: fn(&Row) -> Result<T>,
            is_revoked: fn(&T) -> bool,
        ) -> Result<T> {
            let (select, update, what, action) = match kind {
                TokenKind::Enrollment => (
                    concat!("SELECT * FROM enrollment_tokens WHERE id = $1", $lock),
                    "UPDATE enrollment_tokens SET revoked_at = $2 WHERE id = $1 RETURNING *",
                    "enrollment token",
                    "token-revoke",
                ),
                TokenKind::Admin => (
                    concat!("SELECT * FROM admin_tokens WHERE id = $1", $lock),
                    "UPDATE admin_tokens SET revoked_at = $2 WHERE id = $1 RETURNING *",
                    "admin token",
                    "admin-token-revoke",
                ),
            };
            let row = sqlx::query(select)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("read a token"))?
                .ok_or_else(|| Error::from(Refusal::NotFound { what, id: id.into() }))?;
            let before = read(&row)?;
            if is_revoked(&before) {
                return Ok(before);
            }
            let row = sqlx::query(update)
                .bind(id)
                .bind(now)
                .fetch_one(&mut *conn)
                .await
                .map_err(db("revoke a token"))?;
            let after = read(&row)?;
            let change = serde_json::json!({ "before": before, "after": after });
            audit(conn, actor, action, id, change, now).await?;
            Ok(after)
        }

        async fn bundle_by_hash(conn: &mut $conn, hash: &str) -> Result<Option<BundleInfo>> {
            let row = sqlx::query("SELECT * FROM bundles WHERE manifest_hash = $1")
                .bind(hash)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("read a bundle"))?;
            row.as_ref().map(read_bundle).transpose()
        }

        fn read_bundle(row: &Row) -> Result<BundleInfo> {
            let r = || db("read a bundle");
            Ok(BundleInfo {
                manifest_hash: row.try_get("manifest_hash").map_err(r())?,
                name: row.try_get("name").map_err(r())?,
                version: row.try_get("version").map_err(r())?,
                security_version: u64::try_from(row.try_get::<i64, _>("security_version").map_err(r())?)
                    .unwrap_or(0),
                compatible: row.try_get("compatible").map_err(r())?,
                size_bytes: u64::try_from(row.try_get::<i64, _>("size_bytes").map_err(r())?).unwrap_or(0),
                stored: row.try_get::<i64, _>("stored").map_err(r())? != 0,
                urls: from_json("bundle urls", &row.try_get::<String, _>("urls").map_err(r())?)?,
                created_at: rfc3339(row.try_get("created_at").map_err(r())?),
            })
        }

        async fn events_page(conn: &mut $conn, node: &str, limit: u32, offset: u64) -> Result<EventPage> {
            let rows = sqlx::query(
                "SELECT node, seq, received_at, body FROM reports \
                 WHERE node = $1 OR node IN (SELECT id FROM nodes WHERE merged_into = $1) \
                 ORDER BY received_at DESC, seq DESC, node LIMIT $2 OFFSET $3",
            )
            .bind(node)
            .bind(i64::from(limit) + 1)
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await
            .map_err(db("read events"))?;
            let mut events = Vec::with_capacity(rows.len());
            for row in rows.iter().take(limit as usize) {
                let r = || db("read an event");
                events.push(event(
                    &row.try_get::<String, _>("node").map_err(r())?,
                    row.try_get("received_at").map_err(r())?,
                    &row.try_get::<String, _>("body").map_err(r())?,
                )?);
            }
            let next_offset = (rows.len() > limit as usize).then(|| offset + u64::from(limit));
            Ok(EventPage { events, next_offset })
        }

        async fn actions_of(conn: &mut $conn, node: &str) -> Result<Vec<ActionInfo>> {
            let rows = sqlx::query(
                "SELECT a.*, (SELECT COUNT(*) FROM diagnostics d WHERE d.action = a.id) AS n_diagnostics \
                 FROM actions a WHERE a.node = $1 ORDER BY a.created_at DESC, a.id DESC",
            )
            .bind(node)
            .fetch_all(&mut *conn)
            .await
            .map_err(db("read actions"))?;
            rows.iter().map(read_action).collect()
        }

        fn read_action(row: &Row) -> Result<ActionInfo> {
            let r = || db("read an action");
            Ok(ActionInfo {
                id: row.try_get("id").map_err(r())?,
                node: $crate::store::sql::node_id(&row.try_get::<String, _>("node").map_err(r())?)?,
                kind: $crate::store::sql::action_kind(&row.try_get::<String, _>("kind").map_err(r())?)?,
                state: $crate::store::sql::action_state(&row.try_get::<String, _>("state").map_err(r())?)?,
                created_at: rfc3339(row.try_get("created_at").map_err(r())?),
                created_by: row.try_get("created_by").map_err(r())?,
                finished_at: row.try_get::<Option<i64>, _>("finished_at").map_err(r())?.map(rfc3339),
                result: row.try_get("result").map_err(r())?,
                has_diagnostics: row.try_get::<i64, _>("n_diagnostics").map_err(r())? > 0,
            })
        }

        fn read_enrollment_token(row: &Row) -> Result<EnrollmentTokenInfo> {
            let r = || db("read an enrollment token");
            Ok(EnrollmentTokenInfo {
                id: row.try_get("id").map_err(r())?,
                name: row.try_get("name").map_err(r())?,
                policy: policy(&row.try_get::<String, _>("policy").map_err(r())?)?,
                labels: from_json("token labels", &row.try_get::<String, _>("labels").map_err(r())?)?,
                expires_at: row.try_get::<Option<i64>, _>("expires_at").map_err(r())?.map(rfc3339),
                max_uses: row
                    .try_get::<Option<i64>, _>("max_uses")
                    .map_err(r())?
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                uses: u32::try_from(row.try_get::<i64, _>("uses").map_err(r())?).unwrap_or(u32::MAX),
                revoked_at: row.try_get::<Option<i64>, _>("revoked_at").map_err(r())?.map(rfc3339),
                created_at: rfc3339(row.try_get("created_at").map_err(r())?),
                created_by: row.try_get("created_by").map_err(r())?,
            })
        }

        fn read_admin_token(row: &Row) -> Result<AdminTokenInfo> {
            let r = || db("read an admin token");
            Ok(AdminTokenInfo {
                id: row.try_get("id").map_err(r())?,
                name: row.try_get("name").map_err(r())?,
                role: role(&row.try_get::<String, _>("role").map_err(r())?)?,
                created_at: rfc3339(row.try_get("created_at").map_err(r())?),
                created_by: row.try_get("created_by").map_err(r())?,
                revoked_at: row.try_get::<Option<i64>, _>("revoked_at").map_err(r())?.map(rfc3339),
            })
        }

        async fn group_info(conn: &mut $conn, name: &str) -> Result<Option<GroupInfo>> {
            let row = sqlx::query(
                "SELECT g.name, g.bundle, (SELECT COUNT(*) FROM nodes n WHERE n.grp = g.name) AS n_nodes \
                 FROM groups g WHERE g.name = $1",
            )
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("read a group"))?;
            row.as_ref().map(read_group).transpose()
        }

        fn read_group(row: &Row) -> Result<GroupInfo> {
            let r = || db("read a group");
            Ok(GroupInfo {
                name: row.try_get("name").map_err(r())?,
                bundle: row.try_get("bundle").map_err(r())?,
                n_nodes: u64::try_from(row.try_get::<i64, _>("n_nodes").map_err(r())?).unwrap_or(0),
            })
        }

        async fn ensure_bundle(conn: &mut $conn, hash: Option<&str>) -> Result<()> {
            if let Some(hash) = hash {
                if bundle_by_hash(conn, hash).await?.is_none() {
                    return Err(Refusal::NotFound { what: "bundle", id: hash.to_owned() }.into());
                }
            }
            Ok(())
        }

        /// Updates a node's admin-settable columns and audits the change.
        async fn save_node_admin(
            conn: &mut $conn,
            actor: &Actor,
            action: &str,
            before: &NodeRow,
            after: &NodeRow,
            now: i64,
        ) -> Result<NodeSummary> {
            sqlx::query(
                "UPDATE nodes SET status = $2, admin_labels = $3, grp = $4, merged_into = $5, updated_at = $6 \
                 WHERE id = $1",
            )
            .bind(&after.id)
            .bind(after.status.word())
            .bind(to_json(&after.admin_labels))
            .bind(&after.grp)
            .bind(&after.merged_into)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(db("update a node"))?;
            let (b, a) = (before.summary()?, after.summary()?);
            audit(conn, actor, action, &after.id, serde_json::json!({ "before": b, "after": a }), now).await?;
            // Its status, labels, group or pin may put it into a deployment or take it out.
            place(conn, &after.id, now).await?;
            Ok(a)
        }

        /// The store over its pools.
        #[derive(Debug, Clone)]
        pub struct $store {
            /// Every transaction but a poll's: each commit is on disk before it returns.
            pool: sqlx::Pool<$db>,
            /// A poll's transactions: committed without waiting for the disk (`$poll_durability`).
            poll_pool: sqlx::Pool<$db>,
            /// Where the database has one writer at a time (SQLite), the turn to write, taken in the order asked
            /// (FIFO) before a transaction begins and held until it ends: writers queue here instead of in
            /// SQLite's busy handler, which sleeps and retries (1, 2, 5 ... 100 ms) and serves no order.
            writer: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
            /// Where polls are answered in batches (SQLite), the queue to the task that runs them.
            polls: Option<tokio::sync::mpsc::Sender<$crate::store::sql::PollJob>>,
            /// Where polled nodes are started in batches (PostgreSQL), the queue to the task that decides them.
            starts: Option<tokio::sync::mpsc::Sender<$crate::store::rollout_sql::StartJob>>,
        }

        /// A write transaction, holding the writer's turn (when the store has one) until it is committed or
        /// dropped (rolled back).
        struct WriteTx {
            tx: sqlx::Transaction<'static, $db>,
            _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
        }

        impl std::ops::Deref for WriteTx {
            type Target = $conn;
            fn deref(&self) -> &$conn {
                &self.tx
            }
        }

        impl std::ops::DerefMut for WriteTx {
            fn deref_mut(&mut self) -> &mut $conn {
                &mut self.tx
            }
        }

        impl WriteTx {
            async fn commit(self) -> std::result::Result<(), sqlx::Error> {
                self.tx.commit().await
            }
        }

        impl $store {
            /// The pool.
            pub fn pool(&self) -> &sqlx::Pool<$db> {
                &self.pool
            }

            async fn turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
                match &self.writer {
                    Some(m) => Some(m.clone().lock_owned().await),
                    None => None,
                }
            }

            async fn write(&self) -> Result<WriteTx> {
                let turn = self.turn().await;
                let tx = self.pool.begin_with($begin).await.map_err(db("begin a write transaction"))?;
                Ok(WriteTx { tx, _turn: turn })
            }

            /// A poll's write transaction: the same lock as [`Self::write`]'s, committed without a sync. A later
            /// synced commit (any other write) makes it durable too, since both go to the same log in order.
            async fn poll_write(&self) -> Result<WriteTx> {
                let turn = self.turn().await;
                let mut tx = self.poll_pool.begin_with($begin).await.map_err(db("begin a poll's transaction"))?;
                if !$poll_durability.is_empty() {
                    sqlx::query($poll_durability).execute(&mut *tx).await.map_err(db("relax a poll's commit"))?;
                }
                Ok(WriteTx { tx, _turn: turn })
            }

            async fn read(&self) -> Result<sqlx::pool::PoolConnection<$db>> {
                self.pool.acquire().await.map_err(db("take a connection"))
            }

            /// One poll in a transaction of its own: records it (`last_seen`, the replay id) and reads what the node
            /// should run.
            async fn desired_one(&self, node: &str, replay: &Replay, now: i64) -> Result<Desired> {
                let mut tx = self.poll_write().await?;
                let row = sqlx::query(
                    "UPDATE nodes SET last_seen = $2 WHERE id = $1 RETURNING status, grp",
                )
                .bind(node)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("record a poll"))?
                .ok_or_else(|| Error::from(Refusal::NodeUnknown { id: node.to_owned() }))?;
                let status = node_status(&row.try_get::<String, _>("status").map_err(db("read a node"))?)?;
                active(node, status)?;
                insert_replay(&mut tx, node, replay, now).await?;
                let mut desired = Desired { status, bundle: None, flip: None, actions: Vec::new() };
                let mut candidate = None;
                if status == NodeStatus::Accepted {
                    // One statement for the bundle (pin, deployment, baseline, group), the deployment's flip rule
                    // and whether actions wait: a poll is the endpoint's most frequent request, and each statement
                    // is a round trip.
                    let sql = format!(
                        "SELECT b.*, {DESIRED_COLUMNS}, CAST(CASE WHEN EXISTS (SELECT 1 FROM actions a \
                         WHERE a.node = n.id AND a.state = 'queued') THEN 1 ELSE 0 END AS BIGINT) AS has_actions \
                         FROM nodes n {DESIRED_JOINS} WHERE n.id = $1"
                    );
                    let row = sqlx::query(&sql)
                        .bind(node)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db("read a node's bundle"))?;
                    let hash: Option<String> = row.try_get("manifest_hash").map_err(db("read a node's bundle"))?;
                    if hash.is_some() {
                        desired.bundle = Some(read_bundle(&row)?);
                    }
                    let (flip, start) = rollout_of_row(&row, now)?;
                    desired.flip = flip;
                    candidate = start;
                    let has_actions: i64 = row.try_get("has_actions").map_err(db("read a node's bundle"))?;
                    if has_actions != 0 {
                        desired.actions = queued_actions(&mut tx, node).await?;
                    }
                }
                tx.commit().await.map_err(db("commit a poll"))?;
                let mut answers = [Ok(desired)];
                if let Some(deployment) = candidate {
                    self.start_polled(&mut answers, vec![(0, node.to_owned(), deployment)], now).await?;
                }
                let [answer] = answers;
                answer
            }
        }

        impl Store for $store {
            fn node_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<NodeKey>> {
                Box::pin(async move {
                    let row = sqlx::query("SELECT public_key, status FROM nodes WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db("read a node's key"))?;
                    let Some(row) = row else { return Ok(None) };
                    Ok(Some(NodeKey {
                        public_key: row.try_get("public_key").map_err(db("read a node's key"))?,
                        status: node_status(&row.try_get::<String, _>("status").map_err(db("read a node's key"))?)?,
                    }))
                })
            }

            fn enroll<'a>(&'a self, e: &'a Enrollment, replay: &'a Replay, now: i64) -> StoreFuture<'a, Enrolled> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let token = sqlx::query(concat!(
                        "SELECT id, policy, labels, expires_at, max_uses, uses, revoked_at FROM enrollment_tokens \
                         WHERE secret_hash = $1",
                        $lock
                    ))
                    .bind(&e.token_hash)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("read an enrollment token"))?
                    .ok_or(Refusal::TokenUnknown)?;
                    let r = || db("read an enrollment token");
                    let token_id: String = token.try_get("id").map_err(r())?;
                    if token.try_get::<Option<i64>, _>("revoked_at").map_err(r())?.is_some() {
                        return Err(Refusal::TokenRevoked.into());
                    }
                    if token.try_get::<Option<i64>, _>("expires_at").map_err(r())?.is_some_and(|t| t <= now) {
                        return Err(Refusal::TokenExpired.into());
                    }
                    let inventory = to_json(&e.inventory);
                    let node_labels = to_json(&e.inventory.labels);
                    if let Some(node) = lock_node(&mut tx, &e.node_id).await? {
                        active(&node.id, node.status)?;
                        if node.public_key != e.public_key {
                            return Err(Refusal::Conflict { reason: "node id taken by another key".into() }.into());
                        }
                        insert_replay(&mut tx, &e.node_id, replay, now).await?;
                        let state = node.state.with_inventory(&e.inventory);
                        sqlx::query(
                            "UPDATE nodes SET hostname = $2, site = $3, node_labels = $4, inventory = $5, \
                             booted_slot = $6, booted_version = $7, phase = $8, last_seen = $9, updated_at = $9 \
                             WHERE id = $1",
                        )
                        .bind(&e.node_id)
                        .bind(&e.inventory.hostname)
                        .bind(&e.inventory.site)
                        .bind(&node_labels)
                        .bind(&inventory)
                        .bind(&state.booted_slot)
                        .bind(&state.booted_version)
                        .bind(&state.phase)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("update a node"))?;
                        place(&mut tx, &e.node_id, now).await?;
                        tx.commit().await.map_err(db("commit an enrollment"))?;
                        return Ok(Enrolled { status: node.status, created: false });
                    }
                    let max_uses: Option<i64> = token.try_get("max_uses").map_err(r())?;
                    let uses: i64 = token.try_get("uses").map_err(r())?;
                    if max_uses.is_some_and(|m| uses >= m) {
                        return Err(Refusal::TokenExhausted.into());
                    }
                    insert_replay(&mut tx, &e.node_id, replay, now).await?;
                    sqlx::query("UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1")
                        .bind(&token_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("count a token's use"))?;
                    let status = match policy(&token.try_get::<String, _>("policy").map_err(r())?)? {
                        TokenPolicy::Pending => NodeStatus::Pending,
                        TokenPolicy::Accept => NodeStatus::Accepted,
                    };
                    let admin_labels: String = token.try_get("labels").map_err(r())?;
                    let state = CurrentState::default().with_inventory(&e.inventory);
                    sqlx::query(
                        "INSERT INTO nodes (id, public_key, status, hostname, site, node_labels, admin_labels, \
                         inventory, booted_slot, booted_version, phase, last_seq, last_seen, enrolled_at, \
                         enrollment_token, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $12, $13, $12)",
                    )
                    .bind(&e.node_id)
                    .bind(&e.public_key)
                    .bind(status.word())
                    .bind(&e.inventory.hostname)
                    .bind(&e.inventory.site)
                    .bind(&node_labels)
                    .bind(&admin_labels)
                    .bind(&inventory)
                    .bind(&state.booted_slot)
                    .bind(&state.booted_version)
                    .bind(&state.phase)
                    .bind(now)
                    .bind(&token_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("insert a node"))?;
                    place(&mut tx, &e.node_id, now).await?;
                    tx.commit().await.map_err(db("commit an enrollment"))?;
                    Ok(Enrolled { status, created: true })
                })
            }

            fn desired<'a>(&'a self, node: &'a str, replay: &'a Replay, now: i64) -> StoreFuture<'a, Desired> {
                Box::pin(async move {
                    if let Some(polls) = &self.polls {
                        let (reply, answer) = tokio::sync::oneshot::channel();
                        let job = $crate::store::sql::PollJob {
                            node: node.to_owned(),
                            replay: replay.clone(),
                            now,
                            reply,
                        };
                        if polls.send(job).await.is_ok() {
                            if let Ok(answer) = answer.await {
                                return answer;
                            }
                        }
                        // The batcher is gone (the store is closing): answered alone.
                    }
                    self.desired_one(node, replay, now).await
                })
            }

            fn put_inventory<'a>(
                &'a self,
                node: &'a str,
                replay: &'a Replay,
                inventory: &'a Inventory,
                now: i64,
            ) -> StoreFuture<'a, ()> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let row = lock_active_node(&mut tx, node).await?;
                    insert_replay(&mut tx, node, replay, now).await?;
                    let state = row.state.with_inventory(inventory);
                    sqlx::query(
                        "UPDATE nodes SET hostname = $2, site = $3, node_labels = $4, inventory = $5, \
                         booted_slot = $6, booted_version = $7, phase = $8, last_seen = $9, updated_at = $9 \
                         WHERE id = $1",
                    )
                    .bind(node)
                    .bind(&inventory.hostname)
                    .bind(&inventory.site)
                    .bind(to_json(&inventory.labels))
                    .bind(to_json(inventory))
                    .bind(&state.booted_slot)
                    .bind(&state.booted_version)
                    .bind(&state.phase)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("update an inventory"))?;
                    place(&mut tx, node, now).await?;
                    tx.commit().await.map_err(db("commit an inventory"))?;
                    Ok(())
                })
            }

            fn record_reports<'a>(
                &'a self,
                node: &'a str,
                replay: &'a Replay,
                batch: &'a ReportBatch,
                retention: Retention,
                now: i64,
            ) -> StoreFuture<'a, ReportAck> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let row = lock_active_node(&mut tx, node).await?;
                    insert_replay(&mut tx, node, replay, now).await?;
                    let mut stored = 0u32;
                    let mut fresh: Vec<&fleet_wire::node::Report> = Vec::new();
                    let mut state = row.state.clone();
                    let mut last_seq = row.last_seq;
                    for report in &batch.reports {
                        let seq = i64::try_from(report.seq).unwrap_or(i64::MAX);
                        let done = sqlx::query(
                            "INSERT INTO reports (node, seq, time, received_at, kind, body) \
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                        )
                        .bind(node)
                        .bind(seq)
                        .bind(&report.time)
                        .bind(now)
                        .bind(report.kind.word())
                        .bind(to_json(report))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("store a report"))?;
                        if done.rows_affected() == 0 {
                            continue;
                        }
                        stored += 1;
                        // Reports arrive in order from one node, but a late resend of an old batch must not move
                        // the current state back.
                        if seq > last_seq {
                            state = state.fold(report);
                            last_seq = seq;
                        }
                        fresh.push(report);
                        let settled = match report.kind {
                            ReportKind::ActionDone => Some(ActionState::Done),
                            ReportKind::ActionRefused => Some(ActionState::Refused),
                            _ => None,
                        };
                        if let (Some(settled), Some(action)) = (settled, &report.action) {
                            let result = report.reason.clone().unwrap_or_else(|| report.message.clone());
                            sqlx::query(
                                "UPDATE actions SET state = $3, finished_at = $4, result = $5 \
                                 WHERE id = $1 AND node = $2 AND state = 'queued'",
                            )
                            .bind(action)
                            .bind(node)
                            .bind(settled.word())
                            .bind(now)
                            .bind(result)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("settle an action"))?;
                        }
                    }
                    if !fresh.is_empty() {
                        rollout_progress(&mut tx, node, &fresh, now).await?;
                    }
                    if stored > 0 {
                        sqlx::query(
                            "UPDATE nodes SET last_seq = $2, booted_slot = $3, booted_version = $4, phase = $5, \
                             last_report_kind = $6, last_report_at = $7, last_seen = $7, updated_at = $7 \
                             WHERE id = $1",
                        )
                        .bind(node)
                        .bind(last_seq)
                        .bind(&state.booted_slot)
                        .bind(&state.booted_version)
                        .bind(&state.phase)
                        .bind(&state.last_kind)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("update a node's state"))?;
                        sqlx::query(
                            "DELETE FROM reports WHERE node = $1 AND seq <= \
                             (SELECT seq FROM reports WHERE node = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)",
                        )
                        .bind(node)
                        .bind(i64::from(retention.max_reports))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("prune a node's reports"))?;
                    } else {
                        sqlx::query("UPDATE nodes SET last_seen = $2 WHERE id = $1")
                            .bind(node)
                            .bind(now)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("record a node's request"))?;
                    }
                    tx.commit().await.map_err(db("commit reports"))?;
                    let n = u32::try_from(batch.reports.len()).unwrap_or(u32::MAX);
                    Ok(ReportAck {
                        stored,
                        duplicates: n - stored,
                        acked_seq: u64::try_from(last_seq).unwrap_or(0),
                    })
                })
            }

            fn put_diagnostics<'a>(
                &'a self,
                node: &'a str,
                replay: &'a Replay,
                action: &'a str,
                diagnostics: &'a Diagnostics,
                now: i64,
            ) -> StoreFuture<'a, ()> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    lock_active_node(&mut tx, node).await?;
                    let kind: Option<String> = sqlx::query("SELECT kind FROM actions WHERE id = $1 AND node = $2")
                        .bind(action)
                        .bind(node)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db("read an action"))?
                        .map(|r| r.try_get("kind"))
                        .transpose()
                        .map_err(db("read an action"))?;
                    match kind.as_deref() {
                        None => return Err(Refusal::NotFound { what: "action", id: action.to_owned() }.into()),
                        Some(k) if k != ActionKind::Diagnostics.word() => {
                            return Err(Refusal::Conflict { reason: format!("action {action} is a {k}") }.into())
                        }
                        Some(_) => {}
                    }
                    insert_replay(&mut tx, node, replay, now).await?;
                    sqlx::query(
                        "INSERT INTO diagnostics (action, node, received_at, body) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (action) DO UPDATE SET received_at = excluded.received_at, body = excluded.body",
                    )
                    .bind(action)
                    .bind(node)
                    .bind(now)
                    .bind(to_json(diagnostics))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("store diagnostics"))?;
                    tx.commit().await.map_err(db("commit diagnostics"))?;
                    Ok(())
                })
            }

            fn admin_actor<'a>(&'a self, secret_hash: &'a str) -> StoreFuture<'a, Option<Actor>> {
                Box::pin(async move {
                    let row = sqlx::query(
                        "SELECT id, name, role FROM admin_tokens WHERE secret_hash = $1 AND revoked_at IS NULL",
                    )
                    .bind(secret_hash)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("read an admin token"))?;
                    let Some(row) = row else { return Ok(None) };
                    let r = || db("read an admin token");
                    Ok(Some(Actor {
                        id: row.try_get("id").map_err(r())?,
                        name: row.try_get("name").map_err(r())?,
                        role: role(&row.try_get::<String, _>("role").map_err(r())?)?,
                    }))
                })
            }

            fn create_session<'a>(
                &'a self,
                actor: &'a Actor,
                secret_hash: &'a str,
                csrf: &'a str,
                now: i64,
                expires: i64,
            ) -> StoreFuture<'a, ()> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("prune web sessions"))?;
                    sqlx::query(
                        "INSERT INTO web_sessions (secret_hash, token, csrf, created_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(secret_hash)
                    .bind(&actor.id)
                    .bind(csrf)
                    .bind(now)
                    .bind(expires)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("open a web session"))?;
                    let change = serde_json::json!({"role": actor.role.word(), "expires_at": rfc3339(expires)});
                    audit(&mut tx, actor, "web-login", &actor.id, change, now).await?;
                    tx.commit().await.map_err(db("commit a web session"))
                })
            }

            fn session<'a>(&'a self, secret_hash: &'a str, now: i64) -> StoreFuture<'a, Option<(Actor, String)>> {
                Box::pin(async move {
                    let row = sqlx::query(
                        "SELECT t.id, t.name, t.role, s.csrf FROM web_sessions s JOIN admin_tokens t ON t.id = s.token \
                         WHERE s.secret_hash = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL",
                    )
                    .bind(secret_hash)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("read a web session"))?;
                    let Some(row) = row else { return Ok(None) };
                    let r = || db("read a web session");
                    let actor = Actor {
                        id: row.try_get("id").map_err(r())?,
                        name: row.try_get("name").map_err(r())?,
                        role: role(&row.try_get::<String, _>("role").map_err(r())?)?,
                    };
                    Ok(Some((actor, row.try_get("csrf").map_err(r())?)))
                })
            }

            fn end_session<'a>(&'a self, secret_hash: &'a str) -> StoreFuture<'a, ()> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    sqlx::query("DELETE FROM web_sessions WHERE secret_hash = $1")
                        .bind(secret_hash)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("end a web session"))?;
                    tx.commit().await.map_err(db("commit a logout"))
                })
            }

            fn list_nodes<'a>(&'a self, filter: &'a NodeFilter) -> StoreFuture<'a, Vec<NodeSummary>> {
                Box::pin(async move {
                    let sql = format!(
                        "{NODE_SELECT} WHERE ($1 IS NULL OR n.status = $1) AND ($2 IS NULL OR n.grp = $2) ORDER BY n.id"
                    );
                    let rows = sqlx::query(&sql)
                        .bind(filter.status.map(|s| s.word()))
                        .bind(&filter.group)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db("list nodes"))?;
                    let mut nodes = Vec::new();
                    for row in &rows {
                        let summary = node_row(row)?.summary()?;
                        let keep = match &filter.label {
                            None => true,
                            Some((k, None)) => summary.labels.contains_key(k),
                            Some((k, Some(v))) => summary.labels.get(k) == Some(v),
                        };
                        if keep {
                            nodes.push(summary);
                        }
                    }
                    Ok(nodes)
                })
            }

            fn node_page<'a>(&'a self, slice: &'a NodeSlice) -> StoreFuture<'a, NodePage> {
                Box::pin(async move {
                    // A field's filter as (how, value): 0 any, 1 none set, 2 this value.
                    let how = |f: &Option<Option<String>>| match f {
                        None => (0i64, None),
                        Some(None) => (1, None),
                        Some(Some(v)) => (2, Some(v.clone())),
                    };
                    let (site_how, site) = how(&slice.site);
                    let (version_how, version) = how(&slice.version);
                    const WHERE: &str = "($1 IS NULL OR n.status = $1) \
                        AND ($2 = 0 OR ($2 = 1 AND n.site IS NULL) OR ($2 = 2 AND n.site = $3)) \
                        AND ($4 = 0 OR ($4 = 1 AND n.booted_version IS NULL) OR ($4 = 2 AND n.booted_version = $5))";
                    let mut conn = self.read().await?;
                    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM nodes n WHERE {WHERE}"))
                        .bind(slice.status.map(|s| s.word()))
                        .bind(site_how)
                        .bind(&site)
                        .bind(version_how)
                        .bind(&version)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(db("count nodes"))?;
                    let sql = format!("{NODE_SELECT} WHERE {WHERE} AND ($6 IS NULL OR n.id > $6) ORDER BY n.id LIMIT $7");
                    let rows = sqlx::query(&sql)
                        .bind(slice.status.map(|s| s.word()))
                        .bind(site_how)
                        .bind(&site)
                        .bind(version_how)
                        .bind(&version)
                        .bind(&slice.after)
                        .bind(i64::from(slice.limit))
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(db("list nodes"))?;
                    let nodes = rows.iter().map(|row| node_row(row)?.summary()).collect::<Result<Vec<_>>>()?;
                    Ok(NodePage { total: u64::try_from(total).unwrap_or(0), nodes })
                })
            }

            fn node_counts(&self) -> StoreFuture<'_, NodeCounts> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    let rows = sqlx::query(
                        "SELECT status, booted_version, site, COUNT(*) AS n FROM nodes \
                         GROUP BY status, booted_version, site",
                    )
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db("count nodes"))?;
                    let mut c = NodeCounts::default();
                    for row in &rows {
                        let r = || db("count nodes");
                        let n = u64::try_from(row.try_get::<i64, _>("n").map_err(r())?).unwrap_or(0);
                        *c.by_status.entry(row.try_get("status").map_err(r())?).or_insert(0) += n;
                        *c.by_version.entry(row.try_get("booted_version").map_err(r())?).or_insert(0) += n;
                        *c.by_site.entry(row.try_get("site").map_err(r())?).or_insert(0) += n;
                    }
                    Ok(c)
                })
            }

            fn node_detail<'a>(&'a self, id: &'a str) -> StoreFuture<'a, NodeDetail> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    let sql = format!("{NODE_SELECT} WHERE n.id = $1");
                    let row = sqlx::query(&sql)
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(db("read a node"))?
                        .ok_or_else(|| Error::from(Refusal::NotFound { what: "node", id: id.to_owned() }))?;
                    let node = node_row(&row)?;
                    let inventory: Inventory = from_json("inventory", &node.inventory)?;
                    let events = events_page(&mut conn, id, 20, 0).await?.events;
                    let actions = actions_of(&mut conn, id).await?;
                    Ok(NodeDetail { node: node.summary()?, inventory, events, actions })
                })
            }

            fn set_node_status<'a>(
                &'a self,
                actor: &'a Actor,
                id: &'a str,
                status: NodeStatus,
                now: i64,
            ) -> StoreFuture<'a, NodeSummary> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let before = lock_node_found(&mut tx, id).await?;
                    if before.status == NodeStatus::Decommissioned {
                        return Err(Refusal::Conflict { reason: format!("node {id} is decommissioned") }.into());
                    }
                    if before.status == status {
                        return before.summary();
                    }
                    let after = NodeRow { status, ..before.clone() };
                    let verb = if status == NodeStatus::Accepted { "node-accept" } else { "node-reject" };
                    let summary = save_node_admin(&mut tx, actor, verb, &before, &after, now).await?;
                    tx.commit().await.map_err(db("commit a node's status"))?;
                    Ok(summary)
                })
            }

            fn decommission<'a>(&'a self, actor: &'a Actor, id: &'a str, now: i64) -> StoreFuture<'a, NodeSummary> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let before = lock_node_found(&mut tx, id).await?;
                    if before.status == NodeStatus::Decommissioned {
                        return before.summary();
                    }
                    for sql in [
                        "DELETE FROM reports WHERE node = $1",
                        "DELETE FROM diagnostics WHERE node = $1",
                        "DELETE FROM actions WHERE node = $1",
                        "DELETE FROM node_pins WHERE node = $1",
                        "DELETE FROM node_logs WHERE node = $1",
                        "DELETE FROM node_metric_points WHERE node = $1",
                        "DELETE FROM node_telemetry WHERE node = $1",
                        "DELETE FROM metric_queue WHERE node = $1",
                    ] {
                        sqlx::query(sql).bind(id).execute(&mut *tx).await.map_err(db("delete a node's history"))?;
                    }
                    let after = NodeRow { status: NodeStatus::Decommissioned, pin: None, ..before.clone() };
                    let summary = save_node_admin(&mut tx, actor, "node-decommission", &before, &after, now).await?;
                    tx.commit().await.map_err(db("commit a decommission"))?;
                    Ok(summary)
                })
            }

            fn label_node<'a>(
                &'a self,
                actor: &'a Actor,
                id: &'a str,
                change: &'a LabelChange,
                now: i64,
            ) -> StoreFuture<'a, NodeSummary> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let before = lock_node_found(&mut tx, id).await?;
                    let mut after = before.clone();
                    for k in &change.remove {
                        after.admin_labels.remove(k);
                    }
                    after.admin_labels.extend(change.set.iter().map(|(k, v)| (k.clone(), v.clone())));
                    if after.admin_labels.len() > fleet_wire::node::MAX_LABELS {
                        return Err(Refusal::Conflict { reason: "more than 64 admin labels".into() }.into());
                    }
                    let summary = save_node_admin(&mut tx, actor, "node-label", &before, &after, now).await?;
                    tx.commit().await.map_err(db("commit labels"))?;
                    Ok(summary)
                })
            }

            fn set_node_group<'a>(
                &'a self,
                actor: &'a Actor,
                id: &'a str,
                group: Option<&'a str>,
                now: i64,
            ) -> StoreFuture<'a, NodeSummary> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let before = lock_node_found(&mut tx, id).await?;
                    if let Some(g) = group {
                        sqlx::query(
                            "INSERT INTO groups (name, bundle, created_at, updated_at) VALUES ($1, NULL, $2, $2) \
                             ON CONFLICT DO NOTHING",
                        )
                        .bind(g)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("create a group"))?;
                    }
                    let after = NodeRow { grp: group.map(str::to_owned), ..before.clone() };
                    let summary = save_node_admin(&mut tx, actor, "node-group", &before, &after, now).await?;
                    tx.commit().await.map_err(db("commit a group"))?;
                    Ok(summary)
                })
            }

            fn pin_node<'a>(
                &'a self,
                actor: &'a Actor,
                id: &'a str,
                bundle: Option<&'a str>,
                now: i64,
            ) -> StoreFuture<'a, NodeSummary> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let before = lock_node_found(&mut tx, id).await?;
                    ensure_bundle(&mut tx, bundle).await?;
                    match bundle {
                        Some(b) => sqlx::query(
                            "INSERT INTO node_pins (node, bundle, pinned_at, pinned_by) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (node) DO UPDATE SET bundle = excluded.bundle, \
                             pinned_at = excluded.pinned_at, pinned_by = excluded.pinned_by",
                        )
                        .bind(id)
                        .bind(b)
                        .bind(now)
                        .bind(&actor.name),
                        None => sqlx::query("DELETE FROM node_pins WHERE node = $1").bind(id),
                    }
                    .execute(&mut *tx)
                    .await
                    .map_err(db("pin a node"))?;
                    let after = NodeRow { pin: bundle.map(str::to_owned), ..before.clone() };
                    let summary = save_node_admin(&mut tx, actor, "node-pin", &before, &after, now).await?;
                    tx.commit().await.map_err(db("commit a pin"))?;
                    Ok(summary)
                })
            }

            fn merge_nodes<'a>(
                &'a self,
                actor: &'a Actor,
                into: &'a str,
                from: &'a str,
                now: i64,
            ) -> StoreFuture<'a, NodeSummary> {
                Box::pin(async move {
                    if into == from {
                        return Err(Refusal::Conflict { reason: "a node cannot be merged into itself".into() }.into());
                    }
                    let mut tx = self.write().await?;
                    // Both rows, in id order, so two merges never wait on each other in a circle.
                    let (first, second) = if into < from { (into, from) } else { (from, into) };
                    let a = lock_node_found(&mut tx, first).await?;
                    let b = lock_node_found(&mut tx, second).await?;
                    let (new_before, old_before) = if a.id == into { (a, b) } else { (b, a) };
                    if old_before.merged_into.is_some() {
                        return Err(Refusal::Conflict { reason: format!("node {from} was merged already") }.into());
                    }
                    if new_before.status == NodeStatus::Decommissioned {
                        return Err(Refusal::Conflict { reason: format!("node {into} is decommissioned") }.into());
                    }
                    let mut new_after = new_before.clone();
                    for (k, v) in &old_before.admin_labels {
                        new_after.admin_labels.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                    if new_after.grp.is_none() {
                        new_after.grp = old_before.grp.clone();
                    }
                    if new_after.pin.is_none() {
                        if let Some(pin) = &old_before.pin {
                            sqlx::query(
                                "INSERT INTO node_pins (node, bundle, pinned_at, pinned_by) VALUES ($1, $2, $3, $4)",
                            )
                            .bind(into)
                            .bind(pin)
                            .bind(now)
                            .bind(&actor.name)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("move a pin"))?;
                            new_after.pin = Some(pin.clone());
                        }
                    }
                    for sql in [
                        "DELETE FROM node_pins WHERE node = $1",
                        "UPDATE nodes SET merged_into = NULL WHERE merged_into = $1",
                    ] {
                        sqlx::query(sql).bind(from).execute(&mut *tx).await.map_err(db("retire a node"))?;
                    }
                    let old_after = NodeRow {
                        status: NodeStatus::Decommissioned,
                        merged_into: Some(into.to_owned()),
                        pin: None,
                        ..old_before.clone()
                    };
                    save_node_admin(&mut tx, actor, "node-merged-away", &old_before, &old_after, now).await?;
                    let summary = save_node_admin(&mut tx, actor, "node-merge", &new_before, &new_after, now).await?;
                    tx.commit().await.map_err(db("commit a merge"))?;
                    Ok(summary)
                })
            }

            fn events<'a>(&'a self, node: &'a str, limit: u32, offset: u64) -> StoreFuture<'a, EventPage> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    require_node(&mut conn, node).await?;
                    events_page(&mut conn, node, limit, offset).await
                })
            }

            fn create_enrollment_token<'a>(
                &'a self,
                actor: &'a Actor,
                id: &'a str,
                secret_hash: &'a str,
                req: &'a CreateEnrollmentToken,
                now: i64,
            ) -> StoreFuture<'a, EnrollmentTokenInfo> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let expires_at =
                        req.expires_in_secs.map(|s| now.saturating_add(i64::try_from(s).unwrap_or(i64::MAX)));
                    let row = sqlx::query(
                        "INSERT INTO enrollment_tokens (id, name, secret_hash, policy, labels, expires_at, max_uses, \
                         uses, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9) RETURNING *",
                    )
                    .bind(id)
                    .bind(&req.name)
                    .bind(secret_hash)
                    .bind(req.policy.word())
                    .bind(to_json(&req.labels))
                    .bind(expires_at)
                    .bind(req.max_uses.map(i64::from))
                    .bind(now)
                    .bind(&actor.name)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("insert an enrollment token"))?;
                    let info = read_enrollment_token(&row)?;
                    audit(&mut tx, actor, "token-create", id, serde_json::json!({ "after": info }), now).await?;
                    tx.commit().await.map_err(db("commit an enrollment token"))?;
                    Ok(info)
                })
            }

            fn list_enrollment_tokens(&self) -> StoreFuture<'_, Vec<EnrollmentTokenInfo>> {
                Box::pin(async move {
                    let rows = sqlx::query("SELECT * FROM enrollment_tokens ORDER BY created_at, id")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db("list enrollment tokens"))?;
                    rows.iter().map(read_enrollment_token).collect()
                })
            }

            fn revoke_enrollment_token<'a>(
                &'a self,
                actor: &'a Actor,
                id: &'a str,
                now: i64,
            ) -> StoreFuture<'a, EnrollmentTokenInfo> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let revoked: fn(&EnrollmentTokenInfo) -> bool = |t| t.revoked_at.is_some();
                    let after = revoke_token(&mut tx, actor, TokenKind::Enrollment, id, now, read_enrollment_token, revoked).await?;
                    tx.commit().await.map_err(db("commit a revocation"))?;
                    Ok(after)
                })
            }

            fn create_admin_token<'a>(
                &'a self,
                actor: &'a Actor,
                id: &'a str,
                secret_hash: &'a str,
                name: &'a str,
                role: Role,
                now: i64,
            ) -> StoreFuture<'a, AdminTokenInfo> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let row = sqlx::query(
                        "INSERT INTO admin_tokens (id, name, secret_hash, role, created_at, created_by) \
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                    )
                    .bind(id)
                    .bind(name)
                    .bind(secret_hash)
                    .bind(role.word())
                    .bind(now)
                    .bind(&actor.name)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("insert an admin token"))?;
                    let info = read_admin_token(&row)?;
                    audit(&mut tx, actor, "admin-token-create", id, serde_json::json!({ "after": info }), now).await?;
                    tx.commit().await.map_err(db("commit an admin token"))?;
                    Ok(info)
                })
            }

            fn list_admin_tokens(&self) -> StoreFuture<'_, Vec<AdminTokenInfo>> {
                Box::pin(async move {
                    let rows = sqlx::query("SELECT * FROM admin_tokens ORDER BY created_at, id")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db("list admin tokens"))?;
                    rows.iter().map(read_admin_token).collect()
                })
            }

            fn revoke_admin_token<'a>(
                &'a self,
                actor: &'a Actor,
                id: &'a str,
                now: i64,
            ) -> StoreFuture<'a, AdminTokenInfo> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let revoked: fn(&AdminTokenInfo) -> bool = |t| t.revoked_at.is_some();
                    let after = revoke_token(&mut tx, actor, TokenKind::Admin, id, now, read_admin_token, revoked).await?;
                    tx.commit().await.map_err(db("commit a revocation"))?;
                    Ok(after)
                })
            }

            fn list_groups(&self) -> StoreFuture<'_, Vec<GroupInfo>> {
                Box::pin(async move {
                    let rows = sqlx::query(
                        "SELECT g.name, g.bundle, (SELECT COUNT(*) FROM nodes n WHERE n.grp = g.name) AS n_nodes \
                         FROM groups g ORDER BY g.name",
                    )
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("list groups"))?;
                    rows.iter().map(read_group).collect()
                })
            }

            fn set_group_bundle<'a>(
                &'a self,
                actor: &'a Actor,
                name: &'a str,
                bundle: Option<&'a str>,
                now: i64,
            ) -> StoreFuture<'a, GroupInfo> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    ensure_bundle(&mut tx, bundle).await?;
                    sqlx::query(
                        "INSERT INTO groups (name, bundle, created_at, updated_at) VALUES ($1, NULL, $2, $2) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("create a group"))?;
                    let before = sqlx::query(concat!("SELECT bundle FROM groups WHERE name = $1", $lock))
                        .bind(name)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db("read a group"))?
                        .try_get::<Option<String>, _>("bundle")
                        .map_err(db("read a group"))?;
                    sqlx::query("UPDATE groups SET bundle = $2, updated_at = $3 WHERE name = $1")
                        .bind(name)
                        .bind(bundle)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("set a group's bundle"))?;
                    let change = serde_json::json!({ "before": { "bundle": before }, "after": { "bundle": bundle } });
                    audit(&mut tx, actor, "group-bundle", name, change, now).await?;
                    let info = group_info(&mut tx, name).await?.expect("the group was just written");
                    tx.commit().await.map_err(db("commit a group"))?;
                    Ok(info)
                })
            }

            fn add_bundle<'a>(
                &'a self,
                actor: &'a Actor,
                bundle: &'a NewBundle,
                now: i64,
            ) -> StoreFuture<'a, BundleInfo> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let b = &bundle.info;
                    sqlx::query(
                        "INSERT INTO bundles (manifest_hash, name, version, security_version, compatible, \
                         size_bytes, stored, urls, manifest, created_at, created_by) \
                         VALUES ($1, $2, $3, $4, $5, $6, 0, '[]', $7, $8, $9) ON CONFLICT DO NOTHING",
                    )
                    .bind(&b.manifest_hash)
                    .bind(&b.name)
                    .bind(&b.version)
                    .bind(i64::try_from(b.security_version).unwrap_or(i64::MAX))
                    .bind(&b.compatible)
                    .bind(i64::try_from(b.size_bytes).unwrap_or(i64::MAX))
                    .bind(to_json(&bundle.manifest))
                    .bind(now)
                    .bind(&actor.name)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("insert a bundle"))?;
                    let before = sqlx::query(concat!("SELECT * FROM bundles WHERE manifest_hash = $1", $lock))
                        .bind(&b.manifest_hash)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db("read a bundle"))?;
                    let before = read_bundle(&before)?;
                    let mut urls = before.urls.clone();
                    for u in &b.urls {
                        if !urls.contains(u) {
                            urls.push(u.clone());
                        }
                    }
                    let stored = before.stored || b.stored;
                    let row = sqlx::query(
                        "UPDATE bundles SET stored = $2, urls = $3 WHERE manifest_hash = $1 RETURNING *",
                    )
                    .bind(&b.manifest_hash)
                    .bind(i64::from(stored))
                    .bind(to_json(&urls))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("update a bundle"))?;
                    let after = read_bundle(&row)?;
                    let change = serde_json::json!({ "after": after });
                    audit(&mut tx, actor, "bundle-add", &b.manifest_hash, change, now).await?;
                    tx.commit().await.map_err(db("commit a bundle"))?;
                    Ok(after)
                })
            }

            fn list_bundles(&self) -> StoreFuture<'_, Vec<BundleInfo>> {
                Box::pin(async move {
                    let rows = sqlx::query("SELECT * FROM bundles ORDER BY created_at DESC, manifest_hash")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db("list bundles"))?;
                    rows.iter().map(read_bundle).collect()
                })
            }

            fn bundle<'a>(&'a self, manifest_hash: &'a str) -> StoreFuture<'a, Option<BundleInfo>> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    bundle_by_hash(&mut conn, manifest_hash).await
                })
            }

            fn queue_action<'a>(
                &'a self,
                actor: &'a Actor,
                node: &'a str,
                id: &'a str,
                kind: ActionKind,
                now: i64,
            ) -> StoreFuture<'a, ActionInfo> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let row = lock_node_found(&mut tx, node).await?;
                    if row.status != NodeStatus::Accepted {
                        return Err(Refusal::Conflict {
                            reason: format!("node {node} is {}, not accepted", row.status),
                        }
                        .into());
                    }
                    sqlx::query(
                        "INSERT INTO actions (id, node, kind, state, created_at, created_by) \
                         VALUES ($1, $2, $3, 'queued', $4, $5)",
                    )
                    .bind(id)
                    .bind(node)
                    .bind(kind.word())
                    .bind(now)
                    .bind(&actor.name)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("queue an action"))?;
                    let info = ActionInfo {
                        id: id.to_owned(),
                        node: row.summary()?.id,
                        kind,
                        state: ActionState::Queued,
                        created_at: rfc3339(now),
                        created_by: actor.name.clone(),
                        finished_at: None,
                        result: None,
                        has_diagnostics: false,
                    };
                    audit(&mut tx, actor, "action-queue", node, serde_json::json!({ "after": info }), now).await?;
                    tx.commit().await.map_err(db("commit an action"))?;
                    Ok(info)
                })
            }

            fn diagnostics<'a>(&'a self, action: &'a str) -> StoreFuture<'a, DiagnosticsInfo> {
                Box::pin(async move {
                    let row = sqlx::query("SELECT node, received_at, body FROM diagnostics WHERE action = $1")
                        .bind(action)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db("read diagnostics"))?
                        .ok_or_else(|| Error::from(Refusal::NotFound { what: "diagnostics", id: action.into() }))?;
                    let r = || db("read diagnostics");
                    Ok(DiagnosticsInfo {
                        action: action.to_owned(),
                        node: $crate::store::sql::node_id(&row.try_get::<String, _>("node").map_err(r())?)?,
                        received: rfc3339(row.try_get("received_at").map_err(r())?),
                        diagnostics: from_json("diagnostics", &row.try_get::<String, _>("body").map_err(r())?)?,
                    })
                })
            }

            fn audit(&self, limit: u32, offset: u64) -> StoreFuture<'_, AuditPage> {
                Box::pin(async move {
                    let rows = sqlx::query("SELECT * FROM audit ORDER BY id DESC LIMIT $1 OFFSET $2")
                        .bind(i64::from(limit) + 1)
                        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db("read the audit log"))?;
                    let mut entries = Vec::new();
                    for row in rows.iter().take(limit as usize) {
                        let r = || db("read the audit log");
                        entries.push(AuditEntry {
                            id: u64::try_from(row.try_get::<i64, _>("id").map_err(r())?).unwrap_or(0),
                            at: rfc3339(row.try_get("at").map_err(r())?),
                            actor_id: row.try_get("actor_id").map_err(r())?,
                            actor_name: row.try_get("actor_name").map_err(r())?,
                            action: row.try_get("action").map_err(r())?,
                            target: row.try_get("target").map_err(r())?,
                            change: from_json("audit change", &row.try_get::<String, _>("change").map_err(r())?)?,
                        });
                    }
                    let next_offset = (rows.len() > limit as usize).then(|| offset + u64::from(limit));
                    Ok(AuditPage { entries, next_offset })
                })
            }

            fn prune(&self, retention: Retention, now: i64) -> StoreFuture<'_, ()> {
                Box::pin(async move {
                    // In batches, each its own short transaction: a large fleet expires 100,000 replay ids a
                    // minute, and one statement deleting them all held the writer for half a second, in which
                    // every poll waited. Between batches the writers queued meanwhile go first, so a batch is
                    // the longest a poll waits behind the prune.
                    let oldest = now.saturating_sub(i64::try_from(retention.max_age_secs).unwrap_or(i64::MAX));
                    let batches = [
                        ("prune replay ids", concat!(
                            "DELETE FROM replays WHERE id IN ",
                            "(SELECT id FROM replays WHERE expires_at < $1 LIMIT $2)"
                        ), now),
                        ("prune reports", concat!(
                            "DELETE FROM reports WHERE (node, seq) IN ",
                            "(SELECT node, seq FROM reports WHERE received_at < $1 LIMIT $2)"
                        ), oldest),
                    ];
                    for (what, statement, before) in batches {
                        loop {
                            // Committed as a poll's are, without waiting for the disk: a delete lost to a power cut
                            // is done again at the next prune, and a sync per batch (200 of them a minute at
                            // 100,000 nodes) stalled the polls for seconds.
                            let mut tx = self.poll_write().await?;
                            let done = sqlx::query(statement)
                                .bind(before)
                                .bind($crate::store::sql::PRUNE_BATCH)
                                .execute(&mut *tx)
                                .await
                                .map_err(db(what))?;
                            tx.commit().await.map_err(db("commit a prune"))?;
                            if done.rows_affected() < $crate::store::sql::PRUNE_BATCH as u64 {
                                break;
                            }
                        }
                    }
                    Ok(())
                })
            }

            fn dump(&self) -> StoreFuture<'_, String> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    let mut out = String::new();
                    for (table, columns) in TABLES {
                        let select: Vec<String> = columns.iter().map(|c| format!("CAST({c} AS TEXT)")).collect();
                        let sql = format!("SELECT {} FROM {table}", select.join(", "));
                        let rows = sqlx::query(&sql).fetch_all(&mut *conn).await.map_err(db("dump a table"))?;
                        let mut lines = Vec::with_capacity(rows.len());
                        for row in &rows {
                            let mut cells = Vec::with_capacity(columns.len());
                            for i in 0..columns.len() {
                                let cell: Option<String> = row.try_get(i).map_err(db("dump a row"))?;
                                cells.push(cell.map_or_else(|| "NULL".to_owned(), |c| format!("{c:?}")));
                            }
                            lines.push(cells.join("|"));
                        }
                        lines.sort();
                        out.push_str(&format!("# {table} ({})\n", columns.join("|")));
                        for line in lines {
                            out.push_str(&line);
                            out.push('\n');
                        }
                    }
                    Ok(out)
                })
            }
        }
    };
}

pub(crate) use store_impl;

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seq: u64, kind: ReportKind) -> Report {
        Report {
            seq,
            time: "2026-12-05T10:00:00Z".into(),
            kind,
            message: String::new(),
            reason: None,
            exit_code: None,
            version: None,
            slot: None,
            phase: None,
            progress: None,
            action: None,
        }
    }

    #[test]
    fn the_current_state_follows_commits_and_phases() {
        let start = CurrentState { booted_version: Some("1.0.0".into()), ..Default::default() };
        let mut flipped = report(1, ReportKind::Flipped);
        flipped.phase = Some("flipped".into());
        flipped.version = Some("2.0.0".into());
        let s = start.fold(&flipped);
        assert_eq!(s.booted_version.as_deref(), Some("1.0.0"), "a flip is not a commit");
        assert_eq!(s.phase.as_deref(), Some("flipped"));
        assert_eq!(s.last_kind.as_deref(), Some("flipped"));
        let mut committed = report(2, ReportKind::Committed);
        committed.version = Some("2.0.0".into());
        committed.slot = Some("B".into());
        let s = s.fold(&committed);
        assert_eq!(s.booted_version.as_deref(), Some("2.0.0"));
        assert_eq!(s.booted_slot.as_deref(), Some("B"));
        assert_eq!(s.phase.as_deref(), Some("flipped"), "a report without a phase keeps the last one");
    }
}
