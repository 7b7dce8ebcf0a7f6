//! `edge-update cancel`.

use updater::config::Config;
use updater::error::Result;
use updater::phase::Event;

use super::{operator_verb, Output};

/// `cancel` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `cancel`.
pub fn run(config: &Config, _args: Args) -> Result<Output> {
    operator_verb(config, |booted, state| Event::Cancel { booted, state })
}
