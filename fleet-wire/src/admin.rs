//! The admin API's bodies: what an operator's client (`edge-cloud`'s admin verbs, and later the web view) sends to
//! `/v1/admin/...` and gets back (docs/fleet-protocol.md, "The admin API").
//!
//! Boundary types like `node`'s: every request body denies unknown fields, and a field added or renamed here changes
//! the protocol and the docs with it. They live beside the node API's so that the endpoint and every client share
//! one definition; times are RFC 3339 UTC text, as in the node API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::node::{
    check_count, check_hex32, check_labels, check_text, ActionKind, Diagnostics, Inventory, NodeId, NodeStatus, Report,
    MAX_LABELS, MAX_NAME_CHARS,
};

/// The prefix of every admin API path.
pub const ADMIN_API: &str = "/v1/admin";

/// What an admin token may do; each role may do everything the roles before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads everything (nodes, events, audit, tokens without their secrets).
    Viewer,
    /// And accepts, rejects, labels and groups nodes, manages enrollment tokens, bundles, groups and actions.
    Operator,
    /// And manages admin tokens and decommissions or merges nodes.
    Admin,
}

impl Role {
    /// The word, as in JSON.
    pub fn word(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Reads [`Role::word`] back.
    pub fn from_word(word: &str) -> Option<Role> {
        [Role::Viewer, Role::Operator, Role::Admin].into_iter().find(|r| r.word() == word)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// Where an enrollment token puts the nodes that enroll with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenPolicy {
    /// In the pending pool, for an operator to accept or reject.
    Pending,
    /// Accepted at once, with the token's labels.
    Accept,
}

impl TokenPolicy {
    /// The word, as in JSON.
    pub fn word(self) -> &'static str {
        match self {
            TokenPolicy::Pending => "pending",
            TokenPolicy::Accept => "accept",
        }
    }

    /// Reads [`TokenPolicy::word`] back.
    pub fn from_word(word: &str) -> Option<TokenPolicy> {
        [TokenPolicy::Pending, TokenPolicy::Accept].into_iter().find(|p| p.word() == word)
    }
}

/// A node as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSummary {
    /// Its id.
    pub id: NodeId,
    /// Where it stands.
    pub status: NodeStatus,
    /// Its host name, from its inventory.
    pub hostname: String,
    /// Its site, from its inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Its labels: the node's own, with an admin's on top (an admin's label wins over the node's of the same key).
    pub labels: BTreeMap<String, String>,
    /// The labels an admin set.
    pub admin_labels: BTreeMap<String, String>,
    /// Its group, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The bundle it is pinned to (over its group's), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_bundle: Option<String>,
    /// The slot it booted, from its inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booted_slot: Option<String>,
    /// The version it runs: from its last commit report, else from its inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booted_version: Option<String>,
    /// The updater's phase, from its last report or inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Its last report's kind, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report: Option<String>,
    /// The highest report sequence number stored.
    pub last_seq: u64,
    /// When the endpoint last heard from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// When it first enrolled.
    pub enrolled_at: String,
    /// The enrollment token it enrolled with (the token's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_token: Option<String>,
    /// The node whose history this one's was merged into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<NodeId>,
}

/// `GET /v1/admin/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeList {
    /// The nodes, by id.
    pub nodes: Vec<NodeSummary>,
}

/// `GET /v1/admin/nodes/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDetail {
    /// The node.
    pub node: NodeSummary,
    /// Its last inventory.
    pub inventory: Inventory,
    /// Its newest events (at most 20), newest first.
    pub events: Vec<Event>,
    /// Its actions, newest first.
    pub actions: Vec<ActionInfo>,
}

/// A stored report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The node that sent it (a merged identity's events carry the old id).
    pub node: NodeId,
    /// When the endpoint stored it.
    pub received: String,
    /// The report as the node sent it.
    pub report: Report,
}

/// `GET /v1/admin/nodes/{id}/events?limit=N&offset=M`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventPage {
    /// The events of this page.
    pub events: Vec<Event>,
    /// The offset of the next page, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
}

/// `PUT /v1/admin/nodes/{id}/labels`: the admin labels to set and to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelChange {
    /// Set (or replace) these.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Remove these keys.
    #[serde(default)]
    pub remove: Vec<String>,
}

