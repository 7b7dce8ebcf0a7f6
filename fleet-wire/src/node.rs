//! The node API's bodies and paths: what `edge-agent` sends to `edge-cloud` and what it gets back
//! (docs/fleet-protocol.md, "The node API").
//!
//! These are boundary types (STYLE.md, "The shape of the workspace"): a field added, renamed or removed here changes
//! the protocol, so the docs change with it. Every body the endpoint accepts denies unknown fields, and each has a
//! `check` that refuses what serde alone cannot (a count or a length past its bound, a word out of its set), so that
//! the agent can check what it is about to send with the rule the endpoint applies.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::error::{Error, Result};

/// The prefix of every node API path.
pub const NODE_API: &str = "/v1";

/// `POST`: a node enrolls ([`EnrollRequest`] → [`EnrollReply`]).
pub const ENROLL_PATH: &str = "/v1/enroll";

/// The largest body the endpoint reads on a node request other than diagnostics.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The largest diagnostics body.
pub const MAX_DIAGNOSTICS_BYTES: usize = 4 * 1024 * 1024;
/// The most reports in one batch.
pub const MAX_REPORTS_PER_BATCH: usize = 100;
/// The most labels on a node.
pub const MAX_LABELS: usize = 64;
/// The most disks, NICs, or stack components an inventory lists.
pub const MAX_INVENTORY_ITEMS: usize = 64;
/// The longest text field (a message, a reason, a version) in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
/// The longest name-like field (a label key or value, a hostname, a site) in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// `GET`: the node's desired state ([`DesiredState`]; `If-None-Match` gives 304 when it has not changed).
pub fn desired_path(node: &NodeId) -> String {
    format!("/v1/nodes/{node}/desired")
}

/// `PUT`: the node's inventory ([`Inventory`] → 204).
pub fn inventory_path(node: &NodeId) -> String {
    format!("/v1/nodes/{node}/inventory")
}

/// `POST`: a batch of reports ([`ReportBatch`] → [`ReportAck`]).
pub fn reports_path(node: &NodeId) -> String {
    format!("/v1/nodes/{node}/reports")
}

/// `PUT`: the diagnostics an action asked for ([`Diagnostics`] → 204).
pub fn diagnostics_path(node: &NodeId, action: &str) -> String {
    format!("/v1/nodes/{node}/actions/{action}/diagnostics")
}

/// A node's identity: `n-` and the lowercase hex of the first 16 bytes of the SHA-256 of its ed25519 public key.
///
/// It is derived from the key, so a node knows its id before it enrolls, a resent enrollment names the same node,
/// and a node whose key is gone (a wiped data partition) comes back as a new identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// The id of the node that holds the private half of `key`.
    pub fn of_key(key: &VerifyingKey) -> NodeId {
        let hash = sha2::Sha256::digest(key.as_bytes());
        let mut id = String::with_capacity(34);
        id.push_str("n-");
        for b in &hash[..16] {
            id.push_str(&format!("{b:02x}"));
        }
        NodeId(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeId {
    type Error = Error;
    fn try_from(s: String) -> Result<NodeId> {
        let ok = s.len() == 34
            && s.starts_with("n-")
            && s.bytes().skip(2).all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(NodeId(s))
        } else {
            Err(Error::BadNodeId { id: truncate(&s) })
        }
    }
}

impl std::str::FromStr for NodeId {
    type Err = Error;
    fn from_str(s: &str) -> Result<NodeId> {
        NodeId::try_from(s.to_owned())
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ed25519 public key in a body: the standard base64 of its 32 bytes.
pub fn encode_public_key(key: &VerifyingKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

/// Reads [`encode_public_key`]'s form back.
pub fn decode_public_key(text: &str) -> Result<VerifyingKey> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| Error::BadPublicKey)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| Error::BadPublicKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| Error::BadPublicKey)
}

/// `POST /v1/enroll`: signed like every node request, with the key in `public_key` and `keyid` the id derived
/// from it, which proves the node holds that key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The fleet enrollment token, as baked into the image or the provisioning disk.
    pub token: String,
    /// The node's public key ([`encode_public_key`]).
    pub public_key: String,
    /// What the node is and runs.
    pub inventory: Inventory,
}

