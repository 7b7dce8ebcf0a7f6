//! Generated bad input against the streaming and the random-access reader: truncation at every section boundary and
//! at pseudo-random offsets, one flipped bit in every section, wrong and missing keys, expiry, unknown versions,
//! trailing data, huge size claims, and re-signed chunk and delta indexes that lie.
//!
//! Every bad bundle is made inside its test from one good bundle and asserts one exact error variant. Every case also
//! checks that the chunks the reader yielded before it failed are the original chunks, in order, because that is the
//! property an installer relies on: whatever reaches a slot is what was signed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Cursor;
use std::ops::Range;
use std::sync::OnceLock;

use image_layout::error::Error;
use image_layout::format::{
    compress_bound, to_hex, IndexEntry, SignatureRecord, FORMAT_VERSION, HEADER_LEN, INDEX_ENTRY_LEN, MAX_MANIFEST_LEN,
    MAX_PAYLOAD_SIZE, SIGNATURE_RECORD_LEN,
};
use image_layout::keys::{Keyring, SecretKey};
use image_layout::manifest::Manifest;
use image_layout::reader::{BundleAt, ChunkIndex, DeltaIndex, Head, Policy, StreamReader};
use image_layout::writer::{build, write_head, BuildOptions, PayloadInput};
use time::{Duration, OffsetDateTime};

const BLOCK: usize = 4096;
const CHUNK: usize = 16_384;
const FRAME: usize = 8192;
const FRAMES_PER_CHUNK: usize = CHUNK / FRAME;

mod common;
use common::{key, policy, ring, SEED};

/// The seed of a second key, trusted only where a test says so.
const OTHER_SEED: [u8; 32] = [8; 32];

fn other_key() -> SecretKey {
    SecretKey::from_seed(OTHER_SEED)
}

/// A 64-bit LCG (Knuth's MMIX constants), so that "pseudo-random" is the same on every run and needs no crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn text(len: usize, salt: &str) -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 0u32;
    while v.len() < len {
        v.extend_from_slice(format!("{salt} line {i}: edge-image bad input\n").as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut g = Lcg(seed);
    (0..len).map(|_| g.next() as u8).collect()
}

/// The payloads: `rootfs` has a text chunk, an all-zero chunk (nothing stored), an incompressible chunk (zstd stores
/// raw blocks), a chunk whose first frame is zero, and a 1000-byte tail that is not a whole block; `boot` is one
/// short chunk.
fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    let mut rootfs = text(CHUNK, "rootfs");
    rootfs.resize(2 * CHUNK, 0);
    rootfs.extend(noise(CHUNK, 1));
    rootfs.resize(3 * CHUNK + FRAME, 0);
    rootfs.extend(text(FRAME, "second half"));
    rootfs.extend(text(1000, "tail"));
    let mut boot = noise(2000, 2);
    boot.extend(text(3000, "boot"));
    vec![("rootfs", rootfs), ("boot", boot)]
}

fn build_bundle(seeds: &[[u8; 32]], edit: impl FnOnce(&mut BuildOptions)) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("test.bundle");
    let mut opts = BuildOptions::new("1.0", 1, "board", OffsetDateTime::UNIX_EPOCH);
    opts.block_size = BLOCK as u32;
    opts.chunk_size = CHUNK as u32;
    opts.frame_size = FRAME as u32;
    opts.threads = 2;
    edit(&mut opts);
    let inputs = payloads()
        .into_iter()
        .map(|(name, data)| PayloadInput { name: name.into(), reader: Box::new(Cursor::new(data)), path: name.into() })
        .collect();
    let keys: Vec<SecretKey> = seeds.iter().map(|s| SecretKey::from_seed(*s)).collect();
    build(&opts, inputs, &keys, &out, &|_| {}).expect("the test bundle builds");
    std::fs::read(&out).expect("read the test bundle")
}

/// What the stream reads, in order; `Truncated { section }` names these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Header,
    Manifest,
    Signatures,
    Index(usize),
    Chunk(usize, u64),
    DeltaIndex(usize),
    Frame(usize, u64),
}

/// The good bundle, its payloads and where every section sits.
struct Fixture {
    bytes: Vec<u8>,
    data: Vec<Vec<u8>>,
    manifest: Manifest,
    manifest_len: usize,
    body_start: usize,
    indexes: Vec<ChunkIndex>,
    deltas: Vec<DeltaIndex>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let bytes = build_bundle(&[SEED], |_| {});
        let b = BundleAt::open(bytes.as_slice(), ring(), &policy()).expect("the fixture verifies");
        let n = b.verified().manifest.payloads.len();
        let indexes = (0..n).map(|pi| b.chunk_index(pi).expect("chunk index")).collect();
        let deltas = (0..n).map(|pi| b.delta_index(pi).expect("delta index")).collect();
        let v = b.verified().clone();
        Fixture {
            manifest_len: v.manifest_bytes.len(),
            body_start: v.body_start as usize,
            manifest: v.manifest,
            data: payloads().into_iter().map(|(_, d)| d).collect(),
            indexes,
            deltas,
            bytes,
        }
    })
}

impl Fixture {
    fn name(&self, pi: usize) -> &str {
        &self.manifest.payloads[pi].name
    }

    fn body(&self, offset: u64, len: u64) -> Range<usize> {
        let start = self.body_start + offset as usize;
        start..start + len as usize
    }

    fn index_at(&self, pi: usize) -> Range<usize> {
        let s = &self.manifest.payloads[pi].index;
        self.body(s.offset, s.size_bytes)
    }

    fn chunk_at(&self, pi: usize, ci: u64) -> Range<usize> {
        let e = &self.indexes[pi].entries[ci as usize];
        self.body(self.manifest.payloads[pi].chunks.offset + e.offset, e.stored_size.into())
    }

    fn delta_index_at(&self, pi: usize) -> Range<usize> {
        let s = &self.manifest.payloads[pi].delta_index;
        self.body(s.offset, s.size_bytes)
    }

