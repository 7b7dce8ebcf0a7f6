//! `edge-update` as an operator meets it: installs from a file and from stdin, the flip, the boot that commits or
//! rolls back, and every refusal, each checked on the slot files, the boot state and the journal.

mod common;

use bootctl::rules::Slot;
use common::{bundle, changed, payload, Spec, TestNode, SLOT_BYTES};

fn code(out: &std::process::Output) -> i32 {
    out.status.code().expect("exited")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn install_boot_commit_then_update_back() {
    let n = TestNode::new();
    let v2 = payload(3 << 20, 2);
    bundle(&n.path("v2.bundle"), &v2, &Spec::new("2.0", 2));
    let a_before = n.slot_bytes(Slot::A);
    let out = n.ok(&["install", n.path("v2.bundle").to_str().expect("utf8")]);
    assert!(out.contains("slot B holds edge-stack 2.0"), "{out}");
    assert_eq!(&n.slot_bytes(Slot::B)[..v2.len()], &v2[..]);
    assert_eq!(n.slot_bytes(Slot::A), a_before, "the booted slot is never written");
    let st = n.state();
    assert_eq!(st.active(), Slot::B);
    assert_eq!((st.slot(Slot::B).good, st.slot(Slot::B).tries), (false, 3));
    assert!(st.slot(Slot::A).good);
    assert_eq!(n.phase().as_deref(), Some("flipped"));
    // The bundle's stack is kept for the slot, under the bundle's manifest hash, for the fleet agent's inventory.
    let hash = n.status()["journal"]["slot_b"]["bundle"]["manifest_blake3"].as_str().expect("a hash").to_owned();
    let stack = updater::install::recorded_stack(&n.path("data/slot-B.stack.json"), &hash);
    assert_eq!(stack, Some(serde_json::json!({ "base": "debian-12", "app": "2.0" })));
    assert_eq!(updater::install::recorded_stack(&n.path("data/slot-B.stack.json"), &"0".repeat(64)), None);

    // The bootloader tries B; `boot` runs the (empty) health checks and commits.
    assert_eq!(n.power_on(), Slot::B);
    let out = n.ok(&["boot"]);
    assert!(out.contains("committed"), "{out}");
    let st = n.state();
    assert!(st.slot(Slot::B).good && st.slot(Slot::A).good);
    let s = n.status();
    assert_eq!(s["journal"]["security_version"], 2);
    assert_eq!(s["journal"]["slot_b"]["bundle"]["version"], "2.0");
    assert_eq!(s["booted"], "B");
    // A second boot changes nothing.
    assert_eq!(n.power_on(), Slot::B);
    n.ok(&["boot"]);
    assert_eq!(n.state(), st);

    // And back into A, from stdin this time.
    let v3 = payload(2 << 20, 3);
    bundle(&n.path("v3.bundle"), &v3, &Spec::new("3.0", 3));
    let out = n.run_with_stdin(&["install", "-"], Some(&n.path("v3.bundle")));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(&n.slot_bytes(Slot::A)[..v3.len()], &v3[..]);
    assert_eq!(n.state().active(), Slot::A);
    assert_eq!(n.power_on(), Slot::A);
    n.ok(&["boot"]);
    assert_eq!(n.status()["journal"]["security_version"], 3);

    let events = std::fs::read_to_string(n.path("data/events.jsonl")).expect("events");
    let kinds: Vec<String> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json line")["event"].as_str().unwrap_or("").into()
        })
        .collect();
    for k in ["started", "flipped", "booted", "trial", "committed"] {
        assert!(kinds.iter().any(|e| e == k), "{k} in {kinds:?}");
    }
}

