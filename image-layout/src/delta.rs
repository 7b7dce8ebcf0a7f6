//! Delta installs with no delta prepared on a server: find every block of the new payload anywhere in the image a
//! node already has (at every block-aligned offset), and fetch only the rest, in few coalesced byte ranges.
//!
//! The plan is one library call, used by `edge-image delta-plan` and by the updater; docs/bundle-format.md, "Delta".

use std::io::{self, Read, Write};
use std::ops::Range;

use crate::error::{Error, Result};
use crate::format::{chunk_hash, fingerprint};
use crate::manifest::Payload;
use crate::reader::{BundleAt, ChunkIndex, DeltaIndex, ReadAt};

/// Gaps up to this many bytes between two needed ranges are fetched rather than split into two requests: an HTTP
/// request and its response headers cost about this much.
pub const DEFAULT_COALESCE_GAP: u64 = 1024;

/// Where each distinct block of an image that a node holds sits in it.
#[derive(Debug, Clone)]
pub struct HaveIndex {
    block_size: u32,
    /// (fingerprint, offset), sorted by fingerprint, first offset of each fingerprint kept.
    entries: Vec<(u64, u64)>,
    len: u64,
}

impl HaveIndex {
    /// Reads an image front to back and fingerprints every block at every `block_size`-aligned offset.
    pub fn scan(mut r: impl Read, block_size: u32) -> io::Result<HaveIndex> {
        let bs = block_size as usize;
        let mut buf = vec![0u8; bs * 256];
        let mut entries = Vec::new();
        let mut offset = 0u64;
        loop {
            let mut n = 0;
            while n < buf.len() {
                match r.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            // Only whole blocks can stand in for a block of the new image at the same size.
            for block in buf[..n].chunks_exact(bs) {
                entries.push((fingerprint(block), offset));
                offset += bs as u64;
            }
            if n < buf.len() {
                break;
            }
        }
        entries.sort_unstable();
        entries.dedup_by_key(|e| e.0);
        Ok(HaveIndex { block_size, entries, len: offset })
    }

    /// The index of an image from its blocks' fingerprints in order (block `i` at `i * block_size`), as a cache of
    /// an earlier scan or read-back stores them.
    pub fn from_fingerprints(block_size: u32, fingerprints: &[u64]) -> HaveIndex {
        let mut entries: Vec<(u64, u64)> =
            fingerprints.iter().enumerate().map(|(i, &fp)| (fp, i as u64 * u64::from(block_size))).collect();
        entries.sort_unstable();
        entries.dedup_by_key(|e| e.0);
        HaveIndex { block_size, entries, len: fingerprints.len() as u64 * u64::from(block_size) }
    }

    /// The offset of a block with this fingerprint, if any.
    pub fn lookup(&self, fp: u64) -> Option<u64> {
        self.entries.binary_search_by_key(&fp, |e| e.0).ok().map(|i| self.entries[i].1)
    }

    /// The block size it was built with.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Bytes of whole blocks scanned.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when no block was scanned.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Where one chunk of the new payload comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkSource {
    /// Every block is in the old image.
    Local,
    /// These delta frames are fetched; every other block is in the old image.
    Frames(Vec<u64>),
    /// The stored chunk is fetched (cheaper than its frames, or nothing else works).
    Whole,
}

/// One chunk's plan.
#[derive(Debug, Clone)]
pub struct ChunkPlan {
    /// The chunk.
    pub chunk_idx: u64,
    /// Where it comes from.
    pub source: ChunkSource,
    /// For each block of the chunk, its offset in the old image, if it is there.
    pub local: Vec<Option<u64>>,
}

/// Plans a payload's install from a bundle and an old image.
pub struct Planner<'a> {
    payload: &'a Payload,
    index: &'a ChunkIndex,
    delta: &'a DeltaIndex,
    have: &'a HaveIndex,
}

