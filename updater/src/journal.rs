//! The journal: what the updater knows about the current update and about each slot, kept on the data partition.
//!
//! It is a boundary type (on disk, and shown by `status --json`), so it alone derives `Serialize`/`Deserialize`;
//! changing it means an update of docs/updater.md, "Journal". The data partition outlives both slots: after a
//! fallback, the older `edge-update` of the good slot reads the journal a newer one wrote. The first updaters refuse
//! fields they do not know and know the first names (`manifest_hash`, `bytes_fetched`, `bytes_reused`), so on disk
//! the journal keeps exactly their shape ([`Journal::to_bytes`]); in memory and in `status --json` it speaks
//! docs/json.md's words and carries its `schema`. Readers from this one on ignore fields they do not know, so a field
//! can be added on disk once no node can fall back to an updater older than this one. It is always written whole
//! through the one write-temp, fsync, rename, fsync-directory helper, so a power cut leaves the old or the new
//! journal, never a mix.

use std::path::Path;

use bootctl::rules::Slot;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The journal format version.
pub const FORMAT: u32 = 1;

/// The journal's `schema` (docs/json.md).
pub const SCHEMA: &str = "edge-update.journal/1";

fn schema() -> String {
    SCHEMA.to_owned()
}

/// The phases of an update, named as in DESIGN.md, "The update, step by step".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Chunks are being written to the target slot; `chunks_done` says which are on it, synced.
    Downloading,
    /// Every chunk is on the target slot and synced; the read-back has not passed yet.
    Written,
    /// Every chunk was read back from the device and matched its hash.
    Verified,
    /// The bootloader was told to try the target slot.
    Flipped,
    /// A reboot into the target slot was requested.
    Rebooting,
    /// The target slot is booted on trial; the health checks decide.
    Trial,
    /// The target slot passed its checks and is marked good.
    Committed,
    /// The node is back on the old slot; `reason` says why.
    RolledBack,
    /// The operator cancelled the update before it was committed; the target slot was made unbootable.
    Cancelled,
    /// An anomaly at boot (the target booted while its install was unfinished); `reason` says why.
    Failed,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 10] = [
        Phase::Downloading,
        Phase::Written,
        Phase::Verified,
        Phase::Flipped,
        Phase::Rebooting,
        Phase::Trial,
        Phase::Committed,
        Phase::RolledBack,
        Phase::Cancelled,
        Phase::Failed,
    ];

    /// Whether the update is over (nothing more happens without a new install).
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Committed | Phase::RolledBack | Phase::Cancelled | Phase::Failed)
    }

    /// Whether the target slot is still being written or checked (an install can resume it).
    pub fn is_installing(self) -> bool {
        matches!(self, Phase::Downloading | Phase::Written | Phase::Verified)
    }

    /// The kebab-case name, as in the journal and in events.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Downloading => "downloading",
            Phase::Written => "written",
            Phase::Verified => "verified",
            Phase::Flipped => "flipped",
            Phase::Rebooting => "rebooting",
            Phase::Trial => "trial",
            Phase::Committed => "committed",
            Phase::RolledBack => "rolled-back",
            Phase::Cancelled => "cancelled",
            Phase::Failed => "failed",
        }
    }
}

/// What a bundle is, as its manifest says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleInfo {
    /// blake3 of the signed manifest bytes, lowercase hex: the bundle's identity. (`manifest_hash` in the first
    /// journals.)
    #[serde(alias = "manifest_hash")]
    pub manifest_blake3: String,
    /// The manifest's `name`.
    pub name: String,
    /// The manifest's `version`.
    pub version: String,
    /// The manifest's `security_version`.
    pub security_version: u64,
}

/// What a slot holds, as recorded by the install that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotImage {
    /// The bundle installed.
    pub bundle: BundleInfo,
    /// Bytes of the payload on the slot.
    pub size_bytes: u64,
}

