//! `edge-update flip`: flips a target held by `install --no-flip`, after reading it back once more.

use updater::config::{Config, RebootMethod};
use updater::device::{Access, SlotFile};
use updater::error::{Error, Result};
use updater::wire::{InstallOutcome, InstallResult, RESULT_SCHEMA};

use super::{open_node, Output};

/// `flip` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Once flipped, ask `edge-init` to reboot into the new slot.
    #[arg(long, conflicts_with = "reboot_now")]
    pub reboot: bool,
    /// Once flipped, sync and reboot(2) at once, without `edge-init`.
    #[arg(long)]
    pub reboot_now: bool,
    /// The result as a JSON line on stdout (as `install --json` ends).
    #[arg(long)]
    pub json: bool,
}

/// Runs `flip`.
pub fn run(config: &Config, args: Args) -> Result<Output> {
    let mut node = open_node(config)?;
    if args.reboot_now {
        node.reboot = RebootMethod::Syscall;
    } else if args.reboot {
        node.reboot = RebootMethod::Init;
    }
    let reboot = args.reboot || args.reboot_now;
    let target = updater::slots::resolve(config, node.booted.other())?;
    let result = SlotFile::open(&target.path, Access::ReadWrite)
        .map_err(|source| Error::OpenSlot { slot: target.slot, device: target.path.clone(), source })
        .and_then(|mut dev| updater::held::flip(&mut node, &target, &mut dev, reboot, &mut |_| {}));
    // A hold that cannot be flipped is recorded by `held::flip` as the update's failure.
    let outcome = result?;
    let u = node.journal().update.clone().expect("a flip leaves its update");
    if let Some(reason) = &outcome.reboot_error {
        log::warn!("slot {} is flipped, but the reboot could not be requested: {reason}", u.target);
    }
    Ok(if args.json {
        Output::json_line(&InstallResult {
            schema: RESULT_SCHEMA,
            result: InstallOutcome::Flipped,
            target: u.target.to_string(),
            bundle: u.bundle.clone(),
            resumed_chunks: u.n_chunks,
            n_chunks: u.n_chunks,
            fetched_bytes: 0,
            reused_bytes: 0,
            image_bytes: u.size_bytes,
            reboot: outcome.reboot,
            reboot_error: outcome.reboot_error.clone(),
        })
    } else {
        let mut s = format!(
            "slot {} holds {} {} (verified again) and is active on trial",
            u.target, u.bundle.name, u.bundle.version
        );
        if let Some(reason) = &outcome.reboot_error {
            s.push_str(&format!("; the reboot could not be requested ({reason}): reboot to try it"));
        } else if !outcome.reboot {
            s.push_str("; reboot to try it");
        }
        Output::text(s)
    })
}