impl EnrollRequest {
    /// Refuses what the endpoint refuses beyond serde.
    pub fn check(&self) -> Result<()> {
        check_text("token", &self.token, MAX_NAME_CHARS)?;
        decode_public_key(&self.public_key)?;
        self.inventory.check()
    }
}

/// Where a node stands with the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStatus {
    /// Enrolled, waiting for an admin to accept it.
    Pending,
    /// Managed: it is given a desired state.
    Accepted,
    /// Refused by an admin; its requests are refused from then on.
    Rejected,
    /// Retired by an admin; its history is deleted and its requests are refused.
    Decommissioned,
}

impl NodeStatus {
    /// The word, as in JSON.
    pub fn word(self) -> &'static str {
        match self {
            NodeStatus::Pending => "pending",
            NodeStatus::Accepted => "accepted",
            NodeStatus::Rejected => "rejected",
            NodeStatus::Decommissioned => "decommissioned",
        }
    }

    /// Reads [`NodeStatus::word`] back.
    pub fn from_word(word: &str) -> Option<NodeStatus> {
        [NodeStatus::Pending, NodeStatus::Accepted, NodeStatus::Rejected, NodeStatus::Decommissioned]
            .into_iter()
            .find(|s| s.word() == word)
    }
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// The reply to an enrollment (201 when the node is new, 200 when it was already enrolled with this key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollReply {
    /// The node's id (the one derived from its key).
    pub node_id: NodeId,
    /// Pending or accepted, as the token's policy says.
    pub status: NodeStatus,
    /// How often to poll the desired state.
    pub poll_interval_secs: u32,
}

/// What a node is and runs: sent with its enrollment and again (`PUT`) whenever it changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// The node's host name.
    pub hostname: String,
    /// The site from the agent's config, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Labels from the agent's config (an admin's labels on the endpoint are kept apart and win).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The machine.
    pub hardware: Hardware,
    /// The running kernel's release (`uname -r`).
    pub kernel: String,
    /// The machine architecture (`uname -m`).
    pub arch: String,
    /// Both slots.
    pub slots: Vec<SlotInventory>,
    /// The updater's phase, if an update is under way or has ended (`edge-update status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_phase: Option<String>,
    /// The agent's version.
    pub agent_version: String,
}

/// The machine's hardware, as the node's kernel sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// DMI system vendor.
    #[serde(default)]
    pub vendor: String,
    /// DMI product name.
    #[serde(default)]
    pub product: String,
    /// DMI product serial.
    #[serde(default)]
    pub serial: String,
    /// The CPU model name.
    #[serde(default)]
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpu_count: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Block devices (whole disks).
    #[serde(default)]
    pub disks: Vec<Disk>,
    /// Network interfaces other than loopback.
    #[serde(default)]
    pub nics: Vec<Nic>,
}

/// A disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// The kernel's name (`vda`, `nvme0n1`).
    pub name: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// The model, when the kernel knows it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
}

/// A network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    /// The kernel's name.
    pub name: String,
    /// Its MAC address, lowercase with colons.
    pub mac: String,
}

/// One slot, as the node's boot state and journal see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotInventory {
    /// `A` or `B`.
    pub slot: String,
    /// Running now.
    pub booted: bool,
    /// `good`, `trial` (tries left, not good), `bad` (no tries, not good) or `empty` (nothing installed).
    pub state: String,
    /// The installed bundle's name, version and security version, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<SlotBundle>,
}

/// The bundle in a slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotBundle {
    /// The manifest's name.
    pub name: String,
    /// The manifest's version.
    pub version: String,
    /// The manifest's security version.
    pub security_version: u64,
    /// The blake3 of the manifest, lowercase hex.
    pub manifest_hash: String,
    /// The stack the manifest lists (components and versions), as the manifest has it.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub stack: serde_json::Value,
}

