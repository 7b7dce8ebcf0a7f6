//! `edge-image verify BUNDLE --keyring DIR [--threshold K]`: everything, front to back.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use crate::cli::Output;
use crate::error::{Error, Result};
use crate::wire::{VerifyReport, VERIFY_SCHEMA};
use image_layout::keys::{Keyring, SignerStatus};
use image_layout::reader::{decode_parallel, Policy, StreamReader};

/// Verify a bundle completely.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle (`-` for stdin).
    pub bundle: PathBuf,
    /// Directory of trusted *.pub keys.
    #[arg(long)]
    pub keyring: PathBuf,
    /// Distinct trusted keys that must have signed.
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Opens a bundle path, or stdin for `-`.
pub fn open_source(path: &std::path::Path) -> Result<Box<dyn std::io::Read + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    let f = File::open(path).map_err(|source| Error::ReadFile { path: path.to_owned(), source })?;
    Ok(Box::new(BufReader::with_capacity(1 << 20, f)))
}

/// Runs `verify`.
pub fn run(args: Args) -> Result<Output> {
    let keyring = Keyring::load(&args.keyring)?;
    let policy = Policy::at(time::OffsetDateTime::now_utc(), args.threshold);
    let mut r = StreamReader::open(open_source(&args.bundle)?, &keyring, &policy)?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut chunks = 0u64;
    while let Some(pi) = r.next_payload()? {
        let p = r.payload(pi).clone();
        decode_parallel(
            &p,
            threads,
            || r.next_stored(),
            |_, _| {
                chunks += 1;
                Ok(())
            },
        )?;
    }
    let v = r.verified().clone();
    r.finish(true)?;
    let report = VerifyReport {
        schema: VERIFY_SCHEMA,
        verified: true,
        name: v.manifest.name.clone(),
        version: v.manifest.version.clone(),
        security_version: v.manifest.security_version,
        valid_signers: v
            .signers
            .iter()
            .filter(|s| s.status == SignerStatus::Valid)
            .map(|s| s.key_id.to_string())
            .collect(),
        n_chunks_verified: chunks,
        manifest_blake3: image_layout::format::to_hex(&v.manifest_hash()),
    };
    let human = format!(
        "verified: {} {} (security version {}), {} chunks, signed by {}",
        report.name,
        report.version,
        report.security_version,
        chunks,
        report.valid_signers.join(", ")
    );
    Ok(Output::report(&report, args.json, |_| human))
}
