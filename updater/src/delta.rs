//! A delta install: every block of the new payload that the booted slot already holds, wherever it sits there, is
//! copied from it; the rest is fetched as delta frames or whole chunks in few coalesced range requests. The plan is
//! `image-layout`'s (the same call as `edge-image delta-plan`); each chunk assembled from old blocks and frames is
//! checked against its hash before it is written, and one that fails is fetched whole (docs/updater.md, "Delta").

use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use image_layout::delta::{ChunkPlan, ChunkSource, HaveIndex, Planner, DEFAULT_COALESCE_GAP};
use image_layout::format::chunk_hash;
use image_layout::manifest::Payload;
use image_layout::reader::{decode_chunk, decompress_exact, ChunkIndex, DeltaIndex, Verified};

use crate::device::SlotDevice;
use crate::error::{Error, Result};
use crate::fetch::{Counted, Counter, Fetch};
use crate::install::{read_exact, read_range, ChunkWriter, Recorder};
use crate::slot_index;

/// What a delta install reuses: the booted slot and the index of its blocks, and the bundle's delta index.
pub struct DeltaSource<'o> {
    delta: DeltaIndex,
    have: HaveIndex,
    old: &'o mut dyn SlotDevice,
    /// The booted slot's device, for messages.
    old_path: PathBuf,
}

/// Reads the delta index and the booted slot's block index (from its cache, or by reading the slot once), and
/// returns them when some chunk still to write can use the booted slot.
pub(crate) fn plan<'o>(
    fetch: &mut dyn Fetch,
    rec: &mut Recorder<'_, '_>,
    verified: &Verified,
    pi: usize,
    index: &ChunkIndex,
    todo: &[u64],
    old: &'o mut dyn SlotDevice,
) -> Result<Option<DeltaSource<'o>>> {
    let p = &verified.manifest.payloads[pi];
    let node = &mut *rec.node;
    let booted = node.booted;
    let cache = node.config.slot_index_path(booted);
    let old_path =
        crate::slots::resolve(node.config, booted).map_or_else(|_| PathBuf::from("the booted slot"), |s| s.path);
    let fingerprints = match slot_index::load(&cache, p.block_size) {
        Some(f) => f,
        None => {
            let rerr = |source| Error::ReadSlot { slot: booted, device: old_path.clone(), source };
            let len = match node.journal().slot(booted) {
                Some(image) => image.size_bytes,
                None => old.size().map_err(rerr)?,
            };
            log::info!("slot {booted}: reading {len} bytes once to index its blocks for delta installs");
            let f = slot_index::scan(old, len, p.block_size).map_err(rerr)?;
            if let Err(e) = slot_index::save(&cache, p.block_size, &f) {
                log::warn!("{}", Error::WriteCache { path: cache.clone(), source: e });
            }
            f
        }
    };
    let have = HaveIndex::from_fingerprints(p.block_size, &fingerprints);
    drop(fingerprints);
    let mut stored = vec![0u8; p.delta_index.size_bytes as usize];
    let section = format!("payload {} delta index", p.name);
    read_range(fetch, &rec.counter, verified.body_start + p.delta_index.offset, &mut stored, &section)?;
    let name = fetch.name().to_owned();
    let bundle_err = |source| Error::Bundle { source_name: name.clone(), source };
    let delta = DeltaIndex::parse(p, &stored).map_err(bundle_err)?;
    let planner = Planner::new(p, index, &delta, &have).map_err(bundle_err)?;
    let useful = todo.iter().any(|&c| planner.chunk(c).source != ChunkSource::Whole);
    if !useful {
        log::info!("nothing of the new payload is in slot {booted}; installing in full");
        return Ok(None);
    }
    Ok(Some(DeltaSource { delta, have, old, old_path }))
}

/// What a piece of the bundle is.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Chunk(u64),
    Frame { chunk_idx: u64, frame_idx: u64 },
}

