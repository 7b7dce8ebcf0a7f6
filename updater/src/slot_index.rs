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
use std::os::unix::fs::FileExt;
use std::path::Path;

use image_layout::format::fingerprint;

use crate::device::BlockDevice;

const MAGIC: &[u8; 8] = b"EDGEFPS1";

/// Reads a cache; `None` when it is missing, damaged, or for another block size.
pub fn load(path: &Path, block_size: u32) -> Option<Vec<u64>> {
    decode(&std::fs::read(path).ok()?, block_size)
}

/// Decodes the bytes of a cache; `None` when they are damaged or for another block size.
pub fn decode(b: &[u8], block_size: u32) -> Option<Vec<u64>> {
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

/// Writes a cache as its fingerprints come, in any order (each at its block's place in the file), so that memory
/// does not grow with the slot; atomic, not synced, since a lost cache is only rebuilt.
pub struct Writer {
    out: image_layout::fsutil::AtomicFile,
    n: u64,
    written: u64,
}

impl Writer {
    /// Starts a cache of `n` fingerprints.
    pub fn create(path: &Path, block_size: u32, n: u64) -> std::io::Result<Writer> {
        let mut out = image_layout::fsutil::AtomicFile::create(path).map_err(std::io::Error::other)?;
        let mut head = Vec::with_capacity(24);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&block_size.to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes());
        head.extend_from_slice(&n.to_le_bytes());
        out.write_all(&head)?;
        out.file().set_len(24 + n * 8)?;
        Ok(Writer { out, n, written: 0 })
    }

    /// Sets the fingerprints of blocks `first..first + fps.len()`.
    pub fn put(&mut self, first: u64, fps: &[u64]) -> std::io::Result<()> {
        if first + fps.len() as u64 > self.n {
            return Err(std::io::Error::other("a fingerprint past the announced blocks"));
        }
        let bytes: Vec<u8> = fps.iter().flat_map(|f| f.to_le_bytes()).collect();
        self.out.file().write_all_at(&bytes, 24 + first * 8)?;
        self.written += fps.len() as u64;
        Ok(())
    }

    /// Ends the cache with the hash of everything in it and renames it into place; every block must have been set.
    pub fn commit(mut self) -> std::io::Result<()> {
        if self.written != self.n {
            return Err(std::io::Error::other(format!("{} of {} fingerprints set", self.written, self.n)));
        }
        // The temporary file is open for writing only; read it back through a second handle.
        let f = std::fs::File::open(self.out.tmp_path())?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut at = 0u64;
        let end = 24 + self.n * 8;
        while at < end {
            let k = buf.len().min((end - at) as usize);
            f.read_exact_at(&mut buf[..k], at)?;
            hasher.update(&buf[..k]);
            at += k as u64;
        }
        self.out.file().write_all_at(hasher.finalize().as_bytes(), end)?;
        self.out.commit_unsynced().map_err(std::io::Error::other)
    }
}

/// Writes a whole cache.
pub fn save(path: &Path, block_size: u32, fingerprints: &[u64]) -> std::io::Result<()> {
    let mut w = Writer::create(path, block_size, fingerprints.len() as u64)?;
    w.put(0, fingerprints)?;
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
        // Set out of order, as a read-back of a delta install does.
        let mut w = Writer::create(&path, 4096, 4).expect("create");
        w.put(2, &[3, u64::MAX]).expect("put");
        w.put(0, &[1, 2]).expect("put");
        w.commit().expect("commit");
        assert_eq!(load(&path, 4096), Some(vec![1, 2, 3, u64::MAX]));
        let mut w = Writer::create(&path, 4096, 4).expect("create");
        w.put(0, &[1, 2]).expect("put");
        assert!(w.commit().is_err(), "a cache with blocks missing is not committed");
        assert_eq!(load(&path, 4096), Some(vec![1, 2, 3, u64::MAX]));
        remove(&path).expect("remove");
        remove(&path).expect("removing a missing cache is fine");
        assert_eq!(load(&path, 4096), None);
    }
}
