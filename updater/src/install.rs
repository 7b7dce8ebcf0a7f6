//! An install: the bundle read from any [`Fetch`] source into the target slot, chunk by chunk, each chunk verified
//! before it is written; resumable from the journal; then every chunk read back from the device and checked, and
//! only then the flip (docs/updater.md, "Install").
//!
//! A full install streams the chunk area: one thread reads stored chunks from the source, workers decompress and
//! hash them, and this thread writes them in order; a fixed number of chunks is in flight, so memory does not grow
//! with the image. A delta install (`delta`) takes what it can from the booted slot and fetches the rest in few
//! ranges. Either way progress is recorded in the journal only after the slot was synced, so the journal never
//! claims a chunk that a power cut lost.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bootctl::rules::Slot;
use image_layout::format::{chunk_hash, fingerprint, to_hex, Header, HEADER_LEN};
use image_layout::keys::Keyring;
use image_layout::manifest::Payload;
use image_layout::reader::{decode_chunk_into, decompressor, ChunkIndex, Head, Policy, Verified};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use xxhash_rust::xxh3::xxh3_64;

use crate::delta;
use crate::device::{SlotDevice, SlotReader};
use crate::error::{Error, Result};
use crate::fetch::{Counted, Counter, Fetch};
use crate::journal::{BundleInfo, Phase, Update};
use crate::phase::Event;
use crate::run::{Node, Outcome};
use crate::slot_index;
use crate::slots::{self, SlotPath};
use crate::wire::{EventKind, Progress, Stage, PROGRESS_SCHEMA};

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
    /// Reuse blocks of the booted slot when the source can be read at any offset.
    pub delta: bool,
    /// Flip the bootloader to the target once it is verified; when false the target is held, verified, for
    /// `held::flip` (docs/updater.md, "Held installs").
    pub flip: bool,
}

impl Options {
    /// Defaults for `now`.
    pub fn at(now: OffsetDateTime) -> Options {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
        Options {
            reboot: false,
            threads,
            sync_every_bytes: 64 << 20,
            sync_every: Duration::from_secs(10),
            now,
            delta: true,
            flip: true,
        }
    }
}

/// What an install did.
#[derive(Debug)]
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
    /// Whether the target was flipped; when not, it is verified and held.
    pub flipped: bool,
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

/// Reads bytes `start..start + buf.len()` of the bundle with one request.
pub(crate) fn read_range(
    fetch: &mut dyn Fetch,
    counter: &Counter,
    start: u64,
    buf: &mut [u8],
    section: &str,
) -> Result<()> {
    let name = fetch.name().to_owned();
    let r = fetch.open(start, Some(start + buf.len() as u64)).map_err(|source| Error::fetch(&name, start, source))?;
    read_exact(&mut Counted::new(r, counter.clone()), buf, start, section, &name)
}