    fn frame_at(&self, pi: usize, j: u64) -> Range<usize> {
        let d = &self.deltas[pi];
        self.body(
            self.manifest.payloads[pi].frames.offset + d.frame_offsets[j as usize],
            d.frame_sizes[j as usize].into(),
        )
    }

    fn signatures_at(&self) -> Range<usize> {
        HEADER_LEN + self.manifest_len..self.body_start
    }

    /// Every section in the order the stream reads them.
    fn layout(&self) -> Vec<(Kind, Range<usize>)> {
        let mut v = vec![
            (Kind::Header, 0..HEADER_LEN),
            (Kind::Manifest, HEADER_LEN..HEADER_LEN + self.manifest_len),
            (Kind::Signatures, self.signatures_at()),
        ];
        for pi in 0..self.indexes.len() {
            v.push((Kind::Index(pi), self.index_at(pi)));
            for ci in 0..self.indexes[pi].entries.len() as u64 {
                v.push((Kind::Chunk(pi, ci), self.chunk_at(pi, ci)));
            }
        }
        for pi in 0..self.deltas.len() {
            v.push((Kind::DeltaIndex(pi), self.delta_index_at(pi)));
            for j in 0..self.deltas[pi].frame_sizes.len() as u64 {
                v.push((Kind::Frame(pi, j), self.frame_at(pi, j)));
            }
        }
        v
    }

    /// The section a flipped byte at `at` belongs to.
    fn section_of(&self, at: usize) -> (Kind, Range<usize>) {
        self.layout().into_iter().find(|(_, r)| r.contains(&at)).expect("every byte belongs to a section")
    }

    /// The `section` a reader names when the bundle ends at `cut`: the first non-empty section not wholly before it.
    fn truncated_section(&self, cut: usize) -> (String, usize) {
        let (kind, r) = self
            .layout()
            .into_iter()
            .find(|(_, r)| r.end > cut && !r.is_empty())
            .expect("the cut is inside the bundle");
        let name = match kind {
            Kind::Header => "header".to_owned(),
            Kind::Manifest => "manifest".to_owned(),
            Kind::Signatures => "signatures".to_owned(),
            Kind::Index(pi) => format!("payload {} chunk index", self.name(pi)),
            Kind::Chunk(pi, ci) => format!("payload {} chunk {ci}", self.name(pi)),
            Kind::DeltaIndex(pi) => format!("payload {} delta index", self.name(pi)),
            Kind::Frame(pi, j) => format!("payload {} frame {j}", self.name(pi)),
        };
        (name, r.start)
    }

    /// Every chunk of every payload, in stream order.
    fn truth(&self) -> Vec<(usize, u64, Vec<u8>)> {
        let mut v = Vec::new();
        for (pi, data) in self.data.iter().enumerate() {
            for (ci, c) in data.chunks(CHUNK).enumerate() {
                v.push((pi, ci as u64, c.to_vec()));
            }
        }
        v
    }

    /// How many chunks the stream yields before it needs byte `cut`.
    fn chunks_before(&self, cut: usize) -> usize {
        let mut n = 0;
        for pi in 0..self.indexes.len() {
            if self.index_at(pi).end > cut {
                return n;
            }
            for ci in 0..self.indexes[pi].entries.len() as u64 {
                if self.chunk_at(pi, ci).end > cut {
                    return n;
                }
                n += 1;
            }
        }
        n
    }

    fn n_chunks(&self) -> usize {
        self.indexes.iter().map(|i| i.entries.len()).sum()
    }

    /// Chunks of the payloads before `pi` plus the first `ci` chunks of `pi`.
    fn chunks_up_to(&self, pi: usize, ci: u64) -> usize {
        self.indexes[..pi].iter().map(|i| i.entries.len()).sum::<usize>() + ci as usize
    }

    /// True when zstd stored this frame as a raw block, so that a flip in its last `raw` bytes changes content only.
    fn frame_is_raw(&self, pi: usize, j: u64) -> bool {
        let raw = self.manifest.payloads[pi].frame_raw_size(j) as usize;
        self.frame_at(pi, j).len() > raw
    }
}

type Yielded = Vec<(usize, u64, Vec<u8>)>;

/// A full verification over `Read`, collecting every chunk it yields.
fn stream(bytes: &[u8], ring: &Keyring, policy: &Policy) -> (Yielded, Result<(), Error>) {
    let mut got = Vec::new();
    let mut run = || -> Result<(), Error> {
        let mut r = StreamReader::open(bytes, ring, policy)?;
        while let Some(pi) = r.next_payload()? {
            while let Some((ci, raw)) = r.next_chunk()? {
                got.push((pi, ci, raw));
            }
        }
        r.finish(true)
    };
    let result = run();
    (got, result)
}

/// Every verified read through positioned reads, in body order, collecting every chunk it yields. A frame carries no
/// hash of its own, so `read_frame` is only asked for frames no case here alters (see
/// `random_access_frames_are_checked_only_through_the_chunk_hash`).
fn random_access(bytes: &[u8], ring: &Keyring, policy: &Policy) -> (Yielded, Result<(), Error>) {
    let f = fixture();
    let mut got = Vec::new();
    let mut run = || -> Result<(), Error> {
        let b = BundleAt::open(bytes, ring, policy)?;
        let n = b.verified().manifest.payloads.len();
        for pi in 0..n {
            let index = b.chunk_index(pi)?;
            for ci in 0..index.entries.len() as u64 {
                got.push((pi, ci, b.read_chunk(pi, &index, ci)?));
            }
        }
        for pi in 0..n {
            let delta = b.delta_index(pi)?;
            for j in 0..delta.frame_sizes.len() as u64 {
                let frame = b.read_frame(pi, &delta, j)?;
                let start = j as usize * FRAME;
                assert!(
                    frame == f.data[pi][start..start + frame.len()],
                    "payload {pi} frame {j}: read_frame returned altered bytes"
                );
            }
        }
        Ok(())
    };
    let result = run();
    (got, result)
}

