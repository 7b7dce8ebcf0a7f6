//! `edge-update mark-good`.

use updater::config::Config;
use updater::error::Result;
use updater::phase::Event;

use super::{operator_verb, Output};

/// `mark-good` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `mark-good`.
pub fn run(config: &Config, _args: Args) -> Result<Output> {
    operator_verb(config, |booted, state| Event::MarkGood { booted, state })
}
