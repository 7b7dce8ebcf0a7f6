//! Reading a bundle: a streaming reader over `Read` alone (a pipe, an HTTP body) and random access over [`ReadAt`]
//! (a file, HTTP Range), both verifying before they yield anything.
//!
//! The order of checks is the format's security rule: the header's lengths are range-checked before anything is
//! allocated; the signatures are checked over the raw manifest bytes before the manifest is parsed; each index is
//! checked against the hash the manifest pins before any entry is used; each stored chunk is checked against its
//! stored hash before it reaches the decompressor, and its raw bytes against the chunk hash before they are yielded.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::format::{
    chunk_hash, compress_bound, fingerprint, from_hex, le_u32, le_u64, ChunkHasher, Header, IndexEntry,
    SignatureRecord, FINGERPRINT_LEN, FRAME_SIZE_LEN, HEADER_LEN, INDEX_ENTRY_LEN, SIGNATURE_RECORD_LEN,
};
use crate::keys::{check_signatures, require_threshold, Keyring, SignerCheck};
use crate::manifest::{Manifest, Payload};

/// Positioned reads, for random access to single chunks and frames.
pub trait ReadAt {
    /// Fills `buf` from `offset`, or fails (`UnexpectedEof` past the end).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The source's length, when it is known cheaply (to report where a truncated bundle ends).
    fn len_hint(&self) -> Option<u64> {
        None
    }
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
    fn len_hint(&self) -> Option<u64> {
        self.metadata().ok().map(|m| m.len())
    }
}

impl ReadAt for [u8] {
    fn len_hint(&self) -> Option<u64> {
        Some(self.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let end = start.checked_add(buf.len()).filter(|e| *e <= self.len());
        let end = end.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&self[start..end]);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
    fn len_hint(&self) -> Option<u64> {
        Some(self.len() as u64)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn len_hint(&self) -> Option<u64> {
        (**self).len_hint()
    }
}

/// How strictly to verify.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Distinct trusted keys whose signatures must verify (at least 1).
    pub threshold: usize,
    /// The current time, to check expiry against; `None` skips the expiry check.
    pub now: Option<OffsetDateTime>,
}

impl Policy {
    /// Verify as an installer does: `threshold` trusted signatures and the expiry checked against `now`.
    pub fn at(now: OffsetDateTime, threshold: usize) -> Policy {
        Policy { threshold, now: Some(now) }
    }

    /// One trusted signature, expiry not checked: for planning, inspection and tests, never for installing.
    pub fn ignoring_expiry() -> Policy {
        Policy { threshold: 1, now: None }
    }
}

/// The header, raw manifest and signature records, not yet verified.
#[derive(Debug, Clone)]
pub struct Head {
    /// The header.
    pub header: Header,
    /// The manifest bytes exactly as signed.
    pub manifest_bytes: Vec<u8>,
    /// The signature records.
    pub signatures: Vec<SignatureRecord>,
}

fn read_section(r: &mut impl Read, buf: &mut [u8], offset: u64, section: &str) -> Result<()> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => return Err(Error::Truncated { section: section.to_owned(), offset: offset + n as u64 }),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(Error::ReadBundle { offset: offset + n as u64, source }),
        }
    }
    Ok(())
}

fn read_section_at(src: &impl ReadAt, buf: &mut [u8], offset: u64, section: &str) -> Result<()> {
    src.read_exact_at(buf, offset).map_err(|source| match source.kind() {
        io::ErrorKind::UnexpectedEof => {
            // Report where the bytes ran out, as the streaming reader does, when the source knows its length.
            let end = src.len_hint().map_or(offset, |len| len.clamp(offset, offset + buf.len() as u64));
            Error::Truncated { section: section.to_owned(), offset: end }
        }
        _ => Error::ReadBundle { offset, source },
    })
}