impl Inventory {
    /// Refuses what the endpoint refuses beyond serde: counts and lengths past their bounds.
    pub fn check(&self) -> Result<()> {
        check_text("hostname", &self.hostname, MAX_NAME_CHARS)?;
        if let Some(site) = &self.site {
            check_text("site", site, MAX_NAME_CHARS)?;
        }
        check_labels(&self.labels)?;
        let hw = &self.hardware;
        for (field, value) in [
            ("hardware.vendor", &hw.vendor),
            ("hardware.product", &hw.product),
            ("hardware.serial", &hw.serial),
            ("hardware.cpu_model", &hw.cpu_model),
        ] {
            check_text(field, value, MAX_NAME_CHARS)?;
        }
        check_count("hardware.disks", hw.disks.len(), MAX_INVENTORY_ITEMS)?;
        check_count("hardware.nics", hw.nics.len(), MAX_INVENTORY_ITEMS)?;
        for d in &hw.disks {
            check_text("hardware.disks.name", &d.name, MAX_NAME_CHARS)?;
            check_text("hardware.disks.model", &d.model, MAX_NAME_CHARS)?;
        }
        for n in &hw.nics {
            check_text("hardware.nics.name", &n.name, MAX_NAME_CHARS)?;
            check_text("hardware.nics.mac", &n.mac, MAX_NAME_CHARS)?;
        }
        check_text("kernel", &self.kernel, MAX_NAME_CHARS)?;
        check_text("arch", &self.arch, MAX_NAME_CHARS)?;
        check_count("slots", self.slots.len(), 2)?;
        for s in &self.slots {
            if s.slot != "A" && s.slot != "B" {
                return Err(Error::BadField { field: "slots.slot", expected: "A or B" });
            }
            if !["good", "trial", "bad", "empty"].contains(&s.state.as_str()) {
                return Err(Error::BadField { field: "slots.state", expected: "good, trial, bad or empty" });
            }
            if let Some(b) = &s.bundle {
                check_text("slots.bundle.name", &b.name, MAX_NAME_CHARS)?;
                check_text("slots.bundle.version", &b.version, MAX_NAME_CHARS)?;
                check_hex32("slots.bundle.manifest_hash", &b.manifest_hash)?;
                if !(b.stack.is_null() || b.stack.is_object()) {
                    return Err(Error::BadField { field: "slots.bundle.stack", expected: "a JSON object" });
                }
            }
        }
        if let Some(p) = &self.update_phase {
            check_text("update_phase", p, MAX_NAME_CHARS)?;
        }
        check_text("agent_version", &self.agent_version, MAX_NAME_CHARS)
    }
}

/// `GET /v1/nodes/{id}/desired`: what the endpoint wants the node to run and do. Its `ETag` is a hash of this body,
/// so it changes exactly when the body does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    /// Pending (nothing is desired yet) or accepted.
    pub status: NodeStatus,
    /// How often to poll, before the agent's jitter.
    pub poll_interval_secs: u32,
    /// The bundle the node should run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
    /// Actions to take once each (oldest first).
    #[serde(default)]
    pub actions: Vec<Action>,
}

/// A bundle the endpoint names. The node verifies the bundle itself against its own keyring and floor: none of
/// these fields is trusted, they say what to fetch and what to expect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleRef {
    /// The manifest's name.
    pub name: String,
    /// The manifest's version.
    pub version: String,
    /// The manifest's security version.
    pub security_version: u64,
    /// The blake3 of the manifest, lowercase hex: the node installs the bundle only if it is this one.
    pub manifest_hash: String,
    /// The bundle's size in bytes.
    pub size_bytes: u64,
    /// Where to fetch it, in order of preference (the endpoint's store, then external hosts).
    pub urls: Vec<String>,
    /// When the bundle comes from a deployment: when the node may flip to it. Absent: as soon as it is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flip: Option<FlipRule>,
}

/// When a node may flip to a deployment's bundle (docs/rollouts.md, "What a node is told"). The node may download
/// and verify at any time; it flips only when `allowed`, inside one of `windows` by its own clock (none: at any
/// time), and once no application holds its update lock, or that lock has held the flip back `lock_max_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlipRule {
    /// The deployment.
    pub deployment: String,
    /// False while the deployment is paused: install and verify, then hold.
    pub allowed: bool,
    /// The site's maintenance windows over the next days, as UTC intervals; empty: any time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
    /// The longest an application's update lock may hold the flip back, in seconds.
    pub lock_max_secs: u64,
}

/// What a verified target waits on before its flip (the `reason` of a `waiting` report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitOn {
    /// The deployment is paused (by an operator or its brake).
    Paused,
    /// The node's clock is outside every maintenance window of its site.
    Window,
    /// An application holds the node's update lock.
    UpdateLock,
}

