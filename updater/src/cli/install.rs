//! `edge-update install SOURCE`.

use image_layout::keys::Keyring;
use time::OffsetDateTime;

use crate::config::{Config, RebootMethod};
use crate::device::{Access, SlotFile};
use crate::error::{Error, Result};
use crate::fetch::{Fetch, FileFetch, PipeFetch};
use crate::http::{url_scheme, HttpFetch, HttpOptions};
use crate::install::{install, Options, Report};
use crate::run::Node;
use crate::wire::Progress;

use super::{open_node, Output};

/// `install` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle: a path (a file or a device, such as a USB stick), `-` for stdin, or an http(s) URL.
    pub source: String,
    /// Once flipped, ask `edge-init` to reboot into the new slot.
    #[arg(long, conflicts_with = "reboot_now")]
    pub reboot: bool,
    /// Once flipped, sync and reboot(2) at once, without `edge-init`.
    #[arg(long)]
    pub reboot_now: bool,
    /// Fetch every chunk; take nothing from the booted slot.
    #[arg(long)]
    pub full: bool,
    /// Progress and the result as JSON Lines on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Opens the source the operator named: `-` is stdin, anything shaped like a URL (`scheme://...`) must be http(s)
/// (any other scheme is a usage error, never a file path), and everything else is a path.
pub fn open_source(source: &str, http: HttpOptions) -> Result<Box<dyn Fetch>> {
    Ok(if source == "-" {
        Box::new(PipeFetch::new("-", std::io::stdin()))
    } else if url_scheme(source).is_some() {
        Box::new(
            HttpFetch::new(source, http)
                .map_err(|e| Error::OpenSource { source_name: source.to_owned(), source: Box::new(e) })?,
        )
    } else {
        Box::new(FileFetch::new(source.into()))
    })
}

/// Runs `install`.
pub fn run(config: &Config, args: Args) -> Result<Output> {
    let keyring =
        Keyring::load(&config.keyring).map_err(|source| Error::Keyring { path: config.keyring.clone(), source })?;
    let mut node = open_node(config)?;
    if args.reboot_now {
        node.reboot = RebootMethod::Syscall;
    } else if args.reboot {
        node.reboot = RebootMethod::Init;
    }
    // Once the node is open, every failure (a source that cannot be used, a target refused, the install itself) is
    // an install that failed, and goes to the event log with its causes.
    let result = install_from(config, &mut node, &keyring, &args);
    if let Err(e) = &result {
        node.emit("install-failed", &format!("install from {} failed: {}", args.source, with_causes(e)));
    }
    let report = result?;
    let text = if args.json {
        serde_json::json!({
            "result": "flipped",
            "target": report.target.to_string(),
            "version": report.bundle.version,
            "resumed_chunks": report.resumed_chunks,
            "n_chunks": report.n_chunks,
            "fetched_bytes": report.fetched_bytes,
            "reused_bytes": report.reused_bytes,
            "image_bytes": report.image_bytes,
            "reboot": report.outcome.reboot,
        })
        .to_string()
    } else {
        let mut s = format!(
            "slot {} holds {} {} (verified) and is active on trial; {} bytes fetched, {} reused, image {} bytes",
            report.target,
            report.bundle.name,
            report.bundle.version,
            report.fetched_bytes,
            report.reused_bytes,
            report.image_bytes
        );
        if report.resumed_chunks > 0 {
            s.push_str(&format!("; resumed at chunk {}/{}", report.resumed_chunks, report.n_chunks));
        }
        if !report.outcome.reboot {
            s.push_str("; reboot to try it");
        }
        s
    };
    Ok(Output { text })
}

/// Opens the target slot, the source and the booted slot, and installs.
fn install_from(config: &Config, node: &mut Node<'_>, keyring: &Keyring, args: &Args) -> Result<Report> {
    let target = crate::slots::resolve(config, node.booted.other())?;
    let mut dev = SlotFile::open(&target.path, Access::ReadWrite).map_err(|source| Error::OpenSlot {
        slot: target.slot,
        device: target.path.clone(),
        source,
    })?;
    let mut fetch = open_source(&args.source, config.http_options())?;
    // The booted slot, read only, for delta reuse; without it the install is simply full.
    let mut old = match crate::slots::resolve(config, node.booted).and_then(|b| {
        SlotFile::open(&b.path, Access::ReadOnly).map_err(|source| Error::OpenSlot {
            slot: b.slot,
            device: b.path,
            source,
        })
    }) {
        Ok(f) => Some(f),
        Err(e) => {
            log::warn!("no delta install: {e}");
            None
        }
    };
    let mut opts = Options::at(OffsetDateTime::now_utc());
    opts.reboot = args.reboot || args.reboot_now;
    opts.delta = !args.full;
    let bar = if args.json { None } else { image_layout::cli::progress_bar(0, "writing") };
    let mut last_stage = "";
    let json = args.json;
    let mut progress = |p: &Progress| {
        if json {
            println!("{}", serde_json::to_string(p).expect("progress serializes"));
        }
        if let Some(bar) = &bar {
            if p.stage != last_stage {
                bar.set_length(p.image_bytes);
                bar.reset();
                last_stage = p.stage;
            }
            bar.set_message(format!("{} ({} MiB reused)", p.stage, p.reused_bytes >> 20));
            bar.set_position(p.done_bytes);
        }
    };
    let old_dev = old.as_mut().map(|f| f as &mut dyn crate::device::SlotDevice);
    let result = install(node, keyring, &mut *fetch, &target, &mut dev, old_dev, &opts, &mut progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    result
}

/// An error and its causes on one line.
fn with_causes(e: &Error) -> String {
    let mut line = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