#[test]
fn a_failed_health_check_rolls_back() {
    let n =
        TestNode::with_config("[health]\ndeadline_secs = 30\n[[health.commands]]\nargv = [\"false\"]\nattempts = 1");
    bundle(&n.path("v2.bundle"), &payload(1 << 20, 2), &Spec::new("2.0", 2));
    n.ok(&["install", n.path("v2.bundle").to_str().expect("utf8")]);
    assert_eq!(n.power_on(), Slot::B);
    let out = n.run(&["boot"]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    let st = n.state();
    assert_eq!((st.slot(Slot::B).good, st.slot(Slot::B).tries), (false, 0));
    // The "reboot": the bootloader falls back to A, and `boot` records the rollback with its reason.
    assert_eq!(n.power_on(), Slot::A);
    n.ok(&["boot"]);
    let s = n.status();
    assert_eq!(s["journal"]["update"]["phase"], "rolled-back");
    assert!(s["journal"]["update"]["reason"].as_str().is_some_and(|r| r.contains("false")), "{s}");
    assert_eq!(s["journal"]["security_version"], 0, "a rolled back bundle raises no floor");
}

#[test]
fn refusals_change_nothing() {
    let n = TestNode::new();
    let small = payload(1 << 20, 2);
    let check = |name: &str, spec: Spec, data: &[u8], expected_code: i32| {
        let path = n.path(&format!("{name}.bundle"));
        bundle(&path, data, &spec);
        let before = n.snapshot();
        let out = n.run(&["install", path.to_str().expect("utf8")]);
        assert_eq!(code(&out), expected_code, "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains("error:"), "{name}");
        assert!(n.snapshot() == before, "{name} changed something");
    };
    check("board", Spec { compatible: "other-board", ..Spec::new("2", 1) }, &small, 7);
    check("too-big", Spec::new("2", 1), &payload(SLOT_BYTES as usize + 4096, 2), 7);
    check("unsigned", Spec { signer: Some([1; 32]), ..Spec::new("2", 1) }, &small, 4);
    let past = time::OffsetDateTime::from_unix_timestamp(1_790_000_100).expect("time");
    check("expired", Spec { expires: Some(past), ..Spec::new("2", 1) }, &small, 6);

    // A corrupted chunk: refused when it is met, before it is written; nothing is made bootable.
    let path = n.path("corrupt.bundle");
    bundle(&path, &small, &Spec::new("2", 1));
    let mut b = std::fs::read(&path).expect("read");
    let at = b.len() / 3;
    b[at] ^= 0x40;
    std::fs::write(&path, &b).expect("write");
    let out = n.run(&["install", "--full", path.to_str().expect("utf8")]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(!n.state().qualifies(Slot::B));
    assert_eq!(n.phase().as_deref(), Some("downloading"));

    // Anti-rollback: after committing security version 5, version 4 is refused.
    bundle(&n.path("v5.bundle"), &small, &Spec::new("5", 5));
    n.ok(&["install", n.path("v5.bundle").to_str().expect("utf8")]);
    assert_eq!(n.power_on(), Slot::B);
    n.ok(&["boot"]);
    check("downgrade", Spec::new("4", 4), &small, 7);

    // A target that is mounted is refused, found by the mount table.
    let n = TestNode::new();
    n.set_config_key("mountinfo", &format!("{:?}", n.path("mountinfo").display().to_string()));
    let mountinfo = format!("30 22 7:3 / /mnt/b rw - ext4 {} rw\n", n.path("b.img").display());
    std::fs::write(n.path("mountinfo"), mountinfo).expect("write");
    let path = n.path("v2.bundle");
    bundle(&path, &small, &Spec::new("2", 1));
    let before = n.snapshot();
    let out = n.run(&["install", path.to_str().expect("utf8")]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(stderr(&out).contains("mounted on /mnt/b"), "{}", stderr(&out));
    assert!(n.snapshot() == before);
}

#[test]
fn a_delta_install_fetches_only_what_the_booted_slot_lacks() {
    let n = TestNode::new();
    let v1 = n.slot_bytes(Slot::A);
    let v2 = changed(&v1[..3 << 20]);
    let path = n.path("v2.bundle");
    bundle(&path, &v2, &Spec::new("2", 2));
    let out = n.ok(&["install", "--json", path.to_str().expect("utf8")]);
    let last: serde_json::Value = serde_json::from_str(out.lines().last().expect("a result line")).expect("json");
    assert_eq!(&n.slot_bytes(Slot::B)[..v2.len()], &v2[..]);
    let fetched = last["fetched_bytes"].as_u64().expect("fetched");
    let reused = last["reused_bytes"].as_u64().expect("reused");
    let bundle_len = std::fs::metadata(&path).expect("stat").len();
    assert!(reused > v2.len() as u64 * 8 / 10, "{last}");
    assert!(fetched < bundle_len / 5, "{fetched} of {bundle_len}: {last}");
    assert!(out.lines().any(|l| l.contains("\"stage\":\"writing\"")), "progress lines: {out}");
    let s = n.status();
    assert_eq!(s["journal"]["update"]["reused_bytes"].as_u64(), Some(reused));
    assert_eq!(s["journal"]["update"]["fetched_bytes"].as_u64(), Some(fetched));
    // The booted slot's index is cached for the next delta install, and the new slot's after its read-back.
    assert!(n.path("data/slot-A.index").exists() && n.path("data/slot-B.index").exists());

    // Then back from B to A, with the index of B from the read-back: B's blocks are reused.
    assert_eq!(n.power_on(), Slot::B);
    n.ok(&["boot"]);
    let v3 = changed(&v2);
    bundle(&n.path("v3.bundle"), &v3, &Spec::new("3", 3));
    let out = n.ok(&["install", "--json", n.path("v3.bundle").to_str().expect("utf8")]);
    let last: serde_json::Value = serde_json::from_str(out.lines().last().expect("a result line")).expect("json");
    assert!(last["reused_bytes"].as_u64().expect("reused") > v3.len() as u64 * 8 / 10, "{last}");
    assert_eq!(&n.slot_bytes(Slot::A)[..v3.len()], &v3[..]);
}

#[test]
fn a_damaged_frame_falls_back_to_its_whole_chunk() {
    let n = TestNode::new();
    let v1 = n.slot_bytes(Slot::A);
    let v2 = changed(&v1[..3 << 20]);
    let path = n.path("v2.bundle");
    bundle(&path, &v2, &Spec::new("2", 2));
    // Damage every byte of the frame area: the chunks stay whole, so the install still completes.
    let b = image_layout::reader::BundleAt::open_unverified(std::fs::File::open(&path).expect("open")).expect("open");
    let v = b.verified();
    let frames = &v.manifest.payloads[0].frames;
    let (start, len) = ((v.body_start + frames.offset) as usize, frames.size_bytes as usize);
    let mut bytes = std::fs::read(&path).expect("read");
    for x in &mut bytes[start..start + len] {
        *x ^= 0x5a;
    }
    std::fs::write(&path, &bytes).expect("write");
    n.ok(&["install", path.to_str().expect("utf8")]);
    assert_eq!(&n.slot_bytes(Slot::B)[..v2.len()], &v2[..]);
    assert_eq!(n.phase().as_deref(), Some("flipped"));
}

#[test]
fn operator_verbs_mark_good_rollback_and_cancel() {
    let n = TestNode::new();
    bundle(&n.path("v2.bundle"), &payload(1 << 20, 2), &Spec::new("2", 2));
    let path = n.path("v2.bundle");
    let path = path.to_str().expect("utf8");

    // Nothing to act on yet.
    for verb in ["rollback", "cancel"] {
        let out = n.run(&[verb]);
        assert_eq!(code(&out), 7, "{verb}: {}", stderr(&out));
    }

    // Cancel after the flip, before the reboot: B is unbootable again.
    n.ok(&["install", path]);
    assert!(n.state().qualifies(Slot::B));
    n.ok(&["cancel"]);
    assert!(!n.state().qualifies(Slot::B));
    assert_eq!(n.phase().as_deref(), Some("cancelled"));
    assert_eq!(n.power_on(), Slot::A);

    // Roll back after the flip: the same, recorded as a rollback.
    n.ok(&["install", path]);
    n.ok(&["rollback"]);
    assert_eq!(n.phase().as_deref(), Some("rolled-back"));
    assert_eq!(n.power_on(), Slot::A);

    // Roll back on the trial boot: B is marked bad, and back on A the reason is the operator.
    n.ok(&["install", path]);
    assert_eq!(n.power_on(), Slot::B);
    let out = n.run(&["rollback"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(n.state().slot(Slot::B).tries, 0);
    assert_eq!(n.power_on(), Slot::A);
    n.ok(&["boot"]);
    let s = n.status();
    assert_eq!(s["journal"]["update"]["phase"], "rolled-back");
    assert!(s["journal"]["update"]["reason"].as_str().is_some_and(|r| r.contains("operator")), "{s}");

    // mark-good on a trial boot commits without the checks.
    n.ok(&["install", path]);
    assert_eq!(n.power_on(), Slot::B);
    n.ok(&["mark-good"]);
    assert_eq!(n.phase().as_deref(), Some("committed"));
    assert!(n.state().slot(Slot::B).good);
    // A committed update is not rolled back or cancelled.
    for verb in ["rollback", "cancel"] {
        let out = n.run(&[verb]);
        assert_eq!(code(&out), 7, "{verb}: {}", stderr(&out));
    }
}

#[test]
fn install_refuses_while_the_booted_slot_is_on_trial() {
    let n = TestNode::new();
    bundle(&n.path("v2.bundle"), &payload(1 << 20, 2), &Spec::new("2", 2));
    n.ok(&["install", n.path("v2.bundle").to_str().expect("utf8")]);
    assert_eq!(n.power_on(), Slot::B);
    let before = n.snapshot();
    let out = n.run(&["install", n.path("v2.bundle").to_str().expect("utf8")]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(n.snapshot() == before);
}
