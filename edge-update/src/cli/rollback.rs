//! `edge-update rollback`.

use updater::config::Config;
use updater::error::Result;
use updater::phase::Event;

use super::{operator_verb, Output};

/// `rollback` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `rollback`.
pub fn run(config: &Config, _args: Args) -> Result<Output> {
    operator_verb(config, |booted, state| Event::Rollback { booted, state })
}