impl Head {
    /// Reads the head from a stream positioned at the start of the bundle.
    pub fn read(r: &mut impl Read) -> Result<Head> {
        let mut hb = [0u8; HEADER_LEN];
        read_section(r, &mut hb, 0, "header")?;
        let header = Header::decode(&hb)?;
        let mut manifest_bytes = vec![0u8; header.manifest_len as usize];
        read_section(r, &mut manifest_bytes, HEADER_LEN as u64, "manifest")?;
        let mut sb = vec![0u8; header.n_signatures as usize * SIGNATURE_RECORD_LEN];
        read_section(r, &mut sb, HEADER_LEN as u64 + u64::from(header.manifest_len), "signatures")?;
        Ok(Head::from_parts(header, manifest_bytes, &sb))
    }

    /// Reads the head through positioned reads.
    pub fn read_at(src: &impl ReadAt) -> Result<Head> {
        let mut hb = [0u8; HEADER_LEN];
        read_section_at(src, &mut hb, 0, "header")?;
        let header = Header::decode(&hb)?;
        let mut manifest_bytes = vec![0u8; header.manifest_len as usize];
        read_section_at(src, &mut manifest_bytes, HEADER_LEN as u64, "manifest")?;
        let mut sb = vec![0u8; header.n_signatures as usize * SIGNATURE_RECORD_LEN];
        read_section_at(src, &mut sb, HEADER_LEN as u64 + u64::from(header.manifest_len), "signatures")?;
        Ok(Head::from_parts(header, manifest_bytes, &sb))
    }

    fn from_parts(header: Header, manifest_bytes: Vec<u8>, sb: &[u8]) -> Head {
        let signatures = sb.chunks(SIGNATURE_RECORD_LEN).map(SignatureRecord::decode).collect();
        Head { header, manifest_bytes, signatures }
    }

    /// The signature records checked against a keyring (for reporting).
    pub fn signers(&self, keyring: &Keyring) -> Vec<SignerCheck> {
        check_signatures(&self.manifest_bytes, &self.signatures, keyring)
    }

    /// Checks the signatures, then parses and checks the manifest, then its expiry.
    pub fn verify(self, keyring: &Keyring, policy: &Policy) -> Result<Verified> {
        let signers = self.signers(keyring);
        require_threshold(&signers, policy.threshold)?;
        let manifest = Manifest::parse(&self.manifest_bytes)?;
        if let (Some(now), Some(exp)) = (policy.now, manifest.expires_at()) {
            if now >= exp {
                return Err(Error::Expired { expires: manifest.expires.clone().unwrap_or_default() });
            }
        }
        Ok(Verified { body_start: self.header.body_start(), manifest, signers, manifest_bytes: self.manifest_bytes })
    }
}

/// A head whose signatures and manifest have been checked.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The manifest.
    pub manifest: Manifest,
    /// Every signature record and its status.
    pub signers: Vec<SignerCheck>,
    /// Offset of the body in the bundle.
    pub body_start: u64,
    /// The manifest bytes as signed (their blake3 identifies the bundle).
    pub manifest_bytes: Vec<u8>,
}

impl Verified {
    /// blake3 of the manifest bytes: the bundle's identity (what a journal records).
    pub fn manifest_hash(&self) -> [u8; 32] {
        *blake3::hash(&self.manifest_bytes).as_bytes()
    }
    /// Bytes of the bundle a full install reads (everything but the delta sections).
    pub fn full_install_len(&self) -> u64 {
        self.body_start + self.manifest.full_install_body_len()
    }
    /// Total bundle size.
    pub fn bundle_len(&self) -> u64 {
        self.body_start + self.manifest.body_len()
    }
}

/// A payload's verified chunk index.
#[derive(Debug, Clone)]
pub struct ChunkIndex {
    /// One entry per chunk, checked for contiguity and sizes.
    pub entries: Vec<IndexEntry>,
}

