//! The `edge-bootctl` command line: `status`, `booted`, `set-active`, `mark-good`, `mark-bad`, each reading the
//! backend named in the config, applying one rule of `rules` and writing the result back through the backend.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::backend::open;
use crate::blockdev::Access;
use crate::booted::booted_slot;
use crate::config::{Config, DEFAULT_PATH};
use crate::error::{Error, Result};
use crate::rules::{Boot, BootState, Slot};
use crate::wire::{CopyStatus, SlotStatus, Status};

/// Show and change which slot boots.
#[derive(Debug, Parser)]
#[command(name = "edge-bootctl", version, about)]
pub struct Cli {
    /// The config file [default: /etc/edge/bootctl.toml, and every key's default when that file does not exist].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show both slots, the boot order and what boots next.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the running slot.
    Booted,
    /// Put a slot first in the boot order, not good, with the configured tries (the other slot must be good).
    SetActive {
        /// `A` or `B`.
        #[arg(value_parser = parse_slot)]
        slot: Slot,
    },
    /// Mark the running slot good.
    MarkGood,
    /// Mark a slot bad: not good, no tries (default: the running slot).
    MarkBad {
        /// `A` or `B`.
        #[arg(value_parser = parse_slot)]
        slot: Option<Slot>,
    },
    /// Write the boot state afresh: `--good` is good and active, the other slot empty (first install, or recovery
    /// when no copy is whole).
    Provision {
        /// The slot that holds a working image.
        #[arg(long, value_parser = parse_slot)]
        good: Slot,
        /// Overwrite a whole boot state too.
        #[arg(long)]
        force: bool,
    },
}

fn parse_slot(s: &str) -> std::result::Result<Slot, String> {
    Slot::parse(s).ok_or_else(|| format!("{s:?} is not a slot: A or B"))
}

/// Runs a command line; returns what to print on stdout.
pub fn run(cli: Cli) -> Result<String> {
    // The default file is optional (every key has a default); a file named on the command line must be there, so
    // that a misspelt name is not quietly replaced by the defaults.
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::load_default(Path::new(DEFAULT_PATH))?,
    };
    let booted = || booted_slot(&config.cmdline, &config.root, |s| config.slot_device(s));
    match cli.command {
        Command::Status { json } => {
            let mut b = open(&config, Access::ReadOnly)?;
            let state = b.read()?;
            let booted = booted().ok();
            let (next, _) = state.boot();
            let order = state.order();
            let slots = Slot::ALL
                .iter()
                .map(|&s| SlotStatus {
                    slot: s.letter(),
                    good: state.slot(s).good,
                    tries: state.slot(s).tries,
                    order: if order[0] == s { 1 } else { 2 },
                    booted: booted == Some(s),
                })
                .collect();
            let copies = b.copies()?;
            let status = Status {
                backend: b.name(),
                booted: booted.map(Slot::letter),
                active: state.active().letter(),
                last_good: state.last_good().letter(),
                next_boot: match next {
                    Boot::Good(_) => "good",
                    Boot::Trial(_) => "trial",
                    Boot::Fallback(_) => "fallback",
                },
                next_slot: next.slot().letter(),
                copies_whole: copies.both_whole(),
                copies: (0..2)
                    .map(|i| CopyStatus {
                        copy: i as u8,
                        location: copies.locations[i].clone(),
                        state: copies.health[i].word(),
                        current: copies.current == Some(i),
                    })
                    .collect(),
                slots,
            };
            Ok(if json { serde_json::to_string_pretty(&status).expect("status serializes") } else { human(&status) })
        }
        Command::Booted => Ok(booted()?.to_string()),
        Command::SetActive { slot } => {
            let s = slot;
            let mut b = open(&config, Access::ReadWrite)?;
            let next = b.read()?.set_active(s, config.tries)?;
            b.write(&next)?;
            Ok(format!("slot {s}: active, {} tries", config.tries))
        }
        Command::MarkGood => {
            let s = booted()?;
            let mut b = open(&config, Access::ReadWrite)?;
            let next = b.read()?.mark_good(s);
            b.write(&next)?;
            Ok(format!("slot {s}: good"))
        }
        Command::Provision { good, force } => {
            let s = good;
            let mut b = open(&config, Access::ReadWrite)?;
            match b.read() {
                // Only a state known to be lost is provisioned without --force; a read error is not that.
                Err(Error::NoWholeCopy { .. }) => {}
                Err(e) if !force => return Err(e),
                Ok(_) if !force => return Err(Error::StateExists),
                _ => {}
            }
            b.provision(&BootState::provisioned(s))?;
            Ok(format!("provisioned: slot {s} good and active, slot {} empty", s.other()))
        }
        Command::MarkBad { slot } => {
            let s = match slot {
                Some(x) => x,
                None => booted()?,
            };
            let mut b = open(&config, Access::ReadWrite)?;
            let next = b.read()?.mark_bad(s);
            b.write(&next)?;
            Ok(format!("slot {s}: bad"))
        }
    }
}

fn human(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "backend:    {}", s.backend);
    let _ = writeln!(out, "booted:     {}", s.booted.map_or("unknown".to_owned(), |c| c.to_string()));
    let _ = writeln!(out, "next boot:  {} ({})", s.next_slot, s.next_boot);
    let _ = writeln!(out, "last good:  {}", s.last_good);
    for slot in &s.slots {
        let mut notes = vec![if slot.good { "good".to_owned() } else { "not good".to_owned() }];
        if !slot.good {
            notes.push(format!("{} tries left", slot.tries));
        }
        if slot.order == 1 {
            notes.push("active".to_owned());
        }
        if slot.booted {
            notes.push("booted".to_owned());
        }
        let _ = writeln!(out, "slot {}:     {}", slot.slot, notes.join(", "));
    }
    let copy = |c: &CopyStatus| {
        let note = match c.state {
            _ if c.current => " (read)",
            "missing" => " (the next write creates it)",
            "damaged" => " (the next write replaces it)",
            _ => "",
        };
        format!("{} {}{note}", c.copy, c.state)
    };
    let copies =
        if s.copies_whole { "both whole".to_owned() } else { s.copies.iter().map(copy).collect::<Vec<_>>().join(", ") };
    let _ = write!(out, "copies:     {copies}");
    out
}