/// A byte range of the bundle to fetch.
#[derive(Debug, Clone)]
struct Piece {
    range: Range<u64>,
    kind: Kind,
}

/// A chunk being assembled from frames.
struct Partial {
    chunk_idx: u64,
    plan: ChunkPlan,
    frames: Vec<u64>,
    got: usize,
    buf: Vec<u8>,
    /// A frame did not decompress: the chunk is fetched whole.
    damaged: bool,
}

/// Writes chunks `todo` from the booted slot and fetched pieces.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write(
    fetch: &mut dyn Fetch,
    rec: &mut Recorder<'_, '_>,
    w: &mut ChunkWriter<'_>,
    verified: &Verified,
    pi: usize,
    index: &ChunkIndex,
    src: &mut DeltaSource<'_>,
    todo: &[u64],
    threads: usize,
) -> Result<()> {
    let p = &verified.manifest.payloads[pi];
    let name = fetch.name().to_owned();
    let bundle_err = |source| Error::Bundle { source_name: name.clone(), source };
    let planner = Planner::new(p, index, &src.delta, &src.have).map_err(bundle_err)?;
    let chunks_at = verified.body_start + p.chunks.offset;
    let frames_at = verified.body_start + p.frames.offset;
    let chunk_piece = |c: u64| {
        let e = &index.entries[c as usize];
        Piece { range: chunks_at + e.offset..chunks_at + e.offset + u64::from(e.stored_size), kind: Kind::Chunk(c) }
    };
    let booted = rec.node.booted;
    let mut pieces = Vec::new();
    let mut local = Vec::new();
    let mut fallback = Vec::new();
    for &c in todo {
        let plan = planner.chunk(c);
        match &plan.source {
            ChunkSource::Whole => pieces.push(chunk_piece(c)),
            ChunkSource::Frames(frames) => {
                for &f in frames {
                    let start = frames_at + src.delta.frame_offsets[f as usize];
                    let end = start + u64::from(src.delta.frame_sizes[f as usize]);
                    pieces.push(Piece { range: start..end, kind: Kind::Frame { chunk_idx: c, frame_idx: f } });
                }
            }
            ChunkSource::Local => local.push(c),
        }
    }
    write_local(rec, w, p, index, &planner, (&*src.old, &src.old_path), &local, threads, &mut fallback)?;

    let counter = rec.counter.clone();
    let mut partial: Option<Partial> = None;
    fetch_pieces(fetch, &counter, pieces, &mut |kind, stored| match kind {
        Kind::Chunk(c) => {
            let raw = decode_chunk(p, c, &index.entries[c as usize], stored).map_err(bundle_err)?;
            w.write(rec, c, &raw)
        }
        Kind::Frame { chunk_idx, frame_idx } => {
            // A frame has no hash of its own; one that does not even decompress sends its chunk to the fallback.
            let raw = decompress_exact(stored, p.frame_raw_size(frame_idx) as usize);
            if partial.as_ref().is_none_or(|x| x.chunk_idx != chunk_idx) {
                let plan = planner.chunk(chunk_idx);
                let frames = match &plan.source {
                    ChunkSource::Frames(f) => f.clone(),
                    _ => Vec::new(),
                };
                let buf = vec![0u8; p.chunk_raw_size(chunk_idx) as usize];
                partial = Some(Partial { chunk_idx, plan, frames, got: 0, buf, damaged: false });
            }
            let x = partial.as_mut().expect("set above");
            let at = (frame_idx * u64::from(p.frame_size) - chunk_idx * u64::from(p.chunk_size)) as usize;
            match raw {
                Some(raw) => x.buf[at..at + raw.len()].copy_from_slice(&raw),
                None => x.damaged = true,
            }
            x.got += 1;
            if x.got == x.frames.len() {
                let x = partial.take().expect("set above");
                if x.damaged {
                    fallback.push(chunk_idx);
                    return Ok(());
                }
                let expected = &index.entries[chunk_idx as usize].raw_hash;
                let old = &mut *src.old;
                let mut read = |off: u64, b: &mut [u8]| old.read_at(off, b);
                match assemble(p, &x.plan, &x.frames, x.buf, &mut read, (booted, &src.old_path), expected)? {
                    (raw, Some(reused)) => {
                        rec.reused += reused;
                        rec.reused_total += reused;
                        w.write(rec, chunk_idx, &raw)?;
                    }
                    (_, None) => fallback.push(chunk_idx),
                }
            }
            Ok(())
        }
    })?;

    // Chunks whose assembly did not match their hash (a fingerprint collision, a booted slot that changed since
    // its index was cached): fetched whole.
    if !fallback.is_empty() {
        log::warn!("{} chunks did not assemble from slot {booted}; fetching them whole", fallback.len());
    }
    let pieces = fallback.iter().map(|&c| chunk_piece(c)).collect();
    fetch_pieces(fetch, &counter, pieces, &mut |kind, stored| match kind {
        Kind::Chunk(c) => {
            let raw = decode_chunk(p, c, &index.entries[c as usize], stored).map_err(bundle_err)?;
            w.write(rec, c, &raw)
        }
        Kind::Frame { .. } => unreachable!("fallbacks are whole chunks"),
    })
}