/// The update in progress, or the last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// Where it stands.
    pub phase: Phase,
    /// The slot being written (never the booted one).
    #[serde(with = "slot_letter")]
    pub target: Slot,
    /// The bundle.
    pub bundle: BundleInfo,
    /// Where the bundle was read from (a path, `-`, a URL).
    pub source: String,
    /// Raw size of the payload.
    pub size_bytes: u64,
    /// Chunk size of the payload.
    pub chunk_size: u32,
    /// Chunks of the payload.
    pub n_chunks: u64,
    /// The chunks on the target slot, synced and hash-checked before they were written, as sorted, disjoint,
    /// half-open ranges of chunk indexes. Recorded only after the slot was synced.
    pub chunks_done: Vec<[u64; 2]>,
    /// Bundle bytes fetched for this update so far, over every attempt (`bytes_fetched` in the first journals).
    #[serde(alias = "bytes_fetched")]
    pub fetched_bytes: u64,
    /// Payload bytes taken from the booted slot instead of being fetched (`bytes_reused` in the first journals).
    #[serde(alias = "bytes_reused")]
    pub reused_bytes: u64,
    /// Whether a reboot into the target was asked for once it is flipped.
    pub reboot: bool,
    /// When the update started, RFC 3339 UTC.
    pub started: String,
    /// Why the update failed, rolled back, or is being rolled back (a failed check recorded before the reboot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// In phase `verified`: the target is held for a later flip (`install --no-flip`), and its chunk hashes are kept
    /// beside the journal (docs/updater.md, "Held installs"). Written only while true, and cleared by the flip, so
    /// the journals an older updater may read after a fallback never carry it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

impl Update {
    /// Number of chunks done.
    pub fn n_done(&self) -> u64 {
        self.chunks_done.iter().map(|r| r[1] - r[0]).sum()
    }

    /// Whether chunk `chunk_idx` is on the slot.
    pub fn is_done(&self, chunk_idx: u64) -> bool {
        self.chunks_done.iter().any(|r| (r[0]..r[1]).contains(&chunk_idx))
    }

    /// Records chunks `start..end` as done, merging neighbouring ranges.
    pub fn add_done(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        self.chunks_done.push([start, end]);
        self.chunks_done.sort_unstable();
        let mut merged: Vec<[u64; 2]> = Vec::with_capacity(self.chunks_done.len());
        for r in self.chunks_done.drain(..) {
            match merged.last_mut() {
                Some(last) if r[0] <= last[1] => last[1] = last[1].max(r[1]),
                _ => merged.push(r),
            }
        }
        self.chunks_done = merged;
    }

    /// Whether every chunk is done.
    pub fn all_done(&self) -> bool {
        self.n_done() == self.n_chunks
    }
}

/// The whole journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// [`SCHEMA`] (absent from the first journals).
    #[serde(default = "schema")]
    pub schema: String,
    /// [`FORMAT`], kept beside `schema` for the first updaters.
    pub format: u32,
    /// The highest `security_version` committed on this node: bundles below it are refused (anti-rollback).
    pub security_version: u64,
    /// What slot A holds, when an install recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_a: Option<SlotImage>,
    /// What slot B holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_b: Option<SlotImage>,
    /// The update in progress, or the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Update>,
}

impl Default for Journal {
    fn default() -> Journal {
        Journal { schema: schema(), format: FORMAT, security_version: 0, slot_a: None, slot_b: None, update: None }
    }
}

impl Journal {
    /// What slot `s` holds, if recorded.
    pub fn slot(&self, s: Slot) -> Option<&SlotImage> {
        match s {
            Slot::A => self.slot_a.as_ref(),
            Slot::B => self.slot_b.as_ref(),
        }
    }

    /// Records what slot `s` holds (`None`: unknown, being overwritten).
    pub fn set_slot(&mut self, s: Slot, image: Option<SlotImage>) {
        match s {
            Slot::A => self.slot_a = image,
            Slot::B => self.slot_b = image,
        }
    }

    /// The phase of the current update, if any.
    pub fn phase(&self) -> Option<Phase> {
        self.update.as_ref().map(|u| u.phase)
    }

