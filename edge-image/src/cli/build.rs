//! `edge-image build`: stream payload files into a signed bundle.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::cli::{inspect_human, inspect_report, parse_size, progress_bar, Output};
use crate::error::{Error, Result};
use image_layout::keys::SecretKey;
use image_layout::manifest::{check_payload_name, parse_time};
use image_layout::writer::{self, BuildOptions, PayloadInput};

/// Build a signed bundle.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A payload as NAME=FILE (repeatable): a regular file or a block device; a slot image is conventionally
    /// `rootfs`.
    #[arg(long = "payload", value_name = "NAME=FILE", required = true, value_parser = parse_payload)]
    pub payloads: Vec<PayloadArg>,
    /// The stack version.
    #[arg(long)]
    pub version: String,
    /// The anti-rollback counter (nodes refuse a lower one than they run).
    #[arg(long)]
    pub security_version: u64,
    /// The board string nodes must match.
    #[arg(long)]
    pub compatible: String,
    /// Expiry time (RFC 3339); verifiers refuse the bundle after it.
    #[arg(long)]
    pub expires: Option<String>,
    /// Creation time written into the manifest (RFC 3339); defaults to now, or SOURCE_DATE_EPOCH when set.
    #[arg(long)]
    pub created: Option<String>,
    /// The bundle's name.
    #[arg(long, default_value = "edge-stack")]
    pub name: String,
    /// Chunk size (unit of full installs and verification), e.g. 1M.
    #[arg(long, value_parser = parse_size, default_value = "1M")]
    pub chunk_size: u32,
    /// Delta frame size (unit of delta fetches), a multiple of 4K dividing the chunk size.
    #[arg(long, value_parser = parse_size, default_value = "8K")]
    pub frame_size: u32,
    /// zstd level of the chunks.
    #[arg(long, default_value_t = writer::DEFAULT_LEVEL, allow_hyphen_values = true)]
    pub level: i32,
    /// zstd level of the delta frames.
    #[arg(long, default_value_t = writer::DEFAULT_DELTA_LEVEL, allow_hyphen_values = true)]
    pub delta_level: i32,
    /// A JSON object describing the stack (components and versions), copied into the manifest.
    #[arg(long, value_name = "FILE.json")]
    pub stack_info: Option<PathBuf>,
    /// A secret key to sign with (repeatable).
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Where to write the bundle (atomically).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Seconds since the epoch to use as the creation time when --created is absent (main passes SOURCE_DATE_EPOCH).
    #[arg(skip)]
    pub source_date_epoch: Option<i64>,
}

/// One `--payload NAME=FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadArg {
    /// The payload's name in the manifest.
    pub name: String,
    /// The file or block device to read it from.
    pub path: PathBuf,
}

/// Splits `NAME=FILE` at its first `=`; a spec without one, with an empty side, or with a name the manifest would
/// refuse ([`check_payload_name`]) is a usage error (exit 2), found before any payload is read.
pub fn parse_payload(spec: &str) -> std::result::Result<PayloadArg, String> {
    match spec.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            check_payload_name(name).map_err(|detail| format!("payload name {detail}"))?;
            Ok(PayloadArg { name: name.to_owned(), path: PathBuf::from(path) })
        }
        Some(_) => Err(format!("{spec:?} has an empty name or file, expected NAME=FILE such as rootfs=rootfs.img")),
        None => Err(format!("{spec:?} has no '=', expected NAME=FILE such as rootfs=rootfs.img")),
    }
}

fn time_arg(what: &'static str, s: &str) -> Result<OffsetDateTime> {
    parse_time(s).ok_or_else(|| Error::InvalidArgument { what, detail: format!("{s:?} is not an RFC 3339 time") })
}

/// Runs `build`.
pub fn run(args: Args) -> Result<Output> {
    // The manifest refuses a name given twice too, but only once every payload has been read.
    for (i, p) in args.payloads.iter().enumerate() {
        if args.payloads[..i].iter().any(|q| q.name == p.name) {
            let detail = format!("payload name {:?} given twice", p.name);
            return Err(Error::InvalidArgument { what: "--payload", detail });
        }
    }
    let created = match (&args.created, args.source_date_epoch) {
        (Some(s), _) => time_arg("--created", s)?,
        (None, Some(epoch)) => OffsetDateTime::from_unix_timestamp(epoch).map_err(|_| Error::InvalidArgument {
            what: "SOURCE_DATE_EPOCH",
            detail: format!("{epoch} out of range"),
        })?,
        (None, None) => OffsetDateTime::now_utc().replace_nanosecond(0).expect("0 is a valid nanosecond"),
    };
    let mut opts = BuildOptions::new(&args.version, args.security_version, &args.compatible, created);
    opts.name = args.name.clone();
    opts.expires = args.expires.as_deref().map(|s| time_arg("--expires", s)).transpose()?;
    opts.chunk_size = args.chunk_size;
    opts.frame_size = args.frame_size;
    opts.level = args.level;
    opts.delta_level = args.delta_level;
    opts.threads = args.threads;
    if let Some(path) = &args.stack_info {
        // The stack goes into the manifest, so a file larger than a manifest can be cannot be a valid one.
        let text = image_layout::fsutil::read_bounded(path, u64::from(image_layout::format::MAX_MANIFEST_LEN))?;
        opts.stack = serde_json::from_slice(&text)
            .map_err(|e| Error::InvalidArgument { what: "--stack-info", detail: format!("{}: {e}", path.display()) })?;
    }
    let keys = args.keys.iter().map(|k| SecretKey::load(k)).collect::<image_layout::Result<Vec<_>>>()?;
    let mut inputs = Vec::new();
    let mut total = 0u64;
    for PayloadArg { name, path } in &args.payloads {
        let (file, size_bytes) = image_layout::fsutil::open_image(path)?;
        total += size_bytes;
        // No more than the size known at the start is read, so a file that grows meanwhile still ends.
        let reader = BufReader::with_capacity(1 << 20, file.take(size_bytes));
        inputs.push(PayloadInput { name: name.clone(), reader: Box::new(reader), path: path.clone() });
    }
    let pb = progress_bar(total, "build");
    let report = writer::build(&opts, inputs, &keys, &args.output, &|n| {
        if let Some(pb) = &pb {
            pb.set_position(n);
        }
    })?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let mut f = File::open(&args.output).map_err(|source| Error::ReadFile { path: args.output.clone(), source })?;
    let head = image_layout::reader::Head::read(&mut f)?;
    let r = inspect_report(crate::wire::BUILD_SCHEMA, &head, &report.manifest, None);
    let human = format!("wrote {}\n{}", args.output.display(), inspect_human(&r));
    Ok(Output::report(&r, args.json, |_| human))
}
