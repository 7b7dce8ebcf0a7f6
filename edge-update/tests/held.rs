//! `install --no-flip` and `flip` as an operator (or the fleet agent) meets them (docs/updater.md, "Held
//! installs"): the target is verified and held across reboots without being made bootable, `status` and the event
//! log say so, and `flip` makes it active on trial; a flip with nothing held is refused and changes nothing.

mod common;

use bootctl::rules::Slot;
use common::{bundle, payload, Spec, TestNode};

fn events(n: &TestNode) -> Vec<String> {
    let text = std::fs::read_to_string(n.path("data/events.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).expect("an event line is JSON");
            e["event"].as_str().expect("event").to_owned()
        })
        .collect()
}

fn result_line(out: &std::process::Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    serde_json::from_str(stdout.lines().last().expect("a result line")).expect("json")
}

#[test]
fn a_held_install_waits_across_reboots_and_the_flip_makes_it_active() {
    let n = TestNode::new();
    bundle(&n.path("v2.bundle"), &payload(1 << 20, 2), &Spec::new("2.0", 2));
    let v2 = n.path("v2.bundle");
    let v2 = v2.to_str().expect("utf8");

    // Nothing to flip yet.
    let before = n.snapshot();
    let out = n.run(&["flip"]);
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(n.snapshot(), before);

    let result = result_line(&n.run(&["install", "--no-flip", "--json", v2]));
    assert_eq!((result["result"].as_str(), result["reboot"].as_bool()), (Some("verified"), Some(false)));
    assert!(!n.state().qualifies(Slot::B), "a held slot is not bootable");
    let s = n.status();
    assert_eq!(s["journal"]["update"]["phase"].as_str(), Some("verified"));
    assert_eq!(s["journal"]["update"]["held"].as_bool(), Some(true), "{s}");
    assert_eq!(events(&n), ["started", "verified"]);
    let text = n.ok(&["status"]);
    assert!(text.contains("held"), "{text}");

    // Reboots come and go: the node boots slot A, and the hold is no interruption.
    for _ in 0..2 {
        assert_eq!(n.power_on(), Slot::A);
        n.ok(&["boot"]);
    }
    assert_eq!(events(&n), ["started", "verified", "booted", "booted"]);
    assert_eq!(n.status()["journal"]["update"]["held"].as_bool(), Some(true));

    let result = result_line(&n.run(&["flip", "--json"]));
    assert_eq!(result["result"].as_str(), Some("flipped"), "{result}");
    assert_eq!(result["bundle"]["version"].as_str(), Some("2.0"));
    assert_eq!(n.phase().as_deref(), Some("flipped"));
    assert!(n.status()["journal"]["update"].get("held").is_none(), "the flip ends the hold");
    assert!(!n.path("data/slot-B.held").exists());
    assert_eq!(n.power_on(), Slot::B);
    n.ok(&["boot"]);
    assert_eq!(n.phase().as_deref(), Some("committed"));
    assert_eq!(events(&n).last().map(String::as_str), Some("committed"));

    // Committed: nothing held to flip.
    let out = n.run(&["flip"]);
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn a_held_slot_that_changed_is_refused_with_the_chunk_named_and_reported() {
    let n = TestNode::new();
    bundle(&n.path("v2.bundle"), &payload(1 << 20, 2), &Spec::new("2.0", 2));
    let v2 = n.path("v2.bundle");
    n.ok(&["install", "--no-flip", v2.to_str().expect("utf8")]);
    // Something writes the held slot behind the updater's back.
    let slot_b = n.path("b.img");
    let mut bytes = std::fs::read(&slot_b).expect("slot B");
    bytes[700_000] ^= 1;
    std::fs::write(&slot_b, bytes).expect("write");
    let out = n.run(&["flip"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reads back wrong"));
    assert!(!n.state().qualifies(Slot::B));
    assert_eq!(n.phase().as_deref(), Some("downloading"));
    assert_eq!(events(&n).last().map(String::as_str), Some("install-failed"));
    // The install run again rewrites that chunk, and the flip goes through.
    n.ok(&["install", "--no-flip", v2.to_str().expect("utf8")]);
    n.ok(&["flip"]);
    assert_eq!(n.power_on(), Slot::B);
}

#[test]
fn a_damaged_hashes_file_sends_the_hold_back_to_an_install_that_checks_the_whole_slot() {
    let n = TestNode::new();
    bundle(&n.path("v2.bundle"), &payload(1 << 20, 2), &Spec::new("2.0", 2));
    let v2 = n.path("v2.bundle");
    n.ok(&["install", "--no-flip", v2.to_str().expect("utf8")]);
    let held = n.path("data/slot-B.held");
    let mut bytes = std::fs::read(&held).expect("the hashes file");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&held, bytes).expect("write");
    let out = n.run(&["flip"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("slot-B.held") && stderr.contains("install the bundle again"), "{stderr}");
    assert!(!n.state().qualifies(Slot::B), "nothing unchecked is made bootable");
    assert_eq!(n.phase().as_deref(), Some("downloading"));
    assert_eq!(events(&n).last().map(String::as_str), Some("install-failed"));
    // A second flip is refused as nothing held, rather than failing again on the same file.
    assert_eq!(n.run(&["flip"]).status.code(), Some(7));
    // The install checks the whole slot against the signed manifest and holds it again with a fresh file.
    n.ok(&["install", "--no-flip", v2.to_str().expect("utf8")]);
    assert_eq!(n.status()["journal"]["update"]["held"].as_bool(), Some(true));
    n.ok(&["flip"]);
    assert_eq!(n.power_on(), Slot::B);
}