/// Installs the bundle from `fetch` into `target` (the slot that is not booted), resuming an interrupted install
/// of the same bundle, then flips the bootloader to it. `old` is the booted slot, read only, for delta reuse.
#[allow(clippy::too_many_arguments)]
pub fn install(
    node: &mut Node<'_>,
    keyring: &Keyring,
    fetch: &mut dyn Fetch,
    target: &SlotPath,
    dev: &mut dyn SlotDevice,
    old: Option<&mut dyn SlotDevice>,
    opts: &Options,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report> {
    let name = fetch.name().to_owned();
    let counter = Counter::default();
    let policy = Policy::at(opts.now, node.config.threshold);

    // The head and the payload's chunk index, each with one exact request (a pipe reads on).
    let mut hb = [0u8; HEADER_LEN];
    read_range(fetch, &counter, 0, &mut hb, "header")?;
    let header = Header::decode(&hb).map_err(bundle_err(&name))?;
    let mut head_bytes = vec![0u8; header.body_start() as usize];
    head_bytes[..HEADER_LEN].copy_from_slice(&hb);
    read_range(fetch, &counter, HEADER_LEN as u64, &mut head_bytes[HEADER_LEN..], "manifest and signatures")?;
    let head = Head::read(&mut &head_bytes[..]).map_err(bundle_err(&name))?;
    let verified = head.verify(keyring, &policy).map_err(bundle_err(&name))?;
    let manifest = &verified.manifest;
    let bundle = BundleInfo {
        manifest_blake3: to_hex(&verified.manifest_hash()),
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        security_version: manifest.security_version,
    };
    // From here on a failure is this bundle's (not that of an update the journal may still hold).
    node.attempt = Some((target.slot, bundle.clone()));
    let pi = manifest
        .payloads
        .iter()
        .position(|p| p.name == node.config.payload)
        .ok_or_else(|| Error::NoPayload { source_name: name.clone(), payload: node.config.payload.clone() })?;
    let p = manifest.payloads[pi].clone();
    let slot_bytes =
        dev.size().map_err(|source| Error::ReadSlot { slot: target.slot, device: target.path.clone(), source })?;
    refuse(node, &verified, &p, target, slot_bytes)?;
    record_stack(&node.config.stack_path(target.slot), &bundle.manifest_blake3, &manifest.stack);
    let mut index_bytes = vec![0u8; p.index.size_bytes as usize];
    let section = format!("payload {} chunk index", p.name);
    read_range(fetch, &counter, verified.body_start + p.index.offset, &mut index_bytes, &section)?;
    let index = ChunkIndex::parse(&p, &index_bytes).map_err(bundle_err(&name))?;

    // Resume the same bundle into the same slot, or start over.
    let resume = node.journal().update.as_ref().is_some_and(|u| {
        u.phase.is_installing() && u.target == target.slot && u.bundle == bundle && u.n_chunks == p.n_chunks()
    });
    if resume {
        // This run's reboot wish and source replace the interrupted run's (the same bundle may come from another
        // mirror, or from a stick after the network failed).
        let mut j = node.journal().clone();
        let u = j.update.as_mut().expect("resume implies an update");
        if u.reboot != opts.reboot || u.source != name {
            u.reboot = opts.reboot;
            u.source = name.clone();
            node.save(j)?;
        }
        let u = node.journal().update.as_ref().expect("resume implies an update");
        let message = format!(
            "resuming the install of {} {} into slot {} from {} in phase {} with {}/{} chunks on the slot",
            u.bundle.name,
            u.bundle.version,
            u.target,
            u.source,
            u.phase.name(),
            u.n_done(),
            u.n_chunks
        );
        node.emit(EventKind::Resumed, &message);
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
            fetched_bytes: 0,
            reused_bytes: 0,
            reboot: opts.reboot,
            started: opts.now.format(&Rfc3339).unwrap_or_default(),
            reason: None,
            held: false,
        };
        node.handle(Event::Start { update: Box::new(update), booted: node.booted, state })?;
        crate::held::forget(&node.config.held_path(target.slot));
    }
    // The target's cached fingerprints go before a byte of it changes.
    let cache = node.config.slot_index_path(target.slot);
    slot_index::remove(&cache).map_err(|source| Error::WriteCache { path: cache.clone(), source })?;
    let resumed_chunks = node.journal().update.as_ref().map_or(0, |u| u.n_done());

    let started = Instant::now();
    let mut rec = Recorder { node, counter: counter.clone(), recorded_fetch: 0, reused: 0, reused_total: 0, progress };
    let mut checked = None;
    if rec.node.journal().phase() == Some(Phase::Downloading) {
        let todo: Vec<u64> = {
            let u = rec.node.journal().update.as_ref().expect("an update");
            (0..p.n_chunks()).filter(|&c| !u.is_done(c)).collect()
        };
        let plan = match old {
            Some(old) if opts.delta && fetch.seekable() && !todo.is_empty() => {
                // A delta that cannot be planned (a damaged delta index, an unreadable booted slot) is no reason
                // to fail: the full install needs neither.
                match delta::plan(fetch, &mut rec, &verified, pi, &index, &todo, old) {
                    Ok(plan) => plan,
                    Err(e) => {
                        log::warn!("no delta install: {e}");
                        None
                    }
                }
            }
            _ => None,
        };
        // Chunks are read back on another thread as soon as they are synced, while later ones are written.
        let cache = open_cache(rec.node, target, &p);
        let reader = dev.reader().map_err(|e| log::warn!("no read-back while writing: {e}")).ok();
        checked = std::thread::scope(|s| -> Result<Option<Checked>> {
            let (tx, rx) = sync_channel::<Segment>(4);
            let checker = reader.map(|r| {
                let (p, index) = (&p, &index);
                s.spawn(move || check_segments(r, rx, p, index, cache))
            });
            let mut w = ChunkWriter::new(dev, target, opts, &p, checker.as_ref().map(|_| tx));
            let r = match plan {
                Some(mut plan) => {
                    delta::write(fetch, &mut rec, &mut w, &verified, pi, &index, &mut plan, &todo, opts.threads)
                }
                None => write_full(fetch, &mut rec, &mut w, &verified, &p, &index, &todo, opts),
            }
            .and_then(|()| w.finish(&mut rec));
            // The checker ends when the writer's sender goes.
            drop(w);
            let checked = checker.map(|h| h.join().expect("the checker does not panic"));
            r.map(|()| checked)
        })?;
    }
    let Recorder { node, progress, reused_total: reused_bytes, .. } = rec;
    log::debug!("slot {}: written in {:.3} s", target.slot, started.elapsed().as_secs_f64());
    let verify_started = Instant::now();

    // Read every chunk back from the device itself and check it (those the checker did not already).
    if matches!(node.journal().phase(), Some(Phase::Written | Phase::Verified)) {
        let checked = match checked {
            Some(c) => c,
            None => Checked::none(p.n_chunks(), open_cache(node, target, &p)),
        };
        verify(node, &p, &index, target, dev, checked, !opts.flip, progress)?;
    }
    log::debug!("slot {}: read back in {:.3} s", target.slot, verify_started.elapsed().as_secs_f64());
    let outcome = if opts.flip {
        let state = node.boot_state()?;
        node.handle(Event::Flip { booted: node.booted, state, reboot: opts.reboot })?
    } else {
        Outcome::default()
    };
    Ok(Report {
        bundle,
        target: target.slot,
        resumed_chunks,
        n_chunks: p.n_chunks(),
        fetched_bytes: counter.get(),
        reused_bytes,
        image_bytes: p.size_bytes,
        flipped: opts.flip,
        outcome,
    })
}

