//! The kernel log as a source of log lines (docs/telemetry.md, "What a node collects"): `/dev/kmsg` read record by
//! record from where the agent left off in this boot, each record turned into a [`LogLine`] with its level, its
//! time and its source (the kernel, or the service whose name `edge-init` put in front of its line), and every
//! record the ring overwrote before it was read counted in the `lost` of the next.
//!
//! The position (the boot's id and the ring's next `seq`) travels as the spool mark of the record that advanced it,
//! so after a restart in the same boot the agent goes on after the last record it spooled, and on a new boot from
//! the ring's start.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::Path;

use fleet_wire::telemetry::{LogLine, MAX_LOG_CHARS};

/// A mark's first two bytes: a kernel log position, version 1.
const MARK_TAG: &[u8; 2] = b"K1";

/// Where the agent is in the kernel log: which boot, and the ring's `seq` of the next record to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The boot's id (`/proc/sys/kernel/random/boot_id`, 16 bytes).
    pub boot: [u8; 16],
    /// The next record's `seq` in the ring.
    pub next_seq: u64,
}

impl Position {
    /// The spool mark's bytes.
    pub fn to_mark(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(26);
        out.extend_from_slice(MARK_TAG);
        out.extend_from_slice(&self.boot);
        out.extend_from_slice(&self.next_seq.to_le_bytes());
        out
    }

    /// A position from a spool mark (`None` for another source's mark).
    pub fn from_mark(mark: &[u8]) -> Option<Position> {
        if mark.len() != 26 || &mark[..2] != MARK_TAG {
            return None;
        }
        Some(Position {
            boot: mark[2..18].try_into().expect("16 bytes"),
            next_seq: u64::from_le_bytes(mark[18..26].try_into().expect("8 bytes")),
        })
    }
}

/// A boot id as the kernel prints it (`6c03d8c4-d5d9-4eb9-9b66-e0831ebd5b67`) in 16 bytes.
pub fn parse_boot_id(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.trim().bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// One record of `/dev/kmsg` (Documentation/ABI/testing/dev-kmsg).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The syslog level (0 to 7).
    pub level: u8,
    /// The facility is the kernel's (0), not a user's.
    pub kernel: bool,
    /// The ring's sequence number.
    pub seq: u64,
    /// Microseconds since boot (the kernel's monotonic clock).
    pub usec: u64,
    /// The message, its `\xNN` escapes undone.
    pub text: String,
}

/// Parses one record: `PRIO,SEQ,USEC,FLAGS[,...];MESSAGE\n` and continuation lines (` KEY=VALUE`), which are not
/// kept.
pub fn parse(record: &[u8]) -> Option<Record> {
    let semi = record.iter().position(|&b| b == b';')?;
    let head = std::str::from_utf8(&record[..semi]).ok()?;
    let mut fields = head.split(',');
    let prio: u64 = fields.next()?.parse().ok()?;
    let seq: u64 = fields.next()?.parse().ok()?;
    let usec: u64 = fields.next()?.parse().ok()?;
    let body = &record[semi + 1..];
    let end = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
    Some(Record { level: (prio & 7) as u8, kernel: prio >> 3 == 0, seq, usec, text: unescape(&body[..end]) })
}

