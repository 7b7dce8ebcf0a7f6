//! What `edge-update` prints and logs for machines: the event log's lines, progress lines, the install's result
//! and `status --json`. These are interfaces (docs/updater.md, "Events", "JSON"; the words are docs/json.md's), so
//! field names do not change without a note there, and each document carries its `schema`.

use std::fmt;

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
    /// What happened.
    pub event: EventKind,
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

/// What an event log line records (docs/updater.md, "Events"), kebab-case in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// An install began writing its target.
    Started,
    /// An interrupted install of the same bundle went on where it stopped.
    Resumed,
    /// The target is verified and held; it is flipped on request (`install --no-flip`).
    Verified,
    /// The target is verified and active on trial.
    Flipped,
    /// A reboot into the flipped slot could not be requested.
    RebootFailed,
    /// The node booted; what the bootloader did.
    Booted,
    /// The target was booted on trial and its health checks run.
    Trial,
    /// The target passed and is the good slot.
    Committed,
    /// The booted slot failed and the node reboots into the other.
    RollingBack,
    /// The bootloader came back on the old slot.
    RolledBack,
    /// The operator gave up an update before it was booted.
    Cancelled,
    /// A stop signal ended an install.
    Interrupted,
    /// An update failed (its target was booted unfinished).
    Failed,
    /// The operator committed the booted slot.
    MarkedGood,
    /// An install failed before the flip.
    InstallFailed,
    /// A kind this updater does not know (a newer updater's line), read back only.
    #[serde(other)]
    Unknown,
}

impl EventKind {
    /// The failures `status` reports as the last failure.
    pub const FAILURES: [EventKind; 5] = [
        EventKind::InstallFailed,
        EventKind::Failed,
        EventKind::RolledBack,
        EventKind::Interrupted,
        EventKind::RebootFailed,
    ];

    /// The word, as in JSON.
    pub fn word(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Resumed => "resumed",
            EventKind::Verified => "verified",
            EventKind::Flipped => "flipped",
            EventKind::RebootFailed => "reboot-failed",
            EventKind::Booted => "booted",
            EventKind::Trial => "trial",
            EventKind::Committed => "committed",
            EventKind::RollingBack => "rolling-back",
            EventKind::RolledBack => "rolled-back",
            EventKind::Cancelled => "cancelled",
            EventKind::Interrupted => "interrupted",
            EventKind::Failed => "failed",
            EventKind::MarkedGood => "marked-good",
            EventKind::InstallFailed => "install-failed",
            EventKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// The stage of an install a progress line is about, kebab-case in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Chunks are written to the slot.
    Writing,
    /// The slot is read back and checked.
    Verifying,
}

impl Stage {
    /// The word, as in JSON.
    pub fn word(self) -> &'static str {
        match self {
            Stage::Writing => "writing",
            Stage::Verifying => "verifying",
        }
    }
}

/// How an install that returned ended (`result` of the result line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstallOutcome {
    /// The target is verified and held, to be flipped on request (`install --no-flip`).
    Verified,
    /// The target is verified and active on trial.
    Flipped,
}

/// A progress line (`install --json`), and what the progress bar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// [`PROGRESS_SCHEMA`].
    pub schema: &'static str,
    /// The stage.
    pub stage: Stage,
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
    /// How it ended.
    pub result: InstallOutcome,
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

/// One slot in `status`: docs/json.md's slot state, the same type `edge-bootctl status` prints, and after its
/// fields what the slot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    /// The slot's state (`slot`, `good`, `tries`, `order`, `active`, `booted`), its fields inline.
    #[serde(flatten)]
    pub state: bootctl::wire::SlotStatus,
    /// The bundle on it, if an install recorded one; while an install writes the slot, none.
    pub bundle: Option<BundleInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each enumerated word is the one docs/updater.md documents, in JSON and in text alike, and reads back.
    #[test]
    fn issue_15_words_are_the_documented_ones() {
        use EventKind as K;
        let kinds = [
            (K::Started, "started"),
            (K::Resumed, "resumed"),
            (K::Flipped, "flipped"),
            (K::RebootFailed, "reboot-failed"),
            (K::Booted, "booted"),
            (K::Trial, "trial"),
            (K::Committed, "committed"),
            (K::RollingBack, "rolling-back"),
            (K::RolledBack, "rolled-back"),
            (K::Cancelled, "cancelled"),
            (K::Interrupted, "interrupted"),
            (K::Failed, "failed"),
            (K::MarkedGood, "marked-good"),
            (K::InstallFailed, "install-failed"),
        ];
        for (kind, word) in kinds {
            let json = format!("\"{word}\"");
            assert_eq!(serde_json::to_string(&kind).expect("serializes"), json);
            assert_eq!(serde_json::from_str::<EventKind>(&json).expect("reads back"), kind);
            assert_eq!(kind.to_string(), word);
        }
        // A newer updater's kind is read, not refused, and is no failure.
        let newer = serde_json::from_str::<EventKind>("\"teleported\"").expect("reads");
        assert!(newer == K::Unknown && !K::FAILURES.contains(&newer));
        for (stage, word) in [(Stage::Writing, "writing"), (Stage::Verifying, "verifying")] {
            assert_eq!(serde_json::to_string(&stage).expect("serializes"), format!("\"{word}\""));
            assert_eq!(stage.word(), word);
        }
        assert_eq!(serde_json::to_string(&InstallOutcome::Flipped).expect("serializes"), "\"flipped\"");
    }

    /// `edge-update status` shows a slot as `edge-bootctl status` does, with `bundle` after its fields: the bytes
    /// of the two separate types it had before.
    #[test]
    fn issue_15_slot_status_is_bootctls_with_the_bundle() {
        let state =
            bootctl::wire::SlotStatus { slot: 'B', good: false, tries: 3, order: 1, active: true, booted: false };
        let bundle = BundleInfo {
            manifest_blake3: "ab".repeat(32),
            name: "edge-os".to_owned(),
            version: "1.2.0".to_owned(),
            security_version: 7,
        };
        let check =
            |s: SlotStatus, expected: &str| assert_eq!(serde_json::to_string(&s).expect("serializes"), expected);
        check(
            SlotStatus { state: state.clone(), bundle: None },
            r#"{"slot":"B","good":false,"tries":3,"order":1,"active":true,"booted":false,"bundle":null}"#,
        );
        check(
            SlotStatus { state, bundle: Some(bundle.clone()) },
            &format!(
                r#"{{"slot":"B","good":false,"tries":3,"order":1,"active":true,"booted":false,"bundle":{{"manifest_blake3":"{}","name":"edge-os","version":"1.2.0","security_version":7}}}}"#,
                bundle.manifest_blake3
            ),
        );
    }
}
