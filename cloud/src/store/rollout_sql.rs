//! The rollouts' SQL (docs/rollouts.md), written once and instantiated per backend by `rollout_impl!` beside
//! `store_impl!`, whose helpers it uses.
//!
//! Every decision about a deployment is made in a transaction that holds the deployment's row (PostgreSQL: `FOR
//! UPDATE`; SQLite: the database, by `BEGIN IMMEDIATE`), reading the counters in it and writing them back with the
//! decision: a node told to start, a node's end counted, the brake, a wave's end. Two replicas on one PostgreSQL
//! therefore never both let a node start past a limit. A node joining or leaving a deployment (`place`, when its
//! labels, site, inventory, status or pin change, and a deployment's creation) also takes one lock for all
//! memberships (PostgreSQL: a transaction-scoped advisory lock), so a node never joins two deployments at once and
//! a deployment created while a node's labels change sees the change or is seen by it.

use fleet_wire::node::Report;
use fleet_wire::node::ReportKind;
use fleet_wire::rollout::{DeploymentState, MemberState, PauseReason, RolloutPolicy};

use crate::error::{Refusal, Result};
use crate::rollout::policy::{Counters, Policy};

/// How far ahead a node is given its site's windows.
pub const WINDOW_HORIZON_SECS: i64 = 7 * 24 * 3600;

/// A deployment's row.
#[derive(Debug, Clone)]
pub(crate) struct DeploymentRow {
    pub id: String,
    pub name: String,
    pub bundle: String,
    pub selector: String,
    pub policy: RolloutPolicy,
    pub state: DeploymentState,
    pub pause_reason: Option<PauseReason>,
    pub pause_detail: Option<String>,
    pub paused_at: Option<i64>,
    pub counters: Counters,
    pub n_committed: u64,
    pub n_failed: u64,
    pub created_at: i64,
    pub created_by: String,
}

impl DeploymentRow {
    /// The parsed policy (it parsed when the deployment was created).
    pub fn parsed(&self) -> Result<Policy> {
        Policy::parse(&self.policy).map_err(|e| Refusal::Invalid { field: "policy", reason: e.to_string() }.into())
    }

    /// Whether it can still take nodes and tell them to start: running or paused.
    pub fn is_live(&self) -> bool {
        self.state != DeploymentState::Aborted
    }

    /// Whether every wave has ended and no node waits or updates.
    pub fn is_complete(&self, policy: &Policy) -> bool {
        let c = &self.counters;
        policy.is_last(c.wave) && c.in_flight == 0 && c.begun >= c.members
    }
}

/// What a report does to a node's place in its deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The node committed the deployment's bundle.
    Committed,
    /// The node failed it, and why.
    Failed(String),
}

/// A start of a polled node handed to the store's start batcher (PostgreSQL), answered on `reply` with what the
/// node runs now when it was started, `None` when it was not.
pub(crate) struct StartJob {
    pub node: String,
    pub deployment: String,
    pub now: i64,
    pub reply: tokio::sync::oneshot::Sender<Result<Option<Started>>>,
}

/// What a node that was just started runs: its deployment's bundle, and the flip rule.
pub(crate) type Started = (Option<fleet_wire::admin::BundleInfo>, Option<fleet_wire::node::FlipRule>);

impl std::fmt::Debug for StartJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartJob")
            .field("node", &self.node)
            .field("deployment", &self.deployment)
            .finish_non_exhaustive()
    }
}

/// The most starts one batch decides.
pub(crate) const START_BATCH: usize = 256;

/// The most rows one statement names (a bound parameter each, or two): well under SQLite's 32,766 parameters and
/// PostgreSQL's 65,535.
pub(crate) const ROWS_A_STATEMENT: usize = 10_000;

