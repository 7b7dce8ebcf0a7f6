//! The agent's state file (`/data/edge-agent/state.json`): what it must remember across restarts besides its key
//! and its spool. It is a boundary type (on disk, and shown by `edge-agent status --json`), written whole through
//! the one write-temp, fsync, rename, fsync-directory helper, so a power cut leaves the old or the new state.

use std::collections::BTreeMap;
use std::path::Path;

use fleet_wire::node::{DesiredState, NodeStatus, WaitOn};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `schema` of the state file.
pub const SCHEMA: &str = "edge-agent.state/1";

/// The most action ids remembered as done (the oldest are forgotten first; the endpoint stops naming an action
/// once it is reported, long before).
pub const MAX_ACTIONS_DONE: usize = 256;

/// What the agent remembers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// [`SCHEMA`].
    pub schema: String,
    /// Where the node stands with the endpoint, as last heard; none before it enrolled.
    pub status: Option<NodeStatus>,
    /// The last desired state the endpoint sent, and its ETag (sent as `If-None-Match`).
    pub desired: Option<DesiredState>,
    /// The ETag of `desired`.
    pub etag: Option<String>,
    /// The hash of the inventory the endpoint last took.
    pub inventory_hash: Option<String>,
    /// The manifest hash of the desired bundle this agent is done with (installed and flipped, or refused): it is
    /// not tried again until the desired bundle changes.
    pub settled_bundle: Option<String>,
    /// The ids of actions recorded done (before they were carried out), oldest first.
    pub actions_done: Vec<String>,
    /// The stack each manifest lists, by manifest hash, as the agent read it when it pinned the bundle (the
    /// journal records a bundle's name and version, not its stack); for the inventory.
    pub stacks: BTreeMap<String, serde_json::Value>,
    /// The verified target waiting for its flip, while one does (docs/agent.md, "Flips, windows and the update
    /// lock").
    pub hold: Option<Hold>,
}

/// A verified target that waits for its flip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    /// Its bundle's manifest hash.
    pub manifest: String,
    /// What it waits on, as last reported; none before the first wait.
    pub waiting_on: Option<WaitOn>,
    /// When an application's update lock was first seen holding it back (Unix seconds); the policy's bound on the
    /// lock counts from here, whatever else it waited on since, so a lock that is let go only outside the windows
    /// cannot hold it back for ever.
    pub lock_since: Option<u64>,
}

impl Default for State {
    fn default() -> State {
        State {
            schema: SCHEMA.to_owned(),
            status: None,
            desired: None,
            etag: None,
            inventory_hash: None,
            settled_bundle: None,
            actions_done: Vec::new(),
            stacks: BTreeMap::new(),
            hold: None,
        }
    }
}

impl State {
    /// Reads the state file; a missing file is the first start.
    pub fn load(path: &Path) -> Result<State> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::ParseState { path: path.to_owned(), detail: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(Error::ReadFile { path: path.to_owned(), source }),
        }
    }

    /// Writes the state file whole.
    pub fn save(&self, path: &Path) -> Result<()> {
        let werr =
            |e: image_layout::Error| Error::WriteFile { path: path.to_owned(), source: std::io::Error::other(e) };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::WriteFile { path: dir.to_owned(), source })?;
        }
        let mut f = image_layout::fsutil::AtomicFile::create(path).map_err(werr)?;
        let mut bytes = serde_json::to_vec_pretty(self).expect("the state serializes");
        bytes.push(b'\n');
        std::io::Write::write_all(&mut f, &bytes)
            .map_err(|source| Error::WriteFile { path: path.to_owned(), source })?;
        // Durability: a cut before the rename keeps the old state (an action recorded here is then not recorded,
        // and not yet carried out either); after it, the new one.
        f.commit().map_err(werr)
    }

    /// Whether the action `id` was recorded done.
    pub fn action_done(&self, id: &str) -> bool {
        self.actions_done.iter().any(|a| a == id)
    }

    /// Remembers the stack of the manifest `hash`, keeping only those of `keep` (the bundles in the slots) besides.
    pub fn record_stack(&mut self, hash: &str, stack: serde_json::Value, keep: &[&str]) {
        self.stacks.retain(|h, _| keep.contains(&h.as_str()));
        self.stacks.insert(hash.to_owned(), stack);
    }

    /// Records the action `id` done.
    pub fn record_action(&mut self, id: &str) {
        if !self.action_done(id) {
            self.actions_done.push(id.to_owned());
        }
        let excess = self.actions_done.len().saturating_sub(MAX_ACTIONS_DONE);
        self.actions_done.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_round_trips_and_a_damaged_one_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data/edge-agent/state.json");
        assert_eq!(State::load(&path).expect("first start"), State::default());
        let mut s = State { status: Some(NodeStatus::Pending), etag: Some("\"e1\"".into()), ..State::default() };
        for i in 0..MAX_ACTIONS_DONE + 2 {
            s.record_action(&format!("a{i}"));
        }
        s.record_action("a5");
        s.hold = Some(Hold { manifest: "b".repeat(64), waiting_on: Some(WaitOn::UpdateLock), lock_since: Some(7) });
        assert_eq!(s.actions_done.len(), MAX_ACTIONS_DONE);
        assert!(!s.action_done("a0") && s.action_done("a2") && s.action_done("a257"));
        s.save(&path).expect("save");
        assert_eq!(State::load(&path).expect("load"), s);
        std::fs::write(&path, "{\"status\": \"sleeping\"}").expect("write");
        assert!(matches!(State::load(&path), Err(Error::ParseState { .. })));
    }
}