impl WaitOn {
    /// The word, as in JSON and in a `waiting` report's `reason`.
    pub fn word(self) -> &'static str {
        match self {
            WaitOn::Paused => "paused",
            WaitOn::Window => "window",
            WaitOn::UpdateLock => "update-lock",
        }
    }

    /// Reads [`WaitOn::word`] back.
    pub fn from_word(word: &str) -> Option<WaitOn> {
        [WaitOn::Paused, WaitOn::Window, WaitOn::UpdateLock].into_iter().find(|w| w.word() == word)
    }
}

/// A span of time, RFC 3339 UTC, `start` included, `end` not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Its start.
    pub start: String,
    /// Its end.
    pub end: String,
}

/// Something the endpoint asks a node to do once: only these exist (docs/fleet-protocol.md, "Actions").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// Its id; the node reports it done (or refused) under this id and never runs it twice.
    pub id: String,
    /// What to do.
    pub kind: ActionKind,
}

/// The allow-list of remote actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Reboot through `edge-init`'s control socket (refused while an install is writing).
    Reboot,
    /// Collect [`Diagnostics`] and upload them.
    Diagnostics,
}

impl ActionKind {
    /// The word, as in JSON.
    pub fn word(self) -> &'static str {
        match self {
            ActionKind::Reboot => "reboot",
            ActionKind::Diagnostics => "diagnostics",
        }
    }

    /// Reads [`ActionKind::word`] back.
    pub fn from_word(word: &str) -> Option<ActionKind> {
        [ActionKind::Reboot, ActionKind::Diagnostics].into_iter().find(|k| k.word() == word)
    }
}

/// `POST /v1/nodes/{id}/reports`: reports in the node's sequence order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBatch {
    /// One to [`MAX_REPORTS_PER_BATCH`] reports, `seq` strictly increasing.
    pub reports: Vec<Report>,
}

impl ReportBatch {
    /// Refuses an empty or oversized batch, a sequence that does not strictly increase, and bad reports.
    pub fn check(&self) -> Result<()> {
        if self.reports.is_empty() {
            return Err(Error::BadField { field: "reports", expected: "at least one report" });
        }
        check_count("reports", self.reports.len(), MAX_REPORTS_PER_BATCH)?;
        let mut last = 0;
        for r in &self.reports {
            if r.seq <= last {
                return Err(Error::BadField { field: "reports.seq", expected: "strictly increasing from 1" });
            }
            last = r.seq;
            r.check()?;
        }
        Ok(())
    }
}

/// One state transition on the node, numbered by the node: the endpoint stores each `(node, seq)` once, so a batch
/// resent after a dropped link changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The node's sequence number, from 1, never reused (the agent's spool keeps it across power cuts).
    pub seq: u64,
    /// When it happened on the node, RFC 3339 UTC.
    pub time: String,
    /// What happened.
    pub kind: ReportKind,
    /// A sentence for a person.
    #[serde(default)]
    pub message: String,
    /// For a failure or a refusal, the whole cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The updater's exit class for a refusal (`edge-update`'s exit code: 4 untrusted, 5 corrupt, 7 not for
    /// this node, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The bundle version it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The slot it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The updater's phase after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// For `downloading`: bytes done and in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// For `action-done` and `action-refused`: the action's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// Bytes done out of bytes in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Done.
    pub done_bytes: u64,
    /// In all.
    pub total_bytes: u64,
}

