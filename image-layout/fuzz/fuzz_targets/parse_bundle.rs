//! Fuzz target: the header, the manifest and a full streaming verification, then every positioned read, over
//! arbitrary bytes.
//!
//! Nothing may panic, and a verification that succeeds must be of a bundle signed by a trusted key. The keyring
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
        Keyring::from_keys(vec![
            SecretKey::from_seed([7; 32]).public(),
            SecretKey::from_seed([0x42; 32]).public(),
        ])
    })
}

const POLICY: Policy = Policy {
    threshold: 1,
    now: None,
};

/// Every check `edge-image verify` makes, front to back.
fn stream(data: &[u8]) -> image_layout::Result<()> {
    let mut r = StreamReader::open(data, keyring(), &POLICY)?;
    while r.next_payload()?.is_some() {
        while r.next_chunk()?.is_some() {}
    }
    r.finish(true)
}

/// Every positioned read a delta install makes.
fn random_access(data: &[u8]) -> image_layout::Result<()> {
    let b = BundleAt::open(data, keyring(), &POLICY)?;
    for pi in 0..b.verified().manifest.payloads.len() {
        let index = b.chunk_index(pi)?;
        for ci in 0..index.entries.len() as u64 {
            b.read_chunk(pi, &index, ci)?;
        }
        let delta = b.delta_index(pi)?;
        for j in 0..delta.frame_sizes.len() as u64 {
            b.read_frame(pi, &delta, j)?;
        }
    }
    Ok(())
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
    let _ = stream(data);
    let _ = random_access(data);
});
