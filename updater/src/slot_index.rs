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

/// Writes a cache as its fingerprints come, so that memory does not grow with the slot (atomically; not synced,
/// since a lost cache is only rebuilt).
pub struct Writer {
    out: image_layout::fsutil::AtomicFile,
    buf: Vec<u8>,
    hasher: blake3::Hasher,
    left: u64,
}

impl Writer {
    /// Starts a cache of `n` fingerprints.
    pub fn create(path: &Path, block_size: u32, n: u64) -> std::io::Result<Writer> {
        let out = image_layout::fsutil::AtomicFile::create(path).map_err(std::io::Error::other)?;
        let mut w = Writer { out, buf: Vec::with_capacity(64 << 10), hasher: blake3::Hasher::new(), left: n };
        w.put(MAGIC)?;
        w.put(&block_size.to_le_bytes())?;
        w.put(&0u32.to_le_bytes())?;
        w.put(&n.to_le_bytes())?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hasher.update(b);
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 << 10 {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Adds the next block's fingerprint.
    pub fn push(&mut self, fp: u64) -> std::io::Result<()> {
        if self.left == 0 {
            return Err(std::io::Error::other("more fingerprints than announced"));
        }
        self.left -= 1;
        self.put(&fp.to_le_bytes())
    }

    /// Ends the cache with its hash and renames it into place.
    pub fn commit(mut self) -> std::io::Result<()> {
        if self.left != 0 {
            return Err(std::io::Error::other(format!("{} fingerprints missing", self.left)));
        }
        let hash = *self.hasher.finalize().as_bytes();
        self.buf.extend_from_slice(&hash);
        self.out.write_all(&self.buf)?;
        self.out.commit_unsynced().map_err(std::io::Error::other)
    }
}

/// Writes a whole cache.
pub fn save(path: &Path, block_size: u32, fingerprints: &[u64]) -> std::io::Result<()> {
    let mut w = Writer::create(path, block_size, fingerprints.len() as u64)?;
    for &fp in fingerprints {
        w.push(fp)?;
    }
    w.commit()
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
