//! `edge-update boot`: run once at every start.

use updater::config::Config;
use updater::error::{Error, Result};
use updater::phase::Event;

use super::{describe, open_node_waiting, Output};

/// `boot` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `boot`.
pub fn run(config: &Config, _args: Args) -> Result<Output> {
    let mut node = open_node_waiting(config)?;
    let state = node.boot_state()?;
    let booted = node.booted;
    let outcome = node.handle(Event::Booted { booted, state })?;
    if let Some(source) = outcome.unhealthy {
        return Err(Error::Unhealthy { slot: booted, source });
    }
    Ok(Output::text(describe(&node)))
}
