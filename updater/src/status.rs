//! What `edge-update status` shows, read without the lock (so it answers while an install runs): the boot state as
//! `edge-bootctl status` renders it, what each slot holds, whether an `edge-update` is running, the journal, and the
//! last failure in the event log. A module of the library so that every reader of the node's update status (the
//! `edge-update` command, the fleet agent's diagnostics) builds it the one way.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use bootctl::rules::Slot;

use crate::config::Config;
use crate::error::Result;
use crate::journal::{FileJournal, JournalStore};
use crate::wire::{EventKind, EventRecord, SlotStatus, Status, STATUS_SCHEMA};

/// How much of the event log's end is read for the last failure: many events, never the whole log.
const EVENTS_TAIL_BYTES: u64 = 256 << 10;

/// Reads everything `status` shows.
pub fn read(config: &Config) -> Result<Status> {
    let journal = FileJournal::new(config.journal_path()).load()?;
    let booted = crate::slots::booted(config).ok();
    let boot = bootctl::backend::open(&config.bootctl, bootctl::blockdev::Access::ReadOnly)
        .and_then(|mut b| bootctl::wire::Status::read(&mut *b, booted))
        .map_err(|e| log::warn!("boot state: {}", crate::error::chain(&e)))
        .ok();
    let slots = boot.as_ref().map(|b| {
        b.slots
            .iter()
            .map(|s| {
                let slot = Slot::parse(&s.slot.to_string()).expect("bootctl names slots A and B");
                SlotStatus { state: s.clone(), bundle: journal.slot(slot).map(|i| i.bundle.clone()) }
            })
            .collect()
    });
    Ok(Status {
        schema: STATUS_SCHEMA,
        booted: booted.map(|s| s.to_string()),
        boot,
        slots,
        running: crate::run::running(config),
        last_failure: last_failure(&config.events_path()),
        journal,
    })
}

/// The last failure in the event log, from its last [`EVENTS_TAIL_BYTES`]; none when there is no log or no failure
/// in its tail. A line that does not parse (a newer updater's, or one cut by a power loss) is skipped.
pub fn last_failure(events: &Path) -> Option<EventRecord> {
    let mut f = std::fs::File::open(events).ok()?;
    let len = f.metadata().ok()?.len();
    let start = len.saturating_sub(EVENTS_TAIL_BYTES);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut tail = Vec::new();
    f.take(EVENTS_TAIL_BYTES).read_to_end(&mut tail).ok()?;
    // A tail that starts mid-line: its first piece is not a whole line.
    let lines = tail.split(|&b| b == b'\n').skip(usize::from(start > 0));
    lines
        .filter_map(|l| serde_json::from_slice::<EventRecord>(l).ok())
        .filter(|e| EventKind::FAILURES.contains(&e.event))
        .last()
}
