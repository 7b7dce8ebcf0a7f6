//! `edge-image keygen -o NAME`: a fresh ed25519 key pair.

use std::path::PathBuf;

use crate::cli::Output;
use crate::error::Result;
use crate::wire::{KeygenReport, KEYGEN_SCHEMA};
use image_layout::keys::SecretKey;

/// Make an ed25519 key pair.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base name: writes NAME.key (mode 0600, never overwritten) and NAME.pub.
    #[arg(short = 'o', long = "output", value_name = "NAME")]
    pub output: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `keygen`.
pub fn run(args: Args) -> Result<Output> {
    let key = SecretKey::generate();
    let (secret, public) = key.write_pair(&args.output)?;
    let r = KeygenReport {
        schema: KEYGEN_SCHEMA,
        key_id: key.public().id().to_string(),
        secret_key: secret.display().to_string(),
        public_key: public.display().to_string(),
    };
    let human = format!("key id {}\nsecret key: {}\npublic key: {}", r.key_id, r.secret_key, r.public_key);
    Ok(Output::report(&r, args.json, |_| human))
}
