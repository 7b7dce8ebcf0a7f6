//! `edge-image extract BUNDLE --payload NAME -o FILE --keyring DIR`: a verified streaming extract.

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;

use crate::cli::verify::open_source;
use crate::cli::Output;
use crate::error::Result;
use crate::wire::{ExtractReport, EXTRACT_SCHEMA};
use image_layout::fsutil::AtomicFile;
use image_layout::keys::Keyring;
use image_layout::reader::{decode_parallel, Policy, StreamReader};

/// Write one payload out, verified.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle (`-` for stdin).
    pub bundle: PathBuf,
    /// The payload to extract.
    #[arg(long, default_value = "rootfs")]
    pub payload: String,
    /// Output file (written to a temporary name and renamed when whole), or `-` for stdout.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Directory of trusted *.pub keys.
    #[arg(long)]
    pub keyring: PathBuf,
    /// Distinct trusted keys that must have signed.
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// fsync the output before renaming it into place (off by default, like `zstd -d`: an extracted file is a
    /// copy, not state; installs into a slot go through `edge-update`, which syncs and reads back).
    #[arg(long)]
    pub fsync: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

static ZEROS: [u8; 65536] = [0; 65536];

/// Runs `extract`.
pub fn run(args: Args) -> Result<Output> {
    let keyring = Keyring::load(&args.keyring)?;
    let policy = Policy::at(time::OffsetDateTime::now_utc(), args.threshold);
    let mut r = StreamReader::open(open_source(&args.bundle)?, &keyring, &policy)?;
    let (want, _) = r.verified().manifest.payload(&args.payload)?;
    let to_stdout = args.output.as_os_str() == "-";
    let mut file = if to_stdout { None } else { Some(AtomicFile::create(&args.output)?) };
    let out_name = args.output.display().to_string();
    // The library's variant: the writes happen inside its decoder.
    let werr = |source| image_layout::Error::WriteFile { path: args.output.clone(), source };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut written = 0u64;
    let mut stdout = std::io::stdout().lock();
    while let Some(pi) = r.next_payload()? {
        if pi != want {
            continue;
        }
        let p = r.payload(pi).clone();
        decode_parallel(
            &p,
            threads,
            || r.next_stored(),
            |_, raw| {
                written += raw.len() as u64;
                match file.as_mut() {
                    // Zero chunks become holes in a regular file, as `zstd -d` does; the length is set at the end.
                    Some(f) if raw.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()]) => {
                        f.file().seek(SeekFrom::Current(raw.len() as i64)).map_err(werr).map(|_| ())
                    }
                    Some(f) => f.file().write_all(&raw).map_err(werr),
                    None => stdout.write_all(&raw).map_err(werr),
                }
            },
        )?;
        break;
    }
    // A streamed extract stops after its payload: the rest (other payloads, delta sections) is not needed, and
    // every byte written was verified.
    match file {
        Some(mut f) => {
            f.file().set_len(written).map_err(werr)?;
            if args.fsync {
                f.commit()?;
            } else {
                f.commit_unsynced()?;
            }
        }
        None => stdout.flush().map_err(werr)?,
    }
    let report = ExtractReport {
        schema: EXTRACT_SCHEMA,
        payload: args.payload.clone(),
        size_bytes: written,
        output: out_name.clone(),
    };
    let human = format!("extracted {} ({} bytes) to {}", args.payload, written, out_name);
    Ok(Output::report(&report, args.json, |_| human))
}