/// What a report records: the updater's transitions (the event log's words), and the agent's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportKind {
    /// The agent started an install of the desired bundle.
    Downloading,
    /// An install began writing its target (updater).
    Started,
    /// An interrupted install went on (updater).
    Resumed,
    /// The target is verified and held, to be flipped on request (updater, `install --no-flip`).
    Verified,
    /// The target is verified and active on trial (updater).
    Flipped,
    /// The node booted (updater).
    Booted,
    /// The target was booted on trial (updater).
    Trial,
    /// The target passed its checks and is the good slot (updater).
    Committed,
    /// The booted slot failed; the node reboots into the other (updater).
    RollingBack,
    /// The bootloader came back on the old slot (updater).
    RolledBack,
    /// An update failed (updater).
    Failed,
    /// An install failed before the flip (updater).
    InstallFailed,
    /// A stop signal ended an install (updater).
    Interrupted,
    /// A reboot into the flipped slot could not be requested (updater).
    RebootFailed,
    /// The operator gave up an update before it was booted (updater).
    Cancelled,
    /// The booted slot was committed by hand (updater).
    MarkedGood,
    /// The node refused the desired bundle (untrusted, a downgrade, not for this board, not the bundle named).
    Refused,
    /// An action was carried out.
    ActionDone,
    /// An action was refused or failed.
    ActionRefused,
    /// The agent enrolled (or enrolled again as a new identity).
    Enrolled,
    /// A verified target waits for its flip; `reason` says on what: `paused` (the deployment), `window` (the
    /// site's maintenance window) or `update-lock` (an application's update lock). Sent when the wait begins or
    /// its reason changes.
    Waiting,
    /// An application's update lock held a flip back as long as the policy allows; the node flips anyway.
    LockOverridden,
}

impl ReportKind {
    /// Every kind, in declaration order.
    pub const ALL: [ReportKind; 22] = [
        ReportKind::Downloading,
        ReportKind::Started,
        ReportKind::Resumed,
        ReportKind::Verified,
        ReportKind::Flipped,
        ReportKind::Booted,
        ReportKind::Trial,
        ReportKind::Committed,
        ReportKind::RollingBack,
        ReportKind::RolledBack,
        ReportKind::Failed,
        ReportKind::InstallFailed,
        ReportKind::Interrupted,
        ReportKind::RebootFailed,
        ReportKind::Cancelled,
        ReportKind::MarkedGood,
        ReportKind::Refused,
        ReportKind::ActionDone,
        ReportKind::ActionRefused,
        ReportKind::Enrolled,
        ReportKind::Waiting,
        ReportKind::LockOverridden,
    ];

    /// The word, as in JSON (and as in the updater's event log for its kinds).
    pub fn word(self) -> &'static str {
        match self {
            ReportKind::Downloading => "downloading",
            ReportKind::Started => "started",
            ReportKind::Resumed => "resumed",
            ReportKind::Verified => "verified",
            ReportKind::Flipped => "flipped",
            ReportKind::Booted => "booted",
            ReportKind::Trial => "trial",
            ReportKind::Committed => "committed",
            ReportKind::RollingBack => "rolling-back",
            ReportKind::RolledBack => "rolled-back",
            ReportKind::Failed => "failed",
            ReportKind::InstallFailed => "install-failed",
            ReportKind::Interrupted => "interrupted",
            ReportKind::RebootFailed => "reboot-failed",
            ReportKind::Cancelled => "cancelled",
            ReportKind::MarkedGood => "marked-good",
            ReportKind::Refused => "refused",
            ReportKind::ActionDone => "action-done",
            ReportKind::ActionRefused => "action-refused",
            ReportKind::Enrolled => "enrolled",
            ReportKind::Waiting => "waiting",
            ReportKind::LockOverridden => "lock-overridden",
        }
    }

    /// Reads [`ReportKind::word`] back.
    pub fn from_word(word: &str) -> Option<ReportKind> {
        ReportKind::ALL.into_iter().find(|k| k.word() == word)
    }
}

impl std::fmt::Display for ReportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

impl Report {
    /// Refuses what the endpoint refuses beyond serde.
    pub fn check(&self) -> Result<()> {
        if self.seq == 0 {
            return Err(Error::BadField { field: "reports.seq", expected: "at least 1" });
        }
        check_time("reports.time", &self.time)?;
        check_text("reports.message", &self.message, MAX_TEXT_CHARS)?;
        for (field, value) in [
            ("reports.reason", &self.reason),
            ("reports.version", &self.version),
            ("reports.phase", &self.phase),
            ("reports.action", &self.action),
        ] {
            if let Some(v) = value {
                check_text(field, v, MAX_TEXT_CHARS)?;
            }
        }
        if let Some(s) = &self.slot {
            if s != "A" && s != "B" {
                return Err(Error::BadField { field: "reports.slot", expected: "A or B" });
            }
        }
        if let Some(p) = self.progress {
            if p.done_bytes > p.total_bytes {
                return Err(Error::BadField { field: "reports.progress", expected: "done_bytes <= total_bytes" });
            }
        }
        let needs_action = matches!(self.kind, ReportKind::ActionDone | ReportKind::ActionRefused);
        if needs_action != self.action.is_some() {
            return Err(Error::BadField {
                field: "reports.action",
                expected: "present exactly on action-done and action-refused",
            });
        }
        Ok(())
    }
}

