//! Building a bundle: stream each payload once, hash and compress its chunks and delta frames on every core, spool
//! them, then write header, manifest, signatures and body into a temporary file that is synced and renamed.
//!
//! Also adds a signature to an existing bundle without touching its body (threshold signing).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::format::{
    chunk_hash, fingerprint, to_hex, Header, IndexEntry, SignatureRecord, FORMAT_VERSION, MAX_SIGNATURES,
};
use crate::keys::SecretKey;
use crate::manifest::{format_time, Algorithm, Area, Compression, Manifest, Payload, Section};
use crate::reader::Head;

/// Default chunk size: 1 MiB; docs/bundle-format.md, "Measurements".
pub const DEFAULT_CHUNK_SIZE: u32 = 1 << 20;
/// Default and only block size the CLI offers: 4 KiB, the ext4 block.
pub const DEFAULT_BLOCK_SIZE: u32 = 4096;
/// Default delta frame size; docs/bundle-format.md, "Measurements".
pub const DEFAULT_FRAME_SIZE: u32 = 8192;
/// Default zstd level of the chunks.
pub const DEFAULT_LEVEL: i32 = 3;
/// Default zstd level of the delta frames; docs/bundle-format.md, "Measurements".
pub const DEFAULT_DELTA_LEVEL: i32 = 1;

static ZEROS: [u8; 65536] = [0; 65536];

/// What goes into the manifest besides the payloads, and how to cut and compress.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Bundle name.
    pub name: String,
    /// Stack version.
    pub version: String,
    /// Anti-rollback counter.
    pub security_version: u64,
    /// Board string.
    pub compatible: String,
    /// Creation time written into the manifest.
    pub created: OffsetDateTime,
    /// Optional expiry.
    pub expires: Option<OffsetDateTime>,
    /// Stack description (a JSON object, or null).
    pub stack: serde_json::Value,
    /// Block size (fingerprint granularity).
    pub block_size: u32,
    /// Chunk size.
    pub chunk_size: u32,
    /// Delta frame size.
    pub frame_size: u32,
    /// zstd level of chunks.
    pub level: i32,
    /// zstd level of delta frames.
    pub delta_level: i32,
    /// Worker threads (0: one per core).
    pub threads: usize,
}

impl BuildOptions {
    /// Options with the documented defaults and the given identity.
    pub fn new(version: &str, security_version: u64, compatible: &str, created: OffsetDateTime) -> BuildOptions {
        BuildOptions {
            name: "edge-stack".to_owned(),
            version: version.to_owned(),
            security_version,
            compatible: compatible.to_owned(),
            created,
            expires: None,
            stack: serde_json::Value::Null,
            block_size: DEFAULT_BLOCK_SIZE,
            chunk_size: DEFAULT_CHUNK_SIZE,
            frame_size: DEFAULT_FRAME_SIZE,
            level: DEFAULT_LEVEL,
            delta_level: DEFAULT_DELTA_LEVEL,
            threads: 0,
        }
    }
}

/// One payload to put in the bundle.
pub struct PayloadInput {
    /// Its name.
    pub name: String,
    /// Where its bytes come from (read once, front to back).
    pub reader: Box<dyn Read + Send>,
    /// For error messages.
    pub path: PathBuf,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The manifest written.
    pub manifest: Manifest,
    /// Size of the bundle file.
    pub bundle_size: u64,
}

struct Spool {
    file: BufWriter<File>,
    len: u64,
    path: PathBuf,
}

impl Spool {
    /// An unlinked temporary file next to the output (so the final copy stays on one filesystem).
    fn new(dir: &Path, tag: &str) -> Result<Spool> {
        let path = dir.join(format!(".edge-image-spool-{}-{tag}", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|source| Error::WriteFile { path: path.clone(), source })?;
        // Unlinked at once, so that a crash leaves nothing behind; if the unlink fails the file is only a stray.
        let _ = fs::remove_file(&path);
        Ok(Spool { file: BufWriter::with_capacity(1 << 20, file), len: 0, path })
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.file.write_all(b).map_err(|source| Error::WriteFile { path: self.path.clone(), source })?;
        self.len += b.len() as u64;
        Ok(())
    }

    fn copy_into(self, out: &mut File, out_path: &Path) -> Result<()> {
        let path = self.path.clone();
        let mut f =
            self.file.into_inner().map_err(|e| Error::WriteFile { path: path.clone(), source: e.into_error() })?;
        f.seek(SeekFrom::Start(0)).map_err(|source| Error::ReadFile { path: path.clone(), source })?;
        // io::copy between two files uses copy_file_range(2), so the body is not pulled through user space.
        let n = io::copy(&mut f, out).map_err(|source| Error::WriteFile { path: out_path.to_owned(), source })?;
        if n != self.len {
            return Err(Error::WriteFile {
                path,
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "spool shrank"),
            });
        }
        Ok(())
    }
}

