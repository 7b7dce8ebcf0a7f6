//! `edge-update cancel`.

use crate::config::Config;
use crate::error::Result;
use crate::phase::Event;

use super::{operator_verb, Output};

/// `cancel` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `cancel`.
pub fn run(config: &Config, _args: Args) -> Result<Output> {
    operator_verb(config, |booted, state| Event::Cancel { booted, state })
}