#[track_caller]
fn assert_original(got: &Yielded) {
    let truth = fixture().truth();
    assert!(got.len() <= truth.len(), "yielded more chunks than exist");
    for (g, t) in got.iter().zip(&truth) {
        assert!(g == t, "yielded payload {} chunk {} with bytes that are not the original", g.0, g.1);
    }
}

#[track_caller]
fn expect_err(got: &Yielded, result: Result<(), Error>, expected: impl Fn(&Error) -> bool) {
    assert_original(got);
    match result {
        Ok(()) => panic!("bad bundle accepted after {} chunks", got.len()),
        Err(e) => assert!(expected(&e), "unexpected error: {e:?}"),
    }
}

/// Full streaming verification with the test keyring must fail with `expected`; returns the chunks yielded first.
#[track_caller]
fn check(bytes: &[u8], expected: impl Fn(&Error) -> bool) -> Yielded {
    check_with(bytes, ring(), &policy(), expected)
}

#[track_caller]
fn check_with(bytes: &[u8], ring: &Keyring, policy: &Policy, expected: impl Fn(&Error) -> bool) -> Yielded {
    let (got, result) = stream(bytes, ring, policy);
    expect_err(&got, result, expected);
    got
}

/// The same through [`BundleAt`].
#[track_caller]
fn check_at(bytes: &[u8], expected: impl Fn(&Error) -> bool) -> Yielded {
    let (got, result) = random_access(bytes, ring(), &policy());
    expect_err(&got, result, expected);
    got
}

#[track_caller]
fn check_ok_with(bytes: &[u8], ring: &Keyring, policy: &Policy) {
    let (got, result) = stream(bytes, ring, policy);
    assert!(result.is_ok(), "good bundle rejected: {result:?}");
    assert!(got == fixture().truth(), "good bundle yielded other chunks");
}

fn flipped(bytes: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= mask;
    b
}

/// Splits a bundle into its manifest, signature records and body.
fn split(bytes: &[u8]) -> (Manifest, Vec<SignatureRecord>, Vec<u8>) {
    let head = Head::read(&mut &bytes[..]).expect("head");
    let m = Manifest::parse(&head.manifest_bytes).expect("manifest");
    let body = bytes[head.header.body_start() as usize..].to_vec();
    (m, head.signatures, body)
}

fn assemble(manifest: &[u8], signatures: &[SignatureRecord], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_head(&mut out, manifest, signatures).expect("writing to a Vec cannot fail");
    out.extend_from_slice(body);
    out
}

/// Lets `edit` change the manifest and the body, then signs the new manifest with the test key. Body offsets stay
/// valid as long as no section changes size; [`relayout`] fixes them when one does.
fn resign(bytes: &[u8], edit: impl FnOnce(&mut Manifest, &mut Vec<u8>)) -> Vec<u8> {
    let (mut m, _, mut body) = split(bytes);
    edit(&mut m, &mut body);
    let mb = m.to_bytes();
    assemble(&mb, &[key().sign_manifest(&mb)], &body)
}

/// Rewrites payload `pi`'s chunk index entries in place and pins the new index hash.
fn edit_index(m: &mut Manifest, body: &mut [u8], pi: usize, edit: impl FnOnce(&mut [IndexEntry])) {
    let s = &m.payloads[pi].index;
    let r = s.offset as usize..(s.offset + s.size_bytes) as usize;
    let mut entries: Vec<IndexEntry> = body[r.clone()].chunks(INDEX_ENTRY_LEN).map(IndexEntry::decode).collect();
    edit(&mut entries);
    let mut bytes = Vec::new();
    for e in &entries {
        e.encode(&mut bytes);
    }
    body[r].copy_from_slice(&bytes);
    m.payloads[pi].index.blake3 = to_hex(blake3::hash(&bytes).as_bytes());
}

/// The body's sections in body order: every payload's chunk index and chunk area, then every payload's delta index
/// and frame area.
fn sections(m: &Manifest, body: &[u8]) -> Vec<Vec<u8>> {
    let cut = |offset: u64, len: u64| body[offset as usize..(offset + len) as usize].to_vec();
    let mut v = Vec::new();
    for p in &m.payloads {
        v.push(cut(p.index.offset, p.index.size_bytes));
        v.push(cut(p.chunks.offset, p.chunks.size_bytes));
    }
    for p in &m.payloads {
        v.push(cut(p.delta_index.offset, p.delta_index.size_bytes));
        v.push(cut(p.frames.offset, p.frames.size_bytes));
    }
    v
}

/// Sets every offset so the sections sit back to back in body order, from the sizes the manifest claims.
fn place(m: &mut Manifest) {
    let mut offset = 0;
    for p in &mut m.payloads {
        p.index.offset = offset;
        offset += p.index.size_bytes;
        p.chunks.offset = offset;
        offset += p.chunks.size_bytes;
    }
    for p in &mut m.payloads {
        p.delta_index.offset = offset;
        offset += p.delta_index.size_bytes;
        p.frames.offset = offset;
        offset += p.frames.size_bytes;
    }
}

/// Joins sections (as [`sections`] cut them) into a body, setting every size and offset (not the hashes).
fn relayout(m: &mut Manifest, secs: &[Vec<u8>]) -> Vec<u8> {
    let n = m.payloads.len();
    for (pi, p) in m.payloads.iter_mut().enumerate() {
        p.index.size_bytes = secs[2 * pi].len() as u64;
        p.chunks.size_bytes = secs[2 * pi + 1].len() as u64;
        p.delta_index.size_bytes = secs[2 * n + 2 * pi].len() as u64;
        p.frames.size_bytes = secs[2 * n + 2 * pi + 1].len() as u64;
    }
    place(m);
    secs.concat()
}

