//! What `edge-update` prints and logs for machines: the event log's lines, progress lines, the install's result
//! and `status --json`. These are interfaces (docs/updater.md, "Events", "JSON"; the words are docs/json.md's), so
//! field names do not change without a note there, and each document carries its `schema`.

use serde::{Deserialize, Serialize};

use crate::journal::{BundleInfo, Journal};

/// `schema` of an event log line.
pub const EVENT_SCHEMA: &str = "edge-update.event/1";
/// `schema` of a progress line.
pub const PROGRESS_SCHEMA: &str = "edge-update.progress/1";
/// `schema` of the install's result line.
pub const RESULT_SCHEMA: &str = "edge-update.result/1";
/// `schema` of `status --json`.
pub const STATUS_SCHEMA: &str = "edge-update.status/1";

/// One line of the event log (JSON Lines, appended and synced; shipped by the cloud link later). It is also read
/// back, by `status` for the last failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// [`EVENT_SCHEMA`].
    pub schema: String,
    /// When, RFC 3339 UTC.
    pub time: String,
    /// What happened: `started`, `resumed`, `flipped`, `reboot-failed`, `trial`, `committed`, `rolling-back`,
    /// `rolled-back`, `cancelled`, `interrupted`, `failed`, `marked-good`, `install-failed`.
    pub event: String,
    /// A sentence for a person.
    pub message: String,
    /// For a failure, the whole cause: the error and each error that caused it, joined by `: `.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
    /// [`PROGRESS_SCHEMA`].
    pub schema: &'static str,
    /// `writing`, `verifying`.
    pub stage: &'static str,
    /// Whether this is synced progress (what `--json` prints: at each sync point and while verifying), or a
    /// chunk written since, which only moves the progress bar.
    #[serde(skip)]
    pub synced: bool,
    /// Payload bytes on the slot (written, or read back when verifying).
    pub done_bytes: u64,
    /// The payload's size.
    pub image_bytes: u64,
    /// Bundle bytes fetched by this run.
    pub fetched_bytes: u64,
    /// Payload bytes taken from the booted slot.
    pub reused_bytes: u64,
}

/// The last line of `install --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallResult {
    /// [`RESULT_SCHEMA`].
    pub schema: &'static str,
    /// `flipped`: the target is verified and active on trial.
    pub result: &'static str,
    /// The slot written.
    pub target: String,
    /// The bundle.
    pub bundle: BundleInfo,
    /// Chunks already on the slot from an earlier, interrupted run.
    pub resumed_chunks: u64,
    /// Chunks of the payload.
    pub n_chunks: u64,
    /// Bundle bytes this run read from the source.
    pub fetched_bytes: u64,
    /// Payload bytes this run took from the booted slot.
    pub reused_bytes: u64,
    /// The payload's size.
    pub image_bytes: u64,
    /// Whether a reboot was requested.
    pub reboot: bool,
    /// Why a reboot that was asked for could not be requested (the slot is flipped all the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reboot_error: Option<String>,
}

/// `edge-update status --json`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// [`STATUS_SCHEMA`].
    pub schema: &'static str,
    /// The slot running now, when it can be told.
    pub booted: Option<String>,
    /// The boot state as `edge-bootctl status --json` shows it, when it can be read.
    pub boot: Option<bootctl::wire::Status>,
    /// Both slots in the one shape of docs/json.md, with the bundle each holds, when the boot state can be read.
    pub slots: Option<Vec<SlotStatus>>,
    /// Whether an `edge-update` holds the lock now (an install, or `boot` running its checks). An update in an
    /// installing phase with no run holding the lock was interrupted and waits for the install to be run again.
    pub running: bool,
    /// The last failure in the event log (`install-failed`, `failed`, `rolled-back`, `interrupted`), if any.
    pub last_failure: Option<EventRecord>,
    /// The journal.
    pub journal: Journal,
}

/// One slot in `status`: docs/json.md's slot state, and what the slot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    /// `A` or `B`.
    pub slot: String,
    /// Marked good.
    pub good: bool,
    /// Tries left.
    pub tries: u8,
    /// Place in the boot order, 1 first.
    pub order: u8,
    /// First in boot order.
    pub active: bool,
    /// Running now.
    pub booted: bool,
    /// The bundle on it, if an install recorded one; while an install writes the slot, none.
    pub bundle: Option<BundleInfo>,
}
