//! Interop with GRUB's own tool: what we write, `grub-editenv FILE list` reads back exactly, and what
//! `grub-editenv FILE set` writes, we read, byte for byte the same block as ours.

use std::path::Path;
use std::process::Command;

use bootctl::grubenv::{GrubEnv, BLOCK_SIZE};

fn grub_editenv(file: &Path, args: &[&str]) -> String {
    let out = Command::new("grub-editenv")
        .arg(file)
        .args(args)
        .output()
        .expect("grub-editenv runs (package grub-common; scripts/deps.sh installs it)");
    assert!(out.status.success(), "grub-editenv {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end_matches('#').to_owned()
}

fn env(vars: &[(&str, &str)]) -> GrubEnv {
    let mut e = GrubEnv::new();
    for (n, v) in vars {
        e.set(n, v).expect("valid name");
    }
    e
}

/// The cases both directions run: names and values the boot state uses, and the characters GRUB escapes.
const CASES: &[&[(&str, &str)]] = &[
    &[],
    &[("edge_begin", "1"), ("A_good", "1"), ("A_tries", "0"), ("B_good", "0"), ("B_tries", "3"), ("edge_end", "1")],
    &[("order", "B A"), ("note", "a value with spaces")],
    &[("path", "C:\\boot\\"), ("two", "first\nsecond")],
    &[("x", "=y="), ("empty", "")],
];

#[test]
fn grub_editenv_lists_what_we_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, vars) in CASES.iter().enumerate() {
        let file = dir.path().join(format!("ours{i}.env"));
        std::fs::write(&file, env(vars).encode(BLOCK_SIZE).expect("fits")).expect("write");
        let expected: String = vars.iter().map(|(n, v)| format!("{n}={v}\n")).collect();
        assert_eq!(grub_editenv(&file, &["list"]), expected, "case {i}");
    }
}

#[test]
fn we_read_what_grub_editenv_writes_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, vars) in CASES.iter().enumerate() {
        let file = dir.path().join(format!("theirs{i}.env"));
        grub_editenv(&file, &["create"]);
        for (n, v) in vars.iter() {
            grub_editenv(&file, &["set", &format!("{n}={v}")]);
        }
        let bytes = std::fs::read(&file).expect("read");
        assert_eq!(GrubEnv::decode(&bytes).expect("decodes"), env(vars), "case {i}");
        let ours = env(vars).encode(BLOCK_SIZE).expect("fits");
        assert!(bytes == ours, "case {i}: grub-editenv wrote\n{}\nwe write\n{}", lossy(&bytes), lossy(&ours));
    }
}

#[test]
fn grub_editenv_edits_of_our_block_match_our_edits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("edit.env");
    let mut ours = env(CASES[1]);
    std::fs::write(&file, ours.encode(BLOCK_SIZE).expect("fits")).expect("write");
    // A changed value keeps its place; a new variable goes last; an unset one disappears.
    grub_editenv(&file, &["set", "B_tries=2", "extra=yes"]);
    grub_editenv(&file, &["unset", "A_tries"]);
    ours.set("B_tries", "2").expect("set");
    ours.set("extra", "yes").expect("set");
    ours.unset("A_tries");
    let bytes = std::fs::read(&file).expect("read");
    assert_eq!(GrubEnv::decode(&bytes).expect("decodes"), ours);
    let encoded = ours.encode(BLOCK_SIZE).expect("fits");
    assert!(bytes == encoded, "grub-editenv wrote\n{}\nwe write\n{}", lossy(&bytes), lossy(&encoded));
}
