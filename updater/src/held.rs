//! A target verified and held for a later flip (`edge-update install --no-flip`), and that flip (`edge-update
//! flip`), docs/updater.md, "Held installs".
//!
//! A fleet downloads and verifies at any hour but flips and reboots only inside a maintenance window, or once an
//! application lets go of its update lock; days may pass between the two. So the hold keeps, beside the journal,
//! the hash of every chunk the install verified, and the flip reads the whole target back against them once more
//! before it makes the slot bootable: a slot that changed since it was verified (a disk going bad, a stray write)
//! is never flipped, and the journal forgets the chunks that changed so that an install of the same bundle fetches
//! only those.
//!
//! The hashes file, `slot-B.held` (little-endian): `EDGEHLD1`, the bundle's manifest blake3 (32 bytes), chunk size
//! (u32), zero (u32), payload size in bytes (u64), chunk count (u64), the blake3 of each chunk's raw bytes (32 bytes
//! each, in order), then the blake3 of everything before it. It is written and synced before the journal says
//! `held`, so a held journal always has its file; a file no journal names as held is ignored and replaced.

use std::path::{Path, PathBuf};

use image_layout::format::{from_hex, to_hex};

use crate::device::SlotDevice;
use crate::error::{Error, Result};
use crate::install::{read_back, ReadBackOf};
use crate::journal::{Phase, Update};
use crate::phase::Event;
use crate::run::{Node, Outcome};
use crate::slots::SlotPath;
use crate::wire::Progress;

const MAGIC: &[u8; 8] = b"EDGEHLD1";
const HEAD_LEN: usize = 8 + 32 + 4 + 4 + 8 + 8;

/// The chunk hashes of a held bundle, as kept in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    /// The bundle's manifest blake3, hex.
    pub manifest_blake3: String,
    /// The payload's chunk size.
    pub chunk_size: u32,
    /// The payload's size.
    pub size_bytes: u64,
    /// The blake3 of each chunk's raw bytes.
    pub chunks: Vec<[u8; 32]>,
}

impl Hashes {
    /// The bytes of the file.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEAD_LEN + 32 * self.chunks.len() + 32);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&from_hex::<32>(&self.manifest_blake3).unwrap_or([0; 32]));
        b.extend_from_slice(&self.chunk_size.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&self.size_bytes.to_le_bytes());
        b.extend_from_slice(&(self.chunks.len() as u64).to_le_bytes());
        for h in &self.chunks {
            b.extend_from_slice(h);
        }
        let sum = *blake3::hash(&b).as_bytes();
        b.extend_from_slice(&sum);
        b
    }

    /// Reads the bytes of a file; what is wrong when they are damaged.
    pub fn decode(b: &[u8]) -> std::result::Result<Hashes, String> {
        if b.len() < HEAD_LEN + 32 || &b[..8] != MAGIC {
            return Err("not a held hashes file".to_owned());
        }
        let (body, sum) = b.split_at(b.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err("its checksum does not match".to_owned());
        }
        let u32_at = |o: usize| u32::from_le_bytes(body[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(body[o..o + 8].try_into().expect("8 bytes"));
        let manifest: [u8; 32] = body[8..40].try_into().expect("32 bytes");
        let n_chunks = u64_at(56);
        let rest = &body[HEAD_LEN..];
        if Some(rest.len() as u64) != n_chunks.checked_mul(32) {
            return Err(format!("{n_chunks} chunks claimed, {} bytes of hashes", rest.len()));
        }
        Ok(Hashes {
            manifest_blake3: to_hex(&manifest),
            chunk_size: u32_at(40),
            size_bytes: u64_at(48),
            chunks: rest.chunks(32).map(|c| c.try_into().expect("32 bytes")).collect(),
        })
    }

    /// Whether these are the hashes of the update's bundle and payload.
    pub fn are_of(&self, u: &Update) -> bool {
        self.manifest_blake3 == u.bundle.manifest_blake3
            && self.chunk_size == u.chunk_size
            && self.size_bytes == u.size_bytes
            && self.chunks.len() as u64 == u.n_chunks
    }
}

/// Writes the hashes file durably (synced, renamed, directory synced).
pub fn record(path: &Path, hashes: &Hashes) -> Result<()> {
    let werr = |source| Error::WriteHeld { path: path.to_owned(), source };
    let mut f = image_layout::fsutil::AtomicFile::create(path).map_err(werr)?;
    std::io::Write::write_all(&mut f, &hashes.encode())
        .map_err(|e| werr(image_layout::Error::WriteFile { path: path.to_owned(), source: e }))?;
    // Durability: synced before the journal that says `held` is saved, so that journal always finds its file.
    f.commit().map_err(werr)
}

/// Reads the hashes file of a held update, checking that it is whole and of the update's bundle.
pub fn load(path: &Path, u: &Update) -> Result<Hashes> {
    let bad = |detail: String| Error::HeldHashes { path: path.to_owned(), detail };
    let max = 4096 + 32 * u.n_chunks.min(1 << 26);
    let bytes = image_layout::fsutil::read_bounded(path, max).map_err(|e| bad(crate::error::chain(&e)))?;
    let h = Hashes::decode(&bytes).map_err(bad)?;
    if !h.are_of(u) {
        return Err(bad(format!("they are of bundle {}, not {}", h.manifest_blake3, u.bundle.manifest_blake3)));
    }
    Ok(h)
}

/// Removes a slot's hashes file, when there is one: its slot is about to be written, or was flipped.
pub fn forget(path: &PathBuf) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot remove {}: {e}", path.display()),
    }
}