/// `n` numbered parameters from `$first` on, for an `IN (...)` list: `$2, $3, $4`.
pub(crate) fn params(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// What `report` says of the update to `version` (the deployment bundle's), if it ends it: a commit of that
/// version, or a failure (a refusal, a failed install, a rollback) of it or of no named version.
pub(crate) fn outcome(report: &Report, version: &str) -> Option<Outcome> {
    let of_it = report.version.as_deref().is_none_or(|v| v == version);
    match report.kind {
        ReportKind::Committed | ReportKind::MarkedGood if report.version.as_deref() == Some(version) => {
            Some(Outcome::Committed)
        }
        ReportKind::Refused | ReportKind::InstallFailed | ReportKind::RolledBack | ReportKind::Failed if of_it => {
            let why = report.reason.clone().unwrap_or_else(|| report.message.clone());
            Some(Outcome::Failed(format!("{}: {why}", report.kind.word())))
        }
        _ => None,
    }
}

/// A member state from the database.
pub(crate) fn member_state(value: &str) -> Result<Option<MemberState>> {
    if value == "left" {
        return Ok(None);
    }
    MemberState::from_word(value)
        .map(Some)
        .ok_or_else(|| crate::error::Error::StoredWord { what: "member state", value: value.to_owned() })
}

/// A deployment state from the database.
pub(crate) fn deployment_state(value: &str) -> Result<DeploymentState> {
    DeploymentState::from_word(value)
        .ok_or_else(|| crate::error::Error::StoredWord { what: "deployment state", value: value.to_owned() })
}

/// A new deployment id: `d-` and 8 random bytes in hex.
pub fn new_deployment_id() -> String {
    let mut bytes = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    format!("d-{}", super::hex(&bytes))
}

/// Implements the rollouts for a backend: `$store` as `store_impl!` made it, `$lock` the row lock (`FOR UPDATE`
/// or nothing) and `$membership_lock` the statement that takes the membership lock (empty on SQLite, where the
/// write transaction holds the whole database).
macro_rules! rollout_impl {
    ($store:ident, $conn:ty, $lock:literal, $membership_lock:literal) => {
        use std::collections::BTreeMap;

        use fleet_wire::node::FlipRule;
        use fleet_wire::rollout::{
            CreateDeployment, DeploymentInfo, DeploymentState, MemberInfo, MemberList, MemberState, Pause,
            PauseReason, SetSite, SiteInfo, WaveInfo,
        };
        use $crate::rollout::policy::{after_end, decide, wave_ended, Counters, Next, Policy, Verdict};
        use $crate::rollout::selector::{Facts, Selector};
        use $crate::store::rollout_sql::{
            deployment_state, member_state, new_deployment_id, outcome, params, DeploymentRow, Outcome,
            StartJob, Started, ROWS_A_STATEMENT, START_BATCH, WINDOW_HORIZON_SECS,
        };
        use $crate::store::Rollouts;

        const DEPLOYMENT_SELECT: &str = "SELECT * FROM deployments";

        fn deployment_row(row: &Row) -> Result<DeploymentRow> {
            let r = || db("read a deployment");
            let n = |c: &str| -> Result<u64> { Ok(u64::try_from(row.try_get::<i64, _>(c).map_err(r())?).unwrap_or(0)) };
            Ok(DeploymentRow {
                id: row.try_get("id").map_err(r())?,
                name: row.try_get("name").map_err(r())?,
                bundle: row.try_get("bundle").map_err(r())?,
                selector: row.try_get("selector").map_err(r())?,
                policy: from_json("deployment policy", &row.try_get::<String, _>("policy").map_err(r())?)?,
                state: deployment_state(&row.try_get::<String, _>("state").map_err(r())?)?,
                pause_reason: row
                    .try_get::<Option<String>, _>("pause_reason")
                    .map_err(r())?
                    .and_then(|w| PauseReason::from_word(&w)),
                pause_detail: row.try_get("pause_detail").map_err(r())?,
                paused_at: row.try_get("paused_at").map_err(r())?,
                counters: Counters {
                    wave: u32::try_from(n("wave")?).unwrap_or(0),
                    members: n("n_members")?,
                    begun: n("n_begun")?,
                    in_flight: n("n_in_flight")?,
                    wave_failed: n("wave_failed")?,
                },
                n_committed: n("n_committed")?,
                n_failed: n("n_failed")?,
                created_at: row.try_get("created_at").map_err(r())?,
                created_by: row.try_get("created_by").map_err(r())?,
            })
        }

        /// The deployment, locked for the rest of the transaction.
        async fn lock_deployment(conn: &mut $conn, id: &str) -> Result<DeploymentRow> {
            let row = sqlx::query(concat!("SELECT * FROM deployments WHERE id = $1", $lock))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("read a deployment"))?
                .ok_or_else(|| Refusal::NotFound { what: "deployment", id: id.to_owned() })?;
            deployment_row(&row)
        }

        /// Writes a deployment's state, pause and counters back.
        async fn save_deployment(conn: &mut $conn, d: &DeploymentRow, now: i64) -> Result<()> {
            let c = &d.counters;
            let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            sqlx::query(
                "UPDATE deployments SET state = $2, pause_reason = $3, pause_detail = $4, paused_at = $5, wave = $6, \
                 n_members = $7, n_begun = $8, n_in_flight = $9, n_committed = $10, n_failed = $11, \
                 wave_failed = $12, updated_at = $13 WHERE id = $1",
            )
            .bind(&d.id)
            .bind(d.state.word())
            .bind(d.pause_reason.map(PauseReason::word))
            .bind(&d.pause_detail)
            .bind(d.paused_at)
            .bind(i64::from(c.wave))
            .bind(i(c.members))
            .bind(i(c.begun))
            .bind(i(c.in_flight))
            .bind(i(d.n_committed))
            .bind(i(d.n_failed))
            .bind(i(c.wave_failed))
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(db("update a deployment"))?;
            Ok(())
        }

        /// The actor of what the rollout decides by itself (the brake, a wave's start).
        fn rollout_actor() -> Actor {
            Actor { id: "-".into(), name: "rollout".into(), role: Role::Admin }
        }

        fn pause(d: &mut DeploymentRow, reason: PauseReason, detail: String, now: i64) {
            d.state = DeploymentState::Paused;
            d.pause_reason = Some(reason);
            d.pause_detail = Some(detail);
            d.paused_at = Some(now);
        }

        /// Moves a running deployment on while its current wave has ended: the next wave starts, or waits for an
        /// operator's approval; each start is audited.
        async fn advance(conn: &mut $conn, d: &mut DeploymentRow, policy: &Policy, now: i64) -> Result<()> {
            while d.state == DeploymentState::Running
                && wave_ended(policy, &d.counters)
                && !policy.is_last(d.counters.wave)
            {
                let next = d.counters.wave + 1;
                if policy.approve_waves {
                    let detail = format!("wave {} ended; wave {next} ({}) waits for approval", d.counters.wave, policy.describe(next));
                    pause(d, PauseReason::Approval, detail.clone(), now);
                    let change = serde_json::json!({"wave": d.counters.wave, "next": next, "detail": detail});
                    audit(conn, &rollout_actor(), "deployment-await-approval", &d.id, change, now).await?;
                } else {
                    d.counters.wave = next;
                    d.counters.wave_failed = 0;
                    let change = serde_json::json!({"wave": next, "size": policy.describe(next)});
                    audit(conn, &rollout_actor(), "deployment-wave", &d.id, change, now).await?;
                }
            }
            Ok(())
        }

        /// Counts node `node` committed in `d` (held locked) and makes the bundle its baseline: what it is told to
        /// run once the deployment is over.
        async fn committed(conn: &mut $conn, d: &mut DeploymentRow, node: &str) -> Result<()> {
            d.n_committed += 1;
            sqlx::query("UPDATE nodes SET baseline = $2 WHERE id = $1")
                .bind(node)
                .bind(&d.bundle)
                .execute(&mut *conn)
                .await
                .map_err(db("record a node's bundle"))?;
            Ok(())
        }

        /// A node of `d` (held locked) no longer updates: one fewer in flight, in all and at the site it started at.
        async fn stop_updating(conn: &mut $conn, d: &mut DeploymentRow, site: Option<&str>) -> Result<()> {
            d.counters.in_flight = d.counters.in_flight.saturating_sub(1);
            if let Some(s) = site {
                sqlx::query(
                    "UPDATE deployment_sites SET in_flight = in_flight - 1 \
                     WHERE deployment = $1 AND site = $2 AND in_flight > 0",
                )
                .bind(&d.id)
                .bind(s)
                .execute(&mut *conn)
                .await
                .map_err(db("count a site's update"))?;
            }
            Ok(())
        }

        /// Ends node `node`'s update in deployment `d` (held locked): counts it, frees its site's place, and
        /// applies the brake or the wave's end.
        async fn end_member(
            conn: &mut $conn,
            d: &mut DeploymentRow,
            node: &str,
            was: MemberState,
            site: Option<String>,
            end: &Outcome,
            now: i64,
        ) -> Result<()> {
            let policy = d.parsed()?;
            let (word, result) = match end {
                Outcome::Committed => (MemberState::Committed.word(), None),
                Outcome::Failed(why) => (MemberState::Failed.word(), Some(why.clone())),
            };
            sqlx::query(
                "UPDATE deployment_nodes SET state = $3, finished_at = $4, result = $5, \
                 wave = COALESCE(wave, $6), site = COALESCE(site, $7) WHERE deployment = $1 AND node = $2",
            )
            .bind(&d.id)
            .bind(node)
            .bind(word)
            .bind(now)
            .bind(&result)
            .bind(i64::from(d.counters.wave))
            .bind(&site)
            .execute(&mut *conn)
            .await
            .map_err(db("end a node's update"))?;
            match was {
                MemberState::Updating => stop_updating(conn, d, site.as_deref()).await?,
                // A node that updated by other means (by hand, or before it was told): it begins and ends now.
                MemberState::Waiting => d.counters.begun += 1,
                MemberState::Committed | MemberState::Failed => {}
            }
            let failed = matches!(end, Outcome::Failed(_));
            if failed {
                d.n_failed += 1;
                d.counters.wave_failed += 1;
            } else {
                committed(conn, d, node).await?;
            }
            if d.state == DeploymentState::Running {
                match after_end(&policy, &d.counters, failed) {
                    Next::Brake { failed, threshold } => {
                        let detail = format!(
                            "{failed} failures in wave {} (threshold {threshold}); last: node {node}: {}",
                            d.counters.wave,
                            result.as_deref().unwrap_or("")
                        );
                        pause(d, PauseReason::Brake, detail.clone(), now);
                        let change = serde_json::json!({
                            "wave": d.counters.wave, "failed": failed, "threshold": threshold, "detail": detail
                        });
                        audit(conn, &rollout_actor(), "deployment-brake", &d.id, change, now).await?;
                    }
                    Next::NextWave | Next::AwaitApproval => advance(conn, d, &policy, now).await?,
                    Next::Continue => {}
                }
            }
            save_deployment(conn, d, now).await
        }

        /// Applies a node's new reports (in `seq` order) to its place in a deployment: a commit or a failure of the
        /// deployment's bundle ends its update.
        async fn rollout_progress(conn: &mut $conn, node: &str, reports: &[&fleet_wire::node::Report], now: i64) -> Result<()> {
            let row = sqlx::query(
                "SELECT dn.deployment, dn.state, dn.site, b.version FROM deployment_nodes dn \
                 JOIN deployments d ON d.id = dn.deployment JOIN bundles b ON b.manifest_hash = d.bundle \
                 WHERE dn.node = $1 AND dn.state IN ('waiting', 'updating') AND d.state <> 'aborted'",
            )
            .bind(node)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("read a node's deployment"))?;
            let Some(row) = row else { return Ok(()) };
            let r = || db("read a node's deployment");
            let version: String = row.try_get("version").map_err(r())?;
            let Some(end) = reports.iter().find_map(|rep| outcome(rep, &version)) else { return Ok(()) };
            let deployment: String = row.try_get("deployment").map_err(r())?;
            let was = member_state(&row.try_get::<String, _>("state").map_err(r())?)?.unwrap_or(MemberState::Waiting);
            // A node that never began is not counted as failing: a failure it reports is of some other install.
            if was == MemberState::Waiting && end != Outcome::Committed {
                return Ok(());
            }
            let site: Option<String> = match was {
                MemberState::Updating => row.try_get("site").map_err(r())?,
                _ => None,
            };
            let mut d = lock_deployment(conn, &deployment).await?;
            end_member(conn, &mut d, node, was, site, &end, now).await
        }

        /// A node's current place: its deployment and state, unless it has left every deployment.
        async fn current_member(conn: &mut $conn, node: &str) -> Result<Option<(DeploymentRow, MemberState, Option<String>)>> {
            let row = sqlx::query("SELECT deployment, state, site FROM deployment_nodes WHERE node = $1 AND state <> 'left'")
                .bind(node)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("read a node's deployment"))?;
            let Some(row) = row else { return Ok(None) };
            let r = || db("read a node's deployment");
            let deployment: String = row.try_get("deployment").map_err(r())?;
            let Some(state) = member_state(&row.try_get::<String, _>("state").map_err(r())?)? else { return Ok(None) };
            let site: Option<String> = row.try_get("site").map_err(r())?;
            let d = lock_deployment(conn, &deployment).await?;
            Ok(Some((d, state, site)))
        }

        /// Takes a node out of its deployment: uncounted when it had not ended, its site's place freed.
        async fn leave(
            conn: &mut $conn,
            d: &mut DeploymentRow,
            node: &str,
            state: MemberState,
            site: Option<String>,
            now: i64,
        ) -> Result<()> {
            sqlx::query("UPDATE deployment_nodes SET state = 'left', finished_at = COALESCE(finished_at, $3) WHERE deployment = $1 AND node = $2")
                .bind(&d.id)
                .bind(node)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(db("take a node out of a deployment"))?;
            if d.state == DeploymentState::Aborted {
                return Ok(());
            }
            match state {
                MemberState::Waiting => d.counters.members = d.counters.members.saturating_sub(1),
                MemberState::Updating => {
                    d.counters.members = d.counters.members.saturating_sub(1);
                    d.counters.begun = d.counters.begun.saturating_sub(1);
                    stop_updating(conn, d, site.as_deref()).await?;
                }
                MemberState::Committed | MemberState::Failed => return Ok(()),
            }
            let policy = d.parsed()?;
            advance(conn, d, &policy, now).await?;
            save_deployment(conn, d, now).await
        }

        /// Puts a node into deployment `d`: waiting, or committed already when it runs the bundle.
        async fn join(conn: &mut $conn, d: &mut DeploymentRow, node: &str, runs_it: bool, now: i64) -> Result<()> {
            let state = if runs_it { MemberState::Committed } else { MemberState::Waiting };
            sqlx::query(
                "INSERT INTO deployment_nodes (deployment, node, state, wave, joined_at, finished_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (deployment, node) DO UPDATE SET state = excluded.state, wave = excluded.wave, \
                 site = NULL, joined_at = excluded.joined_at, started_at = NULL, finished_at = excluded.finished_at, \
                 result = NULL",
            )
            .bind(&d.id)
            .bind(node)
            .bind(state.word())
            .bind(runs_it.then_some(i64::from(d.counters.wave)))
            .bind(now)
            .bind(runs_it.then_some(now))
            .execute(&mut *conn)
            .await
            .map_err(db("put a node into a deployment"))?;
            d.counters.members += 1;
            if runs_it {
                d.counters.begun += 1;
                committed(conn, d, node).await?;
            }
            Ok(())
        }

        /// The version of the bundle a node's booted slot holds, from its inventory.
        fn booted_manifest(node: &NodeRow) -> Option<String> {
            let inv: fleet_wire::node::Inventory = serde_json::from_str(&node.inventory).ok()?;
            let booted = inv.slots.into_iter().find(|s| s.booted)?;
            booted.bundle.map(|b| b.manifest_hash)
        }

        fn facts_of(node: &NodeRow) -> Facts {
            let inv: Option<fleet_wire::node::Inventory> = serde_json::from_str(&node.inventory).ok();
            Facts::of($crate::store::merged_labels(&node.node_labels, &node.admin_labels), node.grp.as_deref(), inv.as_ref())
        }

        /// Places a node (locked by the caller, as it is now) in the deployment it belongs to: the newest running or
        /// paused one whose selector it matches, when it is accepted and not pinned. A node never leaves an update
        /// in flight, and never moves to an older deployment than its own.
        async fn place(conn: &mut $conn, node_id: &str, now: i64) -> Result<()> {
            if !$membership_lock.is_empty() {
                sqlx::query($membership_lock).execute(&mut *conn).await.map_err(db("take the membership lock"))?;
            }
            let Some(node) = lock_node(conn, node_id).await? else { return Ok(()) };
            let current = current_member(conn, node_id).await?;
            let eligible = node.status == NodeStatus::Accepted && node.pin.is_none();
            let mut target: Option<DeploymentRow> = None;
            if eligible {
                let facts = facts_of(&node);
                let rows = sqlx::query(
                    "SELECT * FROM deployments WHERE state IN ('running', 'paused') ORDER BY created_at DESC, id DESC",
                )
                .fetch_all(&mut *conn)
                .await
                .map_err(db("read the deployments"))?;
                for row in &rows {
                    let d = deployment_row(row)?;
                    let Ok(sel) = Selector::parse(&d.selector) else { continue };
                    if sel.matches(&facts) {
                        target = Some(d);
                        break;
                    }
                }
            }
            match (current, target) {
                (Some((c, _, _)), Some(t)) if c.id == t.id => Ok(()),
                (Some((mut c, state, site)), None) => {
                    if !eligible || state == MemberState::Waiting {
                        leave(conn, &mut c, node_id, state, site, now).await?;
                    }
                    Ok(())
                }
                (Some((c, state, _)), Some(_))
                    if state == MemberState::Updating && c.is_live() =>
                {
                    Ok(())
                }
                (Some((c, _, _)), Some(t)) if (t.created_at, &t.id) < (c.created_at, &c.id) && c.is_live() => Ok(()),
                (Some((mut c, state, site)), Some(t)) => {
                    leave(conn, &mut c, node_id, state, site, now).await?;
                    let mut t = lock_deployment(conn, &t.id).await?;
                    let runs_it = booted_manifest(&node).as_deref() == Some(t.bundle.as_str());
                    join(conn, &mut t, node_id, runs_it, now).await?;
                    let policy = t.parsed()?;
                    advance(conn, &mut t, &policy, now).await?;
                    save_deployment(conn, &t, now).await
                }
                (None, Some(t)) => {
                    let mut t = lock_deployment(conn, &t.id).await?;
                    let runs_it = booted_manifest(&node).as_deref() == Some(t.bundle.as_str());
                    join(conn, &mut t, node_id, runs_it, now).await?;
                    let policy = t.parsed()?;
                    advance(conn, &mut t, &policy, now).await?;
                    save_deployment(conn, &t, now).await
                }
                (None, None) => Ok(()),
            }
        }

        /// Reads what a poll's row says of the node's deployment: the flip rule when the bundle is the
        /// deployment's, and the deployment to try to start the node in when it waits in a running one whose
        /// counters leave room (decided for good under the deployment's lock, in `start_waiting`).
        fn rollout_of_row(row: &Row, now: i64) -> Result<(Option<FlipRule>, Option<String>)> {
            let r = || db("read a node's deployment");
            let Some(member) = row.try_get::<Option<String>, _>("member").map_err(r())? else { return Ok((None, None)) };
            let pinned = row.try_get::<Option<String>, _>("pin").map_err(r())?.is_some();
            let deployment: String = row.try_get("deployment").map_err(r())?;
            let dstate = deployment_state(&row.try_get::<String, _>("dstate").map_err(r())?)?;
            let member = member_state(&member)?;
            let policy: fleet_wire::rollout::RolloutPolicy =
                from_json("deployment policy", &row.try_get::<String, _>("dpolicy").map_err(r())?)?;
            match member {
                Some(MemberState::Updating | MemberState::Failed) if !pinned && dstate != DeploymentState::Aborted => {
                    let allowed = dstate == DeploymentState::Running && member == Some(MemberState::Updating);
                    let mut windows = Vec::new();
                    if policy.windows {
                        let zone: Option<String> = row.try_get("time_zone").map_err(r())?;
                        let specs: Option<String> = row.try_get("swindows").map_err(r())?;
                        if let (Some(zone), Some(specs)) = (zone, specs) {
                            let specs: Vec<String> = from_json("site windows", &specs)?;
                            windows = $crate::rollout::flip_windows(&zone, &specs, now, WINDOW_HORIZON_SECS);
                        }
                    }
                    let rule = FlipRule { deployment, allowed, windows, lock_max_secs: policy.lock_max_secs };
                    Ok((Some(rule), None))
                }
                Some(MemberState::Waiting) if dstate == DeploymentState::Running && !pinned => {
                    let Ok(p) = Policy::parse(&policy) else { return Ok((None, None)) };
                    let n = |c: &str| -> Result<u64> {
                        Ok(u64::try_from(row.try_get::<i64, _>(c).map_err(r())?).unwrap_or(0))
                    };
                    let c = Counters {
                        wave: u32::try_from(n("dwave")?).unwrap_or(0),
                        members: n("dmembers")?,
                        begun: n("dbegun")?,
                        in_flight: n("din_flight")?,
                        wave_failed: 0,
                    };
                    let room = decide(&p, &c, None) == Verdict::Start;
                    Ok((None, room.then_some(deployment)))
                }
                _ => Ok((None, None)),
            }
        }

        /// The columns and joins a poll reads a node's desired state with: the bundle by pin, else the
        /// deployment's once the node began there (and it is not aborted), else its baseline, else its group's;
        /// and what `rollout_of_row` needs.
        const DESIRED_COLUMNS: &str = "p.bundle AS pin, dn.state AS member, dn.deployment AS deployment, \
            d.state AS dstate, d.policy AS dpolicy, d.wave AS dwave, d.n_members AS dmembers, d.n_begun AS dbegun, \
            d.n_in_flight AS din_flight, s.time_zone AS time_zone, s.windows AS swindows";
        const DESIRED_JOINS: &str = "LEFT JOIN node_pins p ON p.node = n.id LEFT JOIN groups g ON g.name = n.grp \
            LEFT JOIN deployment_nodes dn ON dn.node = n.id AND dn.state <> 'left' \
            LEFT JOIN deployments d ON d.id = dn.deployment LEFT JOIN sites s ON s.name = n.site \
            LEFT JOIN bundles b ON b.manifest_hash = COALESCE(p.bundle, \
            CASE WHEN dn.state IN ('updating', 'failed') AND d.state <> 'aborted' THEN d.bundle END, \
            n.baseline, g.bundle)";

        impl $store {
            /// Tries to start each (node, deployment) in one synced transaction: under the deployment's lock, with
            /// the counters and the nodes' sites' counts read there, as the policy decides, in the candidates'
            /// order. Returns the nodes started. Synced: a node told to start must never be forgotten, or a crash
            /// could let the limits be passed. A deployment's candidates cost a few statements together, however
            /// many they are (its row, their rows, their sites' counts, one update of those started, one of
            /// their sites' counts), so that a batch of polls that are all starts is not a batch of statements per
            /// poll. Each is read by its primary key: with the state in the `WHERE` clause too, SQLite may take the
            /// (deployment, state) index and walk every waiting node of the deployment (86 s of p99 in a storm of
            /// starts, bench/README.md).
            async fn start_waiting(&self, candidates: &[(String, String)], now: i64) -> Result<Vec<String>> {
                if candidates.is_empty() {
                    return Ok(Vec::new());
                }
                // The candidates by deployment, each once, in the order they came.
                let mut by_deployment: Vec<(&str, Vec<&str>)> = Vec::new();
                for (node, deployment) in candidates {
                    match by_deployment.iter_mut().find(|(d, _)| *d == deployment.as_str()) {
                        Some((_, nodes)) if !nodes.contains(&node.as_str()) => nodes.push(node),
                        Some(_) => {}
                        None => by_deployment.push((deployment, vec![node])),
                    }
                }
                let mut tx = self.write().await?;
                let mut started = Vec::new();
                for (deployment, nodes) in by_deployment {
                    let mut d = lock_deployment(&mut tx, deployment).await?;
                    if d.state != DeploymentState::Running {
                        continue;
                    }
                    let policy = d.parsed()?;
                    if decide(&policy, &d.counters, None) != Verdict::Start {
                        continue;
                    }
                    let r = || db("read nodes' deployment");
                    // By the primary key alone (see above): the state is checked here.
                    let sql = format!(
                        "SELECT dn.node, dn.state, n.site FROM deployment_nodes dn JOIN nodes n ON n.id = dn.node \
                         WHERE dn.deployment = $1 AND dn.node IN ({})",
                        params(2, nodes.len())
                    );
                    let mut q = sqlx::query(&sql).bind(deployment);
                    for n in &nodes {
                        q = q.bind(*n);
                    }
                    let mut waiting = BTreeMap::new();
                    for row in q.fetch_all(&mut *tx).await.map_err(r())? {
                        if row.try_get::<String, _>("state").map_err(r())? != MemberState::Waiting.word() {
                            continue;
                        }
                        let site: Option<String> = row.try_get("site").map_err(r())?;
                        waiting.insert(row.try_get::<String, _>("node").map_err(r())?, site);
                    }
                    // The in-flight count of each of their sites (a site no node of the deployment began at has
                    // no row: none).
                    let sites: Vec<&str> = {
                        let mut v: Vec<&str> = waiting.values().flatten().map(String::as_str).collect();
                        v.sort_unstable();
                        v.dedup();
                        v
                    };
                    let mut in_flight: BTreeMap<String, (u64, u64)> = BTreeMap::new();
                    if !sites.is_empty() {
                        let sql = format!(
                            "SELECT site, in_flight FROM deployment_sites WHERE deployment = $1 AND site IN ({})",
                            params(2, sites.len())
                        );
                        let mut q = sqlx::query(&sql).bind(deployment);
                        for s in &sites {
                            q = q.bind(*s);
                        }
                        for row in q.fetch_all(&mut *tx).await.map_err(db("read sites' updates"))? {
                            let n: i64 = row.try_get("in_flight").map_err(db("read sites' updates"))?;
                            let site: String = row.try_get("site").map_err(db("read sites' updates"))?;
                            in_flight.insert(site, (u64::try_from(n).unwrap_or(0), 0));
                        }
                    }
                    let mut now_started: Vec<&str> = Vec::new();
                    for node in nodes {
                        let Some(site) = waiting.get(node) else { continue };
                        let count = site.as_ref().map(|s| in_flight.entry(s.clone()).or_insert((0, 0)));
                        let site_in_flight = count.as_ref().map(|(n, _)| *n);
                        match decide(&policy, &d.counters, site_in_flight) {
                            Verdict::Start => {}
                            // Full for every later candidate too.
                            Verdict::WaveFull | Verdict::FleetLimit => break,
                            _ => continue,
                        }
                        if let Some((n, added)) = count {
                            *n += 1;
                            *added += 1;
                        }
                        d.counters.begun += 1;
                        d.counters.in_flight += 1;
                        now_started.push(node);
                    }
                    if now_started.is_empty() {
                        continue;
                    }
                    // Each keeps the site it is counted at (as read above).
                    let values: Vec<String> =
                        (0..now_started.len()).map(|i| format!("(${}, ${})", 4 + 2 * i, 5 + 2 * i)).collect();
                    let sql = format!(
                        "UPDATE deployment_nodes SET state = 'updating', wave = $2, started_at = $3, site = v.column2 \
                         FROM (VALUES {}) AS v WHERE deployment_nodes.deployment = $1 AND deployment_nodes.node = v.column1",
                        values.join(", ")
                    );
                    let mut q = sqlx::query(&sql).bind(deployment).bind(i64::from(d.counters.wave)).bind(now);
                    for node in &now_started {
                        q = q.bind(*node).bind(waiting.get(*node).and_then(|s| s.as_deref()));
                    }
                    q.execute(&mut *tx).await.map_err(db("start nodes"))?;
                    let added: Vec<(&String, i64)> = in_flight
                        .iter()
                        .filter(|(_, (_, added))| *added > 0)
                        .map(|(site, (_, added))| (site, i64::try_from(*added).unwrap_or(i64::MAX)))
                        .collect();
                    if !added.is_empty() {
                        let values: Vec<String> =
                            (0..added.len()).map(|i| format!("($1, ${}, ${})", 2 + 2 * i, 3 + 2 * i)).collect();
                        let sql = format!(
                            "INSERT INTO deployment_sites (deployment, site, in_flight) VALUES {} \
                             ON CONFLICT (deployment, site) DO UPDATE SET in_flight = deployment_sites.in_flight + excluded.in_flight",
                            values.join(", ")
                        );
                        let mut q = sqlx::query(&sql).bind(deployment);
                        for (site, n) in &added {
                            q = q.bind(site.as_str()).bind(*n);
                        }
                        q.execute(&mut *tx).await.map_err(db("count sites' updates"))?;
                    }
                    save_deployment(&mut tx, &d, now).await?;
                    started.extend(now_started.into_iter().map(str::to_owned));
                }
                tx.commit().await.map_err(db("commit the start of nodes"))?;
                Ok(started)
            }

            /// What the nodes that were just started should run, read again (their polls recorded themselves
            /// already), by node.
            async fn desired_after_start(
                &self,
                nodes: &[&str],
                now: i64,
            ) -> Result<BTreeMap<String, Started>> {
                let mut out = BTreeMap::new();
                if nodes.is_empty() {
                    return Ok(out);
                }
                let mut conn = self.read().await?;
                let sql = format!(
                    "SELECT n.id AS started_node, b.*, {DESIRED_COLUMNS} FROM nodes n {DESIRED_JOINS} WHERE n.id IN ({})",
                    params(1, nodes.len())
                );
                let mut q = sqlx::query(&sql);
                for n in nodes {
                    q = q.bind(*n);
                }
                let r = || db("read nodes' bundles");
                for row in q.fetch_all(&mut *conn).await.map_err(r())? {
                    let hash: Option<String> = row.try_get("manifest_hash").map_err(r())?;
                    let bundle = if hash.is_some() { Some(read_bundle(&row)?) } else { None };
                    let (flip, _) = rollout_of_row(&row, now)?;
                    out.insert(row.try_get("started_node").map_err(r())?, (bundle, flip));
                }
                Ok(out)
            }

            /// Starts what it can of (node, deployment) candidates in one synced transaction, and reads what those
            /// started run now.
            async fn start_batch(&self, candidates: &[(String, String)], now: i64) -> Result<BTreeMap<String, Started>> {
                let started = self.start_waiting(candidates, now).await?;
                let started: Vec<&str> = started.iter().map(String::as_str).collect();
                self.desired_after_start(&started, now).await
            }

            /// Starts the candidates of a set of polls and puts the bundle and flip rule of those started into
            /// their answers: through the start batcher where the store has one (concurrent polls' starts then
            /// share a transaction, as a batch of polls' do on SQLite), else at once.
            async fn start_polled(&self, answers: &mut [Result<Desired>], candidates: Vec<(usize, String, String)>, now: i64) -> Result<()> {
                let mut desired = BTreeMap::new();
                let mut direct = Vec::new();
                for (_, node, deployment) in &candidates {
                    if let Some(starts) = &self.starts {
                        let (reply, answer) = tokio::sync::oneshot::channel();
                        let job = StartJob { node: node.clone(), deployment: deployment.clone(), now, reply };
                        if starts.send(job).await.is_ok() {
                            if let Ok(answer) = answer.await {
                                if let Some(started) = answer? {
                                    desired.insert(node.clone(), started);
                                }
                                continue;
                            }
                        }
                        // The batcher is gone (the store is closing): started here.
                    }
                    direct.push((node.clone(), deployment.clone()));
                }
                if !direct.is_empty() {
                    desired.append(&mut self.start_batch(&direct, now).await?);
                }
                for (i, node, _) in candidates {
                    let Some((bundle, flip)) = desired.get(&node).cloned() else { continue };
                    if let Ok(answer) = &mut answers[i] {
                        answer.bundle = bundle;
                        answer.flip = flip;
                    }
                }
                Ok(())
            }

            /// Decides the starts of `queue` in batches until every sender (every clone of the store) is gone: the
            /// starts waiting when it is free, up to [`START_BATCH`], in one transaction. A batch that fails is
            /// decided again one start at a time, so that one bad start fails alone.
            // PostgreSQL's: on SQLite, the starts of a batch of polls are decided together already.
            #[allow(dead_code)]
            pub(crate) async fn answer_starts(self, mut queue: tokio::sync::mpsc::Receiver<StartJob>) {
                let mut batch = Vec::with_capacity(START_BATCH);
                while queue.recv_many(&mut batch, START_BATCH).await > 0 {
                    let now = batch.iter().map(|j| j.now).max().unwrap_or(0);
                    let pairs: Vec<(String, String)> = batch.iter().map(|j| (j.node.clone(), j.deployment.clone())).collect();
                    match self.start_batch(&pairs, now).await {
                        Ok(started) => {
                            for job in batch.drain(..) {
                                let _ = job.reply.send(Ok(started.get(&job.node).cloned()));
                            }
                        }
                        Err(e) => {
                            log::warn!("a batch of {} starts: {}; deciding each alone", batch.len(), $crate::error::chain(&e));
                            for job in batch.drain(..) {
                                let one = [(job.node.clone(), job.deployment.clone())];
                                let answer = self.start_batch(&one, job.now).await.map(|mut m| m.remove(&job.node));
                                let _ = job.reply.send(answer);
                            }
                        }
                    }
                }
            }
        }

        fn deployment_info(d: &DeploymentRow, bundle: BundleInfo, waves: &[(i64, String, i64)]) -> Result<DeploymentInfo> {
            let policy = d.parsed()?;
            let n = d.counters.members;
            let count = |w: u32, state: &str| {
                waves
                    .iter()
                    .filter(|(wv, s, _)| *wv == i64::from(w) && (s == state || (state == "begun" && s != "waiting")))
                    .map(|(_, _, c)| u64::try_from(*c).unwrap_or(0))
                    .sum::<u64>()
            };
            let wave_infos = (0..policy.waves.len() as u32)
                .map(|w| WaveInfo {
                    index: w,
                    size: policy.describe(w),
                    target: policy.target(w, n),
                    begun: count(w, "begun"),
                    committed: count(w, "committed"),
                    failed: count(w, "failed"),
                })
                .collect();
            let pause = match (d.state, d.pause_reason) {
                (DeploymentState::Paused, Some(reason)) => Some(Pause {
                    reason,
                    detail: d.pause_detail.clone().unwrap_or_default(),
                    since: rfc3339(d.paused_at.unwrap_or(d.created_at)),
                }),
                _ => None,
            };
            let c = &d.counters;
            Ok(DeploymentInfo {
                id: d.id.clone(),
                name: d.name.clone(),
                bundle,
                selector: d.selector.clone(),
                policy: d.policy.clone(),
                state: d.state,
                pause,
                wave: c.wave,
                waves: wave_infos,
                complete: d.is_complete(&policy),
                n_nodes: c.members,
                n_waiting: c.members.saturating_sub(c.begun),
                n_updating: c.in_flight,
                n_committed: d.n_committed,
                n_failed: d.n_failed,
                created_at: rfc3339(d.created_at),
                created_by: d.created_by.clone(),
            })
        }

        async fn deployment_info_of(conn: &mut $conn, d: &DeploymentRow) -> Result<DeploymentInfo> {
            let bundle = bundle_by_hash(conn, &d.bundle)
                .await?
                .ok_or_else(|| Refusal::NotFound { what: "bundle", id: d.bundle.clone() })?;
            let rows = sqlx::query(
                "SELECT COALESCE(wave, -1) AS wave, state, COUNT(*) AS n FROM deployment_nodes \
                 WHERE deployment = $1 AND state <> 'left' GROUP BY 1, 2",
            )
            .bind(&d.id)
            .fetch_all(&mut *conn)
            .await
            .map_err(db("count a deployment's nodes"))?;
            let mut waves = Vec::with_capacity(rows.len());
            for row in &rows {
                let r = || db("count a deployment's nodes");
                waves.push((row.try_get::<i64, _>("wave").map_err(r())?, row.try_get::<String, _>("state").map_err(r())?, row.try_get::<i64, _>("n").map_err(r())?));
            }
            deployment_info(d, bundle, &waves)
        }

        fn site_row(row: &Row, now: i64) -> Result<SiteInfo> {
            let r = || db("read a site");
            let time_zone: String = row.try_get("time_zone").map_err(r())?;
            let windows: Vec<String> = from_json("site windows", &row.try_get::<String, _>("windows").map_err(r())?)?;
            let open_now = $crate::rollout::open_at(&time_zone, &windows, now);
            Ok(SiteInfo {
                name: row.try_get("name").map_err(r())?,
                time_zone,
                windows,
                open_now,
                n_nodes: u64::try_from(row.try_get::<i64, _>("n_nodes").map_err(r())?).unwrap_or(0),
            })
        }

        impl Rollouts for $store {
            fn create_deployment<'a>(
                &'a self,
                actor: &'a Actor,
                req: &'a CreateDeployment,
                now: i64,
            ) -> StoreFuture<'a, DeploymentInfo> {
                Box::pin(async move {
                    let selector = Selector::parse(&req.selector)
                        .map_err(|e| Refusal::Invalid { field: "selector", reason: e.to_string() })?;
                    Policy::parse(&req.policy).map_err(|e| Refusal::Invalid { field: "policy", reason: e.to_string() })?;
                    let mut tx = self.write().await?;
                    if !$membership_lock.is_empty() {
                        sqlx::query($membership_lock).execute(&mut *tx).await.map_err(db("take the membership lock"))?;
                    }
                    bundle_by_hash(&mut tx, &req.bundle)
                        .await?
                        .ok_or_else(|| Refusal::NotFound { what: "bundle", id: req.bundle.clone() })?;
                    let sql = format!("{NODE_SELECT} WHERE n.status = 'accepted' ORDER BY n.id");
                    let rows = sqlx::query(&sql).fetch_all(&mut *tx).await.map_err(db("read the nodes"))?;
                    let mut matched = Vec::new();
                    for row in &rows {
                        let node = node_row(row)?;
                        if node.pin.is_none() && selector.matches(&facts_of(&node)) {
                            matched.push(node);
                        }
                    }
                    // Each node's current place, and whether its deployment is still under way.
                    let rows = sqlx::query(
                        "SELECT dn.node, dn.state, dn.deployment, d.state AS dstate FROM deployment_nodes dn \
                         JOIN deployments d ON d.id = dn.deployment WHERE dn.state <> 'left'",
                    )
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db("read the deployments' nodes"))?;
                    let mut places: std::collections::HashMap<String, (String, String, String)> = std::collections::HashMap::new();
                    for row in &rows {
                        let r = || db("read the deployments' nodes");
                        places.insert(
                            row.try_get("node").map_err(r())?,
                            (row.try_get("state").map_err(r())?, row.try_get("deployment").map_err(r())?, row.try_get("dstate").map_err(r())?),
                        );
                    }
                    let overlap: Vec<String> = matched
                        .iter()
                        .filter(|n| {
                            places.get(&n.id).is_some_and(|(state, _, dstate)| {
                                dstate != "aborted" && (state == "waiting" || state == "updating")
                            })
                        })
                        .map(|n| n.id.clone())
                        .collect();
                    if !overlap.is_empty() {
                        let mut named: Vec<String> = overlap
                            .iter()
                            .take(10)
                            .map(|n| format!("{n} (in {})", places[n].1))
                            .collect();
                        if overlap.len() > 10 {
                            named.push(format!("and {} more", overlap.len() - 10));
                        }
                        return Err(Refusal::Conflict {
                            reason: format!(
                                "{} of the {} nodes matched are in a deployment under way: {}",
                                overlap.len(),
                                matched.len(),
                                named.join(", ")
                            ),
                        }
                        .into());
                    }
                    let id = new_deployment_id();
                    sqlx::query(
                        "INSERT INTO deployments (id, name, bundle, selector, policy, state, wave, n_members, n_begun, \
                         n_in_flight, n_committed, n_failed, wave_failed, created_at, created_by, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, 'running', 0, 0, 0, 0, 0, 0, 0, $6, $7, $6)",
                    )
                    .bind(&id)
                    .bind(&req.name)
                    .bind(&req.bundle)
                    .bind(&req.selector)
                    .bind(to_json(&req.policy))
                    .bind(now)
                    .bind(&actor.name)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("insert a deployment"))?;
                    let mut d = lock_deployment(&mut tx, &id).await?;
                    // Nodes whose deployment ended or was aborted move to this one. What they leave is not
                    // counted there any longer (only nodes waiting or updating in a deployment under way are, and
                    // those were refused above); its row is locked all the same, as for any change of its nodes.
                    // Statements of many rows each: 100,000 nodes placed are some 30 statements, not 300,000.
                    let mut olds: Vec<&str> = matched.iter().filter_map(|n| places.get(&n.id).map(|p| p.1.as_str())).collect();
                    olds.sort_unstable();
                    olds.dedup();
                    for old in olds {
                        lock_deployment(&mut tx, old).await?;
                    }
                    let moving: Vec<&str> =
                        matched.iter().filter(|n| places.contains_key(&n.id)).map(|n| n.id.as_str()).collect();
                    for chunk in moving.chunks(ROWS_A_STATEMENT) {
                        let sql = format!(
                            "UPDATE deployment_nodes SET state = 'left', finished_at = COALESCE(finished_at, $1) \
                             WHERE state <> 'left' AND node IN ({})",
                            params(2, chunk.len())
                        );
                        let mut q = sqlx::query(&sql).bind(now);
                        for n in chunk {
                            q = q.bind(*n);
                        }
                        q.execute(&mut *tx).await.map_err(db("take nodes out of their deployments"))?;
                    }
                    // Each joins waiting, or committed already when it runs the bundle.
                    let runs: Vec<bool> =
                        matched.iter().map(|n| booted_manifest(n).as_deref() == Some(req.bundle.as_str())).collect();
                    let rows: Vec<(&str, bool)> = matched.iter().map(|n| n.id.as_str()).zip(runs).collect();
                    for chunk in rows.chunks(ROWS_A_STATEMENT / 2) {
                        // A committed node's wave is the current one, and it has finished as it joined.
                        let values: Vec<String> = (0..chunk.len())
                            .map(|i| {
                                let (node, state) = (4 + 2 * i, 5 + 2 * i);
                                format!(
                                    "($1, ${node}, ${state}, CASE WHEN ${state} = 'committed' THEN $2 END, $3, \
                                     CASE WHEN ${state} = 'committed' THEN $3 END)"
                                )
                            })
                            .collect();
                        let sql = format!(
                            "INSERT INTO deployment_nodes (deployment, node, state, wave, joined_at, finished_at) VALUES {}",
                            values.join(", ")
                        );
                        let mut q = sqlx::query(&sql).bind(&id).bind(i64::from(d.counters.wave)).bind(now);
                        for (node, runs_it) in chunk {
                            let state = if *runs_it { MemberState::Committed } else { MemberState::Waiting };
                            q = q.bind(*node).bind(state.word());
                        }
                        q.execute(&mut *tx).await.map_err(db("put nodes into a deployment"))?;
                    }
                    let running: Vec<&str> = rows.iter().filter(|(_, r)| *r).map(|(n, _)| *n).collect();
                    for chunk in running.chunks(ROWS_A_STATEMENT) {
                        let sql = format!("UPDATE nodes SET baseline = $1 WHERE id IN ({})", params(2, chunk.len()));
                        let mut q = sqlx::query(&sql).bind(&req.bundle);
                        for n in chunk {
                            q = q.bind(*n);
                        }
                        q.execute(&mut *tx).await.map_err(db("record nodes' bundle"))?;
                    }
                    d.counters.members += matched.len() as u64;
                    d.counters.begun += running.len() as u64;
                    d.n_committed += running.len() as u64;
                    let policy = d.parsed()?;
                    advance(&mut tx, &mut d, &policy, now).await?;
                    save_deployment(&mut tx, &d, now).await?;
                    let change = serde_json::json!({
                        "name": req.name, "bundle": req.bundle, "selector": req.selector, "policy": req.policy,
                        "n_nodes": matched.len()
                    });
                    audit(&mut tx, actor, "deployment-create", &id, change, now).await?;
                    let info = deployment_info_of(&mut tx, &d).await?;
                    tx.commit().await.map_err(db("commit a deployment"))?;
                    Ok(info)
                })
            }

            fn list_deployments(&self) -> StoreFuture<'_, Vec<DeploymentInfo>> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    let rows = sqlx::query("SELECT * FROM deployments ORDER BY created_at DESC, id DESC")
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(db("read the deployments"))?;
                    let mut out = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let d = deployment_row(row)?;
                        out.push(deployment_info_of(&mut conn, &d).await?);
                    }
                    Ok(out)
                })
            }

            fn deployment<'a>(&'a self, id: &'a str) -> StoreFuture<'a, DeploymentInfo> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    let row = sqlx::query(&format!("{DEPLOYMENT_SELECT} WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(db("read a deployment"))?
                        .ok_or_else(|| Refusal::NotFound { what: "deployment", id: id.to_owned() })?;
                    let d = deployment_row(&row)?;
                    deployment_info_of(&mut conn, &d).await
                })
            }

            fn deployment_nodes<'a>(&'a self, id: &'a str, first: Option<u32>) -> StoreFuture<'a, MemberList> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    const ALL: &str = "SELECT dn.*, n.site AS nsite FROM deployment_nodes dn JOIN nodes n ON n.id = dn.node \
                         WHERE dn.deployment = $1 AND dn.state <> 'left'";
                    let sql = match first {
                        None => format!("{ALL} ORDER BY dn.node"),
                        Some(_) => format!(
                            "{ALL} ORDER BY CASE dn.state WHEN 'failed' THEN 0 WHEN 'updating' THEN 1 \
                             WHEN 'waiting' THEN 2 ELSE 3 END, dn.node LIMIT $2"
                        ),
                    };
                    let mut q = sqlx::query(&sql).bind(id);
                    if let Some(n) = first {
                        q = q.bind(i64::from(n));
                    }
                    let rows = q
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db("read a deployment's nodes"))?;
                    let mut nodes = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let r = || db("read a deployment's nodes");
                        let Some(state) = member_state(&row.try_get::<String, _>("state").map_err(r())?)? else { continue };
                        let site: Option<String> = row.try_get("site").map_err(r())?;
                        nodes.push(MemberInfo {
                            node: row.try_get("node").map_err(r())?,
                            site: site.or(row.try_get("nsite").map_err(r())?),
                            state,
                            wave: row.try_get::<Option<i64>, _>("wave").map_err(r())?.and_then(|w| u32::try_from(w).ok()),
                            joined_at: rfc3339(row.try_get("joined_at").map_err(r())?),
                            started_at: row.try_get::<Option<i64>, _>("started_at").map_err(r())?.map(rfc3339),
                            finished_at: row.try_get::<Option<i64>, _>("finished_at").map_err(r())?.map(rfc3339),
                            result: row.try_get("result").map_err(r())?,
                        });
                    }
                    Ok(MemberList { nodes })
                })
            }

            fn set_deployment_state<'a>(
                &'a self,
                actor: &'a Actor,
                id: &'a str,
                verb: &'a str,
                now: i64,
            ) -> StoreFuture<'a, DeploymentInfo> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let mut d = lock_deployment(&mut tx, id).await?;
                    let before = serde_json::json!({"state": d.state.word(), "pause": d.pause_reason.map(PauseReason::word)});
                    let conflict = |why: String| -> Error { Refusal::Conflict { reason: why }.into() };
                    match (verb, d.state) {
                        ("pause", DeploymentState::Running) => {
                            pause(&mut d, PauseReason::Operator, format!("paused by {}", actor.name), now);
                        }
                        ("resume", DeploymentState::Paused) => {
                            let reason = d.pause_reason;
                            d.state = DeploymentState::Running;
                            d.pause_reason = None;
                            d.pause_detail = None;
                            d.paused_at = None;
                            // A resumed wave gets a fresh failure budget; an approved one is the next wave.
                            d.counters.wave_failed = 0;
                            let policy = d.parsed()?;
                            if reason == Some(PauseReason::Approval) && !policy.is_last(d.counters.wave) {
                                d.counters.wave += 1;
                                let change = serde_json::json!({
                                    "wave": d.counters.wave, "size": policy.describe(d.counters.wave),
                                    "approved_by": actor.name,
                                });
                                audit(&mut tx, actor, "deployment-wave", id, change, now).await?;
                            }
                            advance(&mut tx, &mut d, &policy, now).await?;
                        }
                        ("abort", DeploymentState::Running | DeploymentState::Paused) => {
                            d.state = DeploymentState::Aborted;
                            d.pause_reason = None;
                            d.pause_detail = None;
                        }
                        (_, state) => {
                            return Err(conflict(format!("deployment {id} is {}: cannot {verb} it", state.word())))
                        }
                    }
                    save_deployment(&mut tx, &d, now).await?;
                    let after = serde_json::json!({"state": d.state.word(), "pause": d.pause_reason.map(PauseReason::word), "wave": d.counters.wave});
                    audit(&mut tx, actor, &format!("deployment-{verb}"), id, serde_json::json!({"before": before, "after": after}), now).await?;
                    let info = deployment_info_of(&mut tx, &d).await?;
                    tx.commit().await.map_err(db("commit a deployment's change"))?;
                    Ok(info)
                })
            }

            fn set_site<'a>(&'a self, actor: &'a Actor, name: &'a str, req: &'a SetSite, now: i64) -> StoreFuture<'a, SiteInfo> {
                Box::pin(async move {
                    let windows = $crate::rollout::canonical_windows(&req.time_zone, &req.windows)?;
                    let mut tx = self.write().await?;
                    let before = sqlx::query(concat!("SELECT time_zone, windows FROM sites WHERE name = $1", $lock))
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db("read a site"))?;
                    let before = match before {
                        Some(row) => serde_json::json!({
                            "time_zone": row.try_get::<String, _>("time_zone").map_err(db("read a site"))?,
                            "windows": from_json::<Vec<String>>("site windows", &row.try_get::<String, _>("windows").map_err(db("read a site"))?)?,
                        }),
                        None => serde_json::Value::Null,
                    };
                    sqlx::query(
                        "INSERT INTO sites (name, time_zone, windows, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
                         ON CONFLICT (name) DO UPDATE SET time_zone = excluded.time_zone, windows = excluded.windows, \
                         updated_at = excluded.updated_at",
                    )
                    .bind(name)
                    .bind(&req.time_zone)
                    .bind(to_json(&windows))
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("write a site"))?;
                    let after = serde_json::json!({"time_zone": req.time_zone, "windows": windows});
                    audit(&mut tx, actor, "site-set", name, serde_json::json!({"before": before, "after": after}), now).await?;
                    let row = sqlx::query(
                        "SELECT s.*, (SELECT COUNT(*) FROM nodes n WHERE n.site = s.name) AS n_nodes FROM sites s WHERE s.name = $1",
                    )
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("read a site"))?;
                    let info = site_row(&row, now)?;
                    tx.commit().await.map_err(db("commit a site"))?;
                    Ok(info)
                })
            }

            fn list_sites(&self, now: i64) -> StoreFuture<'_, Vec<SiteInfo>> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    let rows = sqlx::query(
                        "SELECT s.*, (SELECT COUNT(*) FROM nodes n WHERE n.site = s.name) AS n_nodes FROM sites s ORDER BY s.name",
                    )
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db("read the sites"))?;
                    rows.iter().map(|row| site_row(row, now)).collect()
                })
            }
        }
    };
}