/// Writes the chunks that are wholly in the booted slot, assembled and hashed on `threads` workers (each with its own
/// read handle on the booted slot), written here as they come; those that do not match go to `fallback`.
#[allow(clippy::too_many_arguments)]
fn write_local(
    rec: &mut Recorder<'_, '_>,
    w: &mut ChunkWriter<'_>,
    p: &Payload,
    index: &ChunkIndex,
    planner: &Planner<'_>,
    (old, old_path): (&dyn SlotDevice, &Path),
    local: &[u64],
    threads: usize,
    fallback: &mut Vec<u64>,
) -> Result<()> {
    use std::sync::mpsc::sync_channel;
    use std::sync::{Arc, Mutex};
    if local.is_empty() {
        return Ok(());
    }
    let booted = rec.node.booted;
    let rerr = |source| Error::ReadSlot { slot: booted, device: old_path.to_owned(), source };
    let readers = (0..threads.max(1)).map(|_| old.reader().map_err(rerr)).collect::<Result<Vec<_>>>()?;
    let (job_tx, job_rx) = sync_channel::<u64>(local.len());
    for &c in local {
        job_tx.send(c).expect("the channel holds every job");
    }
    drop(job_tx);
    let job_rx = Arc::new(Mutex::new(job_rx));
    // A fixed pool of chunk buffers circulates between the workers and the writer, allocated once.
    let n_bufs = threads.max(1) + 1;
    let (buf_tx, buf_rx) = sync_channel::<Vec<u8>>(n_bufs);
    for _ in 0..n_bufs {
        buf_tx.send(Vec::new()).expect("the receiver is alive");
    }
    let buf_rx = Arc::new(Mutex::new(buf_rx));
    type Assembled = Result<(Vec<u8>, Option<u64>)>;
    let (res_tx, res_rx) = sync_channel::<(u64, Assembled)>(n_bufs);
    std::thread::scope(|s| {
        for mut reader in readers {
            let (job_rx, buf_rx, res_tx) = (Arc::clone(&job_rx), Arc::clone(&buf_rx), res_tx.clone());
            s.spawn(move || loop {
                let Ok(c) = job_rx.lock().expect("no worker panics holding the lock").recv() else { return };
                let Ok(mut buf) = buf_rx.lock().expect("no worker panics holding the lock").recv() else { return };
                buf.clear();
                buf.resize(p.chunk_raw_size(c) as usize, 0);
                let plan = planner.chunk(c);
                let mut read = |off: u64, b: &mut [u8]| reader.read_at(off, b);
                let expected = &index.entries[c as usize].raw_hash;
                let r = assemble(p, &plan, &[], buf, &mut read, (booted, old_path), expected);
                if res_tx.send((c, r)).is_err() {
                    return;
                }
            });
        }
        drop(res_tx);
        let result = (|| {
            for (c, r) in res_rx.iter() {
                let (raw, reused) = r?;
                match reused {
                    Some(reused) => {
                        rec.reused += reused;
                        rec.reused_total += reused;
                        w.write(rec, c, &raw)?;
                    }
                    None => fallback.push(c),
                }
                let _ = buf_tx.send(raw);
            }
            Ok(())
        })();
        // Workers blocked on the pool or on a full result channel see them gone and stop.
        drop(buf_tx);
        drop(res_rx);
        result
    })
}

