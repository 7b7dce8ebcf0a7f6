//! The updater's event log (`events.jsonl`, docs/updater.md, "Events") as the agent reads it: whole lines from an
//! offset on, each turned into a report (`fleet_wire::node::Report`) with the same words.
//!
//! The updater only appends to its log, one write(2) of a whole line at a time, synced, and never rewrites it
//! (`updater::run::append_line`), so an offset into it names the same line for as long as the file lives. A line
//! without its line feed yet is left for the next read; a log shorter than the offset was replaced (a wiped data
//! partition) and is read again from its start.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::Path;

use fleet_wire::node::{Report, ReportKind, MAX_TEXT_CHARS};
use updater::wire::{EventKind, EventRecord};

use crate::error::{Error, Result};

/// The most bytes read from the log at once; a longer line is skipped whole.
pub const MAX_READ_BYTES: usize = 64 << 10;

/// One whole line of the log and the offset just past it.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The report it makes, if any (a line of a kind the protocol has no word for, or that does not parse, makes
    /// none and is skipped).
    pub report: Option<Report>,
    /// The offset after the line.
    pub end: u64,
}

/// What a read found.
#[derive(Debug, Clone, PartialEq)]
pub enum Tail {
    /// Whole lines after the offset (none when nothing new is there).
    Lines(Vec<Line>),
    /// The log is shorter than the offset: it was replaced.
    Replaced,
}

/// Reads the whole lines of the log at `path` from `offset`, at most [`MAX_READ_BYTES`] of them.
pub fn read(path: &Path, offset: u64) -> Result<Tail> {
    let rerr = |source| Error::ReadFile { path: path.to_owned(), source };
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(if offset == 0 { Tail::Lines(Vec::new()) } else { Tail::Replaced });
        }
        Err(e) => return Err(rerr(e)),
    };
    let len = f.metadata().map_err(rerr)?.len();
    if len < offset {
        return Ok(Tail::Replaced);
    }
    f.seek(SeekFrom::Start(offset)).map_err(rerr)?;
    let mut buf = Vec::new();
    (&mut f).take(MAX_READ_BYTES as u64).read_to_end(&mut buf).map_err(rerr)?;
    let mut lines = Vec::new();
    let mut at = 0;
    while let Some(n) = buf[at..].iter().position(|&b| b == b'\n') {
        let raw = &buf[at..at + n];
        at += n + 1;
        lines.push(Line { report: to_report(raw), end: offset + at as u64 });
    }
    if lines.is_empty() && buf.len() == MAX_READ_BYTES {
        // A line longer than the whole read: no updater writes one; skip to its end rather than stall on it.
        let skip = skip_line(&mut f, offset + buf.len() as u64).map_err(rerr)?;
        log::warn!("event log {}: skipping a line of more than {MAX_READ_BYTES} bytes", path.display());
        lines.push(Line { report: None, end: skip });
    }
    Ok(Tail::Lines(lines))
}

/// The offset after the line feed at or after `from`, or `from` itself when there is none yet.
fn skip_line(f: &mut File, from: u64) -> io::Result<u64> {
    let mut at = from;
    let mut buf = [0u8; 4096];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(from);
        }
        if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
            return Ok(at + i as u64 + 1);
        }
        at += n as u64;
    }
}

/// The report an event log line makes; `seq` is the spool's to give.
pub fn to_report(line: &[u8]) -> Option<Report> {
    let record: EventRecord = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => {
            log::warn!("event log: skipping a line that does not parse: {e}");
            return None;
        }
    };
    let Some(kind) = kind_of(record.event) else {
        log::debug!("event log: no report kind for {:?}", record.event);
        return None;
    };
    let slot = record.target.filter(|s| s == "A" || s == "B");
    Some(Report {
        seq: 0,
        time: if fleet_wire::node::check_time("time", &record.time).is_ok() { record.time } else { now() },
        kind,
        message: clip(&record.message),
        reason: record.reason.as_deref().map(clip),
        exit_code: None,
        version: record.version.as_deref().map(clip),
        slot,
        phase: record.phase.as_deref().map(clip),
        progress: None,
        action: None,
    })
}