/// Replaces payload `pi`'s stored delta index, pins its hash and moves the sections after it.
fn replace_delta_index(m: &mut Manifest, body: &mut Vec<u8>, pi: usize, stored: Vec<u8>) {
    let mut secs = sections(m, body);
    m.payloads[pi].delta_index.blake3 = to_hex(blake3::hash(&stored).as_bytes());
    secs[2 * m.payloads.len() + 2 * pi] = stored;
    *body = relayout(m, &secs);
}

/// Rewrites payload `pi`'s raw delta index (fingerprints, then frame sizes) and stores it compressed again.
fn edit_delta_index(m: &mut Manifest, body: &mut Vec<u8>, pi: usize, edit: impl FnOnce(&mut Vec<u8>)) {
    let s = &m.payloads[pi].delta_index;
    let stored = &body[s.offset as usize..(s.offset + s.size_bytes) as usize];
    let mut raw = zstd::bulk::decompress(stored, 1 << 20).expect("the delta index decompresses");
    edit(&mut raw);
    let stored = zstd::bulk::compress(&raw, 3).expect("compress");
    replace_delta_index(m, body, pi, stored);
}

/// Byte offset of frame `j`'s size in payload `pi`'s raw delta index.
fn frame_size_at(pi: usize, j: usize) -> usize {
    fixture().manifest.payloads[pi].n_blocks() as usize * 8 + j * 4
}

#[test]
fn good_bundle_verifies_both_ways() {
    let f = fixture();
    check_ok_with(&f.bytes, ring(), &policy());
    let (got, result) = random_access(&f.bytes, ring(), &policy());
    assert!(result.is_ok(), "{result:?}");
    assert!(got == f.truth());
    // The fixture has what the cases below rely on: an all-zero chunk, a raw and a compressed frame, a zero frame.
    assert_eq!(f.chunk_at(0, 1).len(), 0);
    assert!(f.frame_is_raw(0, 4) && !f.frame_is_raw(0, 0));
    assert_eq!(f.frame_at(0, 6).len(), 0);
    assert_eq!(f.data[0].len() % BLOCK, 1000);
}

#[test]
fn truncation_at_every_section_boundary_and_pseudo_random_offsets() {
    let f = fixture();
    let mut cuts = Vec::new();
    for (_, r) in f.layout() {
        if !r.is_empty() {
            cuts.extend([r.start, r.start + 1, r.start + r.len() / 2, r.end - 1]);
        }
    }
    let mut g = Lcg(0x5eed);
    cuts.extend((0..50).map(|_| g.below(f.bytes.len())));
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts {
        let (section, _) = f.truncated_section(cut);
        let at = cut as u64;
        let got = check(
            &f.bytes[..cut],
            |e| matches!(e, Error::Truncated { section: s, offset } if *s == section && *offset == at),
        );
        assert_eq!(got.len(), f.chunks_before(cut), "cut at {cut}");
        // Positioned reads report where the bytes ran out too, not where the section starts.
        let got = check_at(
            &f.bytes[..cut],
            |e| matches!(e, Error::Truncated { section: s, offset } if *s == section && *offset == at),
        );
        assert_eq!(got.len(), f.chunks_before(cut), "cut at {cut}");
    }
}

#[test]
fn bit_flips_in_the_header() {
    let b = &fixture().bytes;
    let manifest_len = fixture().manifest_len as u64;
    check(&flipped(b, 0, 0x01), |e| matches!(e, Error::BadMagic));
    check(&flipped(b, 7, 0x80), |e| matches!(e, Error::BadMagic));
    check(&flipped(b, 8, 0x02), |e| matches!(e, Error::UnsupportedVersion { found: 3, supported: 1 }));
    check(&flipped(b, 9, 0x80), |e| matches!(e, Error::UnsupportedVersion { found: 0x8001, .. }));
    check(&flipped(b, 10, 0x01), |e| matches!(e, Error::HeaderField { field: "flags", value: 1, .. }));
    check(
        &flipped(b, 15, 0x80),
        |e| matches!(e, Error::HeaderField { field: "manifest_len", value, .. } if *value == manifest_len | 1 << 31),
    );
    // One byte more or less of manifest moves the signature record by one byte: its key id is no longer trusted.
    check(&flipped(b, 12, 0x01), |e| matches!(e, Error::NotEnoughSignatures { valid: 0, threshold: 1 }));
    // One signature record becomes none.
    check(&flipped(b, 16, 0x01), |e| matches!(e, Error::NotEnoughSignatures { valid: 0, threshold: 1 }));
    // One record becomes three: the two extra are chunk index bytes with an untrusted key id, so the head verifies,
    // but the body now starts 144 bytes late and the chunk index no longer matches its pinned hash.
    check(
        &flipped(b, 16, 0x02),
        |e| matches!(e, Error::SectionHash { payload, section: "chunk index" } if payload == "rootfs"),
    );
    check(&flipped(b, 19, 0x80), |e| matches!(e, Error::HeaderField { field: "n_signatures", .. }));
    check(&flipped(b, 20, 0x01), |e| matches!(e, Error::HeaderField { field: "reserved", value: 1, .. }));
    check(&flipped(b, 23, 0x80), |e| matches!(e, Error::HeaderField { field: "reserved", .. }));
}

