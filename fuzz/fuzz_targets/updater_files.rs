//! Fuzz target: the files the updater reads back from the data partition, which a power cut, a full disk or a bad
//! sector may have damaged: the journal (`journal.json`) and the slot index cache.
//!
//! The first byte picks the boot state and booted slot that the journal is reconciled with (bit 0 booted, bit 1
//! active, bit 2 last good, bits 3 and 4 each slot's good flag, bits 5 and 6 each slot's tries, 0 or 2, bit 7 whether
//! a flip reboots); the rest is the file. Beyond "no panic": a journal that parses serializes back to a journal that
//! parses to the same value; every decision `phase::step` takes from it yields a journal that parses again (the next
//! boot must be able to read what was saved) and never lowers the anti-rollback floor; and a slot index that decodes
//! encodes back to the same bytes.
#![no_main]

use std::path::Path;

use bootctl::rules::{BootState, Slot, SlotState};
use libfuzzer_sys::fuzz_target;
use updater::journal::{Journal, Phase};
use updater::phase::{step, Event};
use updater::slot_index;

fn journal(mode: u8, bytes: &[u8]) {
    let path = Path::new("journal.json");
    let Ok(j) = Journal::parse(bytes, path) else { return };
    let again = Journal::parse(&j.to_bytes(), path).expect("a journal written back parses");
    assert_eq!(again, j, "a journal does not round-trip");
    if let Some(u) = &j.update {
        assert!(u.n_done() <= u.n_chunks, "more chunks done than the payload has");
    }
    let bit = |i: u8| mode & (1 << i) != 0;
    let slot = |b: bool| if b { Slot::B } else { Slot::A };
    let tries = |b: bool| if b { 2 } else { 0 };
    let booted = slot(bit(0));
    let a = SlotState { good: bit(3), tries: tries(bit(5)) };
    let b = SlotState { good: bit(4), tries: tries(bit(6)) };
    let state = BootState::from_parts(a, b, slot(bit(1)), slot(bit(2)));
    let mut events = vec![
        Event::Booted { booted, state },
        Event::Flip { booted, state, reboot: false },
        Event::Flip { booted, state, reboot: bit(7) },
        Event::ChecksPassed { booted },
        Event::ChecksFailed { booted, reason: "health check failed".to_owned() },
        Event::MarkGood { booted, state },
        Event::Rollback { booted, state },
        Event::Cancel { booted, state },
    ];
    if let Some(u) = &j.update {
        let mut fresh = u.clone();
        fresh.phase = Phase::Downloading;
        fresh.chunks_done.clear();
        events.push(Event::Start { update: Box::new(fresh), booted, state });
    }
    for event in &events {
        let Ok(s) = step(&j, event) else { continue };
        let saved = Journal::parse(&s.journal.to_bytes(), path);
        assert_eq!(saved.as_ref().ok(), Some(&s.journal), "step saved a journal that does not read back: {event:?}");
        assert!(s.journal.security_version >= j.security_version, "step lowered the anti-rollback floor");
    }
}

/// The cache layout of updater/src/slot_index.rs: magic, block size, zero, count, fingerprints, blake3.
fn encode_index(block_size: u32, reserved: &[u8], fingerprints: &[u64]) -> Vec<u8> {
    let mut b = b"EDGEFPS1".to_vec();
    b.extend_from_slice(&block_size.to_le_bytes());
    b.extend_from_slice(reserved);
    b.extend_from_slice(&(fingerprints.len() as u64).to_le_bytes());
    for f in fingerprints {
        b.extend_from_slice(&f.to_le_bytes());
    }
    let hash = blake3::hash(&b);
    b.extend_from_slice(hash.as_bytes());
    b
}

fn slot_index(bytes: &[u8]) {
    // The input with its hash appended, so that the fuzzer gets past the checksum to the fields, read with the
    // block size it claims; and the input as it is, with a fixed block size.
    let mut hashed = bytes.to_vec();
    hashed.extend_from_slice(blake3::hash(bytes).as_bytes());
    let claimed = bytes.get(8..12).map_or(4096, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    for (b, block_size) in [(&hashed[..], claimed), (bytes, 4096)] {
        let Some(fps) = slot_index::decode(b, block_size) else { continue };
        let reserved = &b[12..16];
        assert_eq!(encode_index(block_size, reserved, &fps), b, "a slot index does not round-trip");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    journal(mode, rest);
    slot_index(rest);
});