/// The report kind of an updater event; none for a kind this agent does not know (a newer updater's).
pub fn kind_of(kind: EventKind) -> Option<ReportKind> {
    Some(match kind {
        EventKind::Started => ReportKind::Started,
        EventKind::Resumed => ReportKind::Resumed,
        EventKind::Verified => ReportKind::Verified,
        EventKind::Flipped => ReportKind::Flipped,
        EventKind::RebootFailed => ReportKind::RebootFailed,
        EventKind::Booted => ReportKind::Booted,
        EventKind::Trial => ReportKind::Trial,
        EventKind::Committed => ReportKind::Committed,
        EventKind::RollingBack => ReportKind::RollingBack,
        EventKind::RolledBack => ReportKind::RolledBack,
        EventKind::Cancelled => ReportKind::Cancelled,
        EventKind::Interrupted => ReportKind::Interrupted,
        EventKind::Failed => ReportKind::Failed,
        EventKind::MarkedGood => ReportKind::MarkedGood,
        EventKind::InstallFailed => ReportKind::InstallFailed,
        EventKind::Unknown => return None,
    })
}

/// Text cut to the protocol's bound, control characters but line feeds and tabs replaced.
pub fn clip(s: &str) -> String {
    s.chars().map(|c| if c.is_control() && c != '\n' && c != '\t' { ' ' } else { c }).take(MAX_TEXT_CHARS).collect()
}

/// Now, RFC 3339 UTC, as reports carry it.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: &str, message: &str) -> String {
        format!(
            "{{\"schema\":\"edge-update.event/1\",\"time\":\"2026-12-05T10:00:00Z\",\"event\":\"{kind}\",\"message\":\"{message}\",\"target\":\"B\",\"version\":\"2.0.0\",\"phase\":\"committed\"}}\n"
        )
    }

    #[test]
    fn whole_lines_are_read_from_the_offset_and_a_partial_one_waits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        assert_eq!(read(&path, 0).expect("no log"), Tail::Lines(vec![]));
        assert_eq!(read(&path, 5).expect("no log"), Tail::Replaced);
        let (a, b) = (line("started", "one"), line("committed", "two"));
        std::fs::write(&path, format!("{a}{b}{{\"schema\":\"edge-up")).expect("write");
        let Tail::Lines(lines) = read(&path, 0).expect("read") else { panic!("lines") };
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].end, a.len() as u64);
        assert_eq!(lines[1].end, (a.len() + b.len()) as u64);
        let r = lines[1].report.as_ref().expect("a report");
        assert_eq!((r.kind, r.message.as_str(), r.slot.as_deref()), (ReportKind::Committed, "two", Some("B")));
        let Tail::Lines(lines) = read(&path, lines[1].end).expect("read") else { panic!("lines") };
        assert!(lines.is_empty(), "the partial line waits for its line feed");
        assert_eq!(read(&path, 10_000).expect("read"), Tail::Replaced);
    }

    #[test]
    fn unknown_kinds_and_damaged_lines_make_no_report_but_are_passed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let text = format!("{}garbage\n{}", line("teleported", "x"), line("flipped", "y"));
        std::fs::write(&path, &text).expect("write");
        let Tail::Lines(lines) = read(&path, 0).expect("read") else { panic!("lines") };
        let kinds: Vec<_> = lines.iter().map(|l| l.report.as_ref().map(|r| r.kind)).collect();
        assert_eq!(kinds, vec![None, None, Some(ReportKind::Flipped)]);
        assert_eq!(lines[2].end, text.len() as u64);
    }

    #[test]
    fn every_updater_kind_but_unknown_has_a_report_kind_of_the_same_word() {
        let kinds = [
            EventKind::Started,
            EventKind::Resumed,
            EventKind::Verified,
            EventKind::Flipped,
            EventKind::RebootFailed,
            EventKind::Booted,
            EventKind::Trial,
            EventKind::Committed,
            EventKind::RollingBack,
            EventKind::RolledBack,
            EventKind::Cancelled,
            EventKind::Interrupted,
            EventKind::Failed,
            EventKind::MarkedGood,
            EventKind::InstallFailed,
        ];
        for k in kinds {
            assert_eq!(kind_of(k).map(|r| r.word()), Some(k.word()), "{k}");
        }
        assert_eq!(kind_of(EventKind::Unknown), None);
    }

    #[test]
    fn a_line_longer_than_a_read_is_skipped_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let long = format!("{}\n", "x".repeat(MAX_READ_BYTES + 10));
        std::fs::write(&path, format!("{long}{}", line("trial", "t"))).expect("write");
        let Tail::Lines(lines) = read(&path, 0).expect("read") else { panic!("lines") };
        assert_eq!(lines, vec![Line { report: None, end: long.len() as u64 }]);
        let Tail::Lines(lines) = read(&path, lines[0].end).expect("read") else { panic!("lines") };
        assert_eq!(lines[0].report.as_ref().map(|r| r.kind), Some(ReportKind::Trial));
    }
}
