//! `edge-image disk LAYOUT -o DISK`: a flashable GPT disk image from a layout file and bundles; docs/disk-image.md.

use std::fmt::Write;
use std::path::PathBuf;

use crate::cli::Output;
use crate::disk::layout::Layout;
use crate::error::Result;
use crate::wire::DiskReport;

/// Build a disk image.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The layout file (TOML); relative paths in it are relative to its directory.
    pub layout: PathBuf,
    /// The disk image to write (to a temporary name beside it, renamed when whole).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// fsync the image before renaming it into place (off by default, as for `extract`: the image is a copy).
    #[arg(long)]
    pub fsync: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `disk`.
pub fn run(args: Args) -> Result<Output> {
    let layout = Layout::load(&args.layout)?;
    let report = crate::disk::build(&layout, &args.output, time::OffsetDateTime::now_utc(), args.fsync)?;
    Ok(Output::report(&report, args.json, human))
}

/// The text form of a disk report.
pub fn human(r: &DiskReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "wrote {}: {} bytes ({} MiB), disk GUID {}",
        r.output,
        r.size_bytes,
        r.size_bytes >> 20,
        r.disk_guid
    );
    for p in &r.partitions {
        let what = match (&p.filesystem, &p.bundle) {
            (_, Some(b)) => format!(
                "{} {} (payload {}, {} bytes, manifest blake3 {})",
                b.name, b.version, b.payload, b.payload_bytes, b.manifest_blake3
            ),
            (Some(fs), None) => fs.clone(),
            (None, None) => "zeros".to_owned(),
        };
        let _ = writeln!(
            s,
            "  {} {:<12} sectors {}..={} ({} MiB): {what}",
            p.number,
            p.label,
            p.first_lba,
            p.last_lba,
            p.size_bytes >> 20
        );
    }
    s.trim_end().to_owned()
}