/// The totals of a plan, as `edge-image delta-plan` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanSummary {
    /// Raw size of the payload.
    pub image_bytes: u64,
    /// Raw bytes taken from the old image.
    pub reused_bytes: u64,
    /// Raw bytes that come from fetched frames or chunks.
    pub fetched_raw_bytes: u64,
    /// Bundle bytes read before any payload byte: header, manifest, signatures, chunk index and delta index.
    pub metadata_bytes: u64,
    /// Bundle bytes of the coalesced ranges.
    pub range_bytes: u64,
    /// Everything the node fetches: `metadata_bytes + range_bytes`.
    pub fetch_bytes: u64,
    /// Chunks by source.
    pub chunks_local: u64,
    /// Chunks assembled from frames and old blocks.
    pub chunks_frames: u64,
    /// Chunks fetched whole.
    pub chunks_whole: u64,
    /// The coalesced absolute byte ranges to fetch from the bundle, in order.
    pub ranges: Vec<Range<u64>>,
}

impl<'a> Planner<'a> {
    /// A planner for one payload.
    pub fn new(
        payload: &'a Payload,
        index: &'a ChunkIndex,
        delta: &'a DeltaIndex,
        have: &'a HaveIndex,
    ) -> Result<Planner<'a>> {
        if have.block_size != payload.block_size {
            return Err(Error::InvalidArgument {
                what: "old image index",
                detail: format!("block size {} but the payload's is {}", have.block_size, payload.block_size),
            });
        }
        Ok(Planner { payload, index, delta, have })
    }

    /// The plan for one chunk: local where every block is old, else the cheaper of its needed frames or itself.
    pub fn chunk(&self, chunk_idx: u64) -> ChunkPlan {
        let p = self.payload;
        let blocks_per_chunk = u64::from(p.chunk_size / p.block_size);
        let blocks_per_frame = u64::from(p.frame_size / p.block_size);
        let first = chunk_idx * blocks_per_chunk;
        let last = (first + blocks_per_chunk).min(p.n_blocks());
        let block_len = |b: u64| (p.size_bytes - b * u64::from(p.block_size)).min(u64::from(p.block_size));
        let local: Vec<Option<u64>> = (first..last)
            .map(|b| {
                // A short last block cannot be matched by a whole old block; it is fetched with its frame.
                if block_len(b) < u64::from(p.block_size) {
                    return None;
                }
                self.have.lookup(self.delta.fingerprints[b as usize])
            })
            .collect();
        let mut frames: Vec<u64> = Vec::new();
        for (i, l) in local.iter().enumerate() {
            if l.is_none() {
                let f = (first + i as u64) / blocks_per_frame;
                if frames.last() != Some(&f) {
                    frames.push(f);
                }
            }
        }
        let source = if frames.is_empty() {
            ChunkSource::Local
        } else {
            let frames_cost: u64 = frames.iter().map(|&f| u64::from(self.delta.frame_sizes[f as usize])).sum();
            let whole_cost = u64::from(self.index.entries[chunk_idx as usize].stored_size);
            if whole_cost <= frames_cost {
                ChunkSource::Whole
            } else {
                ChunkSource::Frames(frames)
            }
        };
        ChunkPlan { chunk_idx, source, local }
    }

    /// Plans every chunk and adds up what is fetched and reused; `metadata_bytes` is what the node reads before
    /// planning (the bundle's head and this payload's indexes).
    pub fn summarize<S: ReadAt>(&self, bundle: &BundleAt<S>, pi: usize, coalesce_gap: u64) -> PlanSummary {
        let p = self.payload;
        let v = bundle.verified();
        let mut s = PlanSummary {
            image_bytes: p.size_bytes,
            metadata_bytes: v.body_start + p.index.size_bytes + p.delta_index.size_bytes,
            ..PlanSummary::default()
        };
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for c in 0..p.n_chunks() {
            let plan = self.chunk(c);
            let raw = u64::from(p.chunk_raw_size(c));
            match &plan.source {
                ChunkSource::Local => {
                    s.chunks_local += 1;
                    s.reused_bytes += raw;
                }
                ChunkSource::Whole => {
                    s.chunks_whole += 1;
                    s.fetched_raw_bytes += raw;
                    ranges.push(bundle.chunk_range(pi, self.index, c));
                }
                ChunkSource::Frames(frames) => {
                    s.chunks_frames += 1;
                    let fetched: u64 = frames.iter().map(|&f| u64::from(p.frame_raw_size(f))).sum();
                    s.fetched_raw_bytes += fetched;
                    s.reused_bytes += raw - fetched;
                    ranges.extend(
                        frames.iter().map(|&f| bundle.frame_range(pi, self.delta, f)).filter(|r| !r.is_empty()),
                    );
                }
            }
        }
        s.ranges = coalesce(ranges, coalesce_gap);
        s.range_bytes = s.ranges.iter().map(|r| r.end - r.start).sum();
        s.fetch_bytes = s.metadata_bytes + s.range_bytes;
        s
    }
}