impl ChunkIndex {
    /// Checks the index bytes against the manifest's hash, then every entry against its neighbours and limits.
    pub fn parse(p: &Payload, bytes: &[u8]) -> Result<ChunkIndex> {
        let pinned = from_hex::<32>(&p.index.blake3).expect("validated manifest hashes are hex");
        if *blake3::hash(bytes).as_bytes() != pinned {
            return Err(Error::SectionHash { payload: p.name.clone(), section: "chunk index" });
        }
        let mut entries = Vec::with_capacity(bytes.len() / INDEX_ENTRY_LEN);
        let mut expected = 0u64;
        for (i, b) in bytes.chunks(INDEX_ENTRY_LEN).enumerate() {
            let i = i as u64;
            let e = IndexEntry::decode(b);
            let entry_err = |detail: String| Error::IndexEntry {
                payload: p.name.clone(),
                section: "chunk index",
                entry_idx: i,
                detail,
            };
            if e.offset < expected {
                return Err(Error::IndexOverlap { payload: p.name.clone(), entry_idx: i, offset: e.offset, expected });
            }
            if e.offset > expected {
                return Err(entry_err(format!("offset {} leaves a gap after {expected}", e.offset)));
            }
            let raw = p.chunk_raw_size(i);
            if e.raw_size != raw {
                return Err(entry_err(format!("raw size {}, expected {raw}", e.raw_size)));
            }
            if u64::from(e.stored_size) > compress_bound(u64::from(raw)) {
                return Err(entry_err(format!("stored size {} exceeds the bound for {raw} raw bytes", e.stored_size)));
            }
            expected += u64::from(e.stored_size);
            if expected > p.chunks.size_bytes {
                return Err(Error::IndexRange {
                    payload: p.name.clone(),
                    section: "chunk index",
                    covered: expected,
                    size: p.chunks.size_bytes,
                });
            }
            entries.push(e);
        }
        if expected != p.chunks.size_bytes {
            return Err(Error::IndexRange {
                payload: p.name.clone(),
                section: "chunk index",
                covered: expected,
                size: p.chunks.size_bytes,
            });
        }
        Ok(ChunkIndex { entries })
    }
}

/// A payload's verified delta index: a fingerprint per block and a stored size per frame.
#[derive(Debug, Clone)]
pub struct DeltaIndex {
    /// Fingerprint of every block (first 8 bytes of its blake3).
    pub fingerprints: Vec<u64>,
    /// Stored size of every frame (0: all zeros, nothing stored).
    pub frame_sizes: Vec<u32>,
    /// Offset of every frame in the frame area, plus the end.
    pub frame_offsets: Vec<u64>,
}

impl DeltaIndex {
    /// Checks the stored bytes against the manifest's hash, decompresses them into exactly the size the manifest
    /// implies, and checks every frame size.
    pub fn parse(p: &Payload, stored: &[u8]) -> Result<DeltaIndex> {
        let pinned = from_hex::<32>(&p.delta_index.blake3).expect("validated manifest hashes are hex");
        if *blake3::hash(stored).as_bytes() != pinned {
            return Err(Error::SectionHash { payload: p.name.clone(), section: "delta index" });
        }
        let raw_len = p.delta_index_raw_len() as usize;
        let raw = decompress_exact(stored, raw_len).ok_or_else(|| Error::Decompress {
            payload: p.name.clone(),
            what: "delta index",
            idx: 0,
        })?;
        let n_blocks = p.n_blocks() as usize;
        let (fp, fs) = raw.split_at(n_blocks * FINGERPRINT_LEN);
        let fingerprints = fp.chunks(FINGERPRINT_LEN).map(le_u64).collect();
        let frame_sizes: Vec<u32> = fs.chunks(FRAME_SIZE_LEN).map(le_u32).collect();
        let mut frame_offsets = Vec::with_capacity(frame_sizes.len() + 1);
        let mut off = 0u64;
        for (j, &s) in frame_sizes.iter().enumerate() {
            let bound = compress_bound(u64::from(p.frame_raw_size(j as u64)));
            if u64::from(s) > bound {
                return Err(Error::IndexEntry {
                    payload: p.name.clone(),
                    section: "delta index",
                    entry_idx: j as u64,
                    detail: format!("frame stored size {s} exceeds the bound {bound}"),
                });
            }
            frame_offsets.push(off);
            off += u64::from(s);
        }
        frame_offsets.push(off);
        if off != p.frames.size_bytes {
            return Err(Error::IndexRange {
                payload: p.name.clone(),
                section: "delta index",
                covered: off,
                size: p.frames.size_bytes,
            });
        }
        Ok(DeltaIndex { fingerprints, frame_sizes, frame_offsets })
    }
}

