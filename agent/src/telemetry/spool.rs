//! The telemetry spool: the node's logs and metrics, numbered once and kept on the data partition until the endpoint
//! holds them, bounded in bytes, through outages, restarts and power cuts (docs/telemetry.md, "The spool").
//!
//! It is a directory of append-only segments, each named by the `seq` of its first record, and one small metadata
//! file written atomically. A record is a frame (length, CRC-32, `seq`, kind, an optional source mark, the payload);
//! appends are buffered and reach the disk at [`Spool::sync`], and only synced records are ever handed out to be
//! sent, so a `seq` the endpoint has seen is never given to another record. Everything else is derived on open:
//! the next `seq` from the last whole frame, the source mark from the newest frame that carries one, and what was
//! lost from the frames that do not read back.
//!
//! The directory is behind [`SpoolFs`], the seam where power cuts are injected in tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A segment file starts with these 8 bytes, then the `seq` of its first record (u64, little-endian).
pub const SEGMENT_MAGIC: &[u8; 8] = b"EDGETS01";
/// The segment header's length.
pub const SEGMENT_HEADER: usize = 16;
/// A frame's fixed part: length (u32), CRC-32 (u32), `seq` (u64), kind (u8), mark length (u8).
pub const FRAME_HEADER: usize = 18;
/// The largest payload a frame holds.
pub const MAX_PAYLOAD: usize = 64 << 10;
/// The metadata file's name.
pub const META: &str = "meta.json";
/// Appends buffered in memory past this many bytes are written (not synced) before the next sync.
const WRITE_BUFFER: usize = 64 << 10;

/// What a record holds; the spool counts drops per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A log line (the kernel's, a service's, `edge-init`'s).
    Log,
    /// A set of metric samples taken at one time.
    Metrics,
}

impl Kind {
    /// Every kind, in the order of their bytes.
    pub const ALL: [Kind; 2] = [Kind::Log, Kind::Metrics];

    /// The kind's byte in a frame.
    pub fn byte(self) -> u8 {
        match self {
            Kind::Log => 1,
            Kind::Metrics => 2,
        }
    }

    /// The kind of a frame's byte.
    pub fn from_byte(b: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.byte() == b)
    }

    /// The kind's word (in the metadata, on the wire, in metric labels).
    pub fn word(self) -> &'static str {
        match self {
            Kind::Log => "log",
            Kind::Metrics => "metrics",
        }
    }
}

/// The spool's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of all segments together past which the oldest segment is dropped.
    pub max_bytes: u64,
    /// A segment is closed and a new one begun once it holds this many bytes.
    pub segment_bytes: u64,
    /// The most records one batch holds: the first this many records after the acknowledged one may be on their
    /// way to the endpoint, so they are never dropped.
    pub batch_records: u64,
}

impl Limits {
    /// `max_bytes` with segments of a sixteenth of it (at least 64 KiB, at most 4 MiB), so that a full spool drops
    /// about 6 % at a time. The whole directory stays within `max_bytes` (and the metadata).
    pub fn of_max(max_bytes: u64, batch_records: u64) -> Limits {
        Limits { max_bytes, segment_bytes: (max_bytes / 16).clamp(64 << 10, 4 << 20), batch_records }
    }

    /// The smallest bound (two segments of the smallest size).
    pub const MIN_MAX_BYTES: u64 = 128 << 10;
}

