//! A full install: the bundle streamed from any [`Fetch`] source into the target slot, chunk by chunk, each chunk
//! verified before it is written; resumable from the journal; then every chunk read back from the device and
//! checked, and only then the flip (docs/updater.md, "Install").
//!
//! The pipeline: one thread reads stored chunks from the source, workers decompress and hash them, and this thread
//! writes them in order; a fixed number of chunks is in flight, so memory does not grow with the image. Progress is
//! recorded in the journal only after the slot was synced, so the journal never claims a chunk a power cut lost.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bootctl::rules::Slot;
use image_layout::format::{chunk_hash, to_hex};
use image_layout::keys::Keyring;
use image_layout::manifest::Payload;
use image_layout::reader::{decode_chunk, ChunkIndex, Head, Policy, Verified};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::device::SlotDevice;
use crate::error::{Error, Result};
use crate::fetch::{Counted, Counter, Fetch};
use crate::journal::{BundleInfo, Phase, Update};
use crate::phase::Event;
use crate::run::{Node, Outcome};
use crate::slots::{self, SlotPath};
use crate::wire::Progress;

/// How an install runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Reboot into the target once it is flipped.
    pub reboot: bool,
    /// Decompression workers.
    pub threads: usize,
    /// Sync the slot and record progress after at least this many bytes written...
    pub sync_every_bytes: u64,
    /// ...or this much time, whichever comes first.
    pub sync_every: Duration,
    /// The time to check expiry against.
    pub now: OffsetDateTime,
}

impl Options {
    /// Defaults for `now`.
    pub fn at(now: OffsetDateTime) -> Options {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
        Options { reboot: false, threads, sync_every_bytes: 64 << 20, sync_every: Duration::from_secs(10), now }
    }
}

/// What an install did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The bundle installed.
    pub bundle: BundleInfo,
    /// The slot written.
    pub target: Slot,
    /// Chunks already on the slot from an earlier, interrupted run.
    pub resumed_chunks: u64,
    /// Chunks of the payload.
    pub n_chunks: u64,
    /// Bundle bytes this run read from the source.
    pub fetched_bytes: u64,
    /// Payload bytes taken from the booted slot.
    pub reused_bytes: u64,
    /// The payload's size.
    pub image_bytes: u64,
    /// What the flip led to (a reboot requested).
    pub outcome: Outcome,
}

fn bundle_err(fetch_name: &str) -> impl Fn(image_layout::Error) -> Error + '_ {
    move |source| Error::Bundle { source_name: fetch_name.to_owned(), source }
}

/// The checks made before anything is written (docs/updater.md, "Refusals"); each is an error that changes
/// nothing on disk.
pub fn refuse(node: &Node<'_>, v: &Verified, payload: &Payload, target: &SlotPath, slot_bytes: u64) -> Result<()> {
    let m = &v.manifest;
    if m.compatible != node.config.compatible {
        return Err(Error::Incompatible { expected: node.config.compatible.clone(), found: m.compatible.clone() });
    }
    let floor = node.journal().security_version;
    if m.security_version < floor {
        return Err(Error::Downgrade { found: m.security_version, installed: floor });
    }
    if target.slot == node.booted {
        return Err(Error::TargetBooted { slot: target.slot });
    }
    if payload.size_bytes > slot_bytes {
        return Err(Error::TooBig {
            slot: target.slot,
            device: target.path.clone(),
            size_bytes: payload.size_bytes,
            slot_bytes,
        });
    }
    slots::check_target(node.config, target)
}