/// Decompresses one zstd input into exactly `len` bytes, or `None` (corrupt, too long or too short).
pub fn decompress_exact(stored: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut d = zstd::bulk::Decompressor::new().ok()?;
    decompress_exact_into(stored, len, &mut out, &mut d).then_some(out)
}

/// As [`decompress_exact`], into `out` (its capacity reused) with a reusable decompressor; false when the input is
/// corrupt, too long or too short.
pub fn decompress_exact_into(
    stored: &[u8],
    len: usize,
    out: &mut Vec<u8>,
    d: &mut zstd::bulk::Decompressor<'static>,
) -> bool {
    out.clear();
    if stored.is_empty() {
        out.resize(len, 0);
        return true;
    }
    out.reserve_exact(len);
    matches!(d.decompress_to_buffer(stored, out), Ok(n) if n == len && out.len() == len)
}

/// A decompressor to reuse across chunks (its context is allocated once).
pub fn decompressor() -> zstd::bulk::Decompressor<'static> {
    zstd::bulk::Decompressor::new().expect("a zstd decompression context can be allocated")
}

/// Verifies a stored chunk and decompresses it: stored hash, then decompression into the exact raw size, then the
/// chunk hash over the raw blocks. Pure, so it runs on any thread.
pub fn decode_chunk(p: &Payload, chunk_idx: u64, e: &IndexEntry, stored: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    decode_chunk_into(p, chunk_idx, e, stored, &mut out, &mut decompressor())?;
    Ok(out)
}

/// As [`decode_chunk`], into `out` (its capacity reused, so a pipeline allocates its buffers once) with a reusable
/// decompressor.
pub fn decode_chunk_into(
    p: &Payload,
    chunk_idx: u64,
    e: &IndexEntry,
    stored: &[u8],
    out: &mut Vec<u8>,
    d: &mut zstd::bulk::Decompressor<'static>,
) -> Result<()> {
    if *blake3::hash(stored).as_bytes() != e.stored_hash {
        return Err(Error::ChunkHash { payload: p.name.clone(), chunk_idx });
    }
    if !decompress_exact_into(stored, e.raw_size as usize, out, d) {
        return Err(Error::Decompress { payload: p.name.clone(), what: "chunk", idx: chunk_idx });
    }
    if chunk_hash(out) != e.raw_hash {
        return Err(Error::ChunkHash { payload: p.name.clone(), chunk_idx });
    }
    Ok(())
}

/// A stored chunk read from a stream, not yet verified.
pub struct StoredChunk {
    /// Its index.
    pub chunk_idx: u64,
    /// Its index entry.
    pub entry: IndexEntry,
    /// Its stored bytes.
    pub stored: Vec<u8>,
}

/// Streaming reader: front to back over `Read`, never seeking.
pub struct StreamReader<R: Read> {
    r: R,
    pos: u64,
    verified: Verified,
    next_payload: usize,
    /// Chunk hashes of every payload read so far, for checking the delta frames in [`StreamReader::finish`].
    indexes: Vec<ChunkIndex>,
    /// Chunks of the current payload not yet consumed.
    current: Option<(usize, u64)>,
}

impl<R: Read> StreamReader<R> {
    /// Reads the head and verifies it; nothing after the signatures has been read when this returns.
    pub fn open(mut r: R, keyring: &Keyring, policy: &Policy) -> Result<StreamReader<R>> {
        let head = Head::read(&mut r)?;
        let verified = head.verify(keyring, policy)?;
        Ok(StreamReader { r, pos: verified.body_start, verified, next_payload: 0, indexes: Vec::new(), current: None })
    }

