//! `edge-update status [--json]`: works without the lock, so it answers while an install runs. It shows the boot
//! state as `edge-bootctl status` does (one rendering, bootctl's), what each slot holds, whether an `edge-update`
//! is running, the update in the journal, and the last failure in the event log.

use updater::config::Config;
use updater::error::Result;
use updater::wire::Status;

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
    let status = updater::status::read(config)?;
    Ok(Output::report(&status, args.json, human))
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
            let state = if u.held && !status.running {
                ", held (verified: edge-update flip makes it active on trial)"
            } else if u.phase.is_installing() {
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
