//! What `edge-update` prints and logs for machines: the event log's lines, progress lines and `status --json`.
//! These are interfaces (docs/updater.md, "Events", "Progress", "Status"), so field names do not change without a
//! note there.

use serde::Serialize;

use crate::journal::Journal;

/// One line of the event log (JSON Lines, appended and synced; shipped by the cloud link later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    /// When, RFC 3339 UTC.
    pub time: String,
    /// What happened: `started`, `flipped`, `booted`, `trial`, `committed`, `rolling-back`, `rolled-back`,
    /// `cancelled`, `interrupted`, `failed`, `refused`, `marked-good`, `install-failed`.
    pub event: String,
    /// A sentence for a person.
    pub message: String,
    /// The update's target slot, when there is an update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The update's bundle version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The update's phase after the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// A progress line (`install --json`), and what the progress bar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// `writing`, `verifying`.
    pub stage: &'static str,
    /// Payload bytes on the slot (written, or read back when verifying).
    pub done_bytes: u64,
    /// The payload's size.
    pub image_bytes: u64,
    /// Bundle bytes fetched by this run.
    pub fetched_bytes: u64,
    /// Payload bytes taken from the booted slot.
    pub reused_bytes: u64,
}

/// `edge-update status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The slot running now, when it can be told.
    pub booted: Option<String>,
    /// The boot state, as `edge-bootctl status` reads it, when it can be read.
    pub slots: Option<Vec<SlotStatus>>,
    /// The journal.
    pub journal: Journal,
}

/// One slot in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    /// `A` or `B`.
    pub slot: String,
    /// Marked good.
    pub good: bool,
    /// Tries left.
    pub tries: u8,
    /// First in boot order.
    pub active: bool,
    /// The version recorded for it, if an install recorded one.
    pub version: Option<String>,
}