/// Records synced progress in the journal and reports it.
pub(crate) struct Recorder<'r, 'c> {
    pub(crate) node: &'r mut Node<'c>,
    pub(crate) counter: Counter,
    recorded_fetch: u64,
    /// Reused bytes not yet in the journal.
    pub(crate) reused: u64,
    /// Reused bytes this run.
    pub(crate) reused_total: u64,
    progress: &'r mut dyn FnMut(&Progress),
}

impl Recorder<'_, '_> {
    /// Reports a chunk written but not yet synced (`unsynced_bytes` written since the last sync), for the progress
    /// bar; not a progress line (those are synced progress).
    fn wrote(&mut self, unsynced_bytes: u64, p: &Payload) {
        let u = self.node.journal().update.as_ref().expect("an install has an update");
        let done_bytes = (u.n_done() * u64::from(p.chunk_size) + unsynced_bytes).min(p.size_bytes);
        (self.progress)(&Progress {
            schema: PROGRESS_SCHEMA,
            stage: Stage::Writing,
            synced: false,
            done_bytes,
            image_bytes: p.size_bytes,
            fetched_bytes: self.counter.get(),
            reused_bytes: self.reused_total,
        });
    }

    /// Records chunks synced on the slot (`last`: every chunk is on it now).
    fn synced(&mut self, done: &[[u64; 2]], last: bool, p: &Payload) -> Result<()> {
        let mut j = self.node.journal().clone();
        let u = j.update.as_mut().expect("an install has an update");
        for r in done {
            u.add_done(r[0], r[1]);
        }
        let now = self.counter.get();
        u.fetched_bytes += now - self.recorded_fetch;
        u.reused_bytes += self.reused;
        if last {
            u.phase = Phase::Written;
        }
        let done_bytes = (u.n_done() * u64::from(p.chunk_size)).min(p.size_bytes);
        // Durability: the chunks were synced on the slot before this save; a cut before it writes them again.
        self.node.save(j)?;
        self.recorded_fetch = now;
        self.reused = 0;
        (self.progress)(&Progress {
            schema: PROGRESS_SCHEMA,
            stage: Stage::Writing,
            synced: true,
            done_bytes,
            image_bytes: p.size_bytes,
            fetched_bytes: now,
            reused_bytes: self.reused_total,
        });
        Ok(())
    }
}

