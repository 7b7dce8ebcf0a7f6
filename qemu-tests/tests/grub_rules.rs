//! The generated `bootctl/grub/grub.cfg` in real GRUB (OVMF, TCG) against `bootctl::rules`: for a sample of states
//! that covers every branch of the script, GRUB must pick the same copy, boot the same slot and save the same state
//! as the Rust rules do. The script runs in its test mode (`edge_test=1`): it prints its decision and halts.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use bootctl::grubcfg::{generate, GrubConfig};
use bootctl::grubenv::SIGNATURE;
use bootctl::grubstate::{decode_copy, encode_copy, pick, Generation};
use bootctl::rules::{Boot, BootState, Slot};
use qemu_tests::{report, GrubImage, Harness};

mod common;
use common::{state, Case};

const TIMEOUT: Duration = Duration::from_secs(180);

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        Harness::new(Path::new(env!("CARGO_TARGET_TMPDIR"))).unwrap_or_else(|err| panic!("{}", report(&err)))
    })
}

fn gen(n: u8) -> Generation {
    (0..n).fold(Generation::FIRST, |g, _| g.next())
}

/// A copy torn at the sector boundary: the first sector of `new`, the second of `old`.
fn torn(new: &BootState, new_gen: Generation, old: &BootState, old_gen: Generation) -> Vec<u8> {
    let mut b = encode_copy(old, old_gen);
    b[..512].copy_from_slice(&encode_copy(new, new_gen)[..512]);
    b
}

fn cases() -> Vec<Case> {
    use Slot::{A, B};
    let a_good = state((true, 0), (false, 0), A, A);
    let b_trial = |t| state((true, 0), (false, t), B, A);
    vec![
        Case {
            name: "good active slot, copy 1 newer",
            copies: [encode_copy(&b_trial(3), gen(0)), encode_copy(&a_good, gen(1))],
        },
        Case { name: "trial with 3 tries", copies: [encode_copy(&a_good, gen(0)), encode_copy(&b_trial(3), gen(1))] },
        Case {
            name: "trial with 9 tries, copy 0 newer",
            copies: [encode_copy(&b_trial(9), gen(2)), encode_copy(&a_good, gen(1))],
        },
        Case { name: "last try", copies: [encode_copy(&b_trial(1), gen(1)), encode_copy(&b_trial(2), gen(0))] },
        Case {
            name: "active slot used up, the other is good",
            copies: [encode_copy(&b_trial(0), gen(1)), encode_copy(&b_trial(1), gen(0))],
        },
        Case {
            name: "no slot qualifies: last good",
            copies: [encode_copy(&state((false, 0), (false, 0), A, B), gen(0)), encode_copy(&a_good, gen(2))],
        },
        Case {
            name: "generations wrap: 0 follows 2",
            copies: [encode_copy(&b_trial(2), gen(0)), encode_copy(&a_good, gen(2))],
        },
        Case {
            name: "newer copy torn: the older whole one decides",
            copies: [encode_copy(&b_trial(3), gen(0)), torn(&a_good, gen(1), &b_trial(2), gen(2))],
        },
        Case {
            name: "other copy not a GRUB block: the try is not taken, the good slot boots",
            copies: [vec![0u8; 1024], encode_copy(&state((false, 2), (true, 0), A, B), gen(1))],
        },
        Case { name: "no whole copy: slot A", copies: [vec![0u8; 1024], torn(&a_good, gen(1), &a_good, gen(0))] },
    ]
}

/// What the Rust rules say GRUB should do: (copy, kind, slot, the copy saved to, the state read next).
fn expected(copies: &[Vec<u8>; 2]) -> (String, &'static str, Slot, String, Option<BootState>) {
    let Some(picked) = pick([decode_copy(&copies[0]), decode_copy(&copies[1])]) else {
        return ("none".into(), "nostate", Slot::A, String::new(), None);
    };
    let (boot, next) = picked.state.boot();
    let (kind, saved) = match boot {
        Boot::Good(_) => ("good", String::new()),
        Boot::Fallback(_) => ("fallback", String::new()),
        Boot::Trial(_) => {
            // GRUB's save_env can rewrite only a GRUB block whose last line ends the block. A try that cannot be
            // saved into the other copy is not taken: the script passes over every trial slot (the save would fail
            // the same way) and boots the first good slot in order, or the last good slot; nothing is written.
            let other = &copies[1 - picked.copy];
            if !(other.starts_with(SIGNATURE) && other.ends_with(b"\n")) {
                let s = picked.state;
                let (kind, slot) = match s.order().into_iter().find(|&x| s.slot(x).good) {
                    Some(x) => ("good", x),
                    None => ("fallback", s.last_good()),
                };
                return (picked.copy.to_string(), kind, slot, String::new(), Some(s));
            }
            ("trial", (1 - picked.copy).to_string())
        }
    };
    (picked.copy.to_string(), kind, boot.slot(), saved, Some(next))
}

#[test]
fn generated_grub_cfg_makes_the_rules_decisions_in_real_grub() {
    let cfg = format!("set edge_test=1\n{}", generate(&GrubConfig::default()));
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir");
    let cases = cases();
    let images: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            GrubImage::new(cfg.clone())
                .file("EFI/edge/state0.env", c.copies[0].clone())
                .file("EFI/edge/state1.env", c.copies[1].clone())
                .build(harness(), &dir.path().join(format!("case{i}.img")))
                .unwrap_or_else(|e| panic!("{}: {}", c.name, report(&e)))
        })
        .collect();
    let logs = harness().boot_all(&images, TIMEOUT);
    for ((c, image), log) in cases.iter().zip(&images).zip(logs) {
        let log = log.unwrap_or_else(|e| panic!("{}: {}", c.name, report(&e)));
        let (copy, kind, slot, saved, next) = expected(&c.copies);
        let line = format!("EDGE-DECISION copy={copy} kind={kind} slot={slot} saved={saved}");
        assert!(log.has_line(&line), "{}: expected {line:?}; console tail:\n{}", c.name, log.tail(40));
        // What GRUB saved is what the rules save: the state read next is the rules' next state.
        let read = |i: usize| image.read_file(&format!("EFI/edge/state{i}.env")).expect("read back a copy");
        let after = pick([decode_copy(&read(0)), decode_copy(&read(1))]).map(|p| p.state);
        assert_eq!(after, next, "{}: state after the boot", c.name);
        // GRUB's save_env writes exactly the bytes edge-bootctl would write for that state and generation, so the
        // torn-write tests of our writes (bootctl::grubstate) cover the bootloader's writes too.
        if let (Ok(i), Some(picked)) =
            (saved.parse::<usize>(), pick([decode_copy(&c.copies[0]), decode_copy(&c.copies[1])]))
        {
            let expected = encode_copy(&next.expect("a trial has a next state"), picked.generation.next());
            assert!(read(i) == expected, "{}: GRUB's write differs from ours", c.name);
        }
    }
}