/// Installs the bundle from `fetch` into `target` (the slot that is not booted), resuming an interrupted install
/// of the same bundle, then flips the bootloader to it.
pub fn install(
    node: &mut Node<'_>,
    keyring: &Keyring,
    fetch: &mut dyn Fetch,
    target: &SlotPath,
    dev: &mut dyn SlotDevice,
    opts: &Options,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report> {
    let name = fetch.name().to_owned();
    let counter = Counter::default();
    let policy = Policy::at(opts.now, node.config.threshold);
    let fetch_err = |offset: u64| {
        let name = name.clone();
        move |source: io::Error| Error::Fetch { source_name: name, offset, source }
    };

    // The head, then the payload's chunk index; on a fresh install the chunks follow on the same stream.
    let mut stream: Box<dyn Read + Send + '_> =
        Box::new(Counted::new(fetch.open(0, None).map_err(fetch_err(0))?, counter.clone()));
    let head = Head::read(&mut stream).map_err(bundle_err(&name))?;
    let verified = head.verify(keyring, &policy).map_err(bundle_err(&name))?;
    let manifest = &verified.manifest;
    let pi = manifest
        .payloads
        .iter()
        .position(|p| p.name == node.config.payload)
        .ok_or_else(|| Error::NoPayload { source_name: name.clone(), payload: node.config.payload.clone() })?;
    let p = manifest.payloads[pi].clone();
    let slot_bytes =
        dev.size().map_err(|source| Error::ReadSlot { slot: target.slot, device: target.path.clone(), source })?;
    refuse(node, &verified, &p, target, slot_bytes)?;

    let mut pos = verified.body_start;
    let index_at = verified.body_start + p.index.offset;
    if index_at != pos {
        drop(stream);
        stream = Box::new(Counted::new(fetch.open(index_at, None).map_err(fetch_err(index_at))?, counter.clone()));
        pos = index_at;
    }
    let mut index_bytes = vec![0u8; p.index.size_bytes as usize];
    read_exact(&mut stream, &mut index_bytes, pos, &format!("payload {} chunk index", p.name), &name)?;
    pos += p.index.size_bytes;
    let index = ChunkIndex::parse(&p, &index_bytes).map_err(bundle_err(&name))?;

    // Resume the same bundle into the same slot, or start over.
    let bundle = BundleInfo {
        manifest_hash: to_hex(&verified.manifest_hash()),
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        security_version: manifest.security_version,
    };
    let resume = node.journal().update.as_ref().is_some_and(|u| {
        u.phase.is_installing() && u.target == target.slot && u.bundle == bundle && u.n_chunks == p.n_chunks()
    });
    if resume {
        let u = node.journal().update.as_ref().expect("resume implies an update");
        log::info!(
            "resuming install of slot {} in phase {} at {}/{} chunks",
            u.target,
            u.phase.name(),
            u.n_done(),
            u.n_chunks
        );
    } else {
        let state = node.boot_state()?;
        let update = Update {
            phase: Phase::Downloading,
            target: target.slot,
            bundle: bundle.clone(),
            source: name.clone(),
            size_bytes: p.size_bytes,
            chunk_size: p.chunk_size,
            n_chunks: p.n_chunks(),
            chunks_done: Vec::new(),
            bytes_fetched: 0,
            bytes_reused: 0,
            reboot: opts.reboot,
            started: opts.now.format(&Rfc3339).unwrap_or_default(),
            reason: None,
        };
        node.handle(Event::Start { update: Box::new(update), booted: node.booted, state })?;
    }
    let resumed_chunks = node.journal().update.as_ref().map_or(0, |u| u.n_done());
    let mut recorded_fetch = counter.get();
    let mut record_fetched = |node: &mut Node<'_>, j: &mut crate::journal::Journal| {
        let now = counter.get();
        if let Some(u) = j.update.as_mut() {
            u.bytes_fetched += now - recorded_fetch;
            u.reboot = opts.reboot;
        }
        let _ = node;
        recorded_fetch = now;
    };

    let phase = node.journal().phase().expect("an install has an update");
    if phase == Phase::Downloading {
        let u = node.journal().update.as_ref().expect("an update");
        let first = (0..p.n_chunks()).find(|&c| !u.is_done(c)).unwrap_or(p.n_chunks());
        if first < p.n_chunks() {
            let at = verified.body_start + p.chunks.offset + index.entries[first as usize].offset;
            let end = verified.body_start + p.chunks.offset + p.chunks.size_bytes;
            if at != pos {
                drop(stream);
                stream = Box::new(Counted::new(fetch.open(at, Some(end)).map_err(fetch_err(at))?, counter.clone()));
            }
            let src = Source { stream: &mut stream, at, name: &name };
            let mut synced_to = first;
            write_chunks(src, &p, &index, first, dev, target, opts, |done_to, last| {
                let mut j = node.journal().clone();
                record_fetched(node, &mut j);
                let u = j.update.as_mut().expect("an update");
                u.add_done(synced_to, done_to);
                if last {
                    u.phase = Phase::Written;
                }
                synced_to = done_to;
                // Durability: the chunks are synced on the slot before this save; a cut before it re-writes them.
                node.save(j)?;
                progress(&Progress {
                    stage: "writing",
                    done_bytes: (done_to * u64::from(p.chunk_size)).min(p.size_bytes),
                    image_bytes: p.size_bytes,
                    fetched_bytes: counter.get(),
                    reused_bytes: 0,
                });
                Ok(())
            })?;
        } else {
            let mut j = node.journal().clone();
            j.update.as_mut().expect("an update").phase = Phase::Written;
            node.save(j)?;
        }
    }
    drop(stream);

    // Read every chunk back from the device itself and check it.
    if matches!(node.journal().phase(), Some(Phase::Written | Phase::Verified)) {
        verify(node, &p, &index, target, dev, progress)?;
    }
    let state = node.boot_state()?;
    let outcome = node.handle(Event::Flip { booted: node.booted, state })?;
    let fetched_bytes = counter.get();
    Ok(Report {
        bundle,
        target: target.slot,
        resumed_chunks,
        n_chunks: p.n_chunks(),
        fetched_bytes,
        reused_bytes: 0,
        image_bytes: p.size_bytes,
        outcome,
    })
}