/// The spool's directory: whole files read, appended, synced, created, replaced atomically and removed.
pub trait SpoolFs {
    /// The names of the files in the directory (made when missing).
    fn list(&mut self) -> io::Result<Vec<String>>;
    /// A whole file.
    fn read(&mut self, name: &str) -> io::Result<Vec<u8>>;
    /// Up to `len` bytes of a file from `offset` (fewer at its end).
    fn read_at(&mut self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Creates a file holding `bytes`, synced, its directory entry synced.
    fn create(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Appends `bytes` to a file, without syncing.
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// fdatasync(2) of a file.
    fn sync(&mut self, name: &str) -> io::Result<()>;
    /// Replaces a file with `bytes` atomically (temp, fsync, rename, fsync of the directory).
    fn replace(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Removes a file (a missing one is not an error).
    fn remove(&mut self, name: &str) -> io::Result<()>;
}

/// The spool's directory on disk.
pub struct DiskFs {
    dir: PathBuf,
    /// The segment being appended to, kept open.
    open: Option<(String, File)>,
}

impl DiskFs {
    /// The directory `dir` (made on the first use).
    pub fn new(dir: &Path) -> DiskFs {
        DiskFs { dir: dir.to_owned(), open: None }
    }

    fn file(&mut self, name: &str) -> io::Result<&mut File> {
        if self.open.as_ref().is_none_or(|(n, _)| n != name) {
            let f = OpenOptions::new().append(true).open(self.dir.join(name))?;
            self.open = Some((name.to_owned(), f));
        }
        Ok(&mut self.open.as_mut().expect("just opened").1)
    }
}

impl SpoolFs for DiskFs {
    fn list(&mut self) -> io::Result<Vec<String>> {
        std::fs::create_dir_all(&self.dir)?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn read(&mut self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.dir.join(name))
    }

    fn read_at(&mut self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut f = File::open(self.dir.join(name))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len);
        f.take(len as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn create(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.dir.join(name);
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        image_layout::fsutil::sync_dir(&self.dir)?;
        self.open = Some((name.to_owned(), OpenOptions::new().append(true).open(&path)?));
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.file(name)?.write_all(bytes)
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.file(name)?.sync_data()
    }

    fn replace(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut f = image_layout::fsutil::AtomicFile::create(&self.dir.join(name)).map_err(io::Error::other)?;
        f.write_all(bytes)?;
        f.commit().map_err(io::Error::other)
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        if self.open.as_ref().is_some_and(|(n, _)| n == name) {
            self.open = None;
        }
        match std::fs::remove_file(self.dir.join(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
}

/// What the spool has lost, cumulative over the node's life: the protocol's counters (`dropped` per kind's word,
/// `damaged`, `torn_bytes`), kept in the metadata as they are shipped with every batch.
pub use fleet_wire::telemetry::Counters;

/// A source's position, saved in the frame of a record it produced (`kmsg`: the boot and the ring's `seq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The `seq` of the record that carried it.
    pub seq: u64,
    /// The source's bytes, opaque to the spool (at most 255).
    #[serde(with = "hex_bytes")]
    pub bytes: Vec<u8>,
}

/// The metadata file (`meta.json`), written whole and atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    version: u32,
    /// The endpoint holds every record up to this `seq`.
    acked: u64,
    /// No `seq` below this is given again.
    next_seq: u64,
    /// Ranges of `seq` (first, last) dropped when the spool was full, and counted, above `acked`: a segment
    /// wholly inside one goes without being counted again.
    #[serde(default)]
    dropped: Vec<(u64, u64)>,
    counters: Counters,
    /// Segments (by first `seq`) whose damage was counted, so a restart does not count it again.
    #[serde(default)]
    damage_counted: BTreeSet<u64>,
    /// The newest source mark when this was written (segments that held it may be gone).
    #[serde(default)]
    mark: Option<Mark>,
}

/// A record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its number.
    pub seq: u64,
    /// What it is.
    pub kind: Kind,
    /// Its payload as appended.
    pub payload: Vec<u8>,
}

/// One segment: its first `seq`, its bytes on disk, the readable end, the last `seq` in it.
#[derive(Debug, Clone)]
struct Segment {
    first_seq: u64,
    /// Bytes of the file (after open: the readable prefix plus any damaged rest, which is never appended to).
    bytes: u64,
    /// The end of the last whole frame.
    readable: u64,
    /// The `seq` of the last whole frame (`first_seq - 1` when none).
    last_seq: u64,
    /// Records of each kind in the segment (whole frames).
    n_kind: BTreeMap<Kind, u64>,
    /// Its tail is damaged: never appended to.
    sealed: bool,
}

impl Segment {
    fn name(&self) -> String {
        segment_name(self.first_seq)
    }
}

/// A segment's file name.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// The CRC of a frame: over `seq`, kind, mark and payload.
fn frame_crc(seq: u64, kind: u8, mark: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&[kind, mark.len() as u8]);
    h.update(mark);
    h.update(payload);
    h.finalize()
}

/// Encodes one frame (docs/telemetry.md, "Segments").
pub fn encode_frame(seq: u64, kind: Kind, mark: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + mark.len() + payload.len());
    encode_frame_into(&mut out, seq, kind, mark, payload);
    out
}

/// [`encode_frame`] at the end of `out`.
fn encode_frame_into(out: &mut Vec<u8>, seq: u64, kind: Kind, mark: &[u8], payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&frame_crc(seq, kind.byte(), mark, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(kind.byte());
    out.push(mark.len() as u8);
    out.extend_from_slice(mark);
    out.extend_from_slice(payload);
}

/// A frame decoded from the front of `bytes`, and its length; `None` when the bytes are not a whole, intact frame.
struct Frame<'a> {
    seq: u64,
    kind: Kind,
    mark: &'a [u8],
    payload: &'a [u8],
    len: usize,
}

fn decode_frame(bytes: &[u8]) -> Option<Frame<'_>> {
    let head = bytes.get(..FRAME_HEADER)?;
    let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    let kind = head[16];
    let mark_len = head[17] as usize;
    if len > MAX_PAYLOAD {
        return None;
    }
    let total = FRAME_HEADER + mark_len + len;
    let rest = bytes.get(FRAME_HEADER..total)?;
    let (mark, payload) = rest.split_at(mark_len);
    if frame_crc(seq, kind, mark, payload) != crc {
        return None;
    }
    Some(Frame { seq, kind: Kind::from_byte(kind)?, mark, payload, len: total })
}

/// What one segment's bytes hold: its whole frames up to the first that is not one (torn, damaged, or out of
/// order), and the newest mark in them.
struct Scan {
    readable: u64,
    last_seq: u64,
    n_kind: BTreeMap<Kind, u64>,
    mark: Option<Mark>,
}

fn scan(first_seq: u64, bytes: &[u8]) -> Option<Scan> {
    let head = bytes.get(..SEGMENT_HEADER)?;
    if &head[..8] != SEGMENT_MAGIC || u64::from_le_bytes(head[8..16].try_into().expect("8 bytes")) != first_seq {
        return None;
    }
    let mut at = SEGMENT_HEADER;
    let mut s = Scan { readable: at as u64, last_seq: first_seq - 1, n_kind: BTreeMap::new(), mark: None };
    while let Some(f) = decode_frame(&bytes[at..]) {
        if f.seq != s.last_seq + 1 {
            break;
        }
        at += f.len;
        s.readable = at as u64;
        s.last_seq = f.seq;
        *s.n_kind.entry(f.kind).or_default() += 1;
        if !f.mark.is_empty() {
            s.mark = Some(Mark { seq: f.seq, bytes: f.mark.to_vec() });
        }
    }
    Some(s)
}

/// What opening the spool found and did, for the log and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opened {
    /// Segments read.
    pub n_segments: usize,
    /// Records waiting to be sent.
    pub n_pending: u64,
    /// Damaged records found now (also added to the counters).
    pub damaged: u64,
    /// Torn bytes found now (also added to the counters).
    pub torn_bytes: u64,
}