/// The reply to a batch: what the node may drop from its spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportAck {
    /// Reports stored now.
    pub stored: u32,
    /// Reports the endpoint already had (a resend).
    pub duplicates: u32,
    /// The highest `seq` the endpoint holds for this node: everything up to it is safe to drop.
    pub acked_seq: u64,
}

/// `PUT /v1/nodes/{id}/actions/{action}/diagnostics`: what a diagnostics action collects. Secrets are never in it:
/// the agent leaves the enrollment token and keys out of `config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Diagnostics {
    /// When it was collected, RFC 3339 UTC.
    pub collected: String,
    /// `edge-update status --json` and `edge-bootctl status --json`, as the node's tools print them.
    pub status: serde_json::Value,
    /// The last lines of the updater's event log.
    pub events: Vec<String>,
    /// The tail of the node's log.
    pub log_tail: Vec<String>,
    /// The agent's config, secrets left out.
    pub config: serde_json::Value,
}

/// The body of every refusal, node and admin alike, with a status code that says its class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReply {
    /// A stable kebab-case word (docs/fleet-protocol.md, "Status codes").
    pub error: String,
    /// A sentence for a person.
    pub message: String,
}

/// Refuses a string longer than `max` characters or holding control characters.
pub fn check_text(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.chars().count() > max {
        return Err(Error::FieldTooLong { field, max });
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Error::BadField { field, expected: "no control characters" });
    }
    Ok(())
}

/// Refuses a list longer than `max`.
pub fn check_count(field: &'static str, n: usize, max: usize) -> Result<()> {
    if n > max {
        return Err(Error::TooMany { field, max });
    }
    Ok(())
}

/// Refuses labels past [`MAX_LABELS`], and keys or values that are not label words: keys of ASCII letters, digits,
/// `-`, `_`, `.` and `/`, starting with a letter; values of printable ASCII without spaces, up to
/// [`MAX_NAME_CHARS`].
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    check_count("labels", labels.len(), MAX_LABELS)?;
    for (k, v) in labels {
        let key_ok = k.len() <= MAX_NAME_CHARS
            && k.starts_with(|c: char| c.is_ascii_alphabetic())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if !key_ok {
            return Err(Error::BadField { field: "labels", expected: "keys of [A-Za-z][A-Za-z0-9-_./]*, up to 128" });
        }
        let value_ok = v.len() <= MAX_NAME_CHARS && v.bytes().all(|b| b.is_ascii_graphic());
        if !value_ok {
            return Err(Error::BadField { field: "labels", expected: "values of printable ASCII, up to 128" });
        }
    }
    Ok(())
}

/// Refuses anything but 64 lowercase hex digits.
pub fn check_hex32(field: &'static str, value: &str) -> Result<()> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(Error::BadField { field, expected: "64 lowercase hex digits" })
    }
}