    /// The verified head.
    pub fn verified(&self) -> &Verified {
        &self.verified
    }

    fn read_exact(&mut self, buf: &mut [u8], section: &str) -> Result<()> {
        read_section(&mut self.r, buf, self.pos, section)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Reads the next payload's chunk index and verifies it; returns the payload's position, or `None` after the
    /// last. Chunks of the previous payload that were not consumed are read and checked against their stored hash
    /// first (which pins their raw bytes too), without being decompressed.
    pub fn next_payload(&mut self) -> Result<Option<usize>> {
        while let Some((pi, _)) = self.current {
            if let Some(c) = self.next_stored()? {
                if *blake3::hash(&c.stored).as_bytes() != c.entry.stored_hash {
                    let payload = self.verified.manifest.payloads[pi].name.clone();
                    return Err(Error::ChunkHash { payload, chunk_idx: c.chunk_idx });
                }
            }
        }
        let i = self.next_payload;
        let Some(p) = self.verified.manifest.payloads.get(i).cloned() else {
            return Ok(None);
        };
        let mut bytes = vec![0u8; p.index.size_bytes as usize];
        self.read_exact(&mut bytes, &format!("payload {} chunk index", p.name))?;
        self.indexes.push(ChunkIndex::parse(&p, &bytes)?);
        self.next_payload += 1;
        self.current = Some((i, 0));
        Ok(Some(i))
    }

    /// The payload being read.
    pub fn payload(&self, i: usize) -> &Payload {
        &self.verified.manifest.payloads[i]
    }

    /// The next stored chunk of the current payload, unverified (see [`decode_chunk`]), or `None` at its end.
    pub fn next_stored(&mut self) -> Result<Option<StoredChunk>> {
        let Some((pi, ci)) = self.current else {
            return Ok(None);
        };
        let index = &self.indexes[pi];
        if ci as usize >= index.entries.len() {
            self.current = None;
            return Ok(None);
        }
        let entry = index.entries[ci as usize];
        let mut stored = vec![0u8; entry.stored_size as usize];
        let section = format!("payload {} chunk {ci}", self.verified.manifest.payloads[pi].name);
        self.read_exact(&mut stored, &section)?;
        self.current = Some((pi, ci + 1));
        Ok(Some(StoredChunk { chunk_idx: ci, entry, stored }))
    }

    /// The next verified chunk of the current payload, decoded on this thread.
    pub fn next_chunk(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let Some((pi, _)) = self.current else {
            return Ok(None);
        };
        let Some(s) = self.next_stored()? else {
            return Ok(None);
        };
        let raw = decode_chunk(&self.verified.manifest.payloads[pi], s.chunk_idx, &s.entry, &s.stored)?;
        Ok(Some((s.chunk_idx, raw)))
    }

    /// Reads the rest of the bundle: remaining chunks, then every delta index and frame, each frame checked
    /// against the chunk hashes and fingerprints (when `check_frames`), then requires the end of the stream.
    pub fn finish(mut self, check_frames: bool) -> Result<()> {
        while self.next_payload()?.is_some() {}
        let payloads = self.verified.manifest.payloads.clone();
        for (pi, p) in payloads.iter().enumerate() {
            let mut stored = vec![0u8; p.delta_index.size_bytes as usize];
            self.read_exact(&mut stored, &format!("payload {} delta index", p.name))?;
            let delta = DeltaIndex::parse(p, &stored)?;
            let per_chunk = (p.chunk_size / p.frame_size) as usize;
            let mut hasher = ChunkHasher::new();
            let mut bad_fingerprint: Option<u64> = None;
            let mut block_idx = 0usize;
            for (j, &size) in delta.frame_sizes.iter().enumerate() {
                let mut buf = vec![0u8; size as usize];
                self.read_exact(&mut buf, &format!("payload {} frame {j}", p.name))?;
                if !check_frames {
                    continue;
                }
                let raw = decompress_exact(&buf, p.frame_raw_size(j as u64) as usize)
                    .ok_or_else(|| Error::Decompress { payload: p.name.clone(), what: "frame", idx: j as u64 })?;
                hasher.update(&raw);
                for block in raw.chunks(p.block_size as usize) {
                    if bad_fingerprint.is_none() && fingerprint(block) != delta.fingerprints[block_idx] {
                        bad_fingerprint = Some(block_idx as u64);
                    }
                    block_idx += 1;
                }
                let last = j + 1 == delta.frame_sizes.len();
                if (j + 1) % per_chunk == 0 || last {
                    let chunk_idx = (j / per_chunk) as u64;
                    let entry = &self.indexes[pi].entries[chunk_idx as usize];
                    if hasher.finalize() != entry.raw_hash {
                        return Err(Error::ChunkHash { payload: p.name.clone(), chunk_idx });
                    }
                    if let Some(block_idx) = bad_fingerprint {
                        return Err(Error::Fingerprint { payload: p.name.clone(), block_idx });
                    }
                    hasher = ChunkHasher::new();
                }
            }
        }
        let mut one = [0u8; 1];
        loop {
            match self.r.read(&mut one) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(Error::TrailingData { offset: self.pos }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(Error::ReadBundle { offset: self.pos, source }),
            }
        }
    }
}

/// Decodes stored chunks on `threads` workers and hands the verified raw chunks to `sink` in order.
pub fn decode_parallel(
    p: &Payload,
    threads: usize,
    mut next: impl FnMut() -> Result<Option<StoredChunk>>,
    mut sink: impl FnMut(u64, Vec<u8>) -> Result<()>,
) -> Result<()> {
    use std::sync::mpsc::sync_channel;
    use std::sync::{Arc, Mutex};
    let threads = threads.max(1);
    let (job_tx, job_rx) = sync_channel::<StoredChunk>(threads);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (res_tx, res_rx) = sync_channel::<(u64, Result<Vec<u8>>)>(threads * 2);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let res_tx = res_tx.clone();
            s.spawn(move || loop {
                let job = job_rx.lock().expect("no worker panics while holding the lock").recv();
                let Ok(c) = job else { break };
                let r = decode_chunk(p, c.chunk_idx, &c.entry, &c.stored);
                if res_tx.send((c.chunk_idx, r)).is_err() {
                    break;
                }
            });
        }
        drop(res_tx);
        let mut pending = std::collections::BTreeMap::new();
        let mut next_out = 0u64;
        let mut in_flight = 0usize;
        let mut done_reading = false;
        let mut result = Ok(());
        'outer: loop {
            // Keep the workers fed without holding more than a few chunks in memory.
            while !done_reading && in_flight < threads * 2 {
                match next() {
                    Ok(Some(c)) => {
                        in_flight += 1;
                        if job_tx.send(c).is_err() {
                            break 'outer;
                        }
                    }
                    Ok(None) => done_reading = true,
                    Err(e) => {
                        result = Err(e);
                        break 'outer;
                    }
                }
            }
            if in_flight == 0 {
                break;
            }
            let Ok((idx, r)) = res_rx.recv() else { break };
            in_flight -= 1;
            match r {
                Ok(raw) => {
                    pending.insert(idx, raw);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            while let Some(raw) = pending.remove(&next_out) {
                if let Err(e) = sink(next_out, raw) {
                    result = Err(e);
                    break 'outer;
                }
                next_out += 1;
            }
        }
        drop(job_tx);
        // Drain so that workers blocked on a full result channel can exit.
        for _ in res_rx.iter() {}
        result
    })
}

