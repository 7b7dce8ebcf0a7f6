//! The admin API's bodies for rollouts: deployments (a bundle for the nodes a selector matches, rolled out in waves
//! under a policy) and sites (a time zone and the maintenance windows in which their nodes may flip); docs/rollouts.md.
//!
//! Boundary types like `admin`'s: request bodies deny unknown fields, and their `check()` refuses what serde lets
//! through. The selector, the waves, the brake and the windows are carried as the text an operator writes; the
//! endpoint parses them (and refuses them with the reason) when a deployment or a site is created.

use serde::{Deserialize, Serialize};

use crate::admin::check_name;
use crate::admin::BundleInfo;
use crate::error::{Error, Result};
use crate::node::{check_count, check_hex32, check_text, MAX_NAME_CHARS, MAX_TEXT_CHARS};

/// At most this many waves in a policy, and windows in a site.
pub const MAX_WAVES: usize = 32;

/// How a deployment proceeds: a canary, then waves, within limits, with a failure brake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPolicy {
    /// Nodes in the first wave (0: no canary).
    #[serde(default)]
    pub canary: u32,
    /// The waves after the canary, each the share of the deployment's nodes (`"10%"`) or the number of them
    /// (`"200"`) that have begun by its end; the last one is `"100%"`.
    pub waves: Vec<String>,
    /// At most this many nodes updating at once in the deployment (none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// At most this many nodes of one site updating at once (none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_site: Option<u32>,
    /// Each wave after the first waits for an operator's `resume` once the wave before it has ended.
    #[serde(default)]
    pub approve_waves: bool,
    /// Failures in the current wave that pause the rollout: a number (`"3"`) or a share of the wave (`"10%"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brake: Option<String>,
    /// Flip only inside the node's site windows (sites without windows flip at any time).
    #[serde(default = "yes")]
    pub windows: bool,
    /// The longest an application's update lock may hold a node's flip back, in seconds.
    #[serde(default = "default_lock_max_secs")]
    pub lock_max_secs: u64,
}

fn yes() -> bool {
    true
}

fn default_lock_max_secs() -> u64 {
    3600
}

impl RolloutPolicy {
    /// Refuses lengths and characters; the endpoint parses the waves and the brake.
    pub fn check(&self) -> Result<()> {
        check_count("policy.waves", self.waves.len(), MAX_WAVES)?;
        if self.waves.is_empty() {
            return Err(Error::BadField { field: "policy.waves", expected: "at least one wave, the last \"100%\"" });
        }
        for w in &self.waves {
            check_text("policy.waves", w, 16)?;
        }
        if let Some(b) = &self.brake {
            check_text("policy.brake", b, 16)?;
        }
        if self.max_concurrent == Some(0) || self.max_per_site == Some(0) {
            return Err(Error::BadField { field: "policy.max_concurrent", expected: "at least 1 when set" });
        }
        Ok(())
    }
}

/// `POST /v1/admin/deployments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    /// A name for people.
    pub name: String,
    /// The bundle's manifest hash.
    pub bundle: String,
    /// Which nodes: a label selector over labels and inventory (docs/rollouts.md, "Selectors"); empty for all.
    #[serde(default)]
    pub selector: String,
    /// How it proceeds.
    pub policy: RolloutPolicy,
}

impl CreateDeployment {
    /// Refuses what serde lets through.
    pub fn check(&self) -> Result<()> {
        check_name("name", &self.name)?;
        check_hex32("bundle", &self.bundle)?;
        check_text("selector", &self.selector, MAX_TEXT_CHARS)?;
        self.policy.check()
    }
}

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentState {
    /// Nodes are told to update, wave by wave.
    Running,
    /// No node is told to start, and nodes already updating are told not to flip; `pause` says why.
    Paused,
    /// Stopped for good: no node starts, nodes not yet committed go back to what they ran.
    Aborted,
}

impl DeploymentState {
    /// The word, as in JSON and in the database.
    pub fn word(self) -> &'static str {
        match self {
            DeploymentState::Running => "running",
            DeploymentState::Paused => "paused",
            DeploymentState::Aborted => "aborted",
        }
    }

    /// Reads [`DeploymentState::word`] back.
    pub fn from_word(word: &str) -> Option<DeploymentState> {
        [DeploymentState::Running, DeploymentState::Paused, DeploymentState::Aborted]
            .into_iter()
            .find(|s| s.word() == word)
    }
}

/// Why a deployment is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PauseReason {
    /// An operator paused it.
    Operator,
    /// The failure brake: the current wave's failures reached the policy's threshold.
    Brake,
    /// A wave ended and the policy waits for an operator's approval of the next.
    Approval,
}

impl PauseReason {
    /// The word, as in JSON and in the database.
    pub fn word(self) -> &'static str {
        match self {
            PauseReason::Operator => "operator",
            PauseReason::Brake => "brake",
            PauseReason::Approval => "approval",
        }
    }

    /// Reads [`PauseReason::word`] back.
    pub fn from_word(word: &str) -> Option<PauseReason> {
        [PauseReason::Operator, PauseReason::Brake, PauseReason::Approval].into_iter().find(|s| s.word() == word)
    }
}

/// Why and since when a deployment is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    /// Why.
    pub reason: PauseReason,
    /// A sentence for a person (the brake's count and threshold, the operator's name).
    pub detail: String,
    /// Since when.
    pub since: String,
}

/// One wave of a deployment and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveInfo {
    /// 0 for the canary (when the policy has one), then 1, 2, ...
    pub index: u32,
    /// As the policy says it (`"canary 10"`, `"10%"`, `"200"`).
    pub size: String,
    /// Nodes that have begun by the end of this wave, as the deployment's size now makes it.
    pub target: u64,
    /// Nodes that began in this wave.
    pub begun: u64,
    /// Of those, committed.
    pub committed: u64,
    /// Of those, failed.
    pub failed: u64,
}