    /// Parses a journal; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Journal> {
        let j: Journal = serde_json::from_slice(bytes)
            .map_err(|e| Error::ParseJournal { path: path.to_owned(), detail: e.to_string() })?;
        if j.format != FORMAT || j.schema != SCHEMA {
            return Err(Error::ParseJournal {
                path: path.to_owned(),
                detail: format!("schema {} (format {}) unsupported, expected {SCHEMA}", j.schema, j.format),
            });
        }
        if let Some(u) = &j.update {
            let sorted = u.chunks_done.windows(2).all(|w| w[0][1] < w[1][0]);
            let in_range = u.chunks_done.iter().all(|r| r[0] < r[1] && r[1] <= u.n_chunks);
            if !sorted || !in_range {
                return Err(Error::ParseJournal {
                    path: path.to_owned(),
                    detail: format!("chunks_done is not sorted disjoint ranges within 0..{}", u.n_chunks),
                });
            }
        }
        Ok(j)
    }

    /// Loads the journal at `path`; a missing file is a fresh node's empty journal.
    pub fn load(path: &Path) -> Result<Journal> {
        match std::fs::read(path) {
            Ok(bytes) => Journal::parse(&bytes, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Journal::default()),
            Err(source) => Err(Error::ReadJournal { path: path.to_owned(), source }),
        }
    }

    /// The journal as written to disk: in the first updaters' shape (their names, no `schema`), which every
    /// updater reads, the first ones included (see the module's doc).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_value(self).expect("a journal always serializes");
        to_first_shape(&mut v);
        let mut b = serde_json::to_vec_pretty(&v).expect("a JSON value always serializes");
        b.push(b'\n');
        b
    }

    /// Writes the journal durably: write a temporary file, fsync, rename over `path`, fsync the directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let wrap = |source: image_layout::Error| Error::WriteJournal { path: path.to_owned(), source };
        let mut f = image_layout::fsutil::AtomicFile::create(path).map_err(wrap)?;
        let tmp = f.tmp_path().to_owned();
        f.write_all(&self.to_bytes()).map_err(|source| wrap(image_layout::Error::WriteFile { path: tmp, source }))?;
        // Durability: a cut before this commit leaves the previous journal; after it, this one.
        f.commit().map_err(wrap)
    }
}

/// Today's names of the journal's fields and the first updaters' names for them, which the journal keeps on disk.
const FIRST_NAMES: [(&str, &str); 3] =
    [("manifest_blake3", "manifest_hash"), ("fetched_bytes", "bytes_fetched"), ("reused_bytes", "bytes_reused")];

/// Turns a serialized journal into the first updaters' shape: their names, and no `schema`.
fn to_first_shape(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(m) = v {
        m.remove("schema");
        for (today, first) in FIRST_NAMES {
            if let Some(x) = m.remove(today) {
                m.insert(first.to_owned(), x);
            }
        }
        m.values_mut().for_each(to_first_shape);
    }
}

/// Where the journal is kept: the seam where a power cut strikes its writes, so crash tests can stop one.
pub trait JournalStore: Send {
    /// Loads the journal (a fresh node's empty one when there is none).
    fn load(&mut self) -> Result<Journal>;
    /// Replaces the journal durably and atomically.
    fn save(&mut self, journal: &Journal) -> Result<()>;
}

/// The journal in a file (on the data partition).
#[derive(Debug, Clone)]
pub struct FileJournal {
    path: std::path::PathBuf,
}

impl FileJournal {
    /// The journal at `path`.
    pub fn new(path: std::path::PathBuf) -> FileJournal {
        FileJournal { path }
    }
}

impl JournalStore for FileJournal {
    fn load(&mut self) -> Result<Journal> {
        Journal::load(&self.path)
    }
    fn save(&mut self, journal: &Journal) -> Result<()> {
        journal.save(&self.path)
    }
}

