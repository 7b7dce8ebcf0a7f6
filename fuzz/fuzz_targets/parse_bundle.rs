//! Fuzz target: the header, the manifest and a full streaming verification, then every positioned read, over
//! arbitrary bytes.
//!
//! Nothing may panic, and a bundle that verifies front to back must read the same payloads at random, by chunks
//! and by delta frames, as a full install and a delta install read them. The keyring
//! trusts the fixed key of the bad-input tests (seed `[7; 32]`) and the test key of `tests/vectors/` (seed
//! `[0x42; 32]`), so that inputs grown from the seed corpus get past the signatures and reach the chunk index, the
//! chunks, the delta index and the frames.
#![no_main]

use std::sync::OnceLock;

use image_layout::format::{Header, HEADER_LEN};
use image_layout::keys::{Keyring, SecretKey};
use image_layout::manifest::Manifest;
use image_layout::reader::{BundleAt, Head, Policy, StreamReader};
use libfuzzer_sys::fuzz_target;

fn keyring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| {
        Keyring::from_keys(vec![SecretKey::from_seed([7; 32]).public(), SecretKey::from_seed([0x42; 32]).public()])
    })
}

const POLICY: Policy = Policy { threshold: 1, now: None };

/// Every check `edge-image verify` makes, front to back; the hash of each payload as its chunks stream.
fn stream(data: &[u8]) -> image_layout::Result<Vec<blake3::Hash>> {
    let mut r = StreamReader::open(data, keyring(), &POLICY)?;
    let mut payloads = Vec::new();
    while r.next_payload()?.is_some() {
        let mut h = blake3::Hasher::new();
        while let Some((_, raw)) = r.next_chunk()? {
            h.update(&raw);
        }
        payloads.push(h.finalize());
    }
    r.finish(true)?;
    Ok(payloads)
}

/// Every positioned read a delta install makes; the hash of each payload read by chunks and by delta frames.
fn random_access(data: &[u8]) -> image_layout::Result<Vec<(blake3::Hash, blake3::Hash)>> {
    let b = BundleAt::open(data, keyring(), &POLICY)?;
    let mut payloads = Vec::new();
    for pi in 0..b.verified().manifest.payloads.len() {
        let index = b.chunk_index(pi)?;
        let mut by_chunks = blake3::Hasher::new();
        for ci in 0..index.entries.len() as u64 {
            by_chunks.update(&b.read_chunk(pi, &index, ci)?);
        }
        let delta = b.delta_index(pi)?;
        let mut by_frames = blake3::Hasher::new();
        for j in 0..delta.frame_sizes.len() as u64 {
            by_frames.update(&b.read_frame(pi, &delta, j)?);
        }
        payloads.push((by_chunks.finalize(), by_frames.finalize()));
    }
    Ok(payloads)
}

fuzz_target!(|data: &[u8]| {
    if let Some(h) = data.first_chunk::<HEADER_LEN>() {
        if let Ok(header) = Header::decode(h) {
            let end = HEADER_LEN.saturating_add(header.manifest_len as usize);
            if let Some(manifest) = data.get(HEADER_LEN..end) {
                let _ = Manifest::parse(manifest);
            }
        }
    }
    let _ = Manifest::parse(data);
    // The manifest of an unverified head is parsed too, as `edge-image inspect` does.
    if let Ok(head) = Head::read(&mut &data[..]) {
        let _ = Manifest::parse(&head.manifest_bytes);
    }
    let _ = BundleAt::open_unverified(data);
    let streamed = stream(data);
    let positioned = random_access(data);
    // A bundle that verifies front to back reads the same payloads at random, by chunks and by delta frames.
    if let Ok(streamed) = streamed {
        let positioned = positioned.expect("a bundle that streams also reads at random");
        let by_chunks: Vec<_> = positioned.iter().map(|p| p.0).collect();
        let by_frames: Vec<_> = positioned.iter().map(|p| p.1).collect();
        assert_eq!(streamed, by_chunks, "the payloads streamed differ from those read by chunks");
        assert_eq!(streamed, by_frames, "the payloads streamed differ from those read by delta frames");
    }
});