/// The open spool.
pub struct Spool<F: SpoolFs> {
    fs: F,
    dir: PathBuf,
    limits: Limits,
    meta: Meta,
    /// Every segment on disk, oldest first; the last is the one appended to unless sealed.
    segments: Vec<Segment>,
    /// Frames appended but not yet written to the last segment, and the `seq` of the last of them.
    buffer: Vec<u8>,
    /// The last `seq` given.
    last_seq: u64,
    /// The last `seq` on disk and synced: the most ever handed out to be sent.
    synced_seq: u64,
    /// The last `seq` written to the file (synced or not).
    written_seq: u64,
    /// The newest mark given (in the buffer or on disk).
    mark: Option<Mark>,
    /// Where the last batch read ended: (next `seq`, segment's first `seq`, offset), to go on without a scan.
    read_at: Option<(u64, u64, u64)>,
    /// A write failed: the directory is read again before the next one.
    stale: bool,
}

impl<F: SpoolFs> Spool<F> {
    /// Opens the spool in `fs` (`dir` names it in errors): reads the metadata and every segment, removes those
    /// wholly acknowledged or dropped, counts (once) what does not read back.
    pub fn open(fs: F, dir: &Path, limits: Limits) -> Result<(Spool<F>, Opened)> {
        let mut spool = Spool {
            fs,
            dir: dir.to_owned(),
            limits,
            meta: Meta::default(),
            segments: Vec::new(),
            buffer: Vec::new(),
            last_seq: 0,
            synced_seq: 0,
            written_seq: 0,
            mark: None,
            read_at: None,
            stale: true,
        };
        let opened = spool.reload()?;
        Ok((spool, opened))
    }

    fn io_err(&self, name: &str) -> impl FnOnce(io::Error) -> Error {
        let path = self.dir.join(name);
        move |source| Error::WriteFile { path, source }
    }

    fn read_err(&self, name: &str) -> impl FnOnce(io::Error) -> Error {
        let path = self.dir.join(name);
        move |source| Error::ReadFile { path, source }
    }