/// Flips a held target: reads every chunk of `target` back from `dev` against the hashes kept when it was
/// verified, then flips the bootloader to it (and reboots when `reboot`). A chunk that reads back wrong is
/// forgotten by the journal (the update goes back to `downloading`, so an install of the same bundle rewrites just
/// those) and nothing is flipped; so is a hashes file that is missing or damaged (the install reads every chunk back
/// against the signed manifest). A hold that cannot be flipped is the update's failure, recorded in the event log
/// like an install's (`install-failed`); a flip asked in the wrong phase changes nothing and is only the caller's
/// error.
pub fn flip(
    node: &mut Node<'_>,
    target: &SlotPath,
    dev: &mut dyn SlotDevice,
    reboot: bool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Outcome> {
    let result = flip_held(node, target, dev, reboot, progress);
    if let Err(e) = &result {
        if !matches!(e, Error::NotHeld { .. } | Error::NoUpdate { .. }) {
            let reason = crate::error::chain(e);
            let message = format!("flip of slot {} refused: {reason}", target.slot);
            node.record(crate::wire::EventKind::InstallFailed, &message, Some(reason), crate::run::About::Update);
        }
    }
    result
}

fn flip_held(
    node: &mut Node<'_>,
    target: &SlotPath,
    dev: &mut dyn SlotDevice,
    reboot: bool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Outcome> {
    let u = node.journal().update.clone().ok_or(Error::NoUpdate { verb: "flip" })?;
    if u.phase != Phase::Verified || !u.held {
        return Err(Error::NotHeld { phase: u.phase });
    }
    if u.target != target.slot {
        return Err(Error::TargetBooted { slot: u.target });
    }
    let path = node.config.held_path(target.slot);
    let hashes = match load(&path, &u) {
        Ok(h) => h,
        Err(e) => {
            // Without its hashes the slot cannot be checked before it is made bootable: the update goes back to
            // `downloading` with its chunks kept, so that an install of the same bundle reads the whole slot back
            // against the signed manifest (rewriting only what differs) and holds it again with a fresh file.
            let mut j = node.journal().clone();
            let uj = j.update.as_mut().expect("checked above");
            uj.phase = Phase::Downloading;
            uj.held = false;
            node.save(j)?;
            return Err(e);
        }
    };
    let of = ReadBackOf { chunk_size: u.chunk_size, size_bytes: u.size_bytes, n_chunks: u.n_chunks };
    let skip = vec![false; u.n_chunks as usize];
    let bad = read_back(dev, target, &of, &skip, &mut |c| hashes.chunks[c as usize], &mut |_, _| {}, progress)?;
    if let Some(&first_bad) = bad.first() {
        let mut j = node.journal().clone();
        let uj = j.update.as_mut().expect("checked above");
        uj.chunks_done = crate::install::done_but(&bad, u.n_chunks);
        uj.phase = Phase::Downloading;
        uj.held = false;
        node.save(j)?;
        return Err(Error::ReadBack { slot: target.slot, device: target.path.clone(), chunk_idx: first_bad });
    }
    log::info!("slot {}: {} chunks read back and verified again before the flip", target.slot, u.n_chunks);
    let state = node.boot_state()?;
    let outcome = node.handle(Event::Flip { booted: node.booted, state, reboot })?;
    forget(&path);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes() -> Hashes {
        Hashes {
            manifest_blake3: to_hex(&[7u8; 32]),
            chunk_size: 4096,
            size_bytes: 10_000,
            chunks: vec![[1; 32], [2; 32], [3; 32]],
        }
    }

    #[test]
    fn a_hashes_file_reads_back_as_written() {
        let h = hashes();
        assert_eq!(Hashes::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn a_damaged_hashes_file_is_refused() {
        let good = hashes().encode();
        let check = |b: Vec<u8>| assert!(Hashes::decode(&b).is_err(), "{b:?}");
        check(Vec::new());
        check(good[..good.len() - 1].to_vec());
        let mut flipped = good.clone();
        flipped[HEAD_LEN + 5] ^= 1;
        check(flipped);
        let mut magic = good.clone();
        magic[0] = b'X';
        check(magic);
        // A count that does not match the hashes, with a checksum that does.
        let mut body = good[..good.len() - 32].to_vec();
        body[56] = 4;
        let sum = *blake3::hash(&body).as_bytes();
        body.extend_from_slice(&sum);
        check(body);
    }
}
