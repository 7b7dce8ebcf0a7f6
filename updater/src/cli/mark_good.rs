//! `edge-update mark-good`.

use crate::config::Config;
use crate::error::Result;
use crate::phase::Event;

use super::{describe, open_node, Output};

/// `mark-good` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `mark-good`.
pub fn run(config: &Config, _args: Args) -> Result<Output> {
    let mut node = open_node(config)?;
    let state = node.boot_state()?;
    let booted = node.booted;
    node.handle(Event::MarkGood { booted, state })?;
    Ok(Output { text: describe(&node) })
}
