//! `edge-image sign BUNDLE --key KEY`: add a signature without rebuilding.

use std::path::PathBuf;

use crate::cli::Output;
use crate::error::Result;
use crate::wire::{SignReport, SIGN_SCHEMA};
use image_layout::keys::SecretKey;

/// Add a signature to a bundle.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle, rewritten in place atomically.
    pub bundle: PathBuf,
    /// The secret key to sign with.
    #[arg(long)]
    pub key: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `sign`.
pub fn run(args: Args) -> Result<Output> {
    let key = SecretKey::load(&args.key)?;
    let n = image_layout::writer::add_signature(&args.bundle, &key)?;
    let r = SignReport { schema: SIGN_SCHEMA, key_id: key.public().id().to_string(), n_signatures: n };
    let human = format!("signed by {}; {} signature(s) on {}", r.key_id, n, args.bundle.display());
    Ok(Output::report(&r, args.json, |_| human))
}
