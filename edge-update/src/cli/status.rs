//! `edge-update status [--json]`: works without the lock, so it answers while an install runs. It shows the boot
//! state as `edge-bootctl status` does (one rendering, bootctl's), what each slot holds, whether an `edge-update`
//! is running, the update in the journal, and the last failure in the event log.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use bootctl::rules::Slot;

use updater::config::Config;
use updater::error::Result;
use updater::journal::{FileJournal, JournalStore};
use updater::wire::{EventKind, EventRecord, SlotStatus, Status, STATUS_SCHEMA};

use super::Output;

/// `status` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// How much of the event log's end is read for the last failure: many events, never the whole log.
const EVENTS_TAIL_BYTES: u64 = 256 << 10;

/// Runs `status`.
pub fn run(config: &Config, args: Args) -> Result<Output> {
    let status = read(config)?;
    Ok(Output::report(&status, args.json, human))
}

/// Reads everything `status` shows.
pub fn read(config: &Config) -> Result<Status> {
    let journal = FileJournal::new(config.journal_path()).load()?;
    let booted = updater::slots::booted(config).ok();
    let boot = bootctl::backend::open(&config.bootctl, bootctl::blockdev::Access::ReadOnly)
        .and_then(|mut b| bootctl::wire::Status::read(&mut *b, booted))
        .map_err(|e| log::warn!("boot state: {}", updater::error::chain(&e)))
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
        running: updater::run::running(config),
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

/// The text for a person: the boot state as `edge-bootctl status` shows it, then the updater's view.
fn human(status: &Status) -> String {
    let mut t = String::new();
    match &status.boot {
        Some(b) => {
            t.push_str(&b.human());
            t.push('\n');
        }
        None => {
            t.push_str(&format!("booted:     {}\n", status.booted.as_deref().unwrap_or("unknown")));
            t.push_str("boot state: unreadable\n");
        }
    }
    for s in status.slots.iter().flatten() {
        let holds = match &s.bundle {
            Some(b) => format!("{} {} (security version {})", b.name, b.version, b.security_version),
            None => "unknown (no install recorded it, or one is writing it)".to_owned(),
        };
        t.push_str(&format!("slot {} holds: {holds}\n", s.state.slot));
    }
    t.push_str(&format!("security_version floor: {}\n", status.journal.security_version));
    match &status.journal.update {
        None => t.push_str("update: none"),
        Some(u) => {
            let state = if u.phase.is_installing() {
                if status.running {
                    ", running"
                } else {
                    ", interrupted (no edge-update is running: install again to resume)"
                }
            } else {
                ""
            };
            t.push_str(&format!(
                "update: slot {} <- {} {} from {}, phase {}{state}, {}/{} chunks, {} bytes fetched, {} reused, image {} bytes",
                u.target,
                u.bundle.name,
                u.bundle.version,
                u.source,
                u.phase.name(),
                u.n_done(),
                u.n_chunks,
                u.fetched_bytes,
                u.reused_bytes,
                u.size_bytes
            ));
            if let Some(r) = &u.reason {
                t.push_str(&format!("\nreason: {r}"));
            }
        }
    }
    if let Some(f) = &status.last_failure {
        t.push_str(&format!("\nlast failure: {} {}: {}", f.time, f.event, f.message));
    }
    t
}