/// A deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentInfo {
    /// `d-` and 8 random bytes in hex.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The bundle.
    pub bundle: BundleInfo,
    /// The selector, as given.
    pub selector: String,
    /// The policy.
    pub policy: RolloutPolicy,
    /// Where it stands.
    pub state: DeploymentState,
    /// Why it is paused, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    /// The current wave's index.
    pub wave: u32,
    /// Every wave, with its progress.
    pub waves: Vec<WaveInfo>,
    /// Every wave has ended and no node is waiting or updating (a node that matches later still joins).
    pub complete: bool,
    /// Nodes in it.
    pub n_nodes: u64,
    /// Nodes not told to start yet.
    pub n_waiting: u64,
    /// Nodes updating now.
    pub n_updating: u64,
    /// Nodes committed.
    pub n_committed: u64,
    /// Nodes failed.
    pub n_failed: u64,
    /// When, and by whom.
    pub created_at: String,
    /// The admin token's name.
    pub created_by: String,
}

/// `GET /v1/admin/deployments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentList {
    /// Newest first.
    pub deployments: Vec<DeploymentInfo>,
}

/// A node's place in a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberState {
    /// Matched, not told to start yet.
    Waiting,
    /// Told to update: downloading, verifying, waiting for its window or lock, flipping, on trial.
    Updating,
    /// Committed the deployment's bundle.
    Committed,
    /// Reported a failure (refused, install failed, rolled back).
    Failed,
}

impl MemberState {
    /// The word, as in JSON and in the database.
    pub fn word(self) -> &'static str {
        match self {
            MemberState::Waiting => "waiting",
            MemberState::Updating => "updating",
            MemberState::Committed => "committed",
            MemberState::Failed => "failed",
        }
    }

    /// Reads [`MemberState::word`] back.
    pub fn from_word(word: &str) -> Option<MemberState> {
        [MemberState::Waiting, MemberState::Updating, MemberState::Committed, MemberState::Failed]
            .into_iter()
            .find(|s| s.word() == word)
    }
}

/// A node of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberInfo {
    /// The node.
    pub node: String,
    /// Its site when it started (or now, while waiting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Where it stands.
    pub state: MemberState,
    /// The wave it began in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<u32>,
    /// When it joined (at the start, or later when it came to match).
    pub joined_at: String,
    /// When it was told to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it committed or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// `GET /v1/admin/deployments/{id}/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberList {
    /// By node id.
    pub nodes: Vec<MemberInfo>,
}

/// `PUT /v1/admin/sites/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSite {
    /// The IANA time zone its windows are in (`Europe/Berlin`).
    pub time_zone: String,
    /// Its maintenance windows (`"mon-fri 02:00-04:00"`); none: flips at any time.
    #[serde(default)]
    pub windows: Vec<String>,
}

impl SetSite {
    /// Refuses lengths and characters; the endpoint parses the zone and the windows.
    pub fn check(&self) -> Result<()> {
        check_text("time_zone", &self.time_zone, MAX_NAME_CHARS)?;
        check_count("windows", self.windows.len(), MAX_WAVES)?;
        for w in &self.windows {
            check_text("windows", w, MAX_NAME_CHARS)?;
        }
        Ok(())
    }
}

/// A site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteInfo {
    /// Its name, as nodes report it in their inventory.
    pub name: String,
    /// Its time zone.
    pub time_zone: String,
    /// Its windows, in canonical form.
    pub windows: Vec<String>,
    /// Whether it is inside a window now (always, with none).
    pub open_now: bool,
    /// Nodes that report this site.
    pub n_nodes: u64,
}

/// `GET /v1/admin/sites`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteList {
    /// By name.
    pub sites: Vec<SiteInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_read_back() {
        for s in [DeploymentState::Running, DeploymentState::Paused, DeploymentState::Aborted] {
            assert_eq!(DeploymentState::from_word(s.word()), Some(s));
            assert_eq!(serde_json::to_value(s).expect("json"), s.word());
        }
        for s in [PauseReason::Operator, PauseReason::Brake, PauseReason::Approval] {
            assert_eq!(PauseReason::from_word(s.word()), Some(s));
        }
        for s in [MemberState::Waiting, MemberState::Updating, MemberState::Committed, MemberState::Failed] {
            assert_eq!(MemberState::from_word(s.word()), Some(s));
            assert_eq!(serde_json::to_value(s).expect("json"), s.word());
        }
    }

    #[test]
    fn a_policy_reads_with_its_defaults_and_is_checked() {
        let p: RolloutPolicy = serde_json::from_str(r#"{"canary": 10, "waves": ["10%", "100%"]}"#).expect("policy");
        assert!(p.windows && !p.approve_waves && p.lock_max_secs == 3600 && p.brake.is_none());
        p.check().expect("good");
        let bad = RolloutPolicy { waves: Vec::new(), ..p.clone() };
        assert!(matches!(bad.check(), Err(Error::BadField { field: "policy.waves", .. })));
        let bad = RolloutPolicy { max_per_site: Some(0), ..p.clone() };
        assert!(bad.check().is_err());
        assert!(serde_json::from_str::<RolloutPolicy>(r#"{"waves": ["100%"], "speed": 1}"#).is_err());
        let c = CreateDeployment { name: "v2".into(), bundle: "ab".into(), selector: String::new(), policy: p };
        assert!(matches!(c.check(), Err(Error::BadField { field: "bundle", .. })));
    }
}
