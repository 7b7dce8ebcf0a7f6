//! `edge-update install SOURCE`.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use image_layout::keys::Keyring;
use indicatif::{BinaryBytes, ProgressBar, ProgressStyle};
use time::OffsetDateTime;

use updater::config::{Config, RebootMethod};
use updater::device::{Access, SlotFile};
use updater::error::{Error, Result};
use updater::fetch::{Fetch, FileFetch, PipeFetch};
use updater::http::{url_scheme, HttpFetch, HttpOptions};
use updater::install::{install, Options, Report};
use updater::run::Node;
use updater::wire::{InstallOutcome, InstallResult, Progress, Stage, RESULT_SCHEMA};

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
    /// Stop once the slot is verified, and hold it for `edge-update flip` (docs/updater.md, "Held installs").
    #[arg(long, conflicts_with_all = ["reboot", "reboot_now"])]
    pub no_flip: bool,
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
    // From here on a stop signal is an interrupted install, recorded as such before the process ends.
    let stop = updater::run::record_stop_signals(config, &args.source)
        .map_err(|e| log::warn!("stop signals will not be recorded: {e}"))
        .ok();
    // Once the node is open, every failure (a source that cannot be used, a target refused, the install itself) is
    // an install that failed, and goes to the event log with its causes.
    let result = install_from(config, &mut node, &keyring, &args);
    if let Some(stop) = stop {
        stop.close();
    }
    if let Err(e) = &result {
        node.emit_install_failed(&args.source, e);
    }
    let report = result?;
    if let Some(reason) = &report.outcome.reboot_error {
        log::warn!("slot {} is flipped, but the reboot could not be requested: {reason}", report.target);
    }
    Ok(if args.json {
        let result = InstallResult {
            schema: RESULT_SCHEMA,
            result: if report.flipped { InstallOutcome::Flipped } else { InstallOutcome::Verified },
            target: report.target.to_string(),
            bundle: report.bundle.clone(),
            resumed_chunks: report.resumed_chunks,
            n_chunks: report.n_chunks,
            fetched_bytes: report.fetched_bytes,
            reused_bytes: report.reused_bytes,
            image_bytes: report.image_bytes,
            reboot: report.outcome.reboot,
            reboot_error: report.outcome.reboot_error.clone(),
        };
        Output::json_line(&result)
    } else {
        let how = if report.flipped { "(verified) and is active on trial" } else { "(verified), held" };
        let mut s = format!(
            "slot {} holds {} {} {how}; {} bytes fetched, {} reused, image {} bytes",
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
        if !report.flipped {
            s.push_str("; edge-update flip makes it active on trial");
        } else if let Some(reason) = &report.outcome.reboot_error {
            s.push_str(&format!("; the reboot could not be requested ({reason}): reboot to try it"));
        } else if !report.outcome.reboot {
            s.push_str("; reboot to try it");
        }
        Output::text(s)
    })
}

/// Opens the target slot, the source and the booted slot, and installs.
fn install_from(config: &Config, node: &mut Node<'_>, keyring: &Keyring, args: &Args) -> Result<Report> {
    let target = updater::slots::resolve(config, node.booted.other())?;
    let mut dev = SlotFile::open(&target.path, Access::ReadWrite).map_err(|source| Error::OpenSlot {
        slot: target.slot,
        device: target.path.clone(),
        source,
    })?;
    let mut fetch = open_source(&args.source, config.http_options())?;
    // The booted slot, read only, for delta reuse; without it the install is simply full.
    let mut old = match updater::slots::resolve(config, node.booted).and_then(|b| {
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
    opts.flip = !args.no_flip;
    let json = args.json;
    let mut bar = if json { None } else { Bar::on_terminal() };
    let mut last_line: Option<Progress> = None;
    let mut progress = |p: &Progress| {
        // Progress lines are synced progress, each once (a final sync with nothing new repeats the last one).
        if json && p.synced && last_line.as_ref() != Some(p) {
            println!("{}", cliout::to_json_line(p));
            last_line = Some(*p);
        }
        if let Some(bar) = bar.as_mut() {
            bar.show(p);
        }
    };
    let old_dev = old.as_mut().map(|f| f as &mut dyn updater::device::SlotDevice);
    let result = install(node, keyring, &mut *fetch, &target, &mut dev, old_dev, &opts, &mut progress);
    if let Some(bar) = bar {
        bar.finish();
    }
    result
}

/// The progress bar on a terminal: bytes on the slot against the payload's size, and the source's own rate (bytes
/// fetched per second over the last few seconds): blocks taken from the booted slot or already on the slot move
/// the bar without being a transfer rate.
struct Bar {
    bar: Option<ProgressBar>,
    /// The stage the bar shows; none before the first progress.
    stage: Option<Stage>,
    /// (when, bytes fetched then), the last few seconds of them.
    samples: VecDeque<(Instant, u64)>,
}

/// The window the source's rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(5);

impl Bar {
    /// A bar when stderr is a terminal; none otherwise.
    fn on_terminal() -> Option<Bar> {
        std::io::stderr().is_terminal().then(|| Bar { bar: None, stage: None, samples: VecDeque::new() })
    }

    fn show(&mut self, p: &Progress) {
        let now = Instant::now();
        if Some(p.stage) != self.stage {
            // A new stage (or the first progress) starts a new bar at where the slot already is, so bytes done by
            // an earlier run or in an earlier stage are not counted as speed.
            if let Some(old) = self.bar.take() {
                old.finish_and_clear();
            }
            let bar = ProgressBar::new(p.image_bytes);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {eta}")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar.set_position(p.done_bytes);
            bar.reset_eta();
            self.bar = Some(bar);
            self.stage = Some(p.stage);
            self.samples.clear();
        }
        self.samples.push_back((now, p.fetched_bytes));
        while self.samples.len() > 2 && self.samples.front().is_some_and(|s| now - s.0 > RATE_WINDOW) {
            self.samples.pop_front();
        }
        let rate = match (self.samples.front(), self.samples.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 / (b.0 - a.0).as_secs_f64(),
            _ => 0.0,
        };
        if let Some(bar) = &self.bar {
            let mut msg = p.stage.word().to_owned();
            if p.stage == Stage::Writing {
                msg.push_str(&format!(", fetching {}/s", BinaryBytes(rate as u64)));
                if p.reused_bytes > 0 {
                    msg.push_str(&format!(", {} reused", BinaryBytes(p.reused_bytes)));
                }
            }
            bar.set_message(msg);
            bar.set_position(p.done_bytes);
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