/// What one flipped bit at `at` (outside the header) must cause, by the section it lands in.
fn flip_expectation(at: usize, e: &Error) -> bool {
    let f = fixture();
    let id = key().public().id().to_string();
    let (kind, r) = f.section_of(at);
    match kind {
        Kind::Header => unreachable!("header flips are chosen by hand"),
        Kind::Manifest => matches!(e, Error::BadSignature { key_id } if *key_id == id),
        // A flip in the key id makes the record an untrusted key's, which is ignored.
        Kind::Signatures if (at - r.start) % SIGNATURE_RECORD_LEN < 8 => {
            matches!(e, Error::NotEnoughSignatures { valid: 0, threshold: 1 })
        }
        Kind::Signatures => matches!(e, Error::BadSignature { key_id } if *key_id == id),
        Kind::Index(pi) => {
            matches!(e, Error::SectionHash { payload, section: "chunk index" } if payload == f.name(pi))
        }
        // The stored hash is checked before the decompressor sees a byte, so a chunk flip is never `Decompress`.
        Kind::Chunk(pi, ci) => {
            matches!(e, Error::ChunkHash { payload, chunk_idx } if payload == f.name(pi) && *chunk_idx == ci)
        }
        Kind::DeltaIndex(pi) => {
            matches!(e, Error::SectionHash { payload, section: "delta index" } if payload == f.name(pi))
        }
        Kind::Frame(pi, j) => {
            let chunk = j / FRAMES_PER_CHUNK as u64;
            let raw = f.manifest.payloads[pi].frame_raw_size(j) as usize;
            let hash =
                matches!(e, Error::ChunkHash { payload, chunk_idx } if payload == f.name(pi) && *chunk_idx == chunk);
            let decompress =
                matches!(e, Error::Decompress { payload, what: "frame", idx } if payload == f.name(pi) && *idx == j);
            if f.frame_is_raw(pi, j) && at >= r.end - raw {
                // The content of a raw block: it decompresses, to other bytes.
                hash
            } else {
                // A frame has no stored hash (zstd's content checksum is off), so a flip reaches the decompressor:
                // in a header, a block header or an entropy table zstd rejects the frame (`Decompress`); in
                // literals or sequences it may decode to other bytes of the right length, which the chunk hash then
                // rejects once the chunk's last frame is read (`ChunkHash`).
                hash || decompress
            }
        }
    }
}

#[test]
fn bit_flips_in_the_manifest() {
    let f = fixture();
    let mut at = HEADER_LEN;
    while at < HEADER_LEN + f.manifest_len {
        check(&flipped(&f.bytes, at, 1 << (at % 8)), |e| flip_expectation(at, e));
        at += 37;
    }
    let last = HEADER_LEN + f.manifest_len - 1;
    check(&flipped(&f.bytes, last, 0x01), |e| flip_expectation(last, e));
}

#[test]
fn bit_flips_in_the_signature() {
    let f = fixture();
    for at in f.signatures_at() {
        let got = check(&flipped(&f.bytes, at, 1 << (at % 8)), |e| flip_expectation(at, e));
        assert!(got.is_empty());
    }
}

#[test]
fn bit_flips_in_the_chunk_indexes() {
    let f = fixture();
    for pi in 0..f.indexes.len() {
        let r = f.index_at(pi);
        for at in [r.start, r.start + 8, r.start + 13, r.start + r.len() / 2, r.end - 1] {
            let got = check(&flipped(&f.bytes, at, 0x10), |e| flip_expectation(at, e));
            assert_eq!(got.len(), f.chunks_up_to(pi, 0));
            check_at(&flipped(&f.bytes, at, 0x10), |e| flip_expectation(at, e));
        }
    }
}

#[test]
fn bit_flips_in_each_chunk() {
    let f = fixture();
    for pi in 0..f.indexes.len() {
        for ci in 0..f.indexes[pi].entries.len() as u64 {
            let r = f.chunk_at(pi, ci);
            if r.is_empty() {
                // An all-zero chunk stores nothing, so there is no bit to flip.
                continue;
            }
            for at in [r.start, r.start + r.len() / 2, r.end - 1] {
                let got = check(&flipped(&f.bytes, at, 0x04), |e| flip_expectation(at, e));
                assert_eq!(got.len(), f.chunks_up_to(pi, ci));
                let got = check_at(&flipped(&f.bytes, at, 0x04), |e| flip_expectation(at, e));
                assert_eq!(got.len(), f.chunks_up_to(pi, ci));
            }
        }
    }
}

#[test]
fn bit_flips_in_the_delta_indexes() {
    let f = fixture();
    for pi in 0..f.deltas.len() {
        let r = f.delta_index_at(pi);
        for at in [r.start, r.start + r.len() / 2, r.end - 1] {
            let got = check(&flipped(&f.bytes, at, 0x01), |e| flip_expectation(at, e));
            assert_eq!(got.len(), f.n_chunks());
            check_at(&flipped(&f.bytes, at, 0x01), |e| flip_expectation(at, e));
        }
    }
}

#[test]
fn bit_flips_in_each_frame() {
    let f = fixture();
    for pi in 0..f.deltas.len() {
        for j in 0..f.deltas[pi].frame_sizes.len() as u64 {
            let r = f.frame_at(pi, j);
            if r.is_empty() {
                // An all-zero frame stores nothing.
                continue;
            }
            for at in [r.start + r.len() / 2, r.end - 1] {
                let got = check(&flipped(&f.bytes, at, 0x20), |e| flip_expectation(at, e));
                assert_eq!(got.len(), f.n_chunks());
            }
            // The first byte of the zstd magic: never a frame, whatever the content.
            check(
                &flipped(&f.bytes, r.start, 0x01),
                |e| matches!(e, Error::Decompress { what: "frame", idx, .. } if *idx == j),
            );
        }
    }
}

#[test]
fn bit_flips_at_pseudo_random_offsets_after_the_header() {
    let f = fixture();
    let mut g = Lcg(42);
    for _ in 0..50 {
        let at = HEADER_LEN + g.below(f.bytes.len() - HEADER_LEN);
        let bit = 1 << g.below(8);
        check(&flipped(&f.bytes, at, bit), |e| flip_expectation(at, e));
    }
}