impl LabelChange {
    /// Refuses labels that are not label words, and lists past their bounds.
    pub fn check(&self) -> Result<()> {
        check_labels(&self.set)?;
        check_count("remove", self.remove.len(), MAX_LABELS)?;
        for k in &self.remove {
            check_text("remove", k, MAX_NAME_CHARS)?;
        }
        Ok(())
    }
}

/// `PUT /v1/admin/nodes/{id}/group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetGroup {
    /// The group (created when new), or `null` to take the node out of its group.
    pub group: Option<String>,
}

impl SetGroup {
    /// Refuses a group name that is not a name.
    pub fn check(&self) -> Result<()> {
        match &self.group {
            Some(g) => check_name("group", g),
            None => Ok(()),
        }
    }
}

/// `PUT /v1/admin/nodes/{id}/pin` and `PUT /v1/admin/groups/{name}`: a bundle by manifest hash, or `null` for none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBundle {
    /// The bundle's manifest hash (a bundle the endpoint knows), or `null`.
    pub bundle: Option<String>,
}

impl SetBundle {
    /// Refuses anything but a manifest hash.
    pub fn check(&self) -> Result<()> {
        match &self.bundle {
            Some(h) => check_hex32("bundle", h),
            None => Ok(()),
        }
    }
}

/// `POST /v1/admin/nodes/{id}/merge`: the old identity whose history and admin settings go to this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// The old node (decommissioned by the merge; its events stay, shown with the new node's).
    pub from: NodeId,
}

/// `POST /v1/admin/enrollment-tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentToken {
    /// A name for people.
    pub name: String,
    /// Where its nodes land.
    pub policy: TokenPolicy,
    /// Admin labels its nodes get.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Seconds from now until it expires; `None` never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
    /// How many nodes may enroll with it; `None` no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
}

impl CreateEnrollmentToken {
    /// Refuses a bad name or labels.
    pub fn check(&self) -> Result<()> {
        check_name("name", &self.name)?;
        check_labels(&self.labels)
    }
}

/// An enrollment token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentTokenInfo {
    /// Its id (the part before the dot of the secret).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Where its nodes land.
    pub policy: TokenPolicy,
    /// The admin labels its nodes get.
    pub labels: BTreeMap<String, String>,
    /// When it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Its limit of uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
    /// How many nodes enrolled with it.
    pub uses: u32,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// When it was made.
    pub created_at: String,
    /// The admin token's name that made it.
    pub created_by: String,
}

/// `POST /v1/admin/admin-tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAdminToken {
    /// A name for people (it is the "who" of the audit log).
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl CreateAdminToken {
    /// Refuses a bad name.
    pub fn check(&self) -> Result<()> {
        check_name("name", &self.name)
    }
}

/// An admin token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenInfo {
    /// Its id (the part before the dot of the secret).
    pub id: String,
    /// Its name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was made.
    pub created_at: String,
    /// Who made it (`bootstrap` for `edge-cloud admin-token create`).
    pub created_by: String,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// The reply to a token's creation: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatedToken<T> {
    /// The token.
    pub token: T,
    /// Its secret: `ID.SECRET`, shown once; the endpoint keeps only its SHA-256.
    pub secret: String,
}

/// A list of enrollment tokens or of admin tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenList<T> {
    /// By creation time.
    pub tokens: Vec<T>,
}

/// A group: nodes set into it by an admin, and the bundle they should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupInfo {
    /// Its name.
    pub name: String,
    /// Its desired bundle's manifest hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// How many nodes are in it.
    pub n_nodes: u64,
}

/// `GET /v1/admin/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupList {
    /// By name.
    pub groups: Vec<GroupInfo>,
}

/// A bundle the endpoint knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleInfo {
    /// The blake3 of its manifest, lowercase hex.
    pub manifest_hash: String,
    /// The manifest's name.
    pub name: String,
    /// The manifest's version.
    pub version: String,
    /// The manifest's security version.
    pub security_version: u64,
    /// The manifest's board string.
    pub compatible: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Whether the endpoint's own store holds it.
    pub stored: bool,
    /// External URLs it is registered at.
    pub urls: Vec<String>,
    /// When it was added.
    pub created_at: String,
}

/// `GET /v1/admin/bundles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleList {
    /// Newest first.
    pub bundles: Vec<BundleInfo>,
}

