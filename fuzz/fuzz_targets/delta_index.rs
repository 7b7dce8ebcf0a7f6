//! Fuzz target: a payload's delta index and chunk index, as the reader decodes them once the manifest is verified,
//! and the delta plan made from them.
//!
//! In a bundle both indexes are pinned by a blake3 hash in the signed manifest, so a fuzzer feeding whole bundles
//! never gets past the hash. This target builds the manifest itself around its input: the first 8 bytes give the
//! payload's shape and how the rest is used, and the hashes are those of the bytes the target then parses, as if a
//! signer had signed them.
//!
//! - byte 0, bit 0: the rest is the raw delta index, compressed by the target (else it is the stored bytes);
//!   bit 1: the manifest claims one byte more of frames than the index adds up to, which must be refused;
//!   bit 2: the rest is also read as the chunk index;
//! - byte 1: block size `512 << (b % 8)`; byte 2: frame size `block << (b % 4)`; byte 3: chunk size
//!   `frame << (b % 4)`, doubled until it is at least 4096;
//! - bytes 4..8: payload size `1 + (u32 % 1 MiB)`.
//!
//! Beyond "no panic": an index that decodes has one fingerprint per block, one size per frame, offsets that add
//! up to the frame area, and encodes back to the bytes it came from (zstd's own streaming decoder reads the
//! stored bytes to the same raw index); a chunk index that decodes is contiguous and encodes back to its bytes;
//! and every chunk's plan covers exactly its blocks and fetches only frames of that chunk.
#![no_main]

use image_layout::delta::{ChunkSource, HaveIndex, Planner};
use image_layout::format::{compress_bound, IndexEntry, FORMAT_VERSION, INDEX_ENTRY_LEN};
use image_layout::manifest::{Algorithm, Area, Compression, Manifest, Payload, Section};
use image_layout::reader::{ChunkIndex, DeltaIndex};
use libfuzzer_sys::fuzz_target;

const HEAD: usize = 8;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The payload the input describes, with the sections' hashes and sizes left to fill in.
fn payload(head: &[u8; HEAD]) -> Payload {
    let block_size = 512u32 << (head[1] % 8);
    let frame_size = block_size << (head[2] % 4);
    let mut chunk_size = frame_size << (head[3] % 4);
    while chunk_size < 4096 {
        chunk_size *= 2;
    }
    let size_bytes = 1 + u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]) % (1 << 20));
    let section = Section { offset: 0, size_bytes: 0, blake3: String::new() };
    Payload {
        name: "rootfs".to_owned(),
        size_bytes,
        block_size,
        chunk_size,
        frame_size,
        index: section.clone(),
        chunks: Area { offset: 0, size_bytes: 0 },
        delta_index: section,
        frames: Area { offset: 0, size_bytes: 0 },
    }
}

/// A manifest of the one payload, its sections laid out as a writer lays them; `None` when it breaks a rule.
fn manifest(mut p: Payload) -> Option<Payload> {
    p.index.offset = 0;
    p.chunks.offset = p.index.size_bytes;
    p.delta_index.offset = p.chunks.offset.checked_add(p.chunks.size_bytes)?;
    p.frames.offset = p.delta_index.offset.checked_add(p.delta_index.size_bytes)?;
    let m = Manifest {
        format: FORMAT_VERSION,
        name: "fuzz".to_owned(),
        version: "1".to_owned(),
        security_version: 0,
        compatible: "fuzz".to_owned(),
        created: "2026-01-01T00:00:00Z".to_owned(),
        expires: None,
        stack: serde_json::Value::Null,
        compression: Compression { algorithm: Algorithm::Zstd, level: 3, delta_level: 3 },
        payloads: vec![p],
    };
    m.validate().ok()?;
    m.payloads.into_iter().next()
}

/// The raw delta index: fingerprints then frame sizes, little-endian.
fn raw_of(d: &DeltaIndex) -> Vec<u8> {
    let mut raw: Vec<u8> = d.fingerprints.iter().flat_map(|f| f.to_le_bytes()).collect();
    raw.extend(d.frame_sizes.iter().flat_map(|s| s.to_le_bytes()));
    raw
}

