//! The crate's error type and the mapping from error classes to `edge-update`'s documented exit codes
//! (docs/updater.md, "Exit codes").
//!
//! Every I/O variant carries the path, device or source it concerns; there is no `From<io::Error>`.

use std::io;
use std::path::PathBuf;

use bootctl::rules::Slot;

use crate::journal::Phase;

/// Exit codes of `edge-update`: those of `edge-image` for a bundle that is not good (the same classes, the same
/// numbers), and two of its own.
pub mod exit {
    pub use image_layout::error::exit::{EXPIRED, FAILURE, HASH, MALFORMED, SIGNATURE, USAGE};
    /// Refused before writing: the bundle does not fit this node (board, version, size), or the node's state
    /// does not allow the verb now (target mounted or booted, an update in progress).
    pub const REFUSED: i32 = 7;
    /// The health checks failed (the slot was marked bad).
    pub const UNHEALTHY: i32 = 8;
}

/// Everything that can go wrong in an update.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file could not be read.
    #[error("cannot read config {path}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The config file is not a regular file of at most `config::MAX_CONFIG_BYTES`, or cannot be read.
    #[error("cannot read config {path}")]
    ReadConfigFile {
        /// The file.
        path: PathBuf,
        /// The cause (the file's type or size, or the I/O error).
        #[source]
        source: image_layout::Error,
    },
    /// The config file is not valid.
    #[error("config {path}: {detail}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        detail: String,
    },
    /// The config file is not TOML of the right shape (a type error, an unknown key).
    #[error("config {}:{}{}: {detail}", path.display(), at.map_or(String::new(), |(l, c)| format!("{l}:{c}:")), key.as_ref().map_or(String::new(), |k| format!(" key {k}")))]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// The line and column (from 1) where the TOML parser stopped.
        at: Option<(usize, usize)>,
        /// The key on that line.
        key: Option<String>,
        /// What is wrong.
        detail: String,
    },
    /// The mount table could not be read.
    #[error("cannot read the mount table {path}")]
    ReadMounts {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The running root could not be examined.
    #[error("cannot examine the root filesystem {path}")]
    StatRoot {
        /// The mount point.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The journal could not be read.
    #[error("cannot read journal {path}")]
    ReadJournal {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The journal is not valid.
    #[error("journal {path}: {detail}")]
    ParseJournal {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The journal could not be written.
    #[error("cannot write journal {path}")]
    WriteJournal {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: image_layout::Error,
    },
    /// The event log could not be appended to.
    #[error("cannot write event log {path}")]
    WriteEvents {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another `edge-update` holds the lock.
    #[error("another edge-update is running (lock {path} held)")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The keyring could not be loaded.
    #[error("cannot load keyring {path}")]
    Keyring {
        /// The keyring directory or file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: image_layout::Error,
    },
    /// The bundle is malformed, not trusted, damaged or expired.
    #[error("bundle {source_name}")]
    Bundle {
        /// The bundle's source (a path, `-`, a URL).
        source_name: String,
        /// The cause.
        #[source]
        source: image_layout::Error,
    },
    /// The bundle source is a URL this updater cannot fetch: a scheme other than http:// and https://, or an http(s)
    /// URL that does not parse. A usage error.
    #[error("cannot use bundle source {source_name}")]
    OpenSource {
        /// The source as given.
        source_name: String,
        /// The cause.
        #[source]
        source: Box<crate::http::Error>,
    },
    /// Fetching the bundle over HTTP(S) failed for good: a status, no response (connection, TLS, timeout), a
    /// redirect refused, a bad answer, the bundle changed on the server, the minimum rate missed, or retries used up.
    /// The cause says which; what the retries already tried is behind it.
    #[error("cannot read bundle {url} at byte {offset}")]
    Http {
        /// The bundle URL.
        url: String,
        /// Where the read started.
        offset: u64,
        /// The cause.
        #[source]
        source: Box<crate::http::Error>,
    },
    /// Reading from the bundle's source (a file, stdin) failed.
    #[error("cannot read bundle {source_name} at byte {offset}")]
    Fetch {
        /// The bundle's source.
        source_name: String,
        /// Where the read started.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The bundle has no payload of the configured name.
    #[error("bundle {source_name} has no payload {payload:?}")]
    NoPayload {
        /// The bundle's source.
        source_name: String,
        /// The payload name configured.
        payload: String,
    },
    /// The bundle is for another board.
    #[error("bundle is for {found:?}, this node is {expected:?}")]
    Incompatible {
        /// The node's `compatible`.
        expected: String,
        /// The bundle's.
        found: String,
    },
    /// The bundle's security version is below the one installed.
    #[error("bundle security_version {found} is below the installed {installed} (anti-rollback)")]
    Downgrade {
        /// The bundle's.
        found: u64,
        /// The node's floor.
        installed: u64,
    },
    /// The payload does not fit the target slot.
    #[error("payload of {size_bytes} bytes does not fit slot {slot} ({slot_bytes} bytes at {device})")]
    TooBig {
        /// The slot.
        slot: Slot,
        /// The slot's device.
        device: PathBuf,
        /// The payload's size.
        size_bytes: u64,
        /// The slot's size.
        slot_bytes: u64,
    },
    /// A partition label names more than one device (a disk image left plugged in, say).
    #[error("slot {slot}: PARTLABEL={label} names {devices:?}; refusing to guess which one is the slot")]
    AmbiguousLabel {
        /// The slot.
        slot: Slot,
        /// The label.
        label: String,
        /// Every device with it.
        devices: Vec<PathBuf>,
    },
    /// The target slot's file backs a loop device.
    #[error("slot {slot}: {device} backs {loop_device}; refusing to write a file in use")]
    SlotInUse {
        /// The slot.
        slot: Slot,
        /// Its file.
        device: PathBuf,
        /// The loop device.
        loop_device: String,
    },
    /// A slot's device could not be found.
    #[error("slot {slot}: cannot find {spec:?}")]
    ResolveSlot {
        /// The slot.
        slot: Slot,
        /// The configured device.
        spec: String,
    },
    /// The target slot's device is mounted.
    #[error("slot {slot}: {device} is mounted on {mount_point}; refusing to write a mounted slot")]
    SlotMounted {
        /// The slot.
        slot: Slot,
        /// Its device.
        device: PathBuf,
        /// Where it is mounted.
        mount_point: PathBuf,
    },
    /// The target slot's device is the device of the running root.
    #[error("slot {slot}: {device} is the running root filesystem's device; refusing to write it")]
    SlotIsRoot {
        /// The slot.
        slot: Slot,
        /// Its device.
        device: PathBuf,
    },
    /// The install would write the booted slot.
    #[error("slot {slot} is booted; an install only writes the other slot")]
    TargetBooted {
        /// The slot.
        slot: Slot,
    },
    /// The booted slot is not good, so there is nothing to fall back to.
    #[error("slot {slot} is booted but not good (on trial); commit or roll back before installing")]
    BootedNotGood {
        /// The slot.
        slot: Slot,
    },
    /// An update is flipped or on trial.
    #[error("an update of slot {target} is in phase {}; finish it first", phase.name())]
    Busy {
        /// Its phase.
        phase: Phase,
        /// Its target.
        target: Slot,
    },
    /// No update to act on.
    #[error("nothing to {verb}: no update recorded")]
    NoUpdate {
        /// The verb.
        verb: &'static str,
    },
    /// The verb does not apply in this phase.
    #[error("cannot {verb} an update in phase {}", phase.name())]
    WrongPhase {
        /// The verb.
        verb: &'static str,
        /// The phase.
        phase: Phase,
    },
    /// A slot device could not be opened.
    #[error("cannot open slot {slot} device {device}")]
    OpenSlot {
        /// The slot.
        slot: Slot,
        /// Its device.
        device: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing or syncing a slot device failed.
    #[error("cannot write slot {slot} device {device}")]
    WriteSlot {
        /// The slot.
        slot: Slot,
        /// Its device.
        device: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading a slot device failed.
    #[error("cannot read slot {slot} device {device}")]
    ReadSlot {
        /// The slot.
        slot: Slot,
        /// Its device.
        device: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A chunk read back from the target slot does not match its hash (the journal no longer counts it).
    #[error("slot {slot}: chunk {chunk_idx} reads back wrong from {device}; install again to rewrite it")]
    ReadBack {
        /// The slot.
        slot: Slot,
        /// Its device.
        device: PathBuf,
        /// The chunk.
        chunk_idx: u64,
    },
    /// The chunk hashes of a held target could not be written.
    #[error("cannot write the held chunk hashes {path}")]
    WriteHeld {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: image_layout::Error,
    },
    /// The chunk hashes of a held target are missing, damaged, or of another bundle.
    #[error("held chunk hashes {path}: {detail}; install the bundle again")]
    HeldHashes {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// `flip` asked of an update that is not verified and held.
    #[error("nothing to flip: the update is in phase {}, not held after verification (install --no-flip)", phase.name())]
    NotHeld {
        /// Its phase.
        phase: Phase,
    },
    /// A slot index cache could not be written or removed.
    #[error("cannot write slot index cache {path}")]
    WriteCache {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The boot state could not be read or written.
    #[error("boot state")]
    Bootctl {
        /// The cause.
        #[source]
        source: bootctl::error::Error,
    },
    /// The booted slot could not be told.
    #[error("cannot tell the booted slot")]
    Booted {
        /// The cause.
        #[source]
        source: bootctl::error::Error,
    },
    /// The health checks failed.
    #[error("slot {slot} failed its health checks")]
    Unhealthy {
        /// The slot.
        slot: Slot,
        /// The check that failed, and how.
        #[source]
        source: crate::health::Unhealthy,
    },
    /// `edge-init` refused a request (a reboot while it is already shutting down).
    #[error("cannot reboot: {detail}: edge-init answered \"{refusal}\", not \"ok\"")]
    InitRefused {
        /// What was asked.
        detail: String,
        /// Its answer.
        refusal: platform::ctl::Refusal,
    },
    /// `edge-init` could not be asked.
    #[error("cannot reboot: {detail}")]
    AskInit {
        /// What was asked.
        detail: String,
        /// The cause.
        #[source]
        source: platform::Error,
    },
    /// A reboot could not be requested.
    #[error("cannot reboot: {detail}")]
    Reboot {
        /// What failed.
        detail: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A failed read of the bundle from `source_name` at `offset`: [`Error::Http`] when the source speaks HTTP and
    /// said why (it hands its `http::Error` over inside the `io::Error` the `Fetch` trait returns), otherwise
    /// [`Error::Fetch`].
    pub fn fetch(source_name: &str, offset: u64, source: io::Error) -> Error {
        if source.get_ref().is_some_and(|e| e.is::<crate::http::Error>()) {
            let inner = source.into_inner().expect("get_ref found the inner error");
            let http =
                inner.downcast::<crate::http::Error>().expect("the inner error was checked to be an http::Error");
            return Error::Http { url: http.url().to_owned(), offset, source: http };
        }
        Error::Fetch { source_name: source_name.to_owned(), offset, source }
    }

    /// The exit code of `edge-update` for this error (docs/updater.md, "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Bundle { source, .. } => source.exit_code(),
            Error::NoPayload { .. }
            | Error::Incompatible { .. }
            | Error::Downgrade { .. }
            | Error::TooBig { .. }
            | Error::SlotMounted { .. }
            | Error::SlotIsRoot { .. }
            | Error::SlotInUse { .. }
            | Error::AmbiguousLabel { .. }
            | Error::TargetBooted { .. }
            | Error::BootedNotGood { .. }
            | Error::Busy { .. }
            | Error::NoUpdate { .. }
            | Error::WrongPhase { .. }
            | Error::NotHeld { .. }
            | Error::Locked { .. } => exit::REFUSED,
            Error::Unhealthy { .. } => exit::UNHEALTHY,
            Error::OpenSource { .. } => exit::USAGE,
            _ => exit::FAILURE,
        }
    }
}

/// An error and every error that caused it, joined by `: `, on one line: what the event log keeps as a failure's
/// `reason` (stderr shows the same as `caused by:` lines).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http;

    #[test]
    fn issue_15_http_failures_keep_their_type_and_their_text() {
        let url = "http://10.0.2.100/b";
        let status =
            || http::Error::Status { url: url.to_owned(), request: format!("GET {url} bytes=5-"), status: 404 };
        // What the Fetch trait hands over: the http::Error inside an io::Error.
        let err = Error::fetch(url, 5, io::Error::other(status()));
        assert!(
            matches!(&err, Error::Http { url: u, offset: 5, source } if u == url
                && matches!(**source, http::Error::Status { status: 404, .. })),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), exit::FAILURE);
        // The same text as when the cause was an io::Error around it: the event log's reasons do not change.
        let before = Error::Fetch { source_name: url.to_owned(), offset: 5, source: io::Error::other(status()) };
        assert_eq!(chain(&err), chain(&before));
        // Any other read error stays a Fetch.
        let err = Error::fetch("-", 7, io::Error::new(io::ErrorKind::UnexpectedEof, "early end"));
        assert!(matches!(&err, Error::Fetch { offset: 7, .. }), "{err:?}");
        assert_eq!(err.exit_code(), exit::FAILURE);
    }
}