/// Sorts ranges and merges those whose gap is at most `gap` bytes.
pub fn coalesce(mut ranges: Vec<Range<u64>>, gap: u64) -> Vec<Range<u64>> {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(gap) => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// What an applied plan actually did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Raw bytes copied from the old image.
    pub reused_bytes: u64,
    /// Stored bytes read from the bundle for frames and chunks.
    pub fetched_bytes: u64,
    /// Chunks whose assembly from old blocks and frames did not match the chunk hash and were fetched whole.
    pub fallbacks: u64,
}

/// Builds the new payload from the old image and the bundle, chunk by chunk, verifying each chunk before it is
/// written to `out`. A chunk assembled from old blocks and frames that fails its hash (a fingerprint collision, a
/// changed old image) is fetched whole instead. `old_name` and `out_name` name the two in errors.
pub fn apply<S: ReadAt>(
    planner: &Planner<'_>,
    bundle: &BundleAt<S>,
    pi: usize,
    old: &impl ReadAt,
    old_name: &str,
    out: &mut impl Write,
    out_name: &str,
) -> Result<ApplyStats> {
    let p = planner.payload;
    let bs = p.block_size as usize;
    let mut stats = ApplyStats::default();
    for c in 0..p.n_chunks() {
        let plan = planner.chunk(c);
        let raw_len = p.chunk_raw_size(c) as usize;
        let assembled = match &plan.source {
            ChunkSource::Whole => None,
            ChunkSource::Local | ChunkSource::Frames(_) => {
                let mut buf = vec![0u8; raw_len];
                let mut fetched = 0u64;
                let mut reused = 0u64;
                if let ChunkSource::Frames(frames) = &plan.source {
                    let chunk_start = c * u64::from(p.chunk_size);
                    for &f in frames {
                        let raw = bundle.read_frame(pi, planner.delta, f)?;
                        fetched += u64::from(planner.delta.frame_sizes[f as usize]);
                        let at = (f * u64::from(p.frame_size) - chunk_start) as usize;
                        buf[at..at + raw.len()].copy_from_slice(&raw);
                    }
                }
                let blocks_per_frame = (p.frame_size / p.block_size) as usize;
                let fetched_frames: &[u64] = match &plan.source {
                    ChunkSource::Frames(f) => f,
                    _ => &[],
                };
                let first_frame = c * u64::from(p.chunk_size / p.frame_size);
                for (i, l) in plan.local.iter().enumerate() {
                    let frame = first_frame + (i / blocks_per_frame) as u64;
                    if fetched_frames.contains(&frame) {
                        continue;
                    }
                    let off = l.expect("a block outside fetched frames is local");
                    old.read_exact_at(&mut buf[i * bs..(i + 1) * bs], off)
                        .map_err(|source| Error::ReadFile { path: old_name.into(), source })?;
                    reused += bs as u64;
                }
                stats.fetched_bytes += fetched;
                if chunk_hash(&buf) == planner.index.entries[c as usize].raw_hash {
                    stats.reused_bytes += reused;
                    Some(buf)
                } else {
                    stats.fallbacks += 1;
                    None
                }
            }
        };
        let raw = match assembled {
            Some(b) => b,
            None => {
                let r = bundle.chunk_range(pi, planner.index, c);
                stats.fetched_bytes += r.end - r.start;
                bundle.read_chunk(pi, planner.index, c)?
            }
        };
        out.write_all(&raw).map_err(|source| Error::WriteFile { path: out_name.into(), source })?;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_from_fingerprints_equals_a_scan() {
        let image: Vec<u8> = (0..40_000u32).flat_map(|i| (i % 700).to_le_bytes()).collect();
        let scanned = HaveIndex::scan(&image[..], 4096).expect("scan");
        let fps: Vec<u64> = image.chunks_exact(4096).map(fingerprint).collect();
        let cached = HaveIndex::from_fingerprints(4096, &fps);
        assert_eq!((&cached.entries, cached.len), (&scanned.entries, scanned.len));
    }
}