/// A frame has no hash of its own: `read_frame` returns whatever a raw frame decodes to, and the caller that
/// assembles a chunk from frames must check it against the chunk hash, as the delta installer does.
#[test]
fn random_access_frames_are_checked_only_through_the_chunk_hash() {
    let f = fixture();
    let r = f.frame_at(0, 4);
    let bad = flipped(&f.bytes, r.end - 1, 0x01);
    let b = BundleAt::open(bad.as_slice(), ring(), &policy()).expect("the head is intact");
    let delta = b.delta_index(0).expect("the delta index is intact");
    let index = b.chunk_index(0).expect("the chunk index is intact");
    let frame4 = b.read_frame(0, &delta, 4).expect("a raw frame decodes");
    let frame5 = b.read_frame(0, &delta, 5).expect("a raw frame decodes");
    assert!(frame4 != f.data[0][4 * FRAME..5 * FRAME]);
    let chunk = [frame4, frame5].concat();
    assert!(image_layout::format::chunk_hash(&chunk) != index.entries[2].raw_hash);
}

#[test]
fn keys_and_thresholds() {
    let f = fixture();
    let both = Keyring::from_keys(vec![key().public(), other_key().public()]);
    let two = Policy { threshold: 2, now: None };
    // A keyring without the signer.
    check_with(&f.bytes, &Keyring::from_keys(vec![other_key().public()]), &policy(), |e| {
        matches!(e, Error::NotEnoughSignatures { valid: 0, threshold: 1 })
    });
    // An empty keyring.
    check_with(&f.bytes, &Keyring::default(), &policy(), |e| {
        matches!(e, Error::NotEnoughSignatures { valid: 0, threshold: 1 })
    });
    // Two keys required, one signed.
    check_with(&f.bytes, &both, &two, |e| matches!(e, Error::NotEnoughSignatures { valid: 1, threshold: 2 }));
    // The same key's record twice counts once.
    let (m, sigs, body) = split(&f.bytes);
    let mb = m.to_bytes();
    let twice = assemble(&mb, &[sigs[0].clone(), sigs[0].clone()], &body);
    check_with(&twice, &both, &two, |e| matches!(e, Error::NotEnoughSignatures { valid: 1, threshold: 2 }));
    // A trusted key's record that does not verify fails the bundle even when the threshold is met without it.
    let mut forged = other_key().sign_manifest(b"another manifest");
    forged.signature[0] ^= 1;
    let with_forged = assemble(&mb, &[sigs[0].clone(), forged], &body);
    let other_id = other_key().public().id().to_string();
    check_with(&with_forged, &both, &policy(), |e| matches!(e, Error::BadSignature { key_id } if *key_id == other_id));
    // The same record by an untrusted key is ignored, and both signers meet a threshold of two.
    check_ok_with(&with_forged, ring(), &policy());
    let signed_twice = build_bundle(&[SEED, OTHER_SEED], |_| {});
    check_ok_with(&signed_twice, &both, &two);
}

#[test]
fn expired_manifest() {
    let day = OffsetDateTime::UNIX_EPOCH + Duration::days(1);
    let b = build_bundle(&[SEED], |o| o.expires = Some(day));
    let at = |now| Policy { threshold: 1, now: Some(now) };
    check_with(
        &b,
        ring(),
        &at(day + Duration::days(1)),
        |e| matches!(e, Error::Expired { expires } if expires == "1970-01-02T00:00:00Z"),
    );
    // The clock of the machine running the test is past 1970 too.
    check_with(&b, ring(), &at(OffsetDateTime::now_utc()), |e| matches!(e, Error::Expired { .. }));
    // Expiry is inclusive: at the instant itself the bundle is expired.
    check_with(&b, ring(), &at(day), |e| matches!(e, Error::Expired { .. }));
    check_ok_with(&b, ring(), &at(day - Duration::seconds(1)));
    // Without a clock the expiry is not checked.
    check_ok_with(&b, ring(), &policy());
}

#[test]
fn unknown_format_version() {
    let f = fixture();
    for v in [0u16, 2, u16::MAX] {
        let mut b = f.bytes.clone();
        b[8..10].copy_from_slice(&v.to_le_bytes());
        check(
            &b,
            |e| matches!(e, Error::UnsupportedVersion { found, supported } if *found == v && *supported == FORMAT_VERSION),
        );
    }
    // A signed manifest of another format version, in a version 1 header.
    let b = resign(&f.bytes, |m, _| m.format = 2);
    check(&b, |e| matches!(e, Error::ManifestField { field, .. } if field == "format"));
}

#[test]
fn signed_manifests_that_do_not_parse() {
    let f = fixture();
    let (m, _, body) = split(&f.bytes);
    let signed = |mb: &[u8]| assemble(mb, &[key().sign_manifest(mb)], &body);
    check(&signed(b"not json"), |e| matches!(e, Error::ParseManifest { .. }));
    let text = String::from_utf8(m.to_bytes()).expect("the manifest is UTF-8");
    let unknown = text.replacen('{', "{\"unknown\": 1,", 1);
    check(&signed(unknown.as_bytes()), |e| matches!(e, Error::ParseManifest { .. }));
    check(&signed(&m.to_bytes()[..f.manifest_len - 1]), |e| matches!(e, Error::ParseManifest { .. }));
}

#[test]
fn trailing_garbage() {
    let f = fixture();
    let len = f.bytes.len() as u64;
    for extra in [&[0u8][..], b"\x28\xb5\x2f\xfd", &[0xff; 4096]] {
        let b = [&f.bytes[..], extra].concat();
        let got = check(&b, |e| matches!(e, Error::TrailingData { offset } if *offset == len));
        assert_eq!(got.len(), f.n_chunks());
    }
}

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// This test binary's allocator: the system's, noting the largest single request on each thread, so that the
/// huge-claim cases can show nothing is allocated from an unchecked length (a lazily zeroed `vec![0; 1 << 40]`
/// would not fail on its own).
struct Tracking;

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every method forwards its arguments unchanged to `System`, so `System`'s guarantees are this allocator's;
// the bookkeeping touches only a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest of `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Like [`check`], and the largest single allocation on this thread during the verification must stay below `limit`;
/// returns that largest allocation.
#[track_caller]
fn check_small(bytes: &[u8], limit: usize, expected: impl Fn(&Error) -> bool) -> usize {
    LARGEST.with(|l| l.set(0));
    let (got, result) = stream(bytes, ring(), &policy());
    let largest = LARGEST.with(|l| l.get());
    expect_err(&got, result, expected);
    assert!(largest < limit, "allocated {largest} bytes at once");
    largest
}

