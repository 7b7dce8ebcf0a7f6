//! The generated `bootctl/uboot/boot.cmd` in real U-Boot (QEMU arm64 `virt`, TCG) against `bootctl::rules`: for a
//! sample of states that covers every branch of the script, U-Boot must pick the same copy of the redundant
//! environment, boot the same slot and save the same state, byte for byte as `fw_setenv` would write it, as the Rust
//! rules do. The script runs in its test mode (`edge_test=1`): it prints its decision and powers off.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bootctl::backend::{state_from_env, state_to_env};
use bootctl::rules::{Boot, BootState, Slot};
use bootctl::uboot::{decode_redundant, encode_redundant, CopyId, Env, FlagScheme};
use bootctl::ubootscript::{generate, UbootConfig};
use qemu_tests::report;
use qemu_tests::uboot::{boot, boot_all, UbootImage, UbootTools, BLOCK_BYTES, STATE_FIRST_BLOCK};

mod common;
use common::{state, Case};

const TIMEOUT: Duration = Duration::from_secs(60);

fn config() -> UbootConfig {
    UbootConfig::default()
}

fn size() -> usize {
    usize::try_from(config().env_size).expect("a small environment")
}

fn env_of(s: &BootState) -> Env {
    let mut env = Env::new();
    state_to_env(s, &mut env).expect("state variables are valid names and values");
    env
}

/// One copy holding `s` with `flags`.
fn copy(s: &BootState, flags: u8) -> Vec<u8> {
    encode_redundant(&env_of(s), size(), flags).expect("the state fits")
}

/// A copy with `flags` whose CRC no longer matches (a save cut short).
fn torn(s: &BootState, flags: u8) -> Vec<u8> {
    let mut b = copy(s, flags);
    let last = b.len() - 1;
    b[last] ^= 0x01;
    b
}

/// A copy holding `s` with some variables overridden by hand, as `fw_setenv` could leave them.
fn raw_copy(overrides: &[(&str, &str)], s: &BootState, flags: u8) -> Vec<u8> {
    let mut env = env_of(s);
    for (name, value) in overrides {
        env.set(name, value).expect("a valid name");
    }
    encode_redundant(&env, size(), flags).expect("the state fits")
}

fn cases() -> Vec<Case> {
    use Slot::{A, B};
    let a_good = state((true, 0), (false, 0), A, A);
    let b_trial = |t| state((true, 0), (false, t), B, A);
    vec![
        Case { name: "good active slot, copy 1 newer", copies: [copy(&b_trial(3), 5), copy(&a_good, 6)] },
        Case { name: "trial with 9 tries, copy 0 newer", copies: [copy(&b_trial(9), 7), copy(&a_good, 6)] },
        Case { name: "trial with 3 tries", copies: [copy(&a_good, 0), copy(&b_trial(3), 1)] },
        Case { name: "last try", copies: [copy(&b_trial(1), 2), copy(&b_trial(2), 1)] },
        Case { name: "active slot used up, the other is good", copies: [copy(&b_trial(0), 3), copy(&b_trial(1), 2)] },
        Case {
            name: "no slot qualifies: last good",
            copies: [copy(&state((false, 0), (false, 0), A, B), 9), copy(&a_good, 8)],
        },
        Case { name: "flags wrap: 0 follows 255", copies: [copy(&b_trial(2), 0), copy(&a_good, 255)] },
        Case {
            name: "flags wrap: saving after 255 writes 0",
            copies: [copy(&state((false, 2), (true, 0), A, B), 255), copy(&a_good, 254)],
        },
        Case { name: "newer copy torn: the older one decides", copies: [copy(&b_trial(3), 4), torn(&a_good, 5)] },
        Case { name: "no valid copy: slot A", copies: [vec![0; size()], torn(&a_good, 1)] },
        Case {
            name: "lower-case slot letters read as slots",
            copies: [copy(&a_good, 1), raw_copy(&[("edge_active", "b"), ("edge_last_good", "a")], &b_trial(2), 2)],
        },
        Case {
            name: "bad value in the current copy: slot A",
            copies: [copy(&a_good, 1), raw_copy(&[("edge_a_tries", "x")], &a_good, 2)],
        },
    ]
}

/// What the Rust rules say U-Boot should do: (copy, kind, slot, the copy saved to, the next state and its flags).
fn expected(copies: &[Vec<u8>; 2]) -> (String, &'static str, Slot, String, Option<(BootState, u8)>) {
    let Ok((env, choice)) = decode_redundant(&copies[0], &copies[1], FlagScheme::Incremental) else {
        return ("none".into(), "nostate", Slot::A, String::new(), None);
    };
    let current = choice.current.index().to_string();
    let Ok(read) = state_from_env(&env) else { return (current, "nostate", Slot::A, String::new(), None) };
    let (boot, next) = read.boot();
    let (kind, saved) = match boot {
        Boot::Good(_) => ("good", String::new()),
        Boot::Fallback(_) => ("fallback", String::new()),
        Boot::Trial(_) => ("trial", choice.current.other().index().to_string()),
    };
    let flags = if kind == "trial" { FlagScheme::Incremental.next(choice.flags) } else { choice.flags };
    (current, kind, boot.slot(), saved, Some((next, flags)))
}

