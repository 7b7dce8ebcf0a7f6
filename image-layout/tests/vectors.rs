//! Golden vectors: a tiny bundle made with a fixed test key, and its expected hashes.
//!
//! The test rebuilds the bundle from the committed payload and compares it byte for byte, then checks every hash in
//! `tiny.json`. With `UPDATE_GOLDEN=1` it rewrites the vectors instead; review the diff in the commit.

use std::path::{Path, PathBuf};

use image_layout::format::{fingerprint, to_hex};
use image_layout::keys::{Keyring, SecretKey};
use image_layout::reader::{BundleAt, Policy, StreamReader};
use image_layout::writer::{build, BuildOptions, PayloadInput};

/// The test key's seed: 32 bytes of 0x42. Never use it for anything but vectors.
const TEST_SEED: [u8; 32] = [0x42; 32];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// 40,000 bytes: text-like lines, then a run of zeros, then a short tail that is not a whole block.
fn payload() -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 0u32;
    while v.len() < 20_000 {
        v.extend_from_slice(
            format!("line {i}: the quick brown fox {}\n", i.wrapping_mul(2_654_435_761) % 1000).as_bytes(),
        );
        i += 1;
    }
    v.truncate(20_000);
    v.resize(36_864, 0);
    v.extend((0..3_136u32).map(|x| (x * 7 % 251) as u8));
    v
}

fn options() -> BuildOptions {
    let created = time::OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("2026-01-01 is a valid time");
    let mut o = BuildOptions::new("1.0.0", 7, "test-board", created);
    o.name = "vector".to_owned();
    o.chunk_size = 16_384;
    o.frame_size = 8_192;
    o.stack = serde_json::json!({"kernel": "6.1.0", "k3s": "1.31.2"});
    o.threads = 1;
    o
}

fn build_tiny(out: &Path) {
    let input = PayloadInput {
        name: "rootfs".into(),
        reader: Box::new(std::io::Cursor::new(payload())),
        path: "rootfs".into(),
    };
    build(&options(), vec![input], &[SecretKey::from_seed(TEST_SEED)], out, &|_| {}).expect("the vector builds");
}

fn expected_json(bundle: &[u8]) -> serde_json::Value {
    let key = SecretKey::from_seed(TEST_SEED);
    let ring = Keyring::from_keys(vec![key.public()]);
    let b = BundleAt::open(bundle, &ring, &Policy::ignoring_expiry()).expect("the vector verifies");
    let v = b.verified();
    let p = &v.manifest.payloads[0];
    let index = b.chunk_index(0).expect("index");
    let delta = b.delta_index(0).expect("delta index");
    let data = payload();
    let block_fps: Vec<String> = data.chunks(4096).map(|blk| format!("{:016x}", fingerprint(blk))).collect();
    assert_eq!(delta.fingerprints.iter().map(|f| format!("{f:016x}")).collect::<Vec<_>>(), block_fps);
    serde_json::json!({
        "test_key_seed": to_hex(&TEST_SEED),
        "key_id": key.public().id().to_string(),
        "bundle_bytes": bundle.len(),
        "bundle_blake3": to_hex(blake3::hash(bundle).as_bytes()),
        "payload_blake3": to_hex(blake3::hash(&data).as_bytes()),
        "manifest_blake3": to_hex(&v.manifest_hash()),
        "body_start": v.body_start,
        "chunk_index_blake3": p.index.blake3,
        "delta_index_blake3": p.delta_index.blake3,
        "chunks": index.entries.iter().map(|e| serde_json::json!({
            "offset": e.offset,
            "stored_size": e.stored_size,
            "raw_size": e.raw_size,
            "raw_hash": to_hex(&e.raw_hash),
            "stored_hash": to_hex(&e.stored_hash),
        })).collect::<Vec<_>>(),
        "block_fingerprints": block_fps,
        "frame_sizes": delta.frame_sizes,
    })
}

#[test]
fn tiny_bundle_matches_golden_vector() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let built_path = tmp.path().join("tiny.bundle");
    build_tiny(&built_path);
    let built = std::fs::read(&built_path).expect("read built");
    let expected = expected_json(&built);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(dir().join("tiny.bundle"), &built).expect("write vector");
        std::fs::write(dir().join("tiny.payload"), payload()).expect("write payload");
        let text = serde_json::to_string_pretty(&expected).expect("json") + "\n";
        std::fs::write(dir().join("tiny.json"), text).expect("write json");
        SecretKey::from_seed(TEST_SEED).write_pair(&tmp.path().join("test-key")).expect("write test key");
        std::fs::copy(tmp.path().join("test-key.pub"), dir().join("test-key.pub")).expect("copy test key");
        return;
    }
    let committed = std::fs::read(dir().join("tiny.bundle")).expect("tests/vectors/tiny.bundle is committed");
    assert_eq!(std::fs::read(dir().join("tiny.payload")).expect("payload"), payload(), "tiny.payload is stale");
    assert!(built == committed, "rebuilt bundle differs from tests/vectors/tiny.bundle (UPDATE_GOLDEN=1 to rewrite)");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("tiny.json")).expect("tiny.json")).expect("json");
    assert_eq!(expected, golden);
}

#[test]
fn tiny_bundle_streams_back_to_its_payload() {
    let bundle = std::fs::read(dir().join("tiny.bundle")).expect("vector");
    let ring = Keyring::load(&dir().join("test-key.pub")).expect("test key");
    let mut r = StreamReader::open(bundle.as_slice(), &ring, &Policy::ignoring_expiry()).expect("open");
    let mut out = Vec::new();
    while r.next_payload().expect("payload").is_some() {
        while let Some((_, raw)) = r.next_chunk().expect("chunk") {
            out.extend_from_slice(&raw);
        }
    }
    r.finish(true).expect("delta section and end");
    assert_eq!(out, payload());
}