fn read_exact(r: &mut dyn Read, buf: &mut [u8], offset: u64, section: &str, name: &str) -> Result<()> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => {
                let source = image_layout::Error::Truncated { section: section.to_owned(), offset: offset + n as u64 };
                return Err(Error::Bundle { source_name: name.to_owned(), source });
            }
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(Error::Fetch { source_name: name.to_owned(), offset: offset + n as u64, source });
            }
        }
    }
    Ok(())
}

/// The stream positioned at a chunk.
struct Source<'a, 's> {
    stream: &'a mut Box<dyn Read + Send + 's>,
    at: u64,
    name: &'a str,
}

enum Msg {
    Chunk(u64, std::result::Result<Vec<u8>, image_layout::Error>),
    ReadFailed(Error),
}

/// Writes chunks `first..` from the stream, in order, syncing and calling `synced(done_to, last)` every
/// `sync_every_bytes` or `sync_every` and at the end.
#[allow(clippy::too_many_arguments)]
fn write_chunks(
    src: Source<'_, '_>,
    p: &Payload,
    index: &ChunkIndex,
    first: u64,
    dev: &mut dyn SlotDevice,
    target: &SlotPath,
    opts: &Options,
    mut synced: impl FnMut(u64, bool) -> Result<()>,
) -> Result<()> {
    let n = p.n_chunks();
    let threads = opts.threads.max(1);
    // Chunks in flight anywhere in the pipeline (being read, decoded, waiting to be written): memory is bounded by
    // this many stored plus raw chunks, whatever the image size.
    let window = threads + 2;
    let (token_tx, token_rx) = sync_channel::<()>(window);
    for _ in 0..window {
        token_tx.send(()).expect("the receiver is alive");
    }
    let (job_tx, job_rx) = sync_channel::<(u64, Vec<u8>)>(threads);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (res_tx, res_rx) = sync_channel::<Msg>(window);
    let werr = |source| Error::WriteSlot { slot: target.slot, device: target.path.clone(), source };
    std::thread::scope(|s| {
        // The reader: stored chunks off the stream.
        let reader_res = res_tx.clone();
        let Source { stream, at, name } = src;
        s.spawn(move || {
            let token_rx: Receiver<()> = token_rx;
            let mut pos = at;
            for c in first..n {
                if token_rx.recv().is_err() {
                    return;
                }
                let e = &index.entries[c as usize];
                let mut stored = vec![0u8; e.stored_size as usize];
                let section = format!("payload {} chunk {c}", p.name);
                if let Err(err) = read_exact(&mut **stream, &mut stored, pos, &section, name) {
                    let _ = reader_res.send(Msg::ReadFailed(err));
                    return;
                }
                pos += u64::from(e.stored_size);
                if job_tx.send((c, stored)).is_err() {
                    return;
                }
            }
        });
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let res_tx: SyncSender<Msg> = res_tx.clone();
            s.spawn(move || loop {
                let job = job_rx.lock().expect("no worker panics holding the lock").recv();
                let Ok((c, stored)) = job else { return };
                let raw = decode_chunk(p, c, &index.entries[c as usize], &stored);
                if res_tx.send(Msg::Chunk(c, raw)).is_err() {
                    return;
                }
            });
        }
        drop(res_tx);

        let mut pending = std::collections::BTreeMap::new();
        let mut next = first;
        let mut unsynced = 0u64;
        let mut last_sync = Instant::now();
        let result = (|| {
            while next < n {
                let msg = res_rx.recv().expect("the reader reports an error before it stops early");
                match msg {
                    Msg::ReadFailed(e) => return Err(e),
                    Msg::Chunk(c, raw) => {
                        let raw = raw.map_err(|source| Error::Bundle { source_name: name.to_owned(), source })?;
                        pending.insert(c, raw);
                    }
                }
                while let Some(raw) = pending.remove(&next) {
                    dev.write_at(next * u64::from(p.chunk_size), &raw).map_err(werr)?;
                    unsynced += raw.len() as u64;
                    next += 1;
                    let _ = token_tx.send(());
                    let last = next == n;
                    if last || unsynced >= opts.sync_every_bytes || last_sync.elapsed() >= opts.sync_every {
                        // Durability: after this sync every chunk before `next` is on the device; the journal
                        // records them only after it.
                        dev.sync().map_err(werr)?;
                        synced(next, last)?;
                        unsynced = 0;
                        last_sync = Instant::now();
                    }
                }
            }
            Ok(())
        })();
        // Unblock the reader and the workers so the scope can end, whatever happened.
        drop(token_tx);
        drop(res_rx);
        result
    })
}