#[test]
fn huge_claims_are_refused_before_allocation() {
    let f = fixture();
    const SMALL: usize = 256 << 10;
    let header = |at: usize, v: u32| {
        let mut b = f.bytes.clone();
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        b
    };
    check_small(&header(12, u32::MAX), SMALL, |e| {
        matches!(e, Error::HeaderField { field: "manifest_len", value: 0xffff_ffff, .. })
    });
    check_small(&header(16, u32::MAX), SMALL, |e| {
        matches!(e, Error::HeaderField { field: "n_signatures", value: 0xffff_ffff, .. })
    });
    // The largest manifest allowed is allocated, and no more.
    let len = f.bytes.len() as u64;
    check_small(
        &header(12, MAX_MANIFEST_LEN),
        MAX_MANIFEST_LEN as usize + 1,
        |e| matches!(e, Error::Truncated { section, offset } if section == "manifest" && *offset == len),
    );
    let field = |name: &'static str| move |e: &Error| matches!(e, Error::ManifestField { field, .. } if field == name);
    let b = resign(&f.bytes, |m, _| m.payloads[0].size_bytes = 1 << 50);
    check_small(&b, SMALL, field("payloads[0].size_bytes"));
    // The largest payload allowed, at this chunk size, would need a 5 GiB chunk index.
    let b = resign(&f.bytes, |m, _| m.payloads[0].size_bytes = MAX_PAYLOAD_SIZE);
    check_small(&b, SMALL, field("payloads[0].index.size_bytes"));
    let b = resign(&f.bytes, |m, _| m.payloads[0].index.size_bytes = u64::MAX);
    check_small(&b, SMALL, field("payloads[0].index.size_bytes"));
    let b = resign(&f.bytes, |m, _| m.payloads[0].chunks.size_bytes = u64::MAX);
    check_small(&b, SMALL, field("payloads[0].chunks.size_bytes"));
    let b = resign(&f.bytes, |m, _| m.payloads[1].frames.size_bytes = 1 << 60);
    check_small(&b, SMALL, field("payloads[1].frames.size_bytes"));
    let b = resign(&f.bytes, |m, _| m.payloads[0].delta_index.size_bytes = 1 << 40);
    check_small(&b, SMALL, field("payloads[0].delta_index.size_bytes"));
    let b = resign(&f.bytes, |m, _| m.payloads[0].chunk_size = u32::MAX);
    check_small(&b, SMALL, field("payloads[0].chunk_size"));
    // A section that does not start where the one before it ends.
    let b = resign(&f.bytes, |m, _| m.payloads[1].frames.offset = u64::MAX - 1);
    check_small(&b, SMALL, field("payloads[1].frames"));
    // A signed, consistent claim of a 1 TiB payload in 64 MiB chunks: the manifest is valid and the reader allocates
    // its 1.25 MiB chunk index (within MAX_INDEX_LEN), which this bundle does not have.
    let b = resign(&f.bytes, |m, _| {
        let p = &mut m.payloads[0];
        p.size_bytes = MAX_PAYLOAD_SIZE;
        p.block_size = 65_536;
        p.chunk_size = 64 << 20;
        p.frame_size = 64 << 20;
        p.index.size_bytes = p.n_chunks() * INDEX_ENTRY_LEN as u64;
        place(m);
    });
    let len = b.len() as u64;
    let largest = check_small(
        &b,
        2 << 20,
        |e| matches!(e, Error::Truncated { section, offset } if section == "payload rootfs chunk index" && *offset == len),
    );
    // The tracker does see the index buffer, so the small numbers above are not an accident of the tracking.
    assert_eq!(largest, 16_384 * INDEX_ENTRY_LEN);
}

