//! The cached block fingerprints of what a slot holds, so that a delta install need not read the whole booted slot
//! to find what it can reuse (docs/updater.md, "Slot index cache").
//!
//! The cache is written after an install's read-back (from the bytes read back, so it describes the device) and
//! after a scan of a slot no install wrote; it is removed before a slot is overwritten. A stale or damaged cache
//! costs bytes, never correctness: every chunk assembled from reused blocks is checked against its hash, and one
//! that fails is fetched whole.
//!
//! Layout, little-endian: `EDGEFPS1`, block size (u32), zero (u32), block count (u64), one XXH3-64 per block in
//! order, then the blake3 of everything before it.

use std::io::Write;
use std::path::Path;

use image_layout::format::fingerprint;

use crate::device::BlockDevice;

const MAGIC: &[u8; 8] = b"EDGEFPS1";

/// Reads a cache; `None` when it is missing, damaged, or for another block size.
pub fn load(path: &Path, block_size: u32) -> Option<Vec<u64>> {
    let b = std::fs::read(path).ok()?;
    if b.len() < 24 + 32 || &b[..8] != MAGIC {
        return None;
    }
    let (body, hash) = b.split_at(b.len() - 32);
    if blake3::hash(body).as_bytes() != hash {
        return None;
    }
    let bs = u32::from_le_bytes(body[8..12].try_into().ok()?);
    let n = u64::from_le_bytes(body[16..24].try_into().ok()?);
    if bs != block_size || (body.len() - 24) as u64 != n.checked_mul(8)? {
        return None;
    }
    Some(body[24..].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

/// Writes a cache (atomically; not synced, since a lost cache is only rebuilt).
pub fn save(path: &Path, block_size: u32, fingerprints: &[u64]) -> std::io::Result<()> {
    let mut body = Vec::with_capacity(24 + fingerprints.len() * 8 + 32);
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&block_size.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&(fingerprints.len() as u64).to_le_bytes());
    for fp in fingerprints {
        body.extend_from_slice(&fp.to_le_bytes());
    }
    let hash = *blake3::hash(&body).as_bytes();
    body.extend_from_slice(&hash);
    let mut f = image_layout::fsutil::AtomicFile::create(path).map_err(std::io::Error::other)?;
    f.write_all(&body)?;
    f.commit_unsynced().map_err(std::io::Error::other)
}

/// Removes a cache (before its slot is overwritten).
pub fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Fingerprints every whole block of the first `len` bytes of a device.
pub fn scan(dev: &mut dyn BlockDevice, len: u64, block_size: u32) -> std::io::Result<Vec<u64>> {
    let bs = u64::from(block_size);
    let n = len / bs;
    let mut out = Vec::with_capacity(n as usize);
    let per_read = 256u64;
    let mut buf = vec![0u8; (bs * per_read) as usize];
    let mut b = 0u64;
    while b < n {
        let k = per_read.min(n - b);
        let part = &mut buf[..(k * bs) as usize];
        dev.read_at(b * bs, part)?;
        out.extend(part.chunks_exact(block_size as usize).map(fingerprint));
        b += k;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("slot-A.index");
        let fps = vec![1u64, 2, 3, u64::MAX];
        save(&path, 4096, &fps).expect("save");
        assert_eq!(load(&path, 4096), Some(fps));
        assert_eq!(load(&path, 512), None);
        let mut b = std::fs::read(&path).expect("read");
        b[30] ^= 1;
        std::fs::write(&path, &b).expect("write");
        assert_eq!(load(&path, 4096), None);
        remove(&path).expect("remove");
        remove(&path).expect("removing a missing cache is fine");
        assert_eq!(load(&path, 4096), None);
    }
}