#[test]
fn generated_boot_script_makes_the_rules_decisions_in_real_uboot() {
    let tools = UbootTools::find().unwrap_or_else(|e| panic!("{}", report(&e)));
    let script = format!("setenv edge_test 1\n{}", generate(&config()).expect("the default config is valid"));
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir");
    let cases = cases();
    let disks: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            UbootImage::new(script.clone())
                .state(c.copies.concat())
                .build(&tools, &dir.path().join(format!("case{i}.img")))
                .unwrap_or_else(|e| panic!("{}: {}", c.name, report(&e)))
        })
        .collect();
    let logs = boot_all(&tools, &disks, TIMEOUT);
    for ((c, disk), log) in cases.iter().zip(&disks).zip(logs) {
        let log = log.unwrap_or_else(|e| panic!("{}: {}", c.name, report(&e)));
        eprintln!("{}: booted in {:.1} s", c.name, log.elapsed().as_secs_f64());
        let (current, kind, slot, saved, next) = expected(&c.copies);
        let line = format!("EDGE-DECISION copy={current} kind={kind} slot={slot} saved={saved}");
        assert!(log.has_line(&line), "{}: expected {line:?}; console tail:\n{}", c.name, log.tail(40));

        let after = disk.read_state(2 * size()).expect("read back the state area");
        let (primary, redundant) = after.split_at(size());
        if saved.is_empty() {
            assert_eq!(after, c.copies.concat(), "{}: nothing is saved", c.name);
            continue;
        }
        // What U-Boot saved is what the rules save, in the copy that was not current, with the next flags, and with
        // exactly the bytes fw_setenv and bootctl write for that state.
        let (next, flags) = next.expect("a trial has a next state");
        let (env, choice) = decode_redundant(primary, redundant, FlagScheme::Incremental).expect("a valid copy");
        assert_eq!(state_from_env(&env).expect("the saved state is valid"), next, "{}: state after the boot", c.name);
        assert_eq!(choice.current.index().to_string(), saved, "{}: the copy saved", c.name);
        assert_eq!(choice.flags, flags, "{}: flags of the saved copy", c.name);
        let written = if choice.current == CopyId::Primary { primary } else { redundant };
        assert!(written == copy(&next, flags).as_slice(), "{}: saved bytes differ from encode_redundant", c.name);
        let untouched = if choice.current == CopyId::Primary { redundant } else { primary };
        assert_eq!(untouched, &c.copies[choice.current.other().index()][..], "{}: the current copy is kept", c.name);
        assert_eq!(fw_printenv(disk.path(), "edge_active"), format!("edge_active={}\n", next.active()), "{}", c.name);
    }
}

/// A try that cannot be saved (the state area is write-protected) is not taken: the trial slot is passed over and the
/// good slot boots, or the last good slot when no slot is good; nothing changes on disk.
#[test]
fn a_try_that_cannot_be_saved_is_not_taken() {
    use Slot::{A, B};
    let tools = UbootTools::find().unwrap_or_else(|e| panic!("{}", report(&e)));
    let script = format!("setenv edge_test 1\n{}", generate(&config()).expect("the default config is valid"));
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir");
    let cases = [
        ("trial B over good A", state((true, 0), (false, 3), B, A), "kind=good slot=A"),
        ("trials only", state((false, 2), (false, 3), B, A), "kind=fallback slot=A"),
    ];
    for (i, (name, s, decision)) in cases.iter().enumerate() {
        let copies = [copy(s, 1), copy(s, 0)];
        let disk = UbootImage::new(script.clone())
            .state(copies.concat())
            .build(&tools, &dir.path().join(format!("ro{i}.img")))
            .unwrap_or_else(|e| panic!("{name}: {}", report(&e)))
            .read_only();
        let log = boot(&tools, &disk, TIMEOUT).unwrap_or_else(|e| panic!("{name}: {}", report(&e)));
        let line = format!("EDGE-DECISION copy=0 {decision} saved=");
        assert!(log.has_line(&line), "{name}: expected {line:?}; console tail:\n{}", log.tail(40));
        assert_eq!(disk.read_state(2 * size()).expect("read back"), copies.concat(), "{name}: nothing changes");
    }
}