#[test]
fn chunk_indexes_that_lie() {
    let f = fixture();
    let e = &f.indexes[0].entries;
    let last = e.len() - 1;
    let area = f.manifest.payloads[0].chunks.size_bytes;
    let lie = |edit: &dyn Fn(&mut [IndexEntry])| resign(&f.bytes, |m, body| edit_index(m, body, 0, edit));
    let entry = |idx: u64| move |e: &Error| matches!(e, Error::IndexEntry { payload, section: "chunk index", entry_idx, .. } if payload == "rootfs" && *entry_idx == idx);
    let chunk = |idx: u64| move |e: &Error| matches!(e, Error::ChunkHash { payload, chunk_idx } if payload == "rootfs" && *chunk_idx == idx);
    // Entry 3 starts one byte inside chunk 2.
    let expected = e[3].offset;
    check(
        &lie(&|e| e[3].offset -= 1),
        |e| matches!(e, Error::IndexOverlap { entry_idx: 3, offset, expected: x, .. } if *offset == expected - 1 && *x == expected),
    );
    // Entry 0 claims a chunk that starts past the area's first byte.
    check(&lie(&|e| e[0].offset = 1), entry(0));
    // A gap before entry 3.
    check(&lie(&|e| e[3].offset += 1), entry(3));
    // The last chunk reaches one byte past the chunk area, or leaves its last byte uncovered.
    check(
        &lie(&|e| e[last].stored_size += 1),
        |e| matches!(e, Error::IndexRange { section: "chunk index", covered, size, .. } if *covered == area + 1 && *size == area),
    );
    check(
        &lie(&|e| e[last].stored_size -= 1),
        |e| matches!(e, Error::IndexRange { section: "chunk index", covered, size, .. } if *covered == area - 1 && *size == area),
    );
    // Absurd entries.
    let bound = compress_bound(CHUNK as u64) as u32;
    check(&lie(&|e| e[0].stored_size = bound + 1), entry(0));
    check(&lie(&|e| e[0].stored_size = u32::MAX), entry(0));
    check(&lie(&|e| e[2].raw_size -= 1), entry(2));
    check(&lie(&|e| e[last].raw_size = CHUNK as u32), entry(last as u64));
    check(&lie(&|e| e[0].raw_size = 0), entry(0));
    // Hashes that do not match the stored or raw bytes: nothing of those chunks is yielded.
    let got = check(&lie(&|e| e[0].raw_hash[0] ^= 1), chunk(0));
    assert!(got.is_empty());
    let got = check(&lie(&|e| e[2].stored_hash[31] ^= 1), chunk(2));
    assert_eq!(got.len(), 2);
    check(&lie(&|e| e[1].raw_hash = e[0].raw_hash), chunk(1));
    check(&lie(&|e| e[1].stored_hash = e[0].stored_hash), chunk(1));
    // Chunk 4's hashes on chunk 3: its stored bytes pass nothing.
    check(
        &lie(&|e| {
            e[3].raw_hash = e[4].raw_hash;
            e[3].stored_hash = e[4].stored_hash;
        }),
        chunk(3),
    );
    // The same through positioned reads.
    check_at(&lie(&|e| e[3].offset -= 1), |e| matches!(e, Error::IndexOverlap { entry_idx: 3, .. }));
    check_at(&lie(&|e| e[last].stored_size += 1), |e| matches!(e, Error::IndexRange { section: "chunk index", .. }));
    check_at(&lie(&|e| e[2].stored_hash[0] ^= 1), chunk(2));
}

#[test]
fn delta_indexes_that_lie() {
    let f = fixture();
    let n_frames = f.deltas[0].frame_sizes.len();
    let lie = |edit: &dyn Fn(&mut Vec<u8>)| resign(&f.bytes, |m, body| edit_delta_index(m, body, 0, edit));
    let set_frame_size = |j: usize, v: u32| {
        lie(&move |raw: &mut Vec<u8>| {
            let at = frame_size_at(0, j);
            raw[at..at + 4].copy_from_slice(&v.to_le_bytes());
        })
    };
    // Re-signing with an unchanged delta index is a good bundle: the helpers themselves change nothing else.
    check_ok_with(&lie(&|_| {}), ring(), &policy());
    let bound = compress_bound(FRAME as u64) as u32;
    let got = check(&set_frame_size(0, bound + 1), |e| {
        matches!(e, Error::IndexEntry { section: "delta index", entry_idx: 0, .. })
    });
    assert_eq!(got.len(), f.n_chunks());
    check(&set_frame_size(3, u32::MAX), |e| {
        matches!(e, Error::IndexEntry { section: "delta index", entry_idx: 3, .. })
    });
    let frames = f.manifest.payloads[0].frames.size_bytes;
    let last = f.deltas[0].frame_sizes[n_frames - 1];
    check(
        &set_frame_size(n_frames - 1, last + 1),
        |e| matches!(e, Error::IndexRange { section: "delta index", covered, size, .. } if *covered == frames + 1 && *size == frames),
    );
    // A zero frame that claims stored bytes shifts every later frame: the area is covered one byte too far.
    check(
        &set_frame_size(2, 1),
        |e| matches!(e, Error::IndexRange { section: "delta index", covered, .. } if *covered == frames + 1),
    );
    // The raw delta index is one frame size short or long of what the manifest implies.
    let decompress = |e: &Error| matches!(e, Error::Decompress { what: "delta index", idx: 0, .. });
    check(&lie(&|raw| raw.truncate(raw.len() - 4)), decompress);
    check(&lie(&|raw| raw.extend_from_slice(&[0; 4])), decompress);
    check(&resign(&f.bytes, |m, body| replace_delta_index(m, body, 0, b"not a zstd frame".to_vec())), decompress);
    // A fingerprint that does not match its block (block 13, in chunk 3's zero frame): chunk 3 itself verified and
    // its frames hash to its chunk hash, so the error names the delta index entry.
    let fp = |block: usize| lie(&move |raw: &mut Vec<u8>| raw[block * 8] ^= 1);
    let got = check(&fp(13), |e| matches!(e, Error::Fingerprint { payload, block_idx: 13 } if payload == "rootfs"));
    assert_eq!(got.len(), f.n_chunks());
    // The same through positioned reads.
    check_at(&set_frame_size(0, bound + 1), |e| {
        matches!(e, Error::IndexEntry { section: "delta index", entry_idx: 0, .. })
    });
    check_at(&lie(&|raw| raw.truncate(raw.len() - 4)), decompress);
}

/// Chunks a caller skips (by moving to the next payload, or by finishing early) are still checked against their
/// stored hash, so a corrupt chunk is found even though the intact frames match the chunk hashes.
#[test]
fn skipped_chunks_are_still_checked() {
    let f = fixture();
    let r = f.chunk_at(0, 2);
    let bad = flipped(&f.bytes, r.start + r.len() / 2, 0x01);
    let corrupt =
        |r: &Result<(), Error>| matches!(r, Err(Error::ChunkHash { payload, chunk_idx: 2 }) if payload == "rootfs");
    let reader = StreamReader::open(bad.as_slice(), ring(), &policy()).expect("the head is intact");
    let result = reader.finish(true);
    assert!(corrupt(&result), "{result:?}");
    let mut reader = StreamReader::open(bad.as_slice(), ring(), &policy()).expect("the head is intact");
    let result = loop {
        match reader.next_payload() {
            Ok(Some(_)) => continue,
            Ok(None) => break reader.finish(true),
            Err(e) => break Err(e),
        }
    };
    assert!(corrupt(&result), "{result:?}");
}