/// Writes verified chunks to the slot, syncing and recording them every `sync_every_bytes` or `sync_every`.
pub(crate) struct ChunkWriter<'d> {
    dev: &'d mut dyn SlotDevice,
    target: &'d SlotPath,
    p: &'d Payload,
    sync_every_bytes: u64,
    sync_every: Duration,
    unsynced: u64,
    last_sync: Instant,
    pending: Vec<[u64; 2]>,
    /// Where synced chunks go to be read back, with the digest of what was written.
    check: Option<SyncSender<Segment>>,
    digests: Segment,
}

impl<'d> ChunkWriter<'d> {
    fn new(
        dev: &'d mut dyn SlotDevice,
        target: &'d SlotPath,
        opts: &Options,
        p: &'d Payload,
        check: Option<SyncSender<Segment>>,
    ) -> ChunkWriter<'d> {
        ChunkWriter {
            dev,
            target,
            p,
            sync_every_bytes: opts.sync_every_bytes,
            sync_every: opts.sync_every,
            unsynced: 0,
            last_sync: Instant::now(),
            pending: Vec::new(),
            check,
            digests: Vec::new(),
        }
    }

    fn werr(&self, source: io::Error) -> Error {
        Error::WriteSlot { slot: self.target.slot, device: self.target.path.clone(), source }
    }

    /// Writes chunk `c` (already checked against its hash).
    pub(crate) fn write(&mut self, rec: &mut Recorder<'_, '_>, c: u64, raw: &[u8]) -> Result<()> {
        self.dev.write_at(c * u64::from(self.p.chunk_size), raw).map_err(|e| self.werr(e))?;
        if self.check.is_some() {
            self.digests.push((c, block_digests(self.p, raw)));
        }
        match self.pending.last_mut() {
            Some(last) if last[1] == c => last[1] = c + 1,
            _ => self.pending.push([c, c + 1]),
        }
        self.unsynced += raw.len() as u64;
        if self.unsynced >= self.sync_every_bytes || self.last_sync.elapsed() >= self.sync_every {
            self.sync(rec, false)?;
        } else {
            rec.wrote(self.unsynced, self.p);
        }
        Ok(())
    }

    fn sync(&mut self, rec: &mut Recorder<'_, '_>, last: bool) -> Result<()> {
        // Durability: after this sync every chunk written so far is on the device; the journal records them only
        // after it.
        self.dev.sync().map_err(|e| self.werr(e))?;
        let pending = std::mem::take(&mut self.pending);
        rec.synced(&pending, last, self.p)?;
        if let Some(tx) = &self.check {
            // A checker that stopped only means the final read-back does its chunks.
            if tx.send(std::mem::take(&mut self.digests)).is_err() {
                self.check = None;
            }
        }
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs the rest and records the slot as written.
    fn finish(&mut self, rec: &mut Recorder<'_, '_>) -> Result<()> {
        self.sync(rec, true)
    }
}

