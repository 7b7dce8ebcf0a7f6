//! The report spool: a durable, ordered queue of reports on the data partition, each numbered once by the node
//! (`seq` from 1, never reused, across reboots and power cuts), kept until the endpoint acknowledges it
//! (docs/agent.md, "The spool").
//!
//! It is one append-only file of JSON lines. A record line holds a report and the event log offset the agent had
//! read up to when it was written; a mark line holds the highest `seq` the endpoint acknowledged. Nothing else is
//! kept: on open, the next `seq` is one past the highest seen, the event log cursor is the highest offset seen, and
//! the pending reports are the records above the highest mark. So a record appended (and synced) is exactly an event
//! consumed and numbered, in one write: a cut before the sync leaves neither, after it both. When acknowledged lines
//! pile up, the file is rewritten whole (temp, fsync, rename, fsync of the directory) with one mark and the pending
//! records.
//!
//! The file is behind [`SpoolFile`], the seam where power cuts are injected in tests.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use fleet_wire::node::{Report, ReportKind};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Pending report bytes past which the event log is no longer tailed (it waits, durable, on the data partition)
/// and progress reports are no longer spooled.
pub const SOFT_CAP_BYTES: u64 = 512 << 10;
/// Pending report bytes past which even the agent's own other reports are dropped, each logged as an error.
pub const HARD_CAP_BYTES: u64 = 1 << 20;
/// Acknowledged bytes in the file past which it is rewritten without them.
const COMPACT_BYTES: u64 = 64 << 10;

/// The spool's file: read whole, appended with a sync, replaced atomically, cut back.
pub trait SpoolFile {
    /// The whole file (empty when it does not exist).
    fn read(&mut self) -> io::Result<Vec<u8>>;
    /// Appends `bytes` and syncs them.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Replaces the file with `bytes` (temp, fsync, rename, fsync of the directory).
    fn replace(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Cuts the file back to `len` bytes and syncs it.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// The spool file on disk.
pub struct DiskFile {
    path: PathBuf,
}

impl DiskFile {
    /// The file at `path` (its directory is made on the first write).
    pub fn new(path: &Path) -> DiskFile {
        DiskFile { path: path.to_owned() }
    }
}

impl SpoolFile for DiskFile {
    fn read(&mut self) -> io::Result<Vec<u8>> {
        match std::fs::read(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            r => r,
        }
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = OpenOptions::new().create(true).append(true).open(&self.path)?;
        f.write_all(bytes)?;
        f.sync_data()
    }

    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut f = image_layout::fsutil::AtomicFile::create(&self.path).map_err(io::Error::other)?;
        f.write_all(bytes)?;
        f.commit().map_err(io::Error::other)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(&self.path)?;
        f.set_len(len)?;
        f.sync_all()
    }
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    /// The event log offset read up to when the line was written.
    cursor: u64,
    /// A mark: the endpoint holds every report up to this `seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    acked: Option<u64>,
    /// A record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    report: Option<Report>,
}

/// A pending report and the size of its line.
#[derive(Debug, Clone)]
struct Pending {
    report: Report,
    line_bytes: u64,
}

/// What happened to a report handed to [`Spool::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Spooled under this `seq`.
    Spooled(u64),
    /// Dropped: the spool is past its cap (logged).
    Dropped,
}

/// The open spool.
pub struct Spool<F: SpoolFile> {
    file: F,
    path: PathBuf,
    pending: VecDeque<Pending>,
    pending_bytes: u64,
    /// Bytes of the file (whole lines).
    file_bytes: u64,
    /// The highest `seq` ever given.
    last_seq: u64,
    /// The highest `seq` acknowledged.
    acked: u64,
    /// The event log offset consumed.
    cursor: u64,
    /// A write failed: the file is read again before the next one.
    stale: bool,
}