/// A slot as its letter, `"A"` or `"B"`.
mod slot_letter {
    use bootctl::rules::Slot;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &Slot, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&s.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Slot, D::Error> {
        let s = String::deserialize(de)?;
        Slot::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("slot {s:?} is not A or B")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update() -> Update {
        Update {
            phase: Phase::Downloading,
            target: Slot::B,
            bundle: BundleInfo {
                manifest_blake3: "00".repeat(32),
                name: "edge-stack".into(),
                version: "1.0".into(),
                security_version: 1,
            },
            source: "-".into(),
            size_bytes: 10 << 20,
            chunk_size: 1 << 20,
            n_chunks: 10,
            chunks_done: Vec::new(),
            fetched_bytes: 0,
            reused_bytes: 0,
            reboot: false,
            started: "2026-11-24T00:00:00Z".into(),
            reason: None,
            held: false,
        }
    }

    #[test]
    fn done_ranges_merge() {
        let check = |adds: &[(u64, u64)], expected: &[[u64; 2]]| {
            let mut u = update();
            for &(s, e) in adds {
                u.add_done(s, e);
            }
            assert_eq!(u.chunks_done, expected, "{adds:?}");
        };
        check(&[(0, 3)], &[[0, 3]]);
        check(&[(0, 3), (3, 5)], &[[0, 5]]);
        check(&[(5, 7), (0, 2)], &[[0, 2], [5, 7]]);
        check(&[(5, 7), (0, 2), (2, 5)], &[[0, 7]]);
        check(&[(1, 4), (2, 3)], &[[1, 4]]);
        check(&[(4, 4)], &[]);
        let mut u = update();
        u.add_done(0, 4);
        u.add_done(6, 10);
        assert_eq!(u.n_done(), 8);
        assert!(u.is_done(3) && !u.is_done(4) && u.is_done(9));
        assert!(!u.all_done());
        u.add_done(4, 6);
        assert!(u.all_done());
    }

    #[test]
    fn journal_round_trips_and_refuses_bad_ranges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.json");
        assert_eq!(Journal::load(&path).expect("missing is empty"), Journal::default());
        let mut j = Journal { update: Some(update()), ..Journal::default() };
        j.update.as_mut().expect("set").add_done(0, 4);
        j.save(&path).expect("save");
        assert_eq!(Journal::load(&path).expect("load"), j);
        let check = |text: &str| {
            let r = Journal::parse(text.as_bytes(), &path);
            assert!(matches!(r, Err(Error::ParseJournal { .. })), "{text}: {r:?}");
        };
        let good = String::from_utf8(j.to_bytes()).expect("utf8");
        check(&good.replace("\"format\": 1", "\"format\": 2"));
        check(&good.replace("\"n_chunks\": 10", "\"n_chunks\": 3"));
        check(&good.replace("\"phase\": \"downloading\"", "\"phase\": \"flying\""));
        check(&good.replace("\"format\": 1", "\"schema\": \"edge-update.journal/2\", \"format\": 1"));
        check("{");
    }

    /// The first updaters' journal, as they declared it (commit d0f7543): unknown fields refused, the first names.
    mod first {
        use serde::Deserialize;

        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        pub struct BundleInfo {
            pub manifest_hash: String,
            pub name: String,
            pub version: String,
            pub security_version: u64,
        }

        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        pub struct SlotImage {
            pub bundle: BundleInfo,
            pub size_bytes: u64,
        }

        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        pub struct Update {
            pub phase: String,
            pub target: String,
            pub bundle: BundleInfo,
            pub source: String,
            pub size_bytes: u64,
            pub chunk_size: u32,
            pub n_chunks: u64,
            pub chunks_done: Vec<[u64; 2]>,
            pub bytes_fetched: u64,
            pub bytes_reused: u64,
            pub reboot: bool,
            pub started: String,
            #[serde(default)]
            pub reason: Option<String>,
        }

        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        pub struct Journal {
            pub format: u32,
            pub security_version: u64,
            #[serde(default)]
            pub slot_a: Option<SlotImage>,
            #[serde(default)]
            pub slot_b: Option<SlotImage>,
            #[serde(default)]
            pub update: Option<Update>,
        }
    }

    /// After a fallback the slot's older updater reads the journal this one wrote: the first updaters read it, and
    /// this one reads theirs and one from a newer updater (fields it does not know).
    #[test]
    fn issue_14_journals_are_read_by_older_and_newer_updaters() {
        let path = Path::new("journal.json");
        let mut u = update();
        u.fetched_bytes = 7;
        u.reused_bytes = 5;
        u.reason = Some("a check failed".into());
        let image = SlotImage { bundle: u.bundle.clone(), size_bytes: 3 };
        let j = Journal { slot_a: Some(image.clone()), slot_b: Some(image), update: Some(u), ..Journal::default() };
        let on_disk = j.to_bytes();
        let first: first::Journal = serde_json::from_slice(&on_disk).expect("the first updaters read it");
        let fu = first.update.expect("update");
        assert_eq!((fu.bytes_fetched, fu.bytes_reused, first.format), (7, 5, 1));
        assert_eq!(Journal::parse(&on_disk, path).expect("this one reads it"), j);
        // In status --json, today's words and the schema.
        let shown = serde_json::to_string(&j).expect("json");
        assert!(shown.contains("\"fetched_bytes\":7") && shown.contains("\"schema\":\"edge-update.journal/1\""));
        let newer =
            String::from_utf8(on_disk).expect("utf8").replace("\"format\": 1", "\"format\": 1, \"surprise\": 1");
        assert_eq!(Journal::parse(newer.as_bytes(), path).expect("a newer journal"), j);
    }
}
