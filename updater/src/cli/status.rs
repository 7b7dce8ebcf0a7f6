//! `edge-update status [--json]`: works without the lock, so it answers while an install runs.

use bootctl::rules::Slot;

use crate::config::Config;
use crate::error::Result;
use crate::journal::{FileJournal, JournalStore};
use crate::wire::{SlotStatus, Status};

use super::Output;

/// `status` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `status`.
pub fn run(config: &Config, args: Args) -> Result<Output> {
    let journal = FileJournal::new(config.journal_path()).load()?;
    let booted = crate::slots::booted(config).ok();
    let state =
        bootctl::backend::open(&config.bootctl, bootctl::blockdev::Access::ReadOnly).and_then(|mut b| b.read()).ok();
    let slots = state.map(|st| {
        [Slot::A, Slot::B]
            .into_iter()
            .map(|s| SlotStatus {
                slot: s.to_string(),
                good: st.slot(s).good,
                tries: st.slot(s).tries,
                active: st.active() == s,
                version: journal.slot(s).map(|i| i.bundle.version.clone()),
            })
            .collect::<Vec<_>>()
    });
    let status = Status { booted: booted.map(|s| s.to_string()), slots, journal };
    if args.json {
        return Ok(Output { text: serde_json::to_string_pretty(&status).expect("status serializes") });
    }
    let mut t = String::new();
    t.push_str(&format!("booted: {}\n", status.booted.as_deref().unwrap_or("unknown")));
    match &status.slots {
        Some(slots) => {
            for s in slots {
                t.push_str(&format!(
                    "slot {}: {}{}, {} tries, version {}\n",
                    s.slot,
                    if s.good { "good" } else { "not good" },
                    if s.active { ", active" } else { "" },
                    s.tries,
                    s.version.as_deref().unwrap_or("unknown")
                ));
            }
        }
        None => t.push_str("boot state: unreadable\n"),
    }
    t.push_str(&format!("security_version floor: {}\n", status.journal.security_version));
    match &status.journal.update {
        None => t.push_str("update: none"),
        Some(u) => {
            t.push_str(&format!(
                "update: slot {} <- {} {} ({}), phase {}, {}/{} chunks, {} bytes fetched, {} reused, image {} bytes",
                u.target,
                u.bundle.name,
                u.bundle.version,
                u.source,
                u.phase.name(),
                u.n_done(),
                u.n_chunks,
                u.bytes_fetched,
                u.bytes_reused,
                u.size_bytes
            ));
            if let Some(r) = &u.reason {
                t.push_str(&format!("\nreason: {r}"));
            }
        }
    }
    Ok(Output { text: t })
}
