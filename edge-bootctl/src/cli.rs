//! The `edge-bootctl` command line: `status`, `booted`, `set-active`, `mark-good`, `mark-bad`, each reading the
//! backend named in the config, applying one rule of `rules` and writing the result back through the backend.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use cliout::Output;

use bootctl::backend::open;
use bootctl::blockdev::Access;
use bootctl::booted::booted_slot;
use bootctl::config::{Config, DEFAULT_PATH};
use bootctl::error::{Error, Result};
use bootctl::rules::{BootState, Slot};
use bootctl::wire::Status;

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
    /// Do what the bootloader does at power-on: pick the slot by the rules, take a try off it when it is on trial,
    /// write that back, and print the slot. For slots that are files (trying updates on a laptop); on a node the
    /// bootloader does this itself.
    SimulateBoot,
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
pub fn run(cli: Cli) -> Result<Output> {
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
            let status = Status::read(&mut *b, booted().ok())?;
            Ok(Output::report(&status, json, Status::human))
        }
        Command::Booted => Ok(Output::text(booted()?.to_string())),
        Command::SimulateBoot => {
            let mut b = open(&config, Access::ReadWrite)?;
            let state = b.read()?;
            let (boot, next) = state.boot();
            // Durability: as the bootloader does, the try is written before the slot would be booted.
            if next != state {
                b.write(&next)?;
            }
            Ok(Output::text(boot.slot().to_string()))
        }
        Command::SetActive { slot } => {
            let s = slot;
            let mut b = open(&config, Access::ReadWrite)?;
            let next = b.read()?.set_active(s, config.tries)?;
            b.write(&next)?;
            Ok(Output::text(format!("slot {s}: active, {} tries", config.tries)))
        }
        Command::MarkGood => {
            let s = booted()?;
            let mut b = open(&config, Access::ReadWrite)?;
            let next = b.read()?.mark_good(s);
            b.write(&next)?;
            Ok(Output::text(format!("slot {s}: good")))
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
            Ok(Output::text(format!("provisioned: slot {s} good and active, slot {} empty", s.other())))
        }
        Command::MarkBad { slot } => {
            let s = match slot {
                Some(x) => x,
                None => booted()?,
            };
            let mut b = open(&config, Access::ReadWrite)?;
            let next = b.read()?.mark_bad(s);
            b.write(&next)?;
            Ok(Output::text(format!("slot {s}: bad")))
        }
    }
}
