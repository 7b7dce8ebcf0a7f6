//! Delta installs through the library: plan, apply, and check that the new payload comes out exact, that only the
//! planned ranges of the bundle are read, and that a lying old image costs a fallback, never a wrong byte.

use std::cell::RefCell;
use std::io;
use std::ops::Range;

use image_layout::delta::{apply, coalesce, HaveIndex, Planner};
use image_layout::keys::{Keyring, SecretKey};
use image_layout::reader::{BundleAt, Policy, ReadAt};
use image_layout::writer::{build, BuildOptions, PayloadInput};

const BS: usize = 4096;

/// A block whose content is unique to `seed`, compressible like text.
fn block(seed: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(BS);
    let mut i = 0u32;
    while v.len() < BS {
        v.extend_from_slice(format!("{seed}:{i}:{} ", seed.wrapping_mul(31).wrapping_add(i * 7) % 1013).as_bytes());
        i += 1;
    }
    v.truncate(BS);
    v
}

/// Old image: blocks 0..n. New image: the same blocks shifted by `shift` places, some replaced by new content.
fn images(n: u32, shift: usize, changed: &[usize]) -> (Vec<u8>, Vec<u8>) {
    let old: Vec<u8> = (0..n).flat_map(block).collect();
    let mut blocks: Vec<Vec<u8>> = (0..n).map(block).collect();
    blocks.rotate_right(shift);
    for &c in changed {
        blocks[c] = block(100_000 + c as u32);
    }
    (old, blocks.concat())
}

fn bundle_of(data: &[u8]) -> (Vec<u8>, Keyring) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SecretKey::from_seed([9; 32]);
    let mut o = BuildOptions::new("2", 1, "b", time::OffsetDateTime::UNIX_EPOCH);
    o.chunk_size = 64 * 1024;
    o.frame_size = 8192;
    let input =
        PayloadInput { name: "rootfs".into(), reader: Box::new(io::Cursor::new(data.to_vec())), path: "p".into() };
    build(&o, vec![input], &[key], &dir.path().join("b"), &|_| {}).expect("build");
    (
        std::fs::read(dir.path().join("b")).expect("read"),
        Keyring::from_keys(vec![SecretKey::from_seed([9; 32]).public()]),
    )
}

/// A bundle source that records every byte range read from it.
struct Recording {
    data: Vec<u8>,
    reads: RefCell<Vec<Range<u64>>>,
}

impl ReadAt for Recording {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.reads.borrow_mut().push(offset..offset + buf.len() as u64);
        self.data.read_exact_at(buf, offset)
    }
}

type Outcome = (Vec<u8>, image_layout::delta::PlanSummary, image_layout::delta::ApplyStats, Vec<Range<u64>>);

fn plan_and_apply(old: &[u8], new: &[u8]) -> Outcome {
    plan_then_apply_to(old, old, new)
}

/// Plans against `planned` (what the node indexed), then applies against `actual` (what its slot holds by then).
fn plan_then_apply_to(planned: &[u8], actual: &[u8], new: &[u8]) -> Outcome {
    let (bundle, ring) = bundle_of(new);
    let src = Recording { data: bundle, reads: RefCell::new(Vec::new()) };
    let b = BundleAt::open(&src, &ring, &Policy::ignoring_expiry()).expect("open");
    let p = b.verified().manifest.payloads[0].clone();
    let index = b.chunk_index(0).expect("index");
    let delta = b.delta_index(0).expect("delta");
    let have = HaveIndex::scan(planned, 4096).expect("scan");
    let planner = Planner::new(&p, &index, &delta, &have).expect("planner");
    let summary = planner.summarize(&b, 0, 0);
    src.reads.borrow_mut().clear();
    let mut out = Vec::new();
    let stats = apply(&planner, &b, 0, &actual.to_vec(), "old", &mut out, "out").expect("apply");
    let reads = src.reads.borrow().clone();
    (out, summary, stats, reads)
}

#[test]
fn shifted_image_is_rebuilt_from_old_blocks_and_few_frames() {
    let (old, new) = images(64, 5, &[3, 40]);
    let (out, summary, stats, reads) = plan_and_apply(&old, &new);
    assert_eq!(out, new);
    // Blocks 3 and 40 are new; each needs its 8 KiB frame.
    assert_eq!(summary.fetched_raw_bytes, 2 * 8192);
    assert_eq!(summary.reused_bytes, new.len() as u64 - 2 * 8192);
    assert_eq!(stats.fallbacks, 0);
    // Every read of the bundle during apply falls inside a planned range.
    for r in &reads {
        assert!(summary.ranges.iter().any(|p| p.start <= r.start && r.end <= p.end), "read {r:?} outside the plan");
    }
    assert_eq!(stats.fetched_bytes, summary.range_bytes);
}

#[test]
fn unrelated_old_image_fetches_everything_and_still_matches() {
    let (_, new) = images(40, 0, &[]);
    let old: Vec<u8> = (500..540).flat_map(block).collect();
    let (out, summary, stats, _) = plan_and_apply(&old, &new);
    assert_eq!(out, new);
    assert_eq!(summary.reused_bytes, 0);
    assert_eq!(stats.reused_bytes, 0);
    assert_eq!(summary.chunks_local, 0);
}

#[test]
fn identical_image_fetches_no_payload_bytes() {
    let (old, _) = images(32, 0, &[]);
    let (out, summary, stats, reads) = plan_and_apply(&old, &old);
    assert_eq!(out, old);
    assert_eq!(summary.range_bytes, 0);
    assert!(summary.ranges.is_empty());
    assert_eq!(stats.fetched_bytes, 0);
    assert!(reads.is_empty(), "{reads:?}");
}

#[test]
fn old_image_that_changed_after_indexing_costs_a_fallback_not_a_wrong_byte() {
    let (old, new) = images(48, 2, &[]);
    // The slot changes under the cached index (a stale cache, a fingerprint collision): block 20 now lies.
    let mut lying = old.clone();
    lying[20 * BS + 100] ^= 1;
    let (out, summary, stats, _) = plan_then_apply_to(&old, &lying, &new);
    assert_eq!(summary.chunks_local, 3, "every chunk was planned from the old image");
    assert_eq!(out, new);
    assert_eq!(stats.fallbacks, 1);
}

#[test]
// One merged range is exactly what some cases expect.
#[allow(clippy::single_range_in_vec_init)]
fn coalesce_merges_neighbours_within_the_gap() {
    let check =
        |input: Vec<Range<u64>>, gap: u64, expected: Vec<Range<u64>>| assert_eq!(coalesce(input, gap), expected);
    check(vec![], 10, vec![]);
    check(vec![0..5, 5..9], 0, vec![0..9]);
    check(vec![0..5, 6..9], 0, vec![0..5, 6..9]);
    check(vec![20..30, 0..5, 6..9], 1, vec![0..9, 20..30]);
    check(vec![0..50, 10..20], 0, vec![0..50]);
}