/// `fw_printenv NAME` on the state area of the disk image, through an `fw_env.config` of two lines, as on a node.
fn fw_printenv(image: &Path, name: &str) -> String {
    let dir = tempfile::tempdir().expect("scratch dir");
    let offset = STATE_FIRST_BLOCK * BLOCK_BYTES;
    let size = config().env_size;
    let cfg = dir.path().join("fw_env.config");
    let image = image.display();
    std::fs::write(&cfg, format!("{image} {offset:#x} {size:#x}\n{image} {:#x} {size:#x}\n", offset + size))
        .expect("write fw_env.config");
    let no_default = dir.path().join("no-default-env");
    let out = Command::new("fw_printenv")
        .arg("-c")
        .arg(&cfg)
        .arg("-f")
        .arg(&no_default)
        .arg(name)
        .output()
        .expect("run fw_printenv (Debian package libubootenv-tool)");
    assert!(out.status.success(), "fw_printenv failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A stand-in arm64 kernel `Image` of `size_bytes` bytes that `booti` accepts: the Image header (a branch over it,
/// the size, 4 KiB pages, placed anywhere, the `ARM\x64` magic), then PSCI `SYSTEM_OFF` through `hvc`, so that the
/// guest powers off once U-Boot has jumped to it. Each slot gets another size, which U-Boot's `load` prints.
fn stand_in_kernel(size_bytes: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0x1400_0010u32.to_le_bytes()); // b +64: over the header
    b.extend_from_slice(&0u32.to_le_bytes());
    for field in [0u64, size_bytes, 0xa, 0, 0, 0] {
        b.extend_from_slice(&field.to_le_bytes()); // text_offset, image_size, flags, reserved
    }
    b.extend_from_slice(b"ARM\x64");
    b.extend_from_slice(&0u32.to_le_bytes());
    // movz x0, #8; movk x0, #0x8400, lsl #16 (x0 = PSCI SYSTEM_OFF); hvc #0; b .
    for insn in [0xd280_0100u32, 0xf2b0_8000, 0xd400_0002, 0x1400_0000] {
        b.extend_from_slice(&insn.to_le_bytes());
    }
    b.resize(usize::try_from(size_bytes).expect("a small kernel"), 0);
    b
}

#[test]
fn generated_boot_script_boots_the_chosen_slots_kernel() {
    use Slot::{A, B};
    let tools = UbootTools::find().unwrap_or_else(|e| panic!("{}", report(&e)));
    let c = config();
    let script = generate(&c).expect("the config is valid");
    let kernel = c.kernel.trim_start_matches('/');
    let initrd = c.initrd.trim_start_matches('/');
    let kernel_size = |s: Slot| if s == A { 4096 } else { 8192 };
    // An initramfs of another size per slot too, so that the log tells which slot's was loaded.
    let initrd_size = |s: Slot| if s == A { 1536u64 } else { 2560 };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir");
    let states =
        [state((true, 0), (false, 3), B, A), state((true, 0), (false, 0), A, A), state((false, 0), (true, 0), A, B)];
    let disks: Vec<_> = states
        .iter()
        .enumerate()
        .map(|(i, s)| {
            UbootImage::new(script.clone())
                .state([copy(s, 1), torn(s, 2)].concat())
                .slot_file(c.slot_a_part, kernel, stand_in_kernel(kernel_size(A)))
                .slot_file(c.slot_b_part, kernel, stand_in_kernel(kernel_size(B)))
                .slot_file(c.slot_a_part, initrd, vec![0xa5; initrd_size(A) as usize])
                .slot_file(c.slot_b_part, initrd, vec![0x5a; initrd_size(B) as usize])
                .build(&tools, &dir.path().join(format!("kernel{i}.img")))
                .unwrap_or_else(|e| panic!("state {i}: {}", report(&e)))
        })
        .collect();
    let logs = boot_all(&tools, &disks, TIMEOUT);
    for ((s, disk), log) in states.iter().zip(&disks).zip(logs) {
        let log = log.unwrap_or_else(|e| panic!("{s:?}: {}", report(&e)));
        eprintln!("{s:?}: booted in {:.1} s", log.elapsed().as_secs_f64());
        let (boot, next) = s.boot();
        let slot = boot.slot();
        let kind = match boot {
            Boot::Good(_) => "good",
            Boot::Trial(_) => "trial",
            Boot::Fallback(_) => "fallback",
        };
        let root = if slot == A { &c.slot_a_root } else { &c.slot_b_root };
        let line = format!(
            "EDGE-BOOT slot={slot} kind={kind} bootargs=root={root} edge.root={root} edge.slot={slot} {}",
            c.cmdline
        );
        assert!(log.has_line(&line), "{s:?}: expected {line:?}; console tail:\n{}", log.tail(40));
        for (what, size) in [("kernel", kernel_size(slot)), ("initramfs", initrd_size(slot))] {
            let read = format!("{size} bytes read");
            assert!(
                log.console().contains(&read),
                "{s:?}: slot {slot}'s {what} not loaded; console tail:\n{}",
                log.tail(40)
            );
        }
        assert!(log.has_line("Starting kernel ..."), "{s:?}: booti did not start; console tail:\n{}", log.tail(40));
        let after = disk.read_state(2 * size()).expect("read back the state area");
        let (env, _) = decode_redundant(&after[..size()], &after[size()..], FlagScheme::Incremental).expect("valid");
        assert_eq!(state_from_env(&env).expect("valid state"), next, "{s:?}: state after the boot");
    }
}