/// `POST /v1/admin/bundles/external`: a bundle served elsewhere, registered by its URL and its head (the bundle's
/// first bytes: header, manifest and signatures), which the endpoint verifies as an upload's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterExternal {
    /// Where nodes fetch it.
    pub url: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// The standard base64 of its first bytes, at least through its signatures.
    pub head: String,
}

impl RegisterExternal {
    /// Refuses a URL that is not `http://` or `https://`.
    pub fn check(&self) -> Result<()> {
        check_text("url", &self.url, crate::node::MAX_TEXT_CHARS)?;
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(Error::BadField { field: "url", expected: "an http:// or https:// URL" });
        }
        Ok(())
    }
}

/// `POST /v1/admin/nodes/{id}/actions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueAction {
    /// What to ask the node.
    pub kind: ActionKind,
}

/// Where an action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionState {
    /// In the node's desired state until it reports on it.
    Queued,
    /// The node reported `action-done`.
    Done,
    /// The node reported `action-refused`.
    Refused,
}

impl ActionState {
    /// The word, as in JSON.
    pub fn word(self) -> &'static str {
        match self {
            ActionState::Queued => "queued",
            ActionState::Done => "done",
            ActionState::Refused => "refused",
        }
    }

    /// Reads [`ActionState::word`] back.
    pub fn from_word(word: &str) -> Option<ActionState> {
        [ActionState::Queued, ActionState::Done, ActionState::Refused].into_iter().find(|s| s.word() == word)
    }
}

/// An action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionInfo {
    /// Its id.
    pub id: String,
    /// The node.
    pub node: NodeId,
    /// What it asks.
    pub kind: ActionKind,
    /// Where it stands.
    pub state: ActionState,
    /// When it was queued.
    pub created_at: String,
    /// The admin token's name that queued it.
    pub created_by: String,
    /// When the node reported on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The node's message or reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Whether diagnostics were uploaded for it.
    pub has_diagnostics: bool,
}

/// `GET /v1/admin/actions/{id}/diagnostics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnosticsInfo {
    /// The action.
    pub action: String,
    /// The node.
    pub node: NodeId,
    /// When they arrived.
    pub received: String,
    /// What the node sent.
    pub diagnostics: Diagnostics,
}

/// One admin change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Its number, increasing.
    pub id: u64,
    /// When.
    pub at: String,
    /// The admin token's id.
    pub actor_id: String,
    /// The admin token's name.
    pub actor_name: String,
    /// What, a kebab-case verb (`node-accept`, `token-create`, ...).
    pub action: String,
    /// What it was done to (a node id, a token id, a group's name, a manifest hash).
    pub target: String,
    /// The change: `{"before": ..., "after": ...}` or the request.
    pub change: serde_json::Value,
}

/// `GET /v1/admin/audit?limit=N&offset=M`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditPage {
    /// The entries of this page.
    pub entries: Vec<AuditEntry>,
    /// The offset of the next page, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
}

/// Refuses a name that is not a label-like word: ASCII letters, digits, `-`, `_` and `.`, starting with a letter or
/// digit, up to [`MAX_NAME_CHARS`].
pub fn check_name(field: &'static str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_CHARS
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadField { field, expected: "a name of [A-Za-z0-9][A-Za-z0-9-_.]*, up to 128" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_read_back() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for r in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(Role::from_word(r.word()), Some(r));
            assert_eq!(serde_json::to_value(r).expect("role"), r.word());
        }
        assert_eq!(Role::from_word("root"), None);
    }

    #[test]
    fn names_and_requests_are_checked() {
        check_name("group", "site-a.v2").expect("a name");
        for bad in ["", "-x", "a b", "ä", &"x".repeat(129)] {
            assert!(matches!(check_name("group", bad), Err(Error::BadField { field: "group", .. })), "{bad}");
        }
        let ext = RegisterExternal { url: "ftp://x".into(), size_bytes: 1, head: String::new() };
        assert!(matches!(ext.check(), Err(Error::BadField { field: "url", .. })));
        assert!(matches!(
            SetBundle { bundle: Some("ab".into()) }.check(),
            Err(Error::BadField { field: "bundle", .. })
        ));
        let bad = serde_json::from_str::<SetGroup>(r#"{"group": "a", "x": 1}"#);
        assert!(bad.is_err(), "unknown fields are refused");
    }
}
