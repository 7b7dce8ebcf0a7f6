//! `edge-image delta-plan BUNDLE --have OLD_IMAGE [--json]`: what a node holding OLD_IMAGE would fetch and reuse.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use crate::cli::Output;
use crate::error::{Error, Result};
use crate::wire::{DeltaPlanReport, DELTA_PLAN_SCHEMA};
use image_layout::delta::{HaveIndex, Planner, DEFAULT_COALESCE_GAP};
use image_layout::keys::Keyring;
use image_layout::reader::{BundleAt, Policy};

/// Plan a delta install.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle.
    pub bundle: PathBuf,
    /// The image the node already has (its running slot).
    #[arg(long)]
    pub have: PathBuf,
    /// The payload to plan (default: the first).
    #[arg(long)]
    pub payload: Option<String>,
    /// Directory of trusted *.pub keys; without it the signatures are not checked (planning only).
    #[arg(long)]
    pub keyring: Option<PathBuf>,
    /// Merge needed ranges separated by at most this many bytes.
    #[arg(long, default_value_t = DEFAULT_COALESCE_GAP)]
    pub coalesce_gap: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `delta-plan`.
pub fn run(args: Args) -> Result<Output> {
    let file = File::open(&args.bundle).map_err(|source| Error::ReadFile { path: args.bundle.clone(), source })?;
    let bundle = match &args.keyring {
        Some(dir) => BundleAt::open(file, &Keyring::load(dir)?, &Policy::ignoring_expiry())?,
        // Planning only reads; without a keyring the signatures are not checked, every other check still runs.
        None => BundleAt::open_unverified(file)?,
    };
    plan(args, bundle)
}

fn plan(args: Args, bundle: BundleAt<File>) -> Result<Output> {
    let m = &bundle.verified().manifest;
    let pi = match &args.payload {
        Some(name) => m.payload(name)?.0,
        None => 0,
    };
    let p = m.payloads[pi].clone();
    let index = bundle.chunk_index(pi)?;
    let delta = bundle.delta_index(pi)?;
    // A slot image, as a payload: a regular file or a block device, read up to the size it had when opened.
    let (old, old_bytes) = image_layout::fsutil::open_image(&args.have)?;
    let have = HaveIndex::scan(BufReader::with_capacity(1 << 20, old.take(old_bytes)), p.block_size)
        .map_err(|source| Error::ReadFile { path: args.have.clone(), source })?;
    let planner = Planner::new(&p, &index, &delta, &have)?;
    let s = planner.summarize(&bundle, pi, args.coalesce_gap);
    let r = DeltaPlanReport {
        schema: DELTA_PLAN_SCHEMA,
        payload: p.name.clone(),
        image_bytes: s.image_bytes,
        reused_bytes: s.reused_bytes,
        fetched_raw_bytes: s.fetched_raw_bytes,
        metadata_bytes: s.metadata_bytes,
        range_bytes: s.range_bytes,
        fetched_bytes: s.fetch_bytes,
        full_install_bytes: bundle.verified().full_install_len(),
        n_chunks_local: s.chunks_local,
        n_chunks_frames: s.chunks_frames,
        n_chunks_whole: s.chunks_whole,
        n_ranges: s.ranges.len(),
        ranges: s.ranges.iter().map(|r| [r.start, r.end]).collect(),
    };
    let human = format!(
        "payload {}: {} bytes\nreuse {} bytes from {}\nfetch {} bytes in {} ranges plus {} bytes of head and indexes = {} bytes ({:.1}% of a full install's {})\nchunks: {} local, {} from frames, {} whole",
        r.payload,
        r.image_bytes,
        r.reused_bytes,
        args.have.display(),
        r.range_bytes,
        r.n_ranges,
        r.metadata_bytes,
        r.fetched_bytes,
        100.0 * r.fetched_bytes as f64 / r.full_install_bytes.max(1) as f64,
        r.full_install_bytes,
        r.n_chunks_local,
        r.n_chunks_frames,
        r.n_chunks_whole
    );
    Ok(Output::report(&r, args.json, |_| human))
}