    /// Reads the directory again and derives everything from it.
    fn reload(&mut self) -> Result<Opened> {
        self.buffer.clear();
        self.read_at = None;
        let names = self.fs.list().map_err(self.read_err(""))?;
        let meta = if names.iter().any(|n| n == META) {
            let bytes = self.fs.read(META).map_err(self.read_err(META))?;
            match serde_json::from_slice::<Meta>(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    // The metadata is only ever replaced whole, so this is damage: the segments still say what
                    // waits and how far the numbering went; only the counters and the acknowledgement restart.
                    log::error!(
                        "telemetry spool {}: {META} does not parse ({e}); starting its counters over",
                        self.dir.display()
                    );
                    Meta::default()
                }
            }
        } else {
            Meta::default()
        };
        let mut firsts: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
        firsts.sort_unstable();
        let mut segments = Vec::new();
        let mut mark = meta.mark.clone();
        let mut meta = meta;
        let mut opened = Opened::default();
        let mut meta_changed = false;
        let mut empty_torn = Vec::new();
        for (i, &first) in firsts.iter().enumerate() {
            let name = segment_name(first);
            let next_first = firsts.get(i + 1).copied();
            let gone = next_first.is_some_and(|n| n <= meta.acked + 1 || in_ranges(&meta.dropped, first, n - 1));
            if first == 0 || gone {
                // Durability: a segment wholly acknowledged or counted as dropped whose removal a cut undid.
                self.fs.remove(&name).map_err(self.io_err(&name))?;
                continue;
            }
            let bytes = self.fs.read(&name).map_err(self.read_err(&name))?;
            let Some(s) = scan(first, &bytes) else {
                // Not even a header: a segment created but cut before its header was synced holds nothing synced.
                log::warn!("telemetry spool {}: segment {name} has no header; removed", self.dir.display());
                self.fs.remove(&name).map_err(self.io_err(&name))?;
                continue;
            };
            let damaged_tail = s.readable < bytes.len() as u64;
            if damaged_tail && !meta.damage_counted.contains(&first) {
                let lost = match next_first {
                    // Synced records that do not read back: the next segment says how many there were.
                    Some(n) => n.saturating_sub(s.last_seq + 1),
                    None => 0,
                };
                let torn = bytes.len() as u64 - s.readable;
                log::warn!(
                    "telemetry spool {}: segment {name} reads back to seq {} ({} bytes after it cut off{})",
                    self.dir.display(),
                    s.last_seq,
                    torn,
                    if lost > 0 { format!(", {lost} synced records lost") } else { String::new() }
                );
                meta.counters.damaged += lost;
                meta.counters.torn_bytes += torn;
                meta.damage_counted.insert(first);
                opened.damaged += lost;
                opened.torn_bytes += torn;
                meta_changed = true;
            }
            if damaged_tail && s.last_seq < first && next_first.is_none() {
                // A last segment with no whole record: it goes (after its torn bytes are counted), so the next
                // record, which has its number, can begin a segment of that name.
                empty_torn.push(first);
                continue;
            }
            if let Some(m) = s.mark {
                if mark.as_ref().is_none_or(|old| old.seq <= m.seq) {
                    mark = Some(m);
                }
            }
            segments.push(Segment {
                first_seq: first,
                bytes: bytes.len() as u64,
                readable: s.readable,
                last_seq: s.last_seq,
                n_kind: s.n_kind,
                sealed: damaged_tail,
            });
        }
        let last_on_disk = segments.last().map_or(0, |s| s.last_seq);
        let floor = meta.next_seq.saturating_sub(1).max(meta.acked).max(meta.dropped.last().map_or(0, |r| r.1));
        self.last_seq = last_on_disk.max(floor);
        self.synced_seq = self.last_seq;
        self.written_seq = self.last_seq;
        if let Some(last) = segments.last_mut() {
            if last.last_seq < self.last_seq {
                // Numbers past this segment were given and acknowledged or dropped: appending here would break the
                // segment's run of `seq`, so the next record begins a segment of its own.
                last.sealed = true;
            }
        }
        meta.damage_counted.retain(|f| segments.iter().any(|s| s.first_seq == *f) || empty_torn.contains(f));
        meta.version = 1;
        self.meta = meta;
        self.mark = mark;
        self.segments = segments;
        self.stale = false;
        if meta_changed {
            self.write_meta()?;
        }
        for first in empty_torn {
            let name = segment_name(first);
            self.fs.remove(&name).map_err(self.io_err(&name))?;
        }
        opened.n_segments = self.segments.len();
        opened.n_pending = self.n_pending();
        Ok(opened)
    }

    fn fresh(&mut self) -> Result<()> {
        if self.stale {
            self.reload()?;
        }
        Ok(())
    }

    /// Writes the metadata (atomically) from the spool's state.
    fn write_meta(&mut self) -> Result<()> {
        self.meta.next_seq = self.meta.next_seq.max(self.synced_seq + 1);
        // Only a mark whose record is synced may be saved: one in the buffer could be lost while this stays.
        if let Some(m) = self.mark.as_ref().filter(|m| m.seq <= self.synced_seq) {
            if self.meta.mark.as_ref().is_none_or(|old| old.seq < m.seq) {
                self.meta.mark = Some(m.clone());
            }
        }
        let bytes = serde_json::to_vec(&self.meta).expect("the metadata serializes");
        // Durability: the metadata is replaced atomically: a cut leaves the old one or the new one.
        if let Err(source) = self.fs.replace(META, &bytes) {
            self.stale = true;
            return Err(Error::WriteFile { path: self.dir.join(META), source });
        }
        Ok(())
    }

    /// The last `seq` given.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The last `seq` synced.
    pub fn synced_seq(&self) -> u64 {
        self.synced_seq
    }

    /// The highest `seq` the endpoint acknowledged.
    pub fn acked(&self) -> u64 {
        self.meta.acked
    }

    /// What the spool has lost so far.
    pub fn counters(&self) -> &Counters {
        &self.meta.counters
    }

    /// The newest source mark given (synced or not: a source goes on from it in this run).
    pub fn mark(&self) -> Option<&Mark> {
        self.mark.as_ref()
    }

    /// Bytes of every segment on disk and of the buffer.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum::<u64>() + self.buffer.len() as u64
    }

    /// Synced records the endpoint does not hold yet, and not dropped.
    pub fn n_pending(&self) -> u64 {
        let acked = self.meta.acked;
        let dropped: u64 = self
            .meta
            .dropped
            .iter()
            .map(|&(a, b)| b.min(self.synced_seq).saturating_sub(a.max(acked + 1).saturating_sub(1)))
            .sum();
        self.synced_seq.saturating_sub(acked).saturating_sub(dropped)
    }

    /// Numbers one record and buffers it; it is on disk after the next [`Spool::sync`]. `mark` (at most 255 bytes)
    /// is the source's position after this record, found again on open.
    pub fn append(&mut self, kind: Kind, payload: &[u8], mark: Option<&[u8]>) -> Result<u64> {
        self.fresh()?;
        let mark = mark.unwrap_or(&[]);
        if payload.len() > MAX_PAYLOAD || mark.len() > 255 {
            return Err(Error::TelemetryRecord { bytes: payload.len(), mark_bytes: mark.len() });
        }
        let seq = self.last_seq + 1;
        let frame_len = FRAME_HEADER + mark.len() + payload.len();
        let need_new = match self.segments.last() {
            None => true,
            Some(s) => s.sealed || s.bytes + (self.buffer.len() + frame_len) as u64 > self.limits.segment_bytes,
        };
        if need_new {
            // Every segment but the last is synced whole: `sync` reaches only the one appended to.
            self.sync()?;
            self.start_segment(seq)?;
        }
        encode_frame_into(&mut self.buffer, seq, kind, mark, payload);
        self.last_seq = seq;
        *self.segments.last_mut().expect("a segment was started").n_kind.entry(kind).or_default() += 1;
        if !mark.is_empty() {
            self.mark = Some(Mark { seq, bytes: mark.to_vec() });
        }
        if self.buffer.len() >= WRITE_BUFFER {
            self.flush_buffer()?;
        }
        Ok(seq)
    }

    /// Begins a segment whose first record is `first_seq`, dropping the oldest when the spool is past its bound.
    fn start_segment(&mut self, first_seq: u64) -> Result<()> {
        // Durability: the segment is made (header synced, directory entry synced) before any record goes in, so
        // a cut leaves it empty or absent, and either reads as no records.
        let name = segment_name(first_seq);
        let mut header = Vec::with_capacity(SEGMENT_HEADER);
        header.extend_from_slice(SEGMENT_MAGIC);
        header.extend_from_slice(&first_seq.to_le_bytes());
        if let Err(source) = self.fs.create(&name, &header) {
            self.stale = true;
            return Err(Error::WriteFile { path: self.dir.join(name), source });
        }
        if let Some(prev) = self.segments.last_mut() {
            prev.sealed = true;
        }
        self.segments.push(Segment {
            first_seq,
            bytes: SEGMENT_HEADER as u64,
            readable: SEGMENT_HEADER as u64,
            last_seq: first_seq - 1,
            n_kind: BTreeMap::new(),
            sealed: false,
        });
        self.enforce_bound()
    }

    /// Drops the oldest segments until the others and a full new one fit in the bound, counting their records.
    /// Never dropped: the segment appended to, and any segment holding one of the first `batch_records` records
    /// after the acknowledged one, which may be on their way to the endpoint (so a record is never both counted as
    /// dropped and stored); when only those are left, the bound is passed until they are acknowledged.
    fn enforce_bound(&mut self) -> Result<()> {
        loop {
            let n = self.segments.len();
            let others: u64 = self.segments[..n.saturating_sub(1)].iter().map(|g| g.bytes).sum();
            if n < 2 || others + self.limits.segment_bytes <= self.limits.max_bytes {
                return Ok(());
            }
            let protect_until = self.meta.acked + self.limits.batch_records;
            let Some(idx) = (0..n - 1).find(|&i| self.segments[i].first_seq > protect_until) else {
                return Ok(());
            };
            let old = self.segments[idx].clone();
            let through = self.segments[idx + 1].first_seq - 1;
            let n_dropped: u64 = old.n_kind.values().sum();
            for (kind, k) in &old.n_kind {
                *self.meta.counters.dropped.entry(kind.word().to_owned()).or_default() += k;
            }
            log::warn!(
                "telemetry spool full ({} bytes, bound {}): dropped {n_dropped} records not yet sent (seq {} to {through})",
                self.bytes(),
                self.limits.max_bytes,
                old.first_seq
            );
            add_range(&mut self.meta.dropped, old.first_seq, through);
            self.meta.damage_counted.remove(&old.first_seq);
            // Durability: the counts and the dropped range are saved before the segment goes: a cut between the two
            // leaves a segment that the next open removes without counting it again.
            self.write_meta()?;
            let name = old.name();
            if let Err(source) = self.fs.remove(&name) {
                self.stale = true;
                return Err(Error::WriteFile { path: self.dir.join(name), source });
            }
            self.segments.remove(idx);
            self.read_at = None;
        }
    }

    /// Writes the buffer to the last segment without syncing.
    fn flush_buffer(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let Some(seg) = self.segments.last_mut() else { return Ok(()) };
        let name = seg.name();
        if let Err(source) = self.fs.append(&name, &self.buffer) {
            self.stale = true;
            return Err(Error::WriteFile { path: self.dir.join(name), source });
        }
        seg.bytes += self.buffer.len() as u64;
        seg.readable = seg.bytes;
        seg.last_seq = self.last_seq;
        self.written_seq = self.last_seq;
        self.buffer.clear();
        Ok(())
    }

    /// Writes and syncs every record appended so far; returns the last `seq` synced. Only synced records are read
    /// for sending.
    pub fn sync(&mut self) -> Result<u64> {
        self.fresh()?;
        self.flush_buffer()?;
        if self.written_seq > self.synced_seq {
            let name = self.segments.last().expect("records were written to a segment").name();
            // Durability: a cut before this sync may lose any record since the last one (they were never sent); after
            // it, every record up to `written_seq` reads back.
            if let Err(source) = self.fs.sync(&name) {
                self.stale = true;
                return Err(Error::WriteFile { path: self.dir.join(name), source });
            }
            self.synced_seq = self.written_seq;
        }
        Ok(self.synced_seq)
    }

    /// Up to `max_records` synced records after `seq` `after`, of at most `max_bytes` payload together (at least
    /// one), in order. Records dropped since are skipped: the first one returned may be past `after + 1`.
    pub fn read(&mut self, after: u64, max_records: usize, max_bytes: usize) -> Result<Vec<Stored>> {
        self.fresh()?;
        let mut out = Vec::new();
        let mut next = after + 1;
        let mut total = 0usize;
        while out.len() < max_records && next <= self.synced_seq {
            let Some(idx) = self.segments.iter().rposition(|s| s.first_seq <= next) else {
                next = match self.segments.first() {
                    Some(s) => s.first_seq,
                    None => break,
                };
                continue;
            };
            let seg = self.segments[idx].clone();
            if next > seg.last_seq.min(self.synced_seq) {
                // Past what this segment holds (a damaged tail): go on at the next segment.
                match self.segments.get(idx + 1) {
                    Some(n) => {
                        next = n.first_seq;
                        continue;
                    }
                    None => break,
                }
            }
            let mut offset = match self.read_at {
                Some((s, f, o)) if s == next && f == seg.first_seq => o,
                _ => SEGMENT_HEADER as u64,
            };
            let end = seg.readable.min(seg.bytes);
            let room = (max_bytes.saturating_sub(total)).max(FRAME_HEADER + 255 + MAX_PAYLOAD);
            let want = ((end - offset) as usize).min(room);
            let name = seg.name();
            let bytes = self.fs.read_at(&name, offset, want).map_err(self.read_err(&name))?;
            let mut at = 0;
            let mut progressed = false;
            while let Some(f) = bytes.get(at..).and_then(decode_frame) {
                if f.seq > self.synced_seq
                    || out.len() >= max_records
                    || (!out.is_empty() && total + f.payload.len() > max_bytes)
                {
                    break;
                }
                at += f.len;
                progressed = true;
                if f.seq >= next {
                    total += f.payload.len();
                    out.push(Stored { seq: f.seq, kind: f.kind, payload: f.payload.to_vec() });
                    next = f.seq + 1;
                }
            }
            offset += at as u64;
            self.read_at = Some((next, seg.first_seq, offset));
            if !progressed || out.len() >= max_records || total >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// The endpoint holds every record up to `seq`: saves that, and removes segments wholly acknowledged (never the
    /// one appended to).
    pub fn ack(&mut self, seq: u64) -> Result<()> {
        self.fresh()?;
        if seq <= self.meta.acked {
            return Ok(());
        }
        if seq > self.synced_seq {
            // The endpoint holds numbers this spool never synced (the spool was lost, the key kept): numbering goes
            // on above them, so that no new record is taken for a resend.
            log::warn!("the endpoint acknowledged telemetry seq {seq}, past the last one synced, {}", self.synced_seq);
            self.flush_buffer()?;
            self.last_seq = self.last_seq.max(seq);
            self.synced_seq = self.synced_seq.max(seq);
            self.written_seq = self.written_seq.max(seq);
            if let Some(last) = self.segments.last_mut() {
                last.sealed = true;
            }
        }
        self.meta.acked = seq;
        self.meta.dropped.retain(|r| r.1 > seq);
        // Durability: a cut before the metadata is replaced sends the acknowledged records again, under the same
        // numbers, which the endpoint stores once; after it, they are never read again.
        self.write_meta()?;
        let n = self.segments.len();
        let mut gone = 0;
        for i in 0..n.saturating_sub(1) {
            let through = self.segments[i + 1].first_seq - 1;
            if through > seq {
                break;
            }
            let name = self.segments[i].name();
            if let Err(source) = self.fs.remove(&name) {
                self.stale = true;
                return Err(Error::WriteFile { path: self.dir.join(name), source });
            }
            gone += 1;
        }
        self.segments.drain(..gone);
        // The records past the new acknowledgement are no longer on their way: the bound may drop more.
        self.enforce_bound()
    }
}

/// Whether `first..=last` lies inside one of `ranges`.
fn in_ranges(ranges: &[(u64, u64)], first: u64, last: u64) -> bool {
    ranges.iter().any(|&(a, b)| a <= first && last <= b)
}

/// Adds `first..=last` to `ranges` (sorted, merged where they touch).
fn add_range(ranges: &mut Vec<(u64, u64)>, first: u64, last: u64) {
    ranges.push((first, last));
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(a, b) in ranges.iter() {
        match merged.last_mut() {
            Some(m) if a <= m.1 + 1 => m.1 = m.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    *ranges = merged;
}

mod hex_bytes {
    //! A mark's bytes as hex in the metadata.
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd number of hex digits"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { max_bytes: 1 << 20, segment_bytes: 4096, batch_records: 10 }
    }

    const PAD: &str = "padding padding padding padding padding padding";

    #[test]
    fn a_frame_has_the_documented_bytes() {
        let f = encode_frame(0x0102, Kind::Metrics, b"m", b"hi");
        let mut want = vec![2, 0, 0, 0];
        want.extend_from_slice(&frame_crc(0x0102, 2, b"m", b"hi").to_le_bytes());
        want.extend_from_slice(&[2, 1, 0, 0, 0, 0, 0, 0, 2, 1, b'm', b'h', b'i']);
        assert_eq!(f, want);
        let d = decode_frame(&f).expect("decodes");
        assert_eq!((d.seq, d.kind, d.mark, d.payload, d.len), (0x0102, Kind::Metrics, &b"m"[..], &b"hi"[..], f.len()));
        for cut in 0..f.len() {
            assert!(decode_frame(&f[..cut]).is_none(), "cut at {cut}");
        }
        for bit in 0..f.len() * 8 {
            let mut bad = f.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_frame(&bad).is_none_or(|d| d.len != f.len()), "bit {bit}");
        }
    }

    #[test]
    fn ranges_merge_where_they_touch() {
        let mut r = Vec::new();
        add_range(&mut r, 10, 19);
        add_range(&mut r, 30, 39);
        add_range(&mut r, 20, 25);
        assert_eq!(r, vec![(10, 25), (30, 39)]);
        assert!(in_ranges(&r, 12, 25) && !in_ranges(&r, 24, 30));
    }

    #[test]
    fn records_read_back_in_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, opened) = Spool::open(DiskFs::new(dir.path()), dir.path(), limits()).expect("open");
        assert_eq!(opened, Opened::default());
        for i in 0..200u32 {
            let kind = if i % 2 == 0 { Kind::Log } else { Kind::Metrics };
            let seq = spool.append(kind, format!("line {i} {PAD}").as_bytes(), Some(&i.to_le_bytes())).expect("append");
            assert_eq!(seq, u64::from(i) + 1);
            if i == 2 {
                assert!(spool.read(0, 10, 1 << 20).expect("read").is_empty(), "nothing is read before it is synced");
            }
        }
        assert_eq!(spool.sync().expect("sync"), 200);
        let all = spool.read(0, 1000, 1 << 20).expect("read");
        assert_eq!(all.len(), 200);
        assert!(all
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq == i as u64 + 1 && r.payload == format!("line {i} {PAD}").as_bytes()));
        let n_segments = std::fs::read_dir(dir.path()).expect("dir").count();
        assert!(n_segments > 2, "{n_segments} files");
        spool.ack(150).expect("ack");
        drop(spool);
        let (mut spool, opened) = Spool::open(DiskFs::new(dir.path()), dir.path(), limits()).expect("reopen");
        assert_eq!(opened.n_pending, 50);
        assert_eq!(spool.mark().map(|m| (m.seq, m.bytes.clone())), Some((200, 199u32.to_le_bytes().to_vec())));
        let rest = spool.read(spool.acked(), 1000, 1 << 20).expect("read");
        assert_eq!(rest.first().map(|r| r.seq), Some(151));
        assert_eq!(spool.append(Kind::Log, b"next", None).expect("append"), 201);
        // Batches respect the record and byte limits, and go on where the last ended.
        let a = spool.read(150, 7, 1 << 20).expect("read");
        let b = spool.read(157, 7, 130).expect("read");
        assert_eq!((a.len(), a[6].seq, b.len(), b[0].seq), (7, 157, 2, 158));
    }

    #[test]
    fn damage_inside_a_segment_is_counted_once_from_the_gap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(DiskFs::new(dir.path()), dir.path(), limits()).expect("open");
        for i in 0..100u32 {
            spool.append(Kind::Log, format!("line {i:04} {}", "y".repeat(40)).as_bytes(), None).expect("append");
        }
        spool.sync().expect("sync");
        drop(spool);
        let first = dir.path().join(segment_name(1));
        let mut bytes = std::fs::read(&first).expect("segment");
        let frame_len = FRAME_HEADER + 50;
        let at = SEGMENT_HEADER + 10 * frame_len + 20;
        bytes[at] ^= 0xff;
        std::fs::write(&first, &bytes).expect("damage");
        let second_first = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| parse_segment_name(&e.expect("entry").file_name().to_string_lossy()))
            .filter(|&f| f > 1)
            .min()
            .expect("a second segment");
        for _ in 0..2 {
            let (mut spool, _) = Spool::open(DiskFs::new(dir.path()), dir.path(), limits()).expect("open");
            assert_eq!(
                spool.counters().damaged,
                second_first - 11,
                "records 11 to {} of the first segment",
                second_first - 1
            );
            let seqs: Vec<u64> = spool.read(0, 1000, 1 << 20).expect("read").iter().map(|r| r.seq).collect();
            let want: Vec<u64> = (1..=10).chain(second_first..=100).collect();
            assert_eq!(seqs, want);
        }
    }

    #[test]
    fn a_full_spool_drops_the_oldest_records_but_not_those_on_their_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = Limits { max_bytes: 16 << 10, segment_bytes: 4 << 10, batch_records: 10 };
        let (mut spool, _) = Spool::open(DiskFs::new(dir.path()), dir.path(), limits).expect("open");
        for i in 0..2000u32 {
            let kind = if i % 4 == 0 { Kind::Metrics } else { Kind::Log };
            spool.append(kind, format!("line {i:05}").as_bytes(), None).expect("append");
        }
        spool.sync().expect("sync");
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").metadata().expect("meta").len())
            .sum();
        assert!(on_disk <= limits.max_bytes + 1024, "{on_disk} bytes on disk");
        let c = spool.counters().clone();
        let read = spool.read(0, 100_000, usize::MAX).expect("read");
        assert_eq!((1..=10).collect::<Vec<u64>>(), read.iter().take(10).map(|r| r.seq).collect::<Vec<_>>());
        assert_eq!(read.len() as u64 + c.dropped_of("log") + c.dropped_of("metrics"), 2000);
        let dropped_metrics = (11..=2000u64).filter(|s| (s - 1) % 4 == 0 && !read.iter().any(|r| r.seq == *s)).count();
        assert_eq!(c.dropped_of("metrics"), dropped_metrics as u64);
        assert_eq!(spool.n_pending(), read.len() as u64);
    }
}