/// The workers' shared end of the job queue: (chunk index, raw bytes).
type SharedJobs = Arc<Mutex<Receiver<(u64, Vec<u8>)>>>;

struct ChunkOut {
    idx: u64,
    raw_size: u32,
    raw_hash: [u8; 32],
    stored_hash: [u8; 32],
    fingerprints: Vec<u64>,
    stored: Vec<u8>,
    frames: Vec<Vec<u8>>,
}

struct Built {
    name: String,
    size_bytes: u64,
    index: Vec<u8>,
    chunks: Spool,
    delta_index_raw: Vec<u8>,
    frames: Spool,
}

fn is_zero(b: &[u8]) -> bool {
    b.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

/// Hashes, fingerprints and compresses one chunk; runs on a worker thread.
fn process_chunk(
    idx: u64,
    raw: &[u8],
    opts: &BuildOptions,
    main: &mut zstd::bulk::Compressor<'static>,
    delta: &mut zstd::bulk::Compressor<'static>,
    payload: &str,
) -> Result<ChunkOut> {
    let bs = opts.block_size as usize;
    let mut zero_blocks = Vec::with_capacity(raw.len().div_ceil(bs));
    let mut fingerprints = Vec::with_capacity(raw.len().div_ceil(bs));
    for block in raw.chunks(bs) {
        zero_blocks.push(is_zero(block));
        fingerprints.push(fingerprint(block));
    }
    let raw_hash = chunk_hash(raw);
    let cerr = |source| Error::Compress { payload: payload.to_owned(), chunk_idx: idx, source };
    let all_zero = zero_blocks.iter().all(|z| *z);
    let stored = if all_zero { Vec::new() } else { main.compress(raw).map_err(cerr)? };
    let per_frame = (opts.frame_size / opts.block_size) as usize;
    let mut frames = Vec::with_capacity(raw.len().div_ceil(opts.frame_size as usize));
    for (f, frame) in raw.chunks(opts.frame_size as usize).enumerate() {
        let zero = zero_blocks[f * per_frame..].iter().take(per_frame).all(|z| *z);
        frames.push(if zero { Vec::new() } else { delta.compress(frame).map_err(cerr)? });
    }
    let stored_hash = *blake3::hash(&stored).as_bytes();
    Ok(ChunkOut { idx, raw_size: raw.len() as u32, raw_hash, stored_hash, fingerprints, stored, frames })
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn build_payload(
    input: PayloadInput,
    opts: &BuildOptions,
    threads: usize,
    dir: &Path,
    tag: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Built> {
    let PayloadInput { name, mut reader, path } = input;
    let mut chunks = Spool::new(dir, &format!("{tag}-chunks"))?;
    let mut frames = Spool::new(dir, &format!("{tag}-frames"))?;
    let mut index = Vec::new();
    let mut fingerprints: Vec<u8> = Vec::new();
    let mut frame_sizes: Vec<u8> = Vec::new();
    let mut size_bytes = 0u64;

    let (job_tx, job_rx) = sync_channel::<(u64, Vec<u8>)>(threads);
    let job_rx: SharedJobs = Arc::new(Mutex::new(job_rx));
    let (res_tx, res_rx) = sync_channel::<Result<ChunkOut>>(threads * 2);
    // Chunk buffers circulate between the reader and the workers instead of being allocated per chunk: fresh
    // allocations of this size cost a page fault per page.
    let (buf_tx, buf_rx) = sync_channel::<Vec<u8>>(threads * 4);

    std::thread::scope(|s| -> Result<()> {
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let res_tx = res_tx.clone();
            let buf_tx = buf_tx.clone();
            let name = name.as_str();
            s.spawn(move || {
                let mut main = zstd::bulk::Compressor::new(opts.level).expect("zstd accepts every level in range");
                let mut delta =
                    zstd::bulk::Compressor::new(opts.delta_level).expect("zstd accepts every level in range");
                loop {
                    let job = job_rx.lock().expect("no worker panics while holding the lock").recv();
                    let Ok((idx, raw)) = job else { break };
                    let out = process_chunk(idx, &raw, opts, &mut main, &mut delta, name);
                    let _ = buf_tx.try_send(raw);
                    if res_tx.send(out).is_err() {
                        break;
                    }
                }
            });
        }
        drop(res_tx);
        drop(buf_tx);
        let chunk_size = opts.chunk_size as usize;
        let reader_thread = s.spawn(move || -> Result<u64> {
            let mut total = 0u64;
            for idx in 0.. {
                let mut buf = buf_rx.try_recv().unwrap_or_default();
                buf.resize(chunk_size, 0);
                let n = read_full(&mut *reader, &mut buf)
                    .map_err(|source| Error::ReadFile { path: path.clone(), source })?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                total += n as u64;
                progress(total);
                if job_tx.send((idx, buf)).is_err() {
                    break;
                }
                if n < chunk_size {
                    break;
                }
            }
            Ok(total)
        });

        // Collect in chunk order; results arrive out of order from the workers.
        let mut pending = std::collections::BTreeMap::new();
        let mut next = 0u64;
        let mut offset = 0u64;
        let mut first_err = None;
        for out in res_rx.iter() {
            let out = match out {
                Ok(o) => o,
                Err(e) => {
                    first_err.get_or_insert(e);
                    break;
                }
            };
            pending.insert(out.idx, out);
            while let Some(out) = pending.remove(&next) {
                IndexEntry {
                    offset,
                    stored_size: out.stored.len() as u32,
                    raw_size: out.raw_size,
                    raw_hash: out.raw_hash,
                    stored_hash: out.stored_hash,
                }
                .encode(&mut index);
                offset += out.stored.len() as u64;
                chunks.write(&out.stored)?;
                for fp in &out.fingerprints {
                    fingerprints.extend_from_slice(&fp.to_le_bytes());
                }
                for f in &out.frames {
                    frame_sizes.extend_from_slice(&(f.len() as u32).to_le_bytes());
                    frames.write(f)?;
                }
                next += 1;
            }
        }
        drop(res_rx);
        // The reader's error, if any, is the root cause; report it before a worker's.
        let read = reader_thread.join().expect("the reader thread does not panic");
        size_bytes = read?;
        if let Some(e) = first_err {
            return Err(e);
        }
        Ok(())
    })?;
    if size_bytes == 0 {
        return Err(Error::InvalidArgument { what: "payload", detail: format!("{name} is empty") });
    }
    let mut delta_index_raw = fingerprints;
    delta_index_raw.extend_from_slice(&frame_sizes);
    Ok(Built { name, size_bytes, index, chunks, delta_index_raw, frames })
}

fn validate_options(opts: &BuildOptions) -> Result<()> {
    let bad = |what, detail: String| Err(Error::InvalidArgument { what, detail });
    if !crate::format::BLOCK_SIZE_RANGE.contains(&opts.block_size) || !opts.block_size.is_power_of_two() {
        return bad("block size", format!("{} is not a power of two in 512..=65536", opts.block_size));
    }
    if !crate::format::CHUNK_SIZE_RANGE.contains(&opts.chunk_size) || !opts.chunk_size.is_multiple_of(opts.block_size) {
        return bad(
            "chunk size",
            format!("{} out of range 4096..=67108864 or not a multiple of {}", opts.chunk_size, opts.block_size),
        );
    }
    if !opts.frame_size.is_multiple_of(opts.block_size)
        || opts.frame_size == 0
        || !opts.chunk_size.is_multiple_of(opts.frame_size)
    {
        return bad(
            "frame size",
            format!("{} is not a multiple of the block size dividing the chunk size", opts.frame_size),
        );
    }
    let levels = zstd::compression_level_range();
    for (what, l) in [("level", opts.level), ("delta level", opts.delta_level)] {
        if !levels.contains(&l) {
            return bad(what, format!("{l} out of range {}..={}", levels.start(), levels.end()));
        }
    }
    if !opts.stack.is_null() && !opts.stack.is_object() {
        return bad("stack info", "must be a JSON object".to_owned());
    }
    Ok(())
}

/// Builds a bundle at `out` from the payloads, signed by every key; `progress` gets the bytes read so far.
pub fn build(
    opts: &BuildOptions,
    payloads: Vec<PayloadInput>,
    keys: &[SecretKey],
    out: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<BuildReport> {
    validate_options(opts)?;
    if keys.is_empty() || keys.len() > MAX_SIGNATURES as usize {
        return Err(Error::InvalidArgument { what: "keys", detail: format!("{} keys, expected 1..=32", keys.len()) });
    }
    if payloads.is_empty() {
        return Err(Error::InvalidArgument { what: "payloads", detail: "at least one --payload is needed".to_owned() });
    }
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        opts.threads
    };
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut built = Vec::new();
    let mut done_before = 0u64;
    for (tag, p) in payloads.into_iter().enumerate() {
        let before = done_before;
        let b = build_payload(p, opts, threads, &dir, tag, &|n| progress(before + n))?;
        done_before += b.size_bytes;
        built.push(b);
    }

    // Lay out the body: every chunk index and chunk area first (all a full install reads), then the delta sections.
    let mut payloads_meta = Vec::new();
    let mut delta_stored = Vec::new();
    let mut offset = 0u64;
    for b in &built {
        let index =
            Section { offset, size_bytes: b.index.len() as u64, blake3: to_hex(blake3::hash(&b.index).as_bytes()) };
        offset += index.size_bytes;
        let chunks = Area { offset, size_bytes: b.chunks.len };
        offset += chunks.size_bytes;
        payloads_meta.push((index, chunks));
    }
    let mut metas = Vec::new();
    for (b, (index, chunks)) in built.iter().zip(payloads_meta) {
        let stored = zstd::bulk::compress(&b.delta_index_raw, 3).map_err(|source| Error::Compress {
            payload: b.name.clone(),
            chunk_idx: 0,
            source,
        })?;
        let delta_index =
            Section { offset, size_bytes: stored.len() as u64, blake3: to_hex(blake3::hash(&stored).as_bytes()) };
        offset += delta_index.size_bytes;
        let frames = Area { offset, size_bytes: b.frames.len };
        offset += frames.size_bytes;
        delta_stored.push(stored);
        metas.push(Payload {
            name: b.name.clone(),
            size_bytes: b.size_bytes,
            block_size: opts.block_size,
            chunk_size: opts.chunk_size,
            frame_size: opts.frame_size,
            index,
            chunks,
            delta_index,
            frames,
        });
    }
    let manifest = Manifest {
        format: FORMAT_VERSION,
        name: opts.name.clone(),
        version: opts.version.clone(),
        security_version: opts.security_version,
        compatible: opts.compatible.clone(),
        created: format_time(opts.created),
        expires: opts.expires.map(format_time),
        stack: opts.stack.clone(),
        compression: Compression { algorithm: Algorithm::Zstd, level: opts.level, delta_level: opts.delta_level },
        payloads: metas,
    };
    manifest.validate()?;
    let manifest_bytes = manifest.to_bytes();
    let signatures: Vec<SignatureRecord> = keys.iter().map(|k| k.sign_manifest(&manifest_bytes)).collect();

    let mut file = crate::fsutil::AtomicFile::create(out)?;
    let tmp = file.tmp_path().to_owned();
    let werr = |source| Error::WriteFile { path: tmp.clone(), source };
    write_head(file.file(), &manifest_bytes, &signatures).map_err(werr)?;
    let mut frames_spools = Vec::new();
    for b in built {
        file.file().write_all(&b.index).map_err(werr)?;
        b.chunks.copy_into(file.file(), &tmp)?;
        frames_spools.push(b.frames);
    }
    for (stored, frames) in delta_stored.iter().zip(frames_spools) {
        file.file().write_all(stored).map_err(werr)?;
        frames.copy_into(file.file(), &tmp)?;
    }
    let bundle_size = Header { manifest_len: manifest_bytes.len() as u32, n_signatures: signatures.len() as u32 }
        .body_start()
        + manifest.body_len();
    file.commit()?;
    Ok(BuildReport { manifest, bundle_size })
}

/// Writes the header, the manifest bytes and the signature records.
pub fn write_head(w: &mut impl Write, manifest: &[u8], signatures: &[SignatureRecord]) -> io::Result<()> {
    let header = Header { manifest_len: manifest.len() as u32, n_signatures: signatures.len() as u32 };
    w.write_all(&header.encode())?;
    w.write_all(manifest)?;
    for s in signatures {
        w.write_all(&s.encode())?;
    }
    Ok(())
}

/// Adds `key`'s signature to the bundle at `path` (replacing an earlier one by the same key), leaving the manifest
/// and body unchanged; the file is rewritten atomically. Returns the number of signatures now on it.
pub fn add_signature(path: &Path, key: &SecretKey) -> Result<usize> {
    let mut src = File::open(path).map_err(|source| Error::ReadFile { path: path.to_owned(), source })?;
    let head = Head::read(&mut src)?;
    // The manifest must at least parse, so that nobody signs bytes that are not a manifest.
    Manifest::parse(&head.manifest_bytes)?;
    let id = key.public().id();
    let mut sigs: Vec<SignatureRecord> = head.signatures.into_iter().filter(|s| s.key_id != id.0).collect();
    sigs.push(key.sign_manifest(&head.manifest_bytes));
    if sigs.len() > MAX_SIGNATURES as usize {
        return Err(Error::InvalidArgument { what: "signatures", detail: format!("more than {MAX_SIGNATURES}") });
    }
    let mut out = crate::fsutil::AtomicFile::create(path)?;
    let tmp = out.tmp_path().to_owned();
    write_head(out.file(), &head.manifest_bytes, &sigs)
        .map_err(|source| Error::WriteFile { path: tmp.clone(), source })?;
    let body_start = head.header.body_start();
    src.seek(SeekFrom::Start(body_start)).map_err(|source| Error::ReadFile { path: path.to_owned(), source })?;
    io::copy(&mut src, out.file()).map_err(|source| Error::WriteFile { path: tmp.clone(), source })?;
    out.commit()?;
    Ok(sigs.len())
}