/// Random access to a bundle through positioned reads; every read is verified.
pub struct BundleAt<S: ReadAt> {
    src: S,
    verified: Verified,
}

impl<S: ReadAt> BundleAt<S> {
    /// Reads and verifies the head.
    pub fn open(src: S, keyring: &Keyring, policy: &Policy) -> Result<BundleAt<S>> {
        let verified = Head::read_at(&src)?.verify(keyring, policy)?;
        Ok(BundleAt { src, verified })
    }

    /// Reads the head and checks the manifest, but not the signatures: for planning and inspection only, never
    /// for installing.
    pub fn open_unverified(src: S) -> Result<BundleAt<S>> {
        let head = Head::read_at(&src)?;
        let manifest = Manifest::parse(&head.manifest_bytes)?;
        let verified = Verified {
            body_start: head.header.body_start(),
            manifest,
            signers: Vec::new(),
            manifest_bytes: head.manifest_bytes,
        };
        Ok(BundleAt { src, verified })
    }

    /// The verified head.
    pub fn verified(&self) -> &Verified {
        &self.verified
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.src
    }

    fn payload_at(&self, pi: usize) -> &Payload {
        &self.verified.manifest.payloads[pi]
    }

    /// Reads and verifies payload `pi`'s chunk index.
    pub fn chunk_index(&self, pi: usize) -> Result<ChunkIndex> {
        let p = self.payload_at(pi);
        let mut b = vec![0u8; p.index.size_bytes as usize];
        read_section_at(
            &self.src,
            &mut b,
            self.verified.body_start + p.index.offset,
            &format!("payload {} chunk index", p.name),
        )?;
        ChunkIndex::parse(p, &b)
    }

