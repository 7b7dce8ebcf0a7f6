//! The `edge-image` command line: one module per subcommand, each with an `Args` struct and a `run` that returns a
//! report; `main.rs` only parses, prints and maps errors to exit codes.

use std::io::IsTerminal;

use crate::error::Result;
use clap::{Parser, Subcommand};

pub mod build;
pub mod delta_plan;
pub mod disk;
pub mod extract;
pub mod inspect;
pub mod keygen;
pub mod sign;
pub mod verify;

/// Build, sign, inspect, verify and extract edge-image bundles, and build disk images from them.
#[derive(Debug, Parser)]
#[command(name = "edge-image", version, about)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make an ed25519 key pair: NAME.key (0600) and NAME.pub.
    Keygen(keygen::Args),
    /// Build a signed bundle from payload files.
    Build(build::Args),
    /// Verify a bundle completely: signatures, every index, every chunk and every delta frame.
    Verify(verify::Args),
    /// Show a bundle's manifest, payloads, sizes and signers.
    Inspect(inspect::Args),
    /// Write one payload out, verified chunk by chunk; BUNDLE may be `-` for stdin.
    Extract(extract::Args),
    /// Add a signature to a bundle without rebuilding it.
    Sign(sign::Args),
    /// Show what a node holding OLD_IMAGE would fetch and reuse to install BUNDLE.
    DeltaPlan(delta_plan::Args),
    /// Build a flashable GPT disk image (ESP, slots A and B, data) from a layout file and bundles.
    Disk(disk::Args),
}

pub use cliout::Output;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<Output> {
    match cli.command {
        Command::Keygen(a) => keygen::run(a),
        Command::Build(a) => build::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Extract(a) => extract::run(a),
        Command::Sign(a) => sign::run(a),
        Command::DeltaPlan(a) => delta_plan::run(a),
        Command::Disk(a) => disk::run(a),
    }
}

/// A progress bar on stderr when it is a terminal, nothing otherwise.
pub fn progress_bar(total: u64, what: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    Some(pb)
}

/// A size argument (`--chunk-size 64K`) in the one size syntax ([`crate::size`]), which must fit a `u32`.
pub fn parse_size(s: &str) -> std::result::Result<u32, String> {
    let n = crate::size::parse(s)?;
    u32::try_from(n).map_err(|_| format!("{s} is too large"))
}

/// The report of a bundle's head for `inspect` and `build`, under `schema` ([`crate::wire::INSPECT_SCHEMA`] or
/// [`crate::wire::BUILD_SCHEMA`]).
pub fn inspect_report(
    schema: &'static str,
    head: &image_layout::reader::Head,
    manifest: &image_layout::manifest::Manifest,
    keyring: Option<&image_layout::keys::Keyring>,
) -> crate::wire::InspectReport {
    use crate::wire::{InspectReport, PayloadReport, SignerReport, SignerState};
    let signers = match keyring {
        Some(k) => head
            .signers(k)
            .iter()
            .map(|c| SignerReport { key_id: c.key_id.to_string(), status: c.status.into() })
            .collect(),
        None => head
            .signatures
            .iter()
            .map(|s| SignerReport { key_id: image_layout::format::to_hex(&s.key_id), status: SignerState::Unchecked })
            .collect(),
    };
    let payloads = manifest
        .payloads
        .iter()
        .map(|p| PayloadReport {
            name: p.name.clone(),
            size_bytes: p.size_bytes,
            chunk_size: p.chunk_size,
            n_chunks: p.n_chunks(),
            block_size: p.block_size,
            frame_size: p.frame_size,
            chunks_bytes: p.chunks.size_bytes,
            delta_bytes: p.delta_index.size_bytes + p.frames.size_bytes,
            compression_ratio: p.size_bytes as f64 / (p.chunks.size_bytes.max(1)) as f64,
        })
        .collect();
    let body_start = head.header.body_start();
    InspectReport {
        schema,
        bundle_bytes: body_start + manifest.body_len(),
        full_install_bytes: body_start + manifest.full_install_body_len(),
        manifest_blake3: image_layout::format::to_hex(blake3::hash(&head.manifest_bytes).as_bytes()),
        manifest: manifest.clone(),
        payloads,
        signers,
    }
}

/// The text form of an inspect report.
pub fn inspect_human(r: &crate::wire::InspectReport) -> String {
    use std::fmt::Write;
    let m = &r.manifest;
    let mut s = String::new();
    let _ = writeln!(s, "bundle:            {} {}", m.name, m.version);
    let _ = writeln!(s, "security version:  {}", m.security_version);
    let _ = writeln!(s, "compatible:        {}", m.compatible);
    let _ = writeln!(s, "created:           {}", m.created);
    let _ = writeln!(s, "expires:           {}", m.expires.as_deref().unwrap_or("never"));
    let _ = writeln!(s, "manifest blake3:   {}", r.manifest_blake3);
    let _ =
        writeln!(s, "bundle size:       {} bytes ({} read by a full install)", r.bundle_bytes, r.full_install_bytes);
    let _ = writeln!(
        s,
        "compression:       zstd level {}, delta frames level {}",
        m.compression.level, m.compression.delta_level
    );
    if let Some(obj) = m.stack.as_object() {
        let _ = writeln!(s, "stack:");
        for (k, v) in obj {
            let _ = writeln!(s, "  {k}: {}", v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
        }
    }
    let _ = writeln!(s, "payloads:");
    for p in &r.payloads {
        let _ = writeln!(
            s,
            "  {}: {} bytes, {} chunks of {}, stored {} (ratio {:.2}), delta section {} bytes",
            p.name, p.size_bytes, p.n_chunks, p.chunk_size, p.chunks_bytes, p.compression_ratio, p.delta_bytes
        );
    }
    let _ = writeln!(s, "signatures:");
    for g in &r.signers {
        let _ = writeln!(s, "  {}: {}", g.key_id, g.status);
    }
    s.trim_end().to_owned()
}