fn delta(head: &[u8; HEAD], body: &[u8]) {
    let mut p = payload(head);
    let raw_mode = head[0] & 1 != 0;
    let stored = if raw_mode { zstd::bulk::compress(body, 1).expect("zstd compresses") } else { body.to_vec() };
    p.delta_index.size_bytes = stored.len() as u64;
    p.delta_index.blake3 = hex(blake3::hash(&stored).as_bytes());
    // The frame area the raw index adds up to, when it has the length the payload implies; stored bytes are read
    // with zstd's streaming decoder for that, independently of the reader's.
    let raw_len = p.delta_index_raw_len() as usize;
    let raw = if raw_mode { Some(body.to_vec()) } else { zstd::stream::decode_all(body).ok() };
    let raw = raw.filter(|r| r.len() == raw_len);
    let known = raw.is_some();
    let frames_sum = match raw {
        Some(raw) => raw[p.n_blocks() as usize * 8..]
            .chunks_exact(4)
            .map(|c| u64::from(u32::from_le_bytes(c.try_into().expect("4 bytes"))))
            .sum(),
        None => u64::from(u16::from_le_bytes([head[4], head[5]])),
    };
    let claim_more = head[0] & 2 != 0;
    p.frames.size_bytes = frames_sum + u64::from(claim_more);
    let n_chunks = p.n_chunks();
    p.index.size_bytes = n_chunks * INDEX_ENTRY_LEN as u64;
    p.index.blake3 = hex(&[0; 32]);
    let Some(p) = manifest(p) else { return };
    let Ok(d) = DeltaIndex::parse(&p, &stored) else { return };
    assert!(!(claim_more && known), "a frame area one byte longer than the index adds up to was accepted");
    assert_eq!(d.fingerprints.len() as u64, p.n_blocks());
    assert_eq!(d.frame_sizes.len() as u64, p.n_frames());
    assert_eq!(d.frame_offsets.len(), d.frame_sizes.len() + 1);
    assert!(d.frame_offsets.windows(2).zip(&d.frame_sizes).all(|(w, &s)| w[1] - w[0] == u64::from(s)));
    assert_eq!(d.frame_offsets.last().copied(), Some(p.frames.size_bytes));
    let raw = raw_of(&d);
    if raw_mode {
        assert_eq!(raw, body, "a delta index does not round-trip");
    } else {
        let streamed = zstd::stream::decode_all(&stored[..]).ok();
        assert_eq!(streamed.as_deref(), Some(&raw[..]), "zstd's streaming decoder reads another delta index");
    }
    plan(head, &p, &d);
}

/// Plans every chunk against an old image that holds the first blocks of the new one.
fn plan(head: &[u8; HEAD], p: &Payload, d: &DeltaIndex) {
    let blocks_per_chunk = u64::from(p.chunk_size / p.block_size);
    let blocks_per_frame = u64::from(p.frame_size / p.block_size);
    let frames_per_chunk = u64::from(p.chunk_size / p.frame_size);
    // A chunk index as a writer would make it: each chunk stored in as many bytes as its frames.
    let mut entries = Vec::new();
    let mut offset = 0;
    for c in 0..p.n_chunks() {
        let frames = c * frames_per_chunk..((c + 1) * frames_per_chunk).min(p.n_frames());
        let stored_size = frames.map(|f| d.frame_sizes[f as usize]).fold(0u32, u32::saturating_add);
        let raw_size = p.chunk_raw_size(c);
        entries.push(IndexEntry { offset, stored_size, raw_size, raw_hash: [0; 32], stored_hash: [0; 32] });
        offset += u64::from(stored_size);
    }
    let index = ChunkIndex { entries };
    let have_blocks = (d.fingerprints.len() * usize::from(head[3])) / 255;
    let have = HaveIndex::from_fingerprints(p.block_size, &d.fingerprints[..have_blocks]);
    let planner = Planner::new(p, &index, d, &have).expect("the block sizes agree");
    for c in 0..p.n_chunks() {
        let plan = planner.chunk(c);
        let first = c * blocks_per_chunk;
        let last = (first + blocks_per_chunk).min(p.n_blocks());
        assert_eq!(plan.local.len() as u64, last - first, "a plan does not cover its chunk's blocks");
        if let ChunkSource::Frames(frames) = &plan.source {
            assert!(frames.windows(2).all(|w| w[0] < w[1]), "a plan fetches a frame twice");
            assert!(frames.iter().all(|&f| f * blocks_per_frame >= first && f * blocks_per_frame < last));
        }
        if plan.source == ChunkSource::Local {
            assert!(plan.local.iter().all(Option::is_some));
        }
    }
}

fn chunk_index(head: &[u8; HEAD], body: &[u8]) {
    let mut p = payload(head);
    let len = p.n_chunks() as usize * INDEX_ENTRY_LEN;
    let mut bytes = body[..body.len().min(len)].to_vec();
    bytes.resize(len, 0);
    p.index.size_bytes = len as u64;
    p.index.blake3 = hex(blake3::hash(&bytes).as_bytes());
    // The chunk area the entries add up to, so that a well-formed index can pass.
    let sum: u64 = bytes.chunks_exact(INDEX_ENTRY_LEN).map(|e| u64::from(IndexEntry::decode(e).stored_size)).sum();
    p.chunks.size_bytes = sum;
    p.delta_index.size_bytes = 1;
    p.delta_index.blake3 = hex(&[0; 32]);
    let Some(p) = manifest(p) else { return };
    let Ok(index) = ChunkIndex::parse(&p, &bytes) else { return };
    assert_eq!(index.entries.len() as u64, p.n_chunks());
    let mut expected = 0;
    let mut again = Vec::new();
    for (i, e) in index.entries.iter().enumerate() {
        assert_eq!(e.offset, expected, "chunk index entries are not contiguous");
        assert_eq!(e.raw_size, p.chunk_raw_size(i as u64));
        assert!(u64::from(e.stored_size) <= compress_bound(u64::from(e.raw_size)));
        expected += u64::from(e.stored_size);
        e.encode(&mut again);
    }
    assert_eq!(expected, p.chunks.size_bytes);
    assert_eq!(again, bytes, "a chunk index does not round-trip");
}

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_first_chunk::<HEAD>() else { return };
    delta(head, body);
    if head[0] & 4 != 0 {
        chunk_index(head, body);
    }
});
