//! Property tests of the parsers and the readers: on a mutated or truncated bundle, on arbitrary bytes and on signed
//! manifests with arbitrary size claims, nothing panics, and a verification either fails or yields exactly the
//! original chunks.
//!
//! `tests/bad_input.rs` pins the exact error of each kind of damage; this file only checks the two properties above
//! over many more inputs. Failures are not persisted: a failing case prints its minimal input, which then belongs in
//! `bad_input.rs` as a regression test.

use std::io::Cursor;
use std::sync::OnceLock;

use image_layout::error::Error;
use image_layout::format::{Header, HEADER_LEN, MAX_MANIFEST_LEN, MAX_SIGNATURES};
use image_layout::keys::SecretKey;
use image_layout::manifest::Manifest;
use image_layout::reader::{BundleAt, Head, StreamReader};
use image_layout::writer::{build, write_head, BuildOptions, PayloadInput};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

const CHUNK: usize = 8192;

mod common;
use common::{key, policy, ring};

/// Three chunks of 8 KiB at most: text; a zero frame then pseudo-random bytes; a 1500-byte text tail.
fn payload() -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 0u32;
    while v.len() < CHUNK {
        v.extend_from_slice(format!("line {i}: proptest payload\n").as_bytes());
        i += 1;
    }
    v.truncate(CHUNK);
    v.resize(CHUNK + 4096, 0);
    let mut x = 0x1234_5678u32;
    v.extend((0..4096).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    v.extend(v[..1500].to_vec());
    v
}

struct Fixture {
    bytes: Vec<u8>,
    chunks: Vec<Vec<u8>>,
    manifest: Manifest,
    body_start: usize,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("p.bundle");
        let mut opts = BuildOptions::new("1.0", 1, "board", time::OffsetDateTime::UNIX_EPOCH);
        opts.chunk_size = CHUNK as u32;
        opts.frame_size = 4096;
        opts.block_size = 4096;
        opts.threads = 1;
        let input =
            PayloadInput { name: "rootfs".into(), reader: Box::new(Cursor::new(payload())), path: "rootfs".into() };
        build(&opts, vec![input], &[SecretKey::from_seed(common::SEED)], &out, &|_| {}).expect("the fixture builds");
        let bytes = std::fs::read(&out).expect("read the fixture");
        let head = Head::read(&mut bytes.as_slice()).expect("head");
        Fixture {
            manifest: Manifest::parse(&head.manifest_bytes).expect("manifest"),
            body_start: head.header.body_start() as usize,
            chunks: payload().chunks(CHUNK).map(<[u8]>::to_vec).collect(),
            bytes,
        }
    })
}

/// A full streaming verification; returns the chunks it yielded and its result.
fn stream(bytes: &[u8]) -> (Vec<Vec<u8>>, Result<(), Error>) {
    let mut got = Vec::new();
    let mut run = || -> Result<(), Error> {
        let mut r = StreamReader::open(bytes, ring(), &policy())?;
        while r.next_payload()?.is_some() {
            while let Some((_, raw)) = r.next_chunk()? {
                got.push(raw);
            }
        }
        r.finish(true)
    };
    let result = run();
    (got, result)
}

/// Every read through positioned reads; returns the chunks it yielded and its result. Frames are read (they must
/// not panic) but not compared: a frame has no hash of its own, its chunk's hash covers it.
fn random_access(bytes: &[u8]) -> (Vec<Vec<u8>>, Result<(), Error>) {
    let mut got = Vec::new();
    let mut run = || -> Result<(), Error> {
        let b = BundleAt::open(bytes, ring(), &policy())?;
        for pi in 0..b.verified().manifest.payloads.len() {
            let index = b.chunk_index(pi)?;
            for ci in 0..index.entries.len() as u64 {
                got.push(b.read_chunk(pi, &index, ci)?);
            }
            let delta = b.delta_index(pi)?;
            for j in 0..delta.frame_sizes.len() as u64 {
                b.read_frame(pi, &delta, j)?;
            }
        }
        Ok(())
    };
    let result = run();
    (got, result)
}

/// The property every reader keeps: what it yields is a prefix of the original chunks, and all of them on success.
fn only_original(got: &[Vec<u8>], result: &Result<(), Error>) -> Result<(), TestCaseError> {
    let truth = &fixture().chunks;
    prop_assert!(got.len() <= truth.len());
    for (i, (g, t)) in got.iter().zip(truth).enumerate() {
        prop_assert!(g == t, "chunk {} yielded with altered bytes", i);
    }
    if result.is_ok() {
        prop_assert_eq!(got.len(), truth.len());
    }
    Ok(())
}

fn mutate(bytes: &[u8], muts: &[(Index, u8)], cut: Option<Index>, span: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let span = span.min(b.len());
    for (at, x) in muts {
        b[at.index(span)] ^= x;
    }
    if let Some(cut) = cut {
        b.truncate(cut.index(b.len()));
    }
    b
}

fn sign(manifest: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_head(&mut out, manifest, &[key().sign_manifest(manifest)]).expect("write to a Vec");
    out.extend_from_slice(body);
    out
}

/// A size claim in a signed manifest: near the true value, a power of two, or anything.
#[derive(Debug, Clone, Copy)]
enum Claim {
    Nudge(i64),
    Set(u64),
}

fn claim() -> impl Strategy<Value = Claim> {
    prop_oneof![
        (-3i64..=3).prop_map(Claim::Nudge),
        (0u32..64).prop_map(|k| Claim::Set(1 << k)),
        Just(Claim::Set(0)),
        Just(Claim::Set(u64::MAX)),
        any::<u64>().prop_map(Claim::Set),
    ]
}