    /// Reads and verifies payload `pi`'s delta index.
    pub fn delta_index(&self, pi: usize) -> Result<DeltaIndex> {
        let p = self.payload_at(pi);
        let mut b = vec![0u8; p.delta_index.size_bytes as usize];
        read_section_at(
            &self.src,
            &mut b,
            self.verified.body_start + p.delta_index.offset,
            &format!("payload {} delta index", p.name),
        )?;
        DeltaIndex::parse(p, &b)
    }

    /// The absolute byte range of a stored chunk (for an HTTP Range request).
    pub fn chunk_range(&self, pi: usize, index: &ChunkIndex, chunk_idx: u64) -> std::ops::Range<u64> {
        let p = self.payload_at(pi);
        let e = &index.entries[chunk_idx as usize];
        let start = self.verified.body_start + p.chunks.offset + e.offset;
        start..start + u64::from(e.stored_size)
    }

    /// The absolute byte range of a stored delta frame.
    pub fn frame_range(&self, pi: usize, delta: &DeltaIndex, frame_idx: u64) -> std::ops::Range<u64> {
        let p = self.payload_at(pi);
        let start = self.verified.body_start + p.frames.offset + delta.frame_offsets[frame_idx as usize];
        start..start + u64::from(delta.frame_sizes[frame_idx as usize])
    }

    /// Reads one chunk and verifies it.
    pub fn read_chunk(&self, pi: usize, index: &ChunkIndex, chunk_idx: u64) -> Result<Vec<u8>> {
        let p = self.payload_at(pi);
        let range = self.chunk_range(pi, index, chunk_idx);
        let mut stored = vec![0u8; (range.end - range.start) as usize];
        read_section_at(&self.src, &mut stored, range.start, &format!("payload {} chunk {chunk_idx}", p.name))?;
        decode_chunk(p, chunk_idx, &index.entries[chunk_idx as usize], &stored)
    }

    /// Reads one delta frame and decompresses it to its exact raw size. A frame carries no hash of its own: the
    /// caller checks the chunk it completes against the chunk hash.
    pub fn read_frame(&self, pi: usize, delta: &DeltaIndex, frame_idx: u64) -> Result<Vec<u8>> {
        let p = self.payload_at(pi);
        let range = self.frame_range(pi, delta, frame_idx);
        let mut stored = vec![0u8; (range.end - range.start) as usize];
        read_section_at(&self.src, &mut stored, range.start, &format!("payload {} frame {frame_idx}", p.name))?;
        decompress_exact(&stored, p.frame_raw_size(frame_idx) as usize).ok_or_else(|| Error::Decompress {
            payload: p.name.clone(),
            what: "frame",
            idx: frame_idx,
        })
    }
}