enum Msg {
    /// A chunk, decoded into a buffer of the pool (or why it could not be).
    Chunk(u64, std::result::Result<Vec<u8>, image_layout::Error>),
    ReadFailed(Error),
}

/// Streams the chunk area from the first chunk not done to the end, chunks already done included (a full install
/// resumes at its first missing chunk).
#[allow(clippy::too_many_arguments)]
fn write_full(
    fetch: &mut dyn Fetch,
    rec: &mut Recorder<'_, '_>,
    w: &mut ChunkWriter<'_>,
    verified: &Verified,
    p: &Payload,
    index: &ChunkIndex,
    todo: &[u64],
    opts: &Options,
) -> Result<()> {
    let Some(&first) = todo.first() else { return Ok(()) };
    let n = p.n_chunks();
    let name = fetch.name().to_owned();
    let at = verified.body_start + p.chunks.offset + index.entries[first as usize].offset;
    let end = verified.body_start + p.chunks.offset + p.chunks.size_bytes;
    let stream = fetch.open(at, Some(end)).map_err(|source| Error::fetch(&name, at, source))?;
    let mut stream = Counted::new(stream, rec.counter.clone());
    let threads = opts.threads.max(1);
    // A fixed pool of buffers circulates: a raw buffer goes reader -> worker -> writer -> reader, a stored one
    // reader -> worker -> reader. Memory is this many stored plus raw chunks whatever the image size, allocated once.
    let window = threads + 1;
    let (raw_tx, raw_rx) = sync_channel::<Vec<u8>>(window);
    let (stored_tx, stored_rx) = sync_channel::<Vec<u8>>(window);
    for _ in 0..window {
        raw_tx.send(Vec::new()).expect("the receiver is alive");
        stored_tx.send(Vec::new()).expect("the receiver is alive");
    }
    let (job_tx, job_rx) = sync_channel::<(u64, Vec<u8>, Vec<u8>)>(threads);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (res_tx, res_rx) = sync_channel::<Msg>(window);
    std::thread::scope(|s| {
        let reader_res = res_tx.clone();
        let name = &name;
        let stream = &mut stream;
        s.spawn(move || {
            let (raw_rx, stored_rx): (Receiver<Vec<u8>>, Receiver<Vec<u8>>) = (raw_rx, stored_rx);
            let mut pos = at;
            for c in first..n {
                let (Ok(raw), Ok(mut stored)) = (raw_rx.recv(), stored_rx.recv()) else { return };
                let e = &index.entries[c as usize];
                stored.resize(e.stored_size as usize, 0);
                let section = format!("payload {} chunk {c}", p.name);
                if let Err(err) = read_exact(stream, &mut stored, pos, &section, name) {
                    let _ = reader_res.send(Msg::ReadFailed(err));
                    return;
                }
                pos += u64::from(e.stored_size);
                if job_tx.send((c, stored, raw)).is_err() {
                    return;
                }
            }
        });
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let res_tx: SyncSender<Msg> = res_tx.clone();
            let stored_tx = stored_tx.clone();
            s.spawn(move || {
                let mut d = decompressor();
                loop {
                    let job = job_rx.lock().expect("no worker panics holding the lock").recv();
                    let Ok((c, stored, mut raw)) = job else { return };
                    let r = decode_chunk_into(p, c, &index.entries[c as usize], &stored, &mut raw, &mut d);
                    // The reader may have stopped; then nobody needs the buffer back.
                    let _ = stored_tx.send(stored);
                    if res_tx.send(Msg::Chunk(c, r.map(|()| raw))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(res_tx);
        drop(stored_tx);
        let mut pending = std::collections::BTreeMap::new();
        let mut next = first;
        let result = (|| {
            while next < n {
                let msg = res_rx.recv().expect("the reader reports an error before it stops early");
                match msg {
                    Msg::ReadFailed(e) => return Err(e),
                    Msg::Chunk(c, raw) => {
                        let raw = raw.map_err(|source| Error::Bundle { source_name: name.clone(), source })?;
                        pending.insert(c, raw);
                    }
                }
                while let Some(raw) = pending.remove(&next) {
                    w.write(rec, next, &raw)?;
                    next += 1;
                    let _ = raw_tx.send(raw);
                }
            }
            Ok(())
        })();
        // Unblock the reader and the workers so the scope can end, whatever happened.
        drop(raw_tx);
        drop(res_rx);
        result
    })
}

/// Chunks synced together, each with the digests of the verified bytes written ([`block_digests`]).
type Segment = Vec<(u64, Vec<u64>)>;

/// The XXH3-64 of every block of a chunk (the fingerprints the slot index cache keeps), and of its short tail if
/// any: what the read-back compares, and what the cache takes, in one pass.
fn block_digests(p: &Payload, raw: &[u8]) -> Vec<u64> {
    let mut blocks = raw.chunks_exact(p.block_size as usize);
    let mut d: Vec<u64> = blocks.by_ref().map(fingerprint).collect();
    if !blocks.remainder().is_empty() {
        d.push(xxh3_64(blocks.remainder()));
    }
    d
}

/// What the read-back found so far.
struct Checked {
    /// Chunks read back from the device that matched what was written.
    ok: Vec<bool>,
    /// Chunks read back that did not.
    bad: Vec<u64>,
    /// The slot's index cache being written from the bytes read back.
    cache: Option<slot_index::Writer>,
}

impl Checked {
    fn none(n_chunks: u64, cache: Option<slot_index::Writer>) -> Checked {
        Checked { ok: vec![false; n_chunks as usize], bad: Vec::new(), cache }
    }

    /// Records chunk `c`'s fingerprints (its whole blocks' digests) in the cache.
    fn fingerprint(&mut self, p: &Payload, c: u64, raw: &[u8]) {
        self.put_fingerprints(p, c, &block_digests(p, raw), raw.len());
    }

    fn put_fingerprints(&mut self, p: &Payload, c: u64, digests: &[u64], raw_len: usize) {
        if let Some(w) = self.cache.as_mut() {
            let whole = raw_len / p.block_size as usize;
            let first = c * u64::from(p.chunk_size / p.block_size);
            if let Err(e) = w.put(first, &digests[..whole]) {
                log::warn!("slot index cache: {e}");
                self.cache = None;
            }
        }
    }
}

/// Starts the target's index cache, `None` (with a warning) when it cannot be written.
fn open_cache(node: &Node<'_>, target: &SlotPath, p: &Payload) -> Option<slot_index::Writer> {
    let cache = node.config.slot_index_path(target.slot);
    slot_index::Writer::create(&cache, p.block_size, p.size_bytes / u64::from(p.block_size))
        .map_err(|e| log::warn!("{}", Error::WriteCache { path: cache, source: e }))
        .ok()
}

/// The checker thread: reads each synced segment back from the device, past the page cache, and compares every
/// chunk with the digest of what was written (those bytes matched their signed hash before they were written).
fn check_segments(
    mut r: Box<dyn SlotReader>,
    rx: Receiver<Segment>,
    p: &Payload,
    index: &ChunkIndex,
    cache: Option<slot_index::Writer>,
) -> Checked {
    let mut checked = Checked::none(p.n_chunks(), cache);
    let mut buf = vec![0u8; p.chunk_size as usize];
    let cs = u64::from(p.chunk_size);
    for segment in rx {
        let (Some(lo), Some(hi)) = (segment.iter().map(|s| s.0).min(), segment.iter().map(|s| s.0).max()) else {
            continue;
        };
        if r.drop_cache(lo * cs, (hi + 1) * cs - lo * cs).is_err() {
            // The final read-back, which drops the whole cache, does these.
            continue;
        }
        for (c, digest) in segment {
            let len = p.chunk_raw_size(c) as usize;
            if r.read_at(c * cs, &mut buf[..len]).is_err() {
                continue;
            }
            if block_digests(p, &buf[..len]) == digest {
                checked.ok[c as usize] = true;
                checked.put_fingerprints(p, c, &digest, len);
            } else if chunk_hash(&buf[..len]) != index.entries[c as usize].raw_hash {
                checked.bad.push(c);
            }
        }
    }
    checked
}

/// Reads back every chunk the checker did not, from the device past the page cache, and checks it against its
/// signed hash; moves the journal to `verified` and commits the slot's index cache, or moves it back to
/// `downloading` without the chunks that read back wrong. When `hold`, the chunk hashes are kept for a later flip
/// before the journal says `held`.
#[allow(clippy::too_many_arguments)]
fn verify(
    node: &mut Node<'_>,
    p: &Payload,
    index: &ChunkIndex,
    target: &SlotPath,
    dev: &mut dyn SlotDevice,
    mut checked: Checked,
    hold: bool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<()> {
    let of = ReadBackOf { chunk_size: p.chunk_size, size_bytes: p.size_bytes, n_chunks: p.n_chunks() };
    let mut skip = checked.ok.clone();
    for &c in &checked.bad {
        skip[c as usize] = true;
    }
    let hash = &mut |c: u64| index.entries[c as usize].raw_hash;
    let mut good = |c: u64, raw: &[u8]| {
        checked.ok[c as usize] = true;
        checked.fingerprint(p, c, raw);
    };
    let mut bad = read_back(dev, target, &of, &skip, hash, &mut good, progress)?;
    bad.extend_from_slice(&checked.bad);
    bad.sort_unstable();
    let mut j = node.journal().clone();
    let u = j.update.as_mut().expect("verify runs in an update");
    if let Some(&first_bad) = bad.first() {
        u.chunks_done = done_but(&bad, p.n_chunks());
        u.phase = Phase::Downloading;
        u.held = false;
        node.save(j)?;
        return Err(Error::ReadBack { slot: target.slot, device: target.path.clone(), chunk_idx: first_bad });
    }
    u.phase = Phase::Verified;
    u.held = hold;
    if hold {
        let hashes = crate::held::Hashes {
            manifest_blake3: u.bundle.manifest_blake3.clone(),
            chunk_size: p.chunk_size,
            size_bytes: p.size_bytes,
            chunks: index.entries.iter().map(|e| e.raw_hash).collect(),
        };
        crate::held::record(&node.config.held_path(target.slot), &hashes)?;
    }
    // Durability: every chunk was synced and read back from the device before this save.
    node.save(j)?;
    log::info!("slot {}: {} chunks read back and verified", target.slot, p.n_chunks());
    if hold {
        let u = node.journal().update.as_ref().expect("saved above");
        let message = format!(
            "slot {} holds {} {}, verified; it is flipped on request (edge-update flip)",
            target.slot, u.bundle.name, u.bundle.version
        );
        node.emit(EventKind::Verified, &message);
    }
    if let Some(Err(e)) = checked.cache.map(slot_index::Writer::commit) {
        let path = node.config.slot_index_path(target.slot);
        log::warn!("{}", Error::WriteCache { path, source: e });
    }
    Ok(())
}

/// What a read-back reads: the payload's shape.
pub(crate) struct ReadBackOf {
    pub(crate) chunk_size: u32,
    pub(crate) size_bytes: u64,
    pub(crate) n_chunks: u64,
}

/// Reads every chunk not in `skip` back from the device itself, past the page cache, and compares it with
/// `hash(chunk_idx)`; `good` is given each chunk that matches. Returns the chunks that did not, in order.
pub(crate) fn read_back(
    dev: &mut dyn SlotDevice,
    target: &SlotPath,
    of: &ReadBackOf,
    skip: &[bool],
    hash: &mut dyn FnMut(u64) -> [u8; 32],
    good: &mut dyn FnMut(u64, &[u8]),
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<u64>> {
    let rerr = |source| Error::ReadSlot { slot: target.slot, device: target.path.clone(), source };
    dev.sync().map_err(|source| Error::WriteSlot { slot: target.slot, device: target.path.clone(), source })?;
    dev.drop_cache().map_err(rerr)?;
    let cs = u64::from(of.chunk_size);
    let mut buf = vec![0u8; of.chunk_size as usize];
    let mut bad = Vec::new();
    for c in 0..of.n_chunks {
        if skip[c as usize] {
            continue;
        }
        let len = (of.size_bytes - c * cs).min(cs) as usize;
        dev.read_at(c * cs, &mut buf[..len]).map_err(rerr)?;
        if chunk_hash(&buf[..len]) == hash(c) {
            good(c, &buf[..len]);
        } else {
            bad.push(c);
        }
        if c % 64 == 63 || c + 1 == of.n_chunks {
            progress(&Progress {
                schema: PROGRESS_SCHEMA,
                stage: Stage::Verifying,
                synced: true,
                done_bytes: ((c + 1) * cs).min(of.size_bytes),
                image_bytes: of.size_bytes,
                fetched_bytes: 0,
                reused_bytes: 0,
            });
        }
    }
    Ok(bad)
}

/// The chunk ranges of a payload of `n_chunks` chunks, all but `bad` (sorted).
pub(crate) fn done_but(bad: &[u64], n_chunks: u64) -> Vec<[u64; 2]> {
    let mut done = Vec::new();
    let mut start = 0;
    for &b in bad {
        if b > start {
            done.push([start, b]);
        }
        start = b + 1;
    }
    if start < n_chunks {
        done.push([start, n_chunks]);
    }
    done
}

/// Fills `buf` from a stream, naming the bundle section and offset when it ends early or fails.
pub(crate) fn read_exact(r: &mut dyn Read, buf: &mut [u8], offset: u64, section: &str, name: &str) -> Result<()> {
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
                return Err(Error::fetch(name, offset + n as u64, source));
            }
        }
    }
    Ok(())
}

/// What [`record_stack`] keeps: the stack of the bundle whose manifest hash it names.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RecordedStack {
    manifest_blake3: String,
    stack: serde_json::Value,
}

/// Keeps what the manifest of the bundle `manifest_blake3` lists as its stack at `path`, for the fleet agent's
/// inventory. Beside the journal, not in it: the journal's fields are fixed, since an older updater reads it after a
/// fallback. A cache, written atomically but not synced: a lost or failed one leaves the stack unknown, never the
/// install stopped, so a failure is only logged.
pub fn record_stack(path: &std::path::Path, manifest_blake3: &str, stack: &serde_json::Value) {
    let record = RecordedStack { manifest_blake3: manifest_blake3.to_owned(), stack: stack.clone() };
    let written = image_layout::fsutil::AtomicFile::create(path).and_then(|mut f| {
        serde_json::to_writer(f.file(), &record)
            .map_err(|e| image_layout::Error::WriteFile { path: path.to_owned(), source: e.into() })?;
        f.commit_unsynced()
    });
    if let Err(e) = written {
        log::warn!("the bundle's stack is not kept for the inventory: {e}");
    }
}

/// The stack [`record_stack`] kept at `path`, when it is for the bundle `manifest_blake3` (a slot written since by
/// another install, or an older updater, leaves another bundle's or none).
pub fn recorded_stack(path: &std::path::Path, manifest_blake3: &str) -> Option<serde_json::Value> {
    let bytes = image_layout::fsutil::read_bounded(path, 1 << 20).ok()?;
    let record: RecordedStack = serde_json::from_slice(&bytes).ok()?;
    (record.manifest_blake3 == manifest_blake3).then_some(record.stack)
}
