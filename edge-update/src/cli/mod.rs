//! `edge-update`'s command line: one module per verb, each with its `Args` and `run`; docs/updater.md, "CLI".

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use bootctl::rules::{BootState, Slot};

use updater::config::{Config, DEFAULT_PATH};
use updater::error::Result;
use updater::phase::Event;
use updater::run::Node;

pub mod boot;
pub mod cancel;
pub mod flip;
pub mod install;
pub mod mark_good;
pub mod rollback;
pub mod status;

/// Streams signed bundles into the inactive slot, flips the bootloader, and commits or rolls back by health checks.
#[derive(Debug, Parser)]
#[command(name = "edge-update", version)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    /// Log threshold: error, warn, info, debug.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: log::LevelFilter,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install a bundle (a path, `-` for stdin, or an http(s) URL) into the slot that is not booted, resuming an
    /// interrupted install of the same bundle, then flip the bootloader to it.
    Install(install::Args),
    /// Flip a slot held by `install --no-flip`: read it back once more, then make it active on trial.
    Flip(flip::Args),
    /// Show the booted slot, the boot state and the journal.
    Status(status::Args),
    /// Reconcile the journal with what the bootloader booted; on a trial boot, run the health checks and commit or
    /// roll back. Run once at every start, by `edge-init`.
    Boot(boot::Args),
    /// Commit the booted slot without waiting for the health checks.
    MarkGood(mark_good::Args),
    /// Give up the update: on a trial boot, mark the booted slot bad and reboot; before the reboot, undo the flip.
    Rollback(rollback::Args),
    /// Stop an update that is not booted yet; the target slot is left unbootable.
    Cancel(cancel::Args),
}

pub use cliout::Output;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<Output> {
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Install(a) => install::run(&config, a),
        Command::Flip(a) => flip::run(&config, a),
        Command::Status(a) => status::run(&config, a),
        Command::Boot(a) => boot::run(&config, a),
        Command::MarkGood(a) => mark_good::run(&config, a),
        Command::Rollback(a) => rollback::run(&config, a),
        Command::Cancel(a) => cancel::run(&config, a),
    }
}

/// Tells the booted slot and opens the node (lock, journal, boot state).
pub fn open_node(config: &Config) -> Result<Node<'_>> {
    let booted = updater::slots::booted(config)?;
    Node::open(config, booted)
}

/// As [`open_node`], waiting for the lock.
pub fn open_node_waiting(config: &Config) -> Result<Node<'_>> {
    let booted = updater::slots::booted(config)?;
    Node::open_locked(config, booted, true)
}

/// Runs an operator verb: the event it makes of the booted slot and the boot state, handled, then where the update
/// stands.
pub fn operator_verb(config: &Config, event: fn(Slot, BootState) -> Event) -> Result<Output> {
    let mut node = open_node(config)?;
    let state = node.boot_state()?;
    let booted = node.booted;
    node.handle(event(booted, state))?;
    Ok(Output::text(describe(&node)))
}

/// A line saying where an update stands, for people.
pub fn describe(node: &Node<'_>) -> String {
    match &node.journal().update {
        None => "no update recorded".to_owned(),
        Some(u) => {
            let mut s =
                format!("update of slot {} to {} {}: {}", u.target, u.bundle.name, u.bundle.version, u.phase.name());
            if u.held {
                s.push_str(" (held: edge-update flip makes it active)");
            }
            if let Some(r) = &u.reason {
                s.push_str(&format!(" ({r})"));
            }
            s
        }
    }
}