/// Reads every chunk back from the device, past the page cache, and checks its hash; moves the journal to
/// `verified`, or back to `downloading` without the chunks that read back wrong.
fn verify(
    node: &mut Node<'_>,
    p: &Payload,
    index: &ChunkIndex,
    target: &SlotPath,
    dev: &mut dyn SlotDevice,
    progress: &mut dyn FnMut(&Progress),
) -> Result<()> {
    let rerr = |source| Error::ReadSlot { slot: target.slot, device: target.path.clone(), source };
    dev.sync().map_err(|source| Error::WriteSlot { slot: target.slot, device: target.path.clone(), source })?;
    dev.drop_cache().map_err(rerr)?;
    let mut buf = vec![0u8; p.chunk_size as usize];
    let mut bad = Vec::new();
    for c in 0..p.n_chunks() {
        let len = p.chunk_raw_size(c) as usize;
        dev.read_at(c * u64::from(p.chunk_size), &mut buf[..len]).map_err(rerr)?;
        if chunk_hash(&buf[..len]) != index.entries[c as usize].raw_hash {
            bad.push(c);
        }
        if c % 64 == 63 || c + 1 == p.n_chunks() {
            progress(&Progress {
                stage: "verifying",
                done_bytes: ((c + 1) * u64::from(p.chunk_size)).min(p.size_bytes),
                image_bytes: p.size_bytes,
                fetched_bytes: 0,
                reused_bytes: 0,
            });
        }
    }
    let mut j = node.journal().clone();
    let u = j.update.as_mut().expect("verify runs in an update");
    if let Some(&first_bad) = bad.first() {
        let mut done = Vec::new();
        let mut start = 0;
        for &b in &bad {
            if b > start {
                done.push([start, b]);
            }
            start = b + 1;
        }
        if start < p.n_chunks() {
            done.push([start, p.n_chunks()]);
        }
        u.chunks_done = done;
        u.phase = Phase::Downloading;
        node.save(j)?;
        return Err(Error::ReadBack { slot: target.slot, device: target.path.clone(), chunk_idx: first_bad });
    }
    u.phase = Phase::Verified;
    // Durability: the slot was synced and read back whole before this save.
    node.save(j)?;
    log::info!("slot {}: {} chunks read back and verified", target.slot, p.n_chunks());
    Ok(())
}
