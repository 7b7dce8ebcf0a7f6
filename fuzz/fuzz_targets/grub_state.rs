//! Fuzz target: the GRUB environment block and the boot state kept in two of them (`state0.env`, `state1.env` on
//! the ESP), read as `edge-bootctl` reads them.
//!
//! The input is the two copies one after the other: bytes 0..1024 are copy 0, the next 1024 bytes copy 1, and a
//! copy cut short is a short file. The copies are read and written through the pure functions the store is made
//! of (`decode_copy`, `pick`, `next_write`). Beyond "no panic": any block that decodes re-encodes into a block that decodes
//! to the same variables; a whole copy re-encodes to itself; the state read is the state of a whole copy, the one
//! the generations pick; and a write leaves the copy it read untouched and reads back, as does any mix of the old
//! and the new bytes at sector boundaries (a power cut during the write).
#![no_main]

use bootctl::grubenv::{GrubEnv, BLOCK_SIZE};
use bootctl::grubstate::{decode_copy, encode_copy, next_write, pick, Copy};
use bootctl::rules::Slot;
use libfuzzer_sys::fuzz_target;

/// The sector size a power cut tears at.
const SECTOR: usize = 512;

/// A GRUB block: whatever decodes must survive an encode and a decode unchanged.
fn grub_env(block: &[u8]) {
    let Ok(env) = GrubEnv::decode(block) else { return };
    let again = env.encode(env.encoded_len()).expect("a block of exactly the encoded length fits");
    assert_eq!(GrubEnv::decode(&again).ok(), Some(env.clone()), "a decoded block does not round-trip");
    assert!(env.encode(env.encoded_len() - 1).is_err(), "a block shorter than the encoded length was filled");
}

fn boot_state(data: &[u8]) {
    let copies = [data.get(..BLOCK_SIZE.min(data.len())).unwrap_or(&[]), data.get(BLOCK_SIZE..).unwrap_or(&[])];
    let copies = [copies[0], &copies[1][..copies[1].len().min(BLOCK_SIZE)]];
    let decoded = [decode_copy(copies[0]), decode_copy(copies[1])];
    for (c, d) in copies.iter().zip(&decoded) {
        if let Copy::Whole(state, g) = d {
            assert_eq!(c.len(), BLOCK_SIZE, "a copy shorter than a block is whole");
            assert_eq!(decode_copy(&encode_copy(state, *g)), *d, "a whole copy does not round-trip");
        }
    }
    let Some(picked) = pick(decoded) else {
        assert!(decoded.iter().all(|d| *d == Copy::Bad), "no state read from a whole copy");
        return;
    };
    // The state read is one of the copies: a whole one, and the newer when both are whole.
    assert_eq!(decoded[picked.copy], Copy::Whole(picked.state, picked.generation), "the state read is no copy's");
    let other = &decoded[1 - picked.copy];
    assert_eq!(picked.other_whole, *other != Copy::Bad);
    if let Copy::Whole(_, g) = other {
        // Copy 1 wins only when its generation follows copy 0's; copy 0 wins every other pair.
        assert!(!g.is_after(picked.generation), "the older whole copy was read");
        assert!(picked.copy == 0 || picked.generation.is_after(*g), "copy 1 won without a newer generation");
    }
    // A write goes to the other copy and reads back.
    let next = picked.state.mark_bad(Slot::B).mark_good(Slot::A);
    let (target, bytes) = next_write(&picked, &next);
    assert_eq!(target, 1 - picked.copy, "a write goes to the copy that was read");
    let mut after = decoded;
    after[target] = decode_copy(&bytes);
    let back = pick(after).expect("a written state reads back");
    assert_eq!((back.state, back.copy), (next, target), "a written state does not read back");
    // A cut during the write leaves the first sectors of the new copy over the rest of the old one: each mix reads
    // the old state or the new one. That holds when the old copy is one a writer made (all its variables sit in
    // the first sector, the end marker alone in the last), or is whole; a damaged copy whose last sector holds
    // variable lines of its own could, under a torn write, supply them, as it would to GRUB, so it is left out.
    let old = copies[target];
    let writers_layout = old.get(SECTOR..).is_none_or(|tail| tail.iter().filter(|&&c| c == b'=').count() <= 1);
    if decoded[target] == Copy::Bad && !writers_layout {
        return;
    }
    for k in 0..=BLOCK_SIZE / SECTOR {
        let mut torn = bytes[..k * SECTOR].to_vec();
        torn.extend_from_slice(old.get(k * SECTOR..).unwrap_or(&[]));
        let mut mixed = decoded;
        mixed[target] = decode_copy(&torn);
        let got = pick(mixed).expect("a torn write leaves a whole copy").state;
        assert!(got == picked.state || got == next, "a torn write reads a third state");
    }
}

fuzz_target!(|data: &[u8]| {
    grub_env(data);
    boot_state(data);
});
