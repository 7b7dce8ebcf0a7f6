//! `edge-image inspect BUNDLE [--keyring DIR] [--json]`: the manifest, sizes and signers, without reading the body.

use std::fs::File;
use std::path::PathBuf;

use crate::cli::{inspect_human, inspect_report, Output};
use crate::error::{Error, Result};
use image_layout::keys::Keyring;
use image_layout::manifest::Manifest;
use image_layout::reader::Head;

/// Show a bundle's manifest, payloads, sizes and signers.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle.
    pub bundle: PathBuf,
    /// Check each signature against the *.pub keys in this directory.
    #[arg(long)]
    pub keyring: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `inspect`.
pub fn run(args: Args) -> Result<Output> {
    let mut f = File::open(&args.bundle).map_err(|source| Error::ReadFile { path: args.bundle.clone(), source })?;
    let head = Head::read(&mut f)?;
    let manifest = Manifest::parse(&head.manifest_bytes)?;
    let keyring = args.keyring.as_deref().map(Keyring::load).transpose()?;
    let r = inspect_report(crate::wire::INSPECT_SCHEMA, &head, &manifest, keyring.as_ref());
    Ok(Output::report(&r, args.json, inspect_human))
}