impl<F: SpoolFile> Spool<F> {
    /// Opens the spool in `file` (`path` names it in errors), cutting off a torn last line.
    pub fn open(file: F, path: &Path) -> Result<Spool<F>> {
        let mut spool = Spool {
            file,
            path: path.to_owned(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            file_bytes: 0,
            last_seq: 0,
            acked: 0,
            cursor: 0,
            stale: true,
        };
        spool.reload()?;
        Ok(spool)
    }

    /// Reads the file again and derives everything from it.
    fn reload(&mut self) -> Result<()> {
        let bytes = self.file.read().map_err(|source| Error::ReadFile { path: self.path.clone(), source })?;
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < bytes.len() {
            // Durability: a cut in the middle of an append left part of a line, never synced as a whole one and
            // never sent; it goes before anything is appended after it.
            log::warn!("spool {}: dropping a torn last line of {} bytes", self.path.display(), bytes.len() - whole);
            self.file.truncate(whole as u64).map_err(|source| Error::WriteFile { path: self.path.clone(), source })?;
        }
        let (mut last_seq, mut acked, mut cursor) = (0, 0, 0);
        let mut records = Vec::new();
        for (i, raw) in bytes[..whole].split(|&b| b == b'\n').enumerate() {
            if raw.is_empty() {
                continue;
            }
            let line: Line = match serde_json::from_slice(raw) {
                Ok(l) => l,
                Err(e) => {
                    // A whole line that does not parse is damage, not a cut: skipping it keeps the node reporting.
                    log::error!(
                        "{}",
                        Error::ParseSpool { path: self.path.clone(), line: i + 1, detail: e.to_string() }
                    );
                    continue;
                }
            };
            cursor = cursor.max(line.cursor);
            if let Some(a) = line.acked {
                acked = acked.max(a);
            }
            if let Some(r) = line.report {
                last_seq = last_seq.max(r.seq);
                records.push(Pending { report: r, line_bytes: raw.len() as u64 + 1 });
            }
        }
        self.last_seq = last_seq.max(acked);
        self.acked = acked;
        self.cursor = cursor;
        self.file_bytes = whole as u64;
        self.pending = records.into_iter().filter(|p| p.report.seq > acked).collect();
        self.pending_bytes = self.pending.iter().map(|p| p.line_bytes).sum();
        self.stale = false;
        Ok(())
    }

    fn fresh(&mut self) -> Result<()> {
        if self.stale {
            self.reload()?;
        }
        Ok(())
    }

    /// The event log offset consumed so far.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The highest `seq` given so far.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Reports waiting for the endpoint.
    pub fn n_pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether the event log may be tailed (the spool is under its soft cap).
    pub fn accepts_events(&self) -> bool {
        self.pending_bytes < SOFT_CAP_BYTES
    }

    /// The first `max` pending reports, in order.
    pub fn batch(&self, max: usize) -> Vec<Report> {
        self.pending.iter().take(max).map(|p| p.report.clone()).collect()
    }

    /// Numbers `report` with the next `seq` and appends it, with the event log offset `cursor` it was read up to
    /// (the current one for the agent's own reports). Past the caps, progress and then other own reports are
    /// dropped and logged; reports of the event log are never offered past the soft cap ([`Spool::accepts_events`]).
    pub fn push(&mut self, mut report: Report, cursor: u64) -> Result<Pushed> {
        self.fresh()?;
        let progress = report.kind == ReportKind::Downloading;
        if (progress && self.pending_bytes >= SOFT_CAP_BYTES) || self.pending_bytes >= HARD_CAP_BYTES {
            let level = if progress { log::Level::Debug } else { log::Level::Error };
            log::log!(level, "spool full ({} bytes pending): dropping a {} report", self.pending_bytes, report.kind);
            return Ok(Pushed::Dropped);
        }
        report.seq = self.last_seq + 1;
        let cursor = cursor.max(self.cursor);
        let line = Line { cursor, acked: None, report: Some(report.clone()) };
        let mut bytes = serde_json::to_vec(&line).expect("a spool line serializes");
        bytes.push(b'\n');
        // Durability: a cut before this append is synced leaves the event unconsumed (the cursor is the last
        // record's) and its seq unused; after it, both are on disk in one line.
        if let Err(source) = self.file.append(&bytes) {
            self.stale = true;
            return Err(Error::WriteFile { path: self.path.clone(), source });
        }
        self.last_seq = report.seq;
        self.cursor = cursor;
        self.file_bytes += bytes.len() as u64;
        self.pending_bytes += bytes.len() as u64;
        self.pending.push_back(Pending { report, line_bytes: bytes.len() as u64 });
        Ok(Pushed::Spooled(self.last_seq))
    }

    /// Moves the event log cursor past lines that made no report (unknown kinds, damaged lines), when the next
    /// report is written. Kept in memory only: a cut before then reads those lines again and skips them again.
    pub fn skip_to(&mut self, cursor: u64) {
        self.cursor = self.cursor.max(cursor);
    }

    /// The event log was replaced by a shorter one (a wiped data partition): tail it from its start.
    pub fn restart_cursor(&mut self) -> Result<()> {
        self.fresh()?;
        self.cursor = 0;
        let line = Line { cursor: 0, acked: Some(self.acked), report: None };
        self.replace_with(Some(line))
    }

    /// Drops every report up to `acked_seq`, which the endpoint now holds.
    pub fn ack(&mut self, acked_seq: u64) -> Result<()> {
        self.fresh()?;
        if acked_seq <= self.acked {
            return Ok(());
        }
        if acked_seq > self.last_seq {
            // The endpoint holds numbers this spool never gave (the spool was lost, the key kept): go on above
            // them, so that no new report is taken for a resend and dropped.
            log::warn!("the endpoint acknowledged seq {acked_seq}, past the last one spooled, {}", self.last_seq);
        }
        let line = Line { cursor: self.cursor, acked: Some(acked_seq), report: None };
        let mut bytes = serde_json::to_vec(&line).expect("a spool line serializes");
        bytes.push(b'\n');
        // Durability: a cut before this mark is synced sends the acknowledged reports again, which the endpoint
        // stores once; after it, they are gone for good.
        if let Err(source) = self.file.append(&bytes) {
            self.stale = true;
            return Err(Error::WriteFile { path: self.path.clone(), source });
        }
        self.file_bytes += bytes.len() as u64;
        self.acked = acked_seq;
        self.last_seq = self.last_seq.max(acked_seq);
        while self.pending.front().is_some_and(|p| p.report.seq <= acked_seq) {
            let p = self.pending.pop_front().expect("checked");
            self.pending_bytes -= p.line_bytes;
        }
        if self.file_bytes > self.pending_bytes + COMPACT_BYTES {
            self.replace_with(None)?;
        }
        Ok(())
    }

    /// Rewrites the file as one mark (the acknowledged `seq`, the cursor) and the pending records.
    fn replace_with(&mut self, mark: Option<Line>) -> Result<()> {
        let mark = mark.unwrap_or(Line { cursor: self.cursor, acked: Some(self.acked), report: None });
        // The mark also carries the last seq given when every record is acknowledged, so it is never given again.
        let mark = Line { acked: Some(mark.acked.unwrap_or(0).max(self.acked)), ..mark };
        let mut bytes = serde_json::to_vec(&mark).expect("a spool line serializes");
        bytes.push(b'\n');
        for p in &self.pending {
            let line = Line { cursor: mark.cursor, acked: None, report: Some(p.report.clone()) };
            bytes.extend(serde_json::to_vec(&line).expect("a spool line serializes"));
            bytes.push(b'\n');
        }
        // Durability: the rewrite is atomic: a cut leaves the old file (whose lines say the same) or the new one.
        if let Err(source) = self.file.replace(&bytes) {
            self.stale = true;
            return Err(Error::WriteFile { path: self.path.clone(), source });
        }
        self.file_bytes = bytes.len() as u64;
        Ok(())
    }
}

/// Moves new lines of the updater's event log at `events` into the spool, in order, while it is under its soft
/// cap; returns the number of reports spooled.
pub fn tail<F: SpoolFile>(spool: &mut Spool<F>, events: &Path) -> Result<usize> {
    let mut n = 0;
    while spool.accepts_events() {
        let lines = match crate::events::read(events, spool.cursor())? {
            crate::events::Tail::Lines(lines) => lines,
            crate::events::Tail::Replaced => {
                log::warn!("event log {} is shorter than the offset read: reading it from its start", events.display());
                spool.restart_cursor()?;
                continue;
            }
        };
        if lines.is_empty() {
            break;
        }
        for line in lines {
            match line.report {
                Some(r) => {
                    spool.push(r, line.end)?;
                    n += 1;
                }
                None => spool.skip_to(line.end),
            }
            if !spool.accepts_events() {
                break;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    /// The spool's bytes as a power cut leaves them: an append cut in its middle keeps its first half, a replace
    /// keeps the old file, a truncate does not happen; after the cut, the process is gone and every call fails.
    struct CrashingFile {
        disk: Rc<RefCell<Vec<u8>>>,
        writes_left: Option<usize>,
        crashed: bool,
    }

    impl CrashingFile {
        fn after(disk: &Rc<RefCell<Vec<u8>>>, n: Option<usize>) -> CrashingFile {
            CrashingFile { disk: disk.clone(), writes_left: n, crashed: false }
        }

        /// Whether this write is cut (and every later call fails).
        fn cut(&mut self) -> io::Result<bool> {
            if self.crashed {
                return Err(io::Error::other("the process is gone"));
            }
            match &mut self.writes_left {
                Some(0) => {
                    self.crashed = true;
                    Ok(true)
                }
                Some(n) => {
                    *n -= 1;
                    Ok(false)
                }
                None => Ok(false),
            }
        }
    }

    impl SpoolFile for CrashingFile {
        fn read(&mut self) -> io::Result<Vec<u8>> {
            if self.crashed {
                return Err(io::Error::other("the process is gone"));
            }
            Ok(self.disk.borrow().clone())
        }
        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            if self.cut()? {
                self.disk.borrow_mut().extend_from_slice(&bytes[..bytes.len() / 2]);
                return Err(io::Error::other("power cut"));
            }
            self.disk.borrow_mut().extend_from_slice(bytes);
            Ok(())
        }
        fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
            if self.cut()? {
                return Err(io::Error::other("power cut"));
            }
            *self.disk.borrow_mut() = bytes.to_vec();
            Ok(())
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            if self.cut()? {
                return Err(io::Error::other("power cut"));
            }
            self.disk.borrow_mut().truncate(len as usize);
            Ok(())
        }
    }

    /// The endpoint's side of reports as the protocol asks it: each `(node, seq)` stored once, the highest held
    /// acknowledged. A second report under a seq it holds is recorded as a conflict (a seq numbered twice).
    #[derive(Default)]
    struct Endpoint {
        stored: BTreeMap<u64, Report>,
        conflicts: Vec<u64>,
    }

    impl Endpoint {
        fn post(&mut self, batch: &[Report]) -> u64 {
            for r in batch {
                match self.stored.get(&r.seq) {
                    Some(had) if had != r => self.conflicts.push(r.seq),
                    Some(_) => {}
                    None => {
                        self.stored.insert(r.seq, r.clone());
                    }
                }
            }
            self.stored.keys().last().copied().unwrap_or(0)
        }
    }

    fn own(kind: ReportKind, message: &str) -> Report {
        Report {
            seq: 0,
            time: "2026-12-05T10:00:00Z".into(),
            kind,
            message: message.into(),
            reason: None,
            exit_code: None,
            version: None,
            slot: None,
            phase: None,
            progress: None,
            action: None,
        }
    }

    fn event_line(i: usize) -> String {
        format!(
            "{{\"schema\":\"edge-update.event/1\",\"time\":\"2026-12-05T10:00:00Z\",\"event\":\"booted\",\"message\":\"event {i}\"}}\n"
        )
    }

    /// One run of the agent's spool work, as its loop does it: an own report once, then tail, send in batches of 3,
    /// acknowledge; until everything is acknowledged or the file fails.
    fn run(spool: &mut Spool<CrashingFile>, events: &Path, endpoint: &mut Endpoint, own_done: &mut bool) -> Result<()> {
        if !*own_done {
            spool.push(own(ReportKind::Enrolled, "enrolled"), 0)?;
            *own_done = true;
        }
        tail(spool, events)?;
        while spool.n_pending() > 0 {
            let acked = endpoint.post(&spool.batch(3));
            spool.ack(acked)?;
            tail(spool, events)?;
        }
        Ok(())
    }

    #[test]
    fn a_power_cut_at_any_write_neither_loses_nor_renumbers_a_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = dir.path().join("events.jsonl");
        let n_events = 12;
        std::fs::write(&events, (0..n_events).map(event_line).collect::<String>()).expect("events");
        // Without cuts, count the writes a whole run makes.
        let mut n_writes = 0;
        {
            let disk = Rc::new(RefCell::new(Vec::new()));
            let mut spool = Spool::open(CrashingFile::after(&disk, None), Path::new("spool")).expect("open");
            let (mut ep, mut own_done) = (Endpoint::default(), false);
            run(&mut spool, &events, &mut ep, &mut own_done).expect("run");
            assert_eq!(ep.stored.len(), n_events + 1);
            for n in 0.. {
                let disk = Rc::new(RefCell::new(Vec::new()));
                let mut spool = Spool::open(CrashingFile::after(&disk, Some(n)), Path::new("spool")).expect("open");
                if run(&mut spool, &events, &mut Endpoint::default(), &mut false).is_ok() {
                    n_writes = n;
                    break;
                }
            }
        }
        assert!(n_writes > n_events, "every report is at least one write: {n_writes}");
        for cut in 0..=n_writes {
            let disk = Rc::new(RefCell::new(Vec::new()));
            let (mut ep, mut own_done) = (Endpoint::default(), false);
            let first = Spool::open(CrashingFile::after(&disk, Some(cut)), Path::new("spool"))
                .and_then(|mut s| run(&mut s, &events, &mut ep, &mut own_done));
            assert!(first.is_err() || cut == n_writes, "cut {cut}: the run ends in the cut");
            // The own report is made once by the program (its effect recorded elsewhere): a cut before it was
            // spooled means it is made again after the restart, as the loop does for `enrolled`.
            let own_spooled = disk.borrow().windows(8).any(|w| w == b"enrolled");
            let mut own_done = own_spooled;
            // Restart, possibly several times with more cuts, then run to the end.
            for again in [Some(1), Some(3), None] {
                let reopened = Spool::open(CrashingFile::after(&disk, again), Path::new("spool"))
                    .and_then(|mut s| run(&mut s, &events, &mut ep, &mut own_done));
                if again.is_none() {
                    reopened.expect("a run without cuts ends");
                }
                own_done |= disk.borrow().windows(8).any(|w| w == b"enrolled");
            }
            assert!(ep.conflicts.is_empty(), "cut {cut}: seqs numbered twice: {:?}", ep.conflicts);
            let messages: Vec<&str> = ep.stored.values().map(|r| r.message.as_str()).collect();
            let expected: Vec<String> =
                std::iter::once("enrolled".to_owned()).chain((0..n_events).map(|i| format!("event {i}"))).collect();
            assert_eq!(messages, expected, "cut {cut}: every event once, in order");
            let seqs: Vec<u64> = ep.stored.keys().copied().collect();
            assert_eq!(seqs, (1..=n_events as u64 + 1).collect::<Vec<_>>(), "cut {cut}: seqs from 1, no gaps");
            let spool = Spool::open(CrashingFile::after(&disk, None), Path::new("spool")).expect("reopen");
            assert_eq!((spool.n_pending(), spool.last_seq()), (0, n_events as u64 + 1), "cut {cut}");
        }
    }

    #[test]
    fn numbering_survives_compaction_and_an_endpoint_ahead_of_the_spool() {
        let disk = Rc::new(RefCell::new(Vec::new()));
        let mut spool = Spool::open(CrashingFile::after(&disk, None), Path::new("spool")).expect("open");
        for i in 0..3 {
            spool.push(own(ReportKind::Refused, &format!("r{i}")), 0).expect("push");
        }
        spool.ack(3).expect("ack");
        spool.replace_with(None).expect("compact");
        let mut spool = Spool::open(CrashingFile::after(&disk, None), Path::new("spool")).expect("reopen");
        assert_eq!((spool.last_seq(), spool.n_pending()), (3, 0));
        assert_eq!(spool.push(own(ReportKind::Refused, "r3"), 0).expect("push"), Pushed::Spooled(4));
        // The endpoint holds seqs up to 10 (this spool was lost once): new reports go on above them.
        spool.ack(10).expect("ack");
        assert_eq!(spool.push(own(ReportKind::Refused, "r4"), 0).expect("push"), Pushed::Spooled(11));
        let spool = Spool::open(CrashingFile::after(&disk, None), Path::new("spool")).expect("reopen");
        assert_eq!((spool.last_seq(), spool.batch(5).len()), (11, 1));
    }

    #[test]
    fn past_the_caps_progress_goes_first_and_the_event_log_waits() {
        let disk = Rc::new(RefCell::new(Vec::new()));
        let mut spool = Spool::open(CrashingFile::after(&disk, None), Path::new("spool")).expect("open");
        let big = "x".repeat(4000);
        while spool.accepts_events() {
            spool.push(own(ReportKind::Booted, &big), 0).expect("push");
        }
        assert_eq!(spool.push(own(ReportKind::Downloading, "50%"), 0).expect("push"), Pushed::Dropped);
        assert!(matches!(spool.push(own(ReportKind::Refused, "kept"), 0).expect("push"), Pushed::Spooled(_)));
        while spool.pending_bytes < HARD_CAP_BYTES {
            spool.push(own(ReportKind::Refused, &big), 0).expect("push");
        }
        assert_eq!(spool.push(own(ReportKind::Refused, "dropped"), 0).expect("push"), Pushed::Dropped);
        // Acknowledged, the file is rewritten without them and takes reports again.
        let last = spool.last_seq();
        spool.ack(last).expect("ack");
        assert!(spool.accepts_events());
        assert!(disk.borrow().len() < 1024, "compacted to one mark: {} bytes", disk.borrow().len());
    }

    #[test]
    fn a_shorter_event_log_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = dir.path().join("events.jsonl");
        std::fs::write(&events, (0..3).map(event_line).collect::<String>()).expect("events");
        let disk = Rc::new(RefCell::new(Vec::new()));
        let mut spool = Spool::open(CrashingFile::after(&disk, None), Path::new("spool")).expect("open");
        assert_eq!(tail(&mut spool, &events).expect("tail"), 3);
        std::fs::write(&events, event_line(7)).expect("a new log");
        assert_eq!(tail(&mut spool, &events).expect("tail"), 1);
        assert_eq!(spool.batch(10).last().map(|r| (r.seq, r.message.clone())), Some((4, "event 7".to_owned())));
    }
}