/// Undoes the kernel's `\xNN` escapes of bytes it does not print.
fn unescape(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') {
            if let Some(b) = bytes
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The source of a record and its text without the source: the kernel's records are `kernel`'s; a user record
/// `NAME: TEXT` (as `edge-init` writes a service's lines and its own) is `NAME`'s; any other user record is `user`'s.
pub fn source_of(record: &Record) -> (String, String) {
    if record.kernel {
        return ("kernel".to_owned(), record.text.clone());
    }
    if let Some((name, rest)) = record.text.split_once(": ") {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
        if ok {
            return (name.to_owned(), rest.to_owned());
        }
    }
    ("user".to_owned(), record.text.clone())
}

/// A log line from a record; `boot_ms` is the wall-clock time of the boot in milliseconds, `lost` the records the
/// ring overwrote before this one was read.
pub fn line(record: &Record, boot_ms: i64, lost: u64) -> LogLine {
    let (source, mut text) = source_of(record);
    if text.chars().count() > MAX_LOG_CHARS {
        text = text.chars().take(MAX_LOG_CHARS).collect();
    }
    // The protocol refuses control characters other than tab and line feed; a kernel line may hold them.
    let text = text.chars().map(|c| if c.is_control() && c != '\t' && c != '\n' { '\u{fffd}' } else { c }).collect();
    LogLine {
        time_ms: boot_ms.saturating_add(i64::try_from(record.usec / 1000).unwrap_or(i64::MAX)),
        source,
        level: record.level,
        text,
        lost,
    }
}

/// What the tail of the kernel log decides for each record read: pass it over (read before), or take it with the
/// number of records lost before it.
pub fn take(next_seq: &mut u64, record_seq: u64) -> Option<u64> {
    if record_seq < *next_seq {
        return None;
    }
    let lost = record_seq - *next_seq;
    *next_seq = record_seq + 1;
    Some(lost)
}

/// `/dev/kmsg`, open and read without waiting. The device hands out one record a read; a file of records (a
/// test's, a saved log) is read by lines all the same, so both go through one parser.
pub struct Kmsg {
    file: File,
    /// Bytes read; those from `pos` on are not yet taken (a record's line not yet whole, in a file).
    pending: Vec<u8>,
    pos: usize,
    /// Where the next read goes (one allocation for the reader's life).
    buf: Vec<u8>,
}

/// The longest record the kernel hands out (it refuses a smaller buffer with `EINVAL`).
const RECORD_BUFFER: usize = 16 << 10;

impl Kmsg {
    /// Opens the kernel log at `path`, at its oldest record.
    pub fn open(path: &Path) -> io::Result<Kmsg> {
        Ok(Kmsg {
            file: crate::sys::open_nonblocking(path)?,
            pending: Vec::new(),
            pos: 0,
            buf: vec![0u8; RECORD_BUFFER],
        })
    }

    /// The next record, `None` when there is none yet. Records the ring overwrote since the last read are passed
    /// over by the kernel (`EPIPE`); the gap in `seq` says how many.
    pub fn next_record(&mut self) -> io::Result<Option<Record>> {
        loop {
            while let Some(nl) = self.pending[self.pos..].iter().position(|&b| b == b'\n') {
                let line = &self.pending[self.pos..self.pos + nl + 1];
                self.pos += nl + 1;
                // Continuation lines (` KEY=VALUE`) belong to the record before; they are not kept.
                if line.first() == Some(&b' ') {
                    continue;
                }
                if let Some(r) = parse(line) {
                    return Ok(Some(r));
                }
            }
            self.pending.drain(..self.pos);
            self.pos = 0;
            match self.file.read(&mut self.buf) {
                Ok(0) => return Ok(None),
                Ok(n) => self.pending.extend_from_slice(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The file, to wait on with poll(2).
    pub fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, want: Option<(u8, bool, u64, u64, &str)>) {
        let got = parse(raw.as_bytes()).map(|r| (r.level, r.kernel, r.seq, r.usec, r.text));
        assert_eq!(got, want.map(|(l, k, s, u, t)| (l, k, s, u, t.to_owned())), "{raw:?}");
    }

    #[test]
    fn records_parse() {
        check(
            "6,339,5140900,-;NET: Registered protocol family 10\n",
            Some((6, true, 339, 5_140_900, "NET: Registered protocol family 10")),
        );
        check("14,340,5141000,-;app: tick 7\n SUBSYSTEM=x\n", Some((6, false, 340, 5_141_000, "app: tick 7")));
        check("3,1,2,c,more;a\\x09tab \\x1b[31m\n", Some((3, true, 1, 2, "a\ttab \u{1b}[31m")));
        check("11,5,9,-;edge-init: started app", Some((3, false, 5, 9, "edge-init: started app")));
        check("no semicolon", None);
        check("x,1,2,-;bad prio", None);
    }

    #[test]
    fn sources_are_the_kernel_or_the_name_in_front() {
        let rec = |kernel: bool, text: &str| Record { level: 6, kernel, seq: 0, usec: 2_500_000, text: text.into() };
        assert_eq!(source_of(&rec(true, "eth0: link up")), ("kernel".into(), "eth0: link up".into()));
        assert_eq!(source_of(&rec(false, "app: tick 3")), ("app".into(), "tick 3".into()));
        assert_eq!(source_of(&rec(false, "no name here")), ("user".into(), "no name here".into()));
        assert_eq!(source_of(&rec(false, "a b: c")), ("user".into(), "a b: c".into()));
        let l = line(&rec(false, "app: \u{7}bell"), 1_000_000, 2);
        assert_eq!((l.time_ms, l.source.as_str(), l.text.as_str(), l.lost), (1_002_500, "app", "\u{fffd}bell", 2));
    }

    #[test]
    fn records_are_taken_once_and_gaps_counted() {
        let mut next = 5;
        assert_eq!(take(&mut next, 3), None);
        assert_eq!(take(&mut next, 5), Some(0));
        assert_eq!(take(&mut next, 9), Some(3));
        assert_eq!((take(&mut next, 9), next), (None, 10));
    }

    #[test]
    fn a_file_of_records_reads_as_the_device_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kmsg");
        std::fs::write(&path, "6,0,1,-;first\n SUBSYSTEM=x\n14,1,2,-;app: second\n6,2,3,-;par").expect("write");
        let mut k = Kmsg::open(&path).expect("open");
        let seqs: Vec<u64> = std::iter::from_fn(|| k.next_record().expect("read")).map(|r| r.seq).collect();
        assert_eq!(seqs, vec![0, 1]);
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("append");
        std::io::Write::write_all(&mut f, b"tial\n").expect("write");
        assert_eq!(k.next_record().expect("read").map(|r| (r.seq, r.text)), Some((2, "partial".to_owned())));
        assert_eq!(k.next_record().expect("read"), None);
    }

    #[test]
    fn positions_round_trip_through_marks() {
        let boot = parse_boot_id("6c03d8c4-d5d9-4eb9-9b66-e0831ebd5b67\n").expect("boot id");
        assert_eq!(boot[0], 0x6c);
        let p = Position { boot, next_seq: 77 };
        assert_eq!(Position::from_mark(&p.to_mark()), Some(p));
        assert_eq!(Position::from_mark(b"other"), None);
        assert_eq!(parse_boot_id("nope"), None);
    }
}