/// Refuses a time that is not RFC 3339 of the form `YYYY-MM-DDTHH:MM:SS[.frac]Z`.
pub fn check_time(field: &'static str, value: &str) -> Result<()> {
    let b = value.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && b.len() <= 40
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[b.len() - 1] == b'Z'
        && (b.len() == 20 || (b[19] == b'.' && digits(20..b.len() - 1) && b.len() > 21));
    if shape {
        Ok(())
    } else {
        Err(Error::BadField { field, expected: "an RFC 3339 UTC time like 2026-01-31T12:00:00Z" })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

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
    fn node_id_is_derived_from_the_key_and_read_back() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let id = NodeId::of_key(&key);
        assert_eq!(id.as_str().len(), 34);
        assert_eq!(id, id.as_str().parse().expect("own id"));
        assert_ne!(id, NodeId::of_key(&SigningKey::from_bytes(&[8; 32]).verifying_key()));
        for bad in ["", "n-", "x-00000000000000000000000000000000", "n-0000000000000000000000000000000G"] {
            assert!(matches!(bad.parse::<NodeId>(), Err(Error::BadNodeId { .. })), "{bad}");
        }
        let json = serde_json::to_string(&id).expect("serialize");
        assert_eq!(serde_json::from_str::<NodeId>(&json).expect("read back"), id);
        assert!(serde_json::from_str::<NodeId>("\"n-zz\"").is_err());
    }

    #[test]
    fn public_keys_round_trip_and_bad_ones_are_refused() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        assert_eq!(decode_public_key(&encode_public_key(&key)).expect("round trip"), key);
        for bad in ["", "AAAA", "!!!!", &"A".repeat(44)] {
            assert!(matches!(decode_public_key(bad), Err(Error::BadPublicKey)), "{bad}");
        }
    }

    #[test]
    fn report_batches_must_increase_and_stay_bounded() {
        let ok = ReportBatch { reports: vec![report(1, ReportKind::Started), report(5, ReportKind::Flipped)] };
        ok.check().expect("increasing");
        let check = |reports: Vec<Report>| ReportBatch { reports }.check();
        assert!(matches!(check(vec![]), Err(Error::BadField { field: "reports", .. })));
        assert!(matches!(
            check(vec![report(2, ReportKind::Started), report(2, ReportKind::Flipped)]),
            Err(Error::BadField { field: "reports.seq", .. })
        ));
        assert!(matches!(
            check(vec![report(0, ReportKind::Started)]),
            Err(Error::BadField { field: "reports.seq", .. })
        ));
        let many = (1..=101).map(|i| report(i, ReportKind::Started)).collect();
        assert!(matches!(check(many), Err(Error::TooMany { field: "reports", max: 100 })));
        let mut no_action = report(1, ReportKind::ActionDone);
        assert!(matches!(no_action.check(), Err(Error::BadField { field: "reports.action", .. })));
        no_action.action = Some("a1".into());
        no_action.check().expect("with its action");
        let mut long = report(1, ReportKind::Failed);
        long.reason = Some("x".repeat(MAX_TEXT_CHARS + 1));
        assert!(matches!(long.check(), Err(Error::FieldTooLong { field: "reports.reason", .. })));
    }

    #[test]
    fn times_must_be_rfc3339_utc() {
        for ok in ["2026-12-05T10:00:00Z", "2026-12-05T10:00:00.123456Z"] {
            check_time("t", ok).expect(ok);
        }
        for bad in ["", "2026-12-05 10:00:00Z", "2026-12-05T10:00:00+01:00", "2026-12-05T10:00:00.Z", "yesterday"] {
            assert!(check_time("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        let mut v = serde_json::to_value(report(1, ReportKind::Committed)).expect("to value");
        assert_eq!(v["kind"], "committed");
        v["extra"] = 1.into();
        assert!(serde_json::from_value::<Report>(v.clone()).is_err());
        v.as_object_mut().expect("object").remove("extra");
        v["kind"] = "exploded".into();
        assert!(serde_json::from_value::<Report>(v).is_err());
        for k in ReportKind::ALL {
            let json = serde_json::to_value(k).expect("kind");
            assert_eq!(json, k.word());
            assert_eq!(ReportKind::from_word(k.word()), Some(k));
        }
    }

    #[test]
    fn inventory_bounds_are_checked() {
        let mut inv =
            Inventory { hostname: "node-1".into(), kernel: "6.1".into(), arch: "x86_64".into(), ..Default::default() };
        inv.check().expect("small");
        inv.labels.insert("site-role".into(), "till".into());
        inv.check().expect("a label");
        inv.labels.insert("9bad".into(), "x".into());
        assert!(matches!(inv.check(), Err(Error::BadField { field: "labels", .. })));
        inv.labels.clear();
        inv.hardware.nics = vec![Nic::default(); MAX_INVENTORY_ITEMS + 1];
        assert!(matches!(inv.check(), Err(Error::TooMany { field: "hardware.nics", .. })));
        inv.hardware.nics.clear();
        inv.slots.push(SlotInventory { slot: "C".into(), booted: true, state: "good".into(), bundle: None });
        assert!(matches!(inv.check(), Err(Error::BadField { field: "slots.slot", .. })));
    }
}
