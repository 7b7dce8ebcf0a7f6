//! Fuzz target: the U-Boot environment as `edge-bootctl` reads it from a device, single or redundant, and the boot
//! state kept in its variables.
//!
//! The first byte picks the layout (bit 0: redundant, bit 1: the boolean flag scheme); the rest is the device, one
//! copy, or two copies of equal size one after the other. Beyond "no panic", every read is checked against an
//! independent reading of the copy it claims to come from, and a read is followed by a write through the same store:
//! the write must read back, and must leave the copy that was current untouched (but for the boolean scheme's
//! obsolete flag), since that copy is what survives a power cut during the write.
#![no_main]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use bootctl::backend::{state_from_env, state_to_env};
use bootctl::uboot::{encode_single, BlockDevice, CopyAt, EnvStore, FlagScheme, OtherCopy, CRC_LEN, FLAG_OBSOLETE};
use libfuzzer_sys::fuzz_target;

/// A device in memory, shared with the target so that it can look at the bytes after a write; reads past its end
/// fail as a short file does.
#[derive(Clone)]
struct Mem(Rc<RefCell<Vec<u8>>>);

impl BlockDevice for Mem {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let bytes = self.0.borrow();
        let src = start.checked_add(buf.len()).and_then(|end| bytes.get(start..end));
        let src = src.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start + buf.len();
        let mut bytes = self.0.borrow_mut();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[start..end].copy_from_slice(buf);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn copy(device: &Mem) -> CopyAt<Mem> {
    CopyAt { device: device.clone(), path: PathBuf::from("fuzz"), offset: 0 }
}

fn mem(bytes: &[u8]) -> Mem {
    Mem(Rc::new(RefCell::new(bytes.to_vec())))
}

/// Whether a copy's stored CRC matches its data (from `start` on).
fn crc_ok(block: &[u8], start: usize) -> bool {
    block.len() > start && block[..CRC_LEN] == crc32fast::hash(&block[start..]).to_le_bytes()
}

/// The variables of a copy's data, read independently of bootctl: entries up to the first empty one.
fn entries(block: &[u8], start: usize) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for entry in block[start..].split(|&c| c == 0) {
        if entry.is_empty() {
            break;
        }
        let text = std::str::from_utf8(entry).expect("a decoded entry is UTF-8");
        let (n, v) = text.split_once('=').expect("a decoded entry has an =");
        assert!(vars.insert(n.to_owned(), v.to_owned()).is_none(), "a decoded block named {n} twice");
    }
    vars
}

fn vars(env: &bootctl::uboot::Env) -> BTreeMap<String, String> {
    env.vars().map(|(n, v)| (n.to_owned(), v.to_owned())).collect()
}

/// The environment a write puts back: the same, with the boot state rewritten when there is one and a counter
/// variable stepped, so that the write changes the bytes.
fn next_env(env: &bootctl::uboot::Env) -> bootctl::uboot::Env {
    let mut next = env.clone();
    if let Ok(state) = state_from_env(env) {
        let state = state.mark_bad(state.active());
        state_to_env(&state, &mut next).expect("boot state variables are valid names");
        assert_eq!(state_from_env(&next).ok(), Some(state), "the boot state does not round-trip");
    }
    let n = next.get("fuzz_writes").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    next.set("fuzz_writes", &(n.wrapping_add(1)).to_string()).expect("a valid name");
    next
}

fn single(block: &[u8]) {
    let mut store = EnvStore::single(copy(&mem(block)), block.len());
    let Ok((env, choice)) = store.read() else { return };
    assert!(choice.is_none());
    assert!(crc_ok(block, CRC_LEN), "a single environment with a bad CRC was read");
    assert_eq!(vars(&env), entries(block, CRC_LEN), "the environment read is not the block's");
    // What is read encodes back into the same size, and decodes to the same variables.
    let again = encode_single(&env, block.len()).expect("an environment read from a block fits that block");
    assert_eq!(bootctl::uboot::decode_single(&again).ok(), Some(env.clone()));
    let next = next_env(&env);
    if store.write(&next).is_ok() {
        assert_eq!(store.read().ok().map(|(e, _)| e), Some(next), "a single environment written does not read back");
    }
}

fn redundant(both: &[u8], scheme: FlagScheme) {
    let size = both.len() / 2;
    let blocks = [&both[..size], &both[size..2 * size]];
    let devices = [mem(blocks[0]), mem(blocks[1])];
    let mut store = EnvStore::redundant(copy(&devices[0]), copy(&devices[1]), size, scheme);
    let Ok((env, choice)) = store.read() else { return };
    let choice = choice.expect("a redundant read says which copy it read");
    let current = blocks[choice.current.index()];
    let other = blocks[choice.current.other().index()];
    // The state read is one of the copies: one whose CRC is good, whose flags are the ones reported.
    assert!(crc_ok(current, CRC_LEN + 1), "a copy with a bad CRC was read");
    assert_eq!(current[CRC_LEN], choice.flags);
    assert_eq!(vars(&env), entries(current, CRC_LEN + 1), "the environment read is not the current copy's");
    match choice.other {
        OtherCopy::Valid { flags } => {
            assert!(crc_ok(other, CRC_LEN + 1));
            assert_eq!(other[CRC_LEN], flags);
            let (p, r) = (blocks[0][CRC_LEN], blocks[1][CRC_LEN]);
            assert_eq!(scheme.current(p, r), choice.current, "the copy read is not the one the flags pick");
        }
        OtherCopy::BadCrc => assert!(!crc_ok(other, CRC_LEN + 1)),
    }
    // A write goes to the other copy and leaves the current one as it was, so a cut during it reads the old one.
    let next = next_env(&env);
    let Ok(written) = store.write(&next) else { return };
    assert_eq!(written.copy, choice.current.other(), "a write went to the current copy");
    let (read, after) = store.read().expect("a written environment reads back");
    assert_eq!(read, next, "a redundant environment written does not read back");
    let after = after.expect("a redundant read says which copy it read");
    assert_eq!(after.current, written.copy);
    let mut kept = current.to_vec();
    if scheme == FlagScheme::Boolean {
        kept[CRC_LEN] = FLAG_OBSOLETE;
    }
    assert_eq!(*devices[choice.current.index()].0.borrow(), kept, "the current copy changed in a write");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        single(rest);
    } else {
        let scheme = if mode & 2 == 0 { FlagScheme::Incremental } else { FlagScheme::Boolean };
        redundant(rest, scheme);
    }
});