pub(crate) use rollout_impl;

#[cfg(test)]
mod tests {
    use super::*;

    fn report(kind: ReportKind, version: Option<&str>) -> Report {
        Report {
            seq: 1,
            time: "2026-12-06T10:00:00Z".into(),
            kind,
            message: "m".into(),
            reason: None,
            exit_code: None,
            version: version.map(str::to_owned),
            slot: None,
            phase: None,
            progress: None,
            action: None,
        }
    }

    #[test]
    fn reports_end_an_update_only_for_its_version() {
        let check = |kind, version, expected: Option<bool>| {
            let got = outcome(&report(kind, version), "2.0").map(|o| o == Outcome::Committed);
            assert_eq!(got, expected, "{kind:?} {version:?}");
        };
        check(ReportKind::Committed, Some("2.0"), Some(true));
        check(ReportKind::MarkedGood, Some("2.0"), Some(true));
        check(ReportKind::Committed, Some("1.0"), None);
        check(ReportKind::Committed, None, None);
        check(ReportKind::RolledBack, Some("2.0"), Some(false));
        check(ReportKind::RolledBack, Some("1.0"), None);
        check(ReportKind::InstallFailed, None, Some(false));
        check(ReportKind::Refused, Some("2.0"), Some(false));
        check(ReportKind::Failed, Some("2.0"), Some(false));
        check(ReportKind::Flipped, Some("2.0"), None);
        check(ReportKind::Booted, Some("2.0"), None);
        check(ReportKind::Interrupted, Some("2.0"), None);
    }
}