fn apply(m: &mut Manifest, field: usize, c: Claim) {
    let p = &mut m.payloads[0];
    let claimed = |old: u64| match c {
        Claim::Nudge(d) => old.wrapping_add_signed(d),
        Claim::Set(v) => v,
    };
    match field {
        0 => p.block_size = claimed(p.block_size.into()) as u32,
        1 => p.chunk_size = claimed(p.chunk_size.into()) as u32,
        2 => p.frame_size = claimed(p.frame_size.into()) as u32,
        3 => p.size_bytes = claimed(p.size_bytes),
        4 => p.index.offset = claimed(p.index.offset),
        5 => p.index.size_bytes = claimed(p.index.size_bytes),
        6 => p.chunks.offset = claimed(p.chunks.offset),
        7 => p.chunks.size_bytes = claimed(p.chunks.size_bytes),
        8 => p.delta_index.offset = claimed(p.delta_index.offset),
        9 => p.delta_index.size_bytes = claimed(p.delta_index.size_bytes),
        10 => p.frames.offset = claimed(p.frames.offset),
        _ => p.frames.size_bytes = claimed(p.frames.size_bytes),
    }
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    /// A few flipped bytes anywhere, and maybe a truncation.
    #[test]
    fn damaged_bundles_yield_only_original_chunks(
        muts in vec((any::<Index>(), 1..=255u8), 1..4),
        cut in proptest::option::of(any::<Index>()),
    ) {
        let f = fixture();
        let b = mutate(&f.bytes, &muts, cut, usize::MAX);
        let (got, result) = stream(&b);
        only_original(&got, &result)?;
        let (got, result) = random_access(&b);
        only_original(&got, &result)?;
    }

    /// Flipped bytes in the header, the manifest, the signature and the chunk index, where the parsing happens.
    #[test]
    fn damaged_heads_and_indexes_yield_only_original_chunks(
        muts in vec((any::<Index>(), 1..=255u8), 1..3),
    ) {
        let f = fixture();
        let span = f.body_start + f.manifest.payloads[0].index.size_bytes as usize;
        let b = mutate(&f.bytes, &muts, None, span);
        let (got, result) = stream(&b);
        only_original(&got, &result)?;
    }

    /// However a bundle is cut short, the stream says where its bytes ran out.
    #[test]
    fn every_truncation_is_truncated(cut in any::<Index>()) {
        let f = fixture();
        let cut = cut.index(f.bytes.len());
        let (got, result) = stream(&f.bytes[..cut]);
        only_original(&got, &result)?;
        let at = cut as u64;
        prop_assert!(
            matches!(&result, Err(Error::Truncated { offset, .. }) if *offset == at),
            "{:?}",
            result
        );
    }

    /// Signed manifests that claim other sizes and offsets, one or two at a time, over the true body.
    #[test]
    fn signed_size_claims_yield_only_original_chunks(
        claims in vec((0usize..12, claim()), 1..3),
    ) {
        let f = fixture();
        let mut m = f.manifest.clone();
        for (field, c) in &claims {
            apply(&mut m, *field, *c);
        }
        let b = sign(&m.to_bytes(), &f.bytes[f.body_start..]);
        let (got, result) = stream(&b);
        only_original(&got, &result)?;
        let (got, result) = random_access(&b);
        only_original(&got, &result)?;
    }

    #[test]
    fn header_decode_is_total(b in any::<[u8; HEADER_LEN]>()) {
        if let Ok(h) = Header::decode(&b) {
            prop_assert_eq!(h.encode(), b);
        }
    }

    #[test]
    fn header_lengths_are_range_checked(manifest_len in any::<u32>(), n_signatures in any::<u32>()) {
        let b = Header { manifest_len, n_signatures }.encode();
        let in_range = (1..=MAX_MANIFEST_LEN).contains(&manifest_len) && n_signatures <= MAX_SIGNATURES;
        prop_assert_eq!(Header::decode(&b).is_ok(), in_range);
    }

    #[test]
    fn manifest_parse_is_total(bytes in vec(any::<u8>(), 0..1024)) {
        let _ = Manifest::parse(&bytes);
    }

    /// Damaged manifest JSON: mostly still JSON, so the rules get exercised, not only the JSON parser.
    #[test]
    fn damaged_manifest_parse_is_total(
        muts in vec((any::<Index>(), prop_oneof![Just(b'0'), Just(b'9'), Just(b'"'), Just(b'-'), any::<u8>()]), 1..4),
    ) {
        let mut b = fixture().manifest.to_bytes();
        for (at, v) in &muts {
            let i = at.index(b.len());
            b[i] = *v;
        }
        let _ = Manifest::parse(&b);
    }

    /// Arbitrary bytes, alone, after a valid header, or as the body after a valid signed head: never accepted.
    #[test]
    fn arbitrary_bytes_are_never_accepted(bytes in vec(any::<u8>(), 0..4096), prefix in 0usize..3) {
        let f = fixture();
        let b = match prefix {
            0 => bytes,
            1 => {
                let header = Header {
                    manifest_len: (bytes.len() as u32 / 2).max(1),
                    n_signatures: bytes.first().map_or(0, |x| u32::from(*x % 4)),
                };
                [&header.encode()[..], &bytes].concat()
            }
            _ => [&f.bytes[..f.body_start], &bytes].concat(),
        };
        let (got, result) = stream(&b);
        prop_assert!(got.is_empty());
        prop_assert!(result.is_err());
        let (got, result) = random_access(&b);
        prop_assert!(got.is_empty());
        prop_assert!(result.is_err());
    }
}