/// Fills the blocks of a chunk that no fetched frame covers from the booted slot, and checks the chunk hash.
/// Returns the buffer, and the bytes reused when the chunk matched (`None` when it did not).
fn assemble(
    p: &Payload,
    plan: &ChunkPlan,
    fetched_frames: &[u64],
    mut buf: Vec<u8>,
    old: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
    (booted, old_path): (bootctl::rules::Slot, &Path),
    expected: &[u8; 32],
) -> Result<(Vec<u8>, Option<u64>)> {
    let bs = p.block_size as usize;
    let blocks_per_frame = (p.frame_size / p.block_size) as usize;
    let first_frame = plan.chunk_idx * u64::from(p.chunk_size / p.frame_size);
    let mut reused = 0u64;
    for (i, l) in plan.local.iter().enumerate() {
        let frame = first_frame + (i / blocks_per_frame) as u64;
        if fetched_frames.contains(&frame) {
            continue;
        }
        let Some(off) = *l else {
            // The planner fetches every frame with a block the booted slot lacks.
            return Ok((buf, None));
        };
        old(off, &mut buf[i * bs..(i + 1) * bs]).map_err(|source| Error::ReadSlot {
            slot: booted,
            device: old_path.to_owned(),
            source,
        })?;
        reused += bs as u64;
    }
    let matched = chunk_hash(&buf) == *expected;
    Ok((buf, matched.then_some(reused)))
}

/// Fetches pieces in coalesced requests, in bundle order, handing each to `handle`.
fn fetch_pieces(
    fetch: &mut dyn Fetch,
    counter: &Counter,
    mut pieces: Vec<Piece>,
    handle: &mut dyn FnMut(Kind, &[u8]) -> Result<()>,
) -> Result<()> {
    pieces.sort_by_key(|p| p.range.start);
    let name = fetch.name().to_owned();
    let mut i = 0;
    while i < pieces.len() {
        let start = pieces[i].range.start;
        let mut end = pieces[i].range.end;
        let mut j = i + 1;
        while j < pieces.len() && pieces[j].range.start <= end.saturating_add(DEFAULT_COALESCE_GAP) {
            end = end.max(pieces[j].range.end);
            j += 1;
        }
        let mut stream: Option<Box<dyn Read + Send + '_>> = None;
        if end > start {
            let r = fetch.open(start, Some(end)).map_err(|source| Error::fetch(&name, start, source))?;
            stream = Some(Box::new(Counted::new(r, counter.clone())));
        }
        let mut pos = start;
        for piece in &pieces[i..j] {
            let mut stored = vec![0u8; (piece.range.end - piece.range.start) as usize];
            if let Some(r) = stream.as_mut() {
                if piece.range.start > pos {
                    let gap = piece.range.start - pos;
                    let skipped = io::copy(&mut r.take(gap), &mut io::sink())
                        .map_err(|source| Error::fetch(&name, pos, source))?;
                    if skipped < gap {
                        let source =
                            image_layout::Error::Truncated { section: "delta range".into(), offset: pos + skipped };
                        return Err(Error::Bundle { source_name: name.clone(), source });
                    }
                    pos = piece.range.start;
                }
                read_exact(r, &mut stored, pos, "delta range", &name)?;
                pos = pos.max(piece.range.end);
            }
            handle(piece.kind, &stored)?;
        }
        i = j;
    }
    Ok(())
}
