//! `edge-image` as an operator meets it: real files in a temporary directory, stdout, stderr and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_edge-image");

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env { dir: tempfile::tempdir().expect("tempdir") };
        // A payload of 307,000 bytes: text, zeros and a tail that is not a whole block.
        let mut data = Vec::new();
        for i in 0..6000u32 {
            data.extend_from_slice(format!("entry {i} value {}\n", i.wrapping_mul(40503) % 977).as_bytes());
        }
        data.resize(250_000, 0);
        data.extend((0..57_000u32).map(|x| (x.wrapping_mul(2_654_435_761) >> 13) as u8));
        std::fs::write(env.path("rootfs.img"), &data).expect("payload");
        std::fs::create_dir(env.path("ring")).expect("ring");
        env
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN).args(args).current_dir(self.dir.path()).stdin(Stdio::null()).output().expect("run edge-image")
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }
    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).expect("--json prints JSON")
    }
    fn key(&self, name: &str) {
        self.ok(&["keygen", "-o", name]);
        std::fs::copy(self.path(&format!("{name}.pub")), self.path(&format!("ring/{name}.pub"))).expect("trust key");
    }
    fn build(&self, out: &str, extra: &[&str]) {
        let mut args = vec![
            "build",
            "--payload",
            "rootfs=rootfs.img",
            "--version",
            "2.1.0",
            "--security-version",
            "4",
            "--compatible",
            "qemu-x86_64",
            "--chunk-size",
            "64K",
            "--key",
            "a.key",
            "-o",
            out,
        ];
        args.extend_from_slice(extra);
        self.ok(&args);
    }
    /// Runs a verb on a copy of `bundle` changed by `edit`, and returns the exit code.
    fn code_after(&self, bundle: &str, edit: impl Fn(&mut Vec<u8>), verb: &[&str]) -> i32 {
        let mut b = std::fs::read(self.path(bundle)).expect("bundle");
        edit(&mut b);
        std::fs::write(self.path("bad.bundle"), b).expect("write copy");
        let mut args = verb.to_vec();
        args.insert(1, "bad.bundle");
        self.run(&args).status.code().expect("exit code")
    }
}

/// A change made to a copy of a bundle.
type Edit = Box<dyn Fn(&mut Vec<u8>)>;

fn manifest_len(b: &[u8]) -> usize {
    u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")) as usize
}

#[test]
fn keygen_writes_a_private_key_and_never_overwrites_it() {
    let e = Env::new();
    let j = e.json(&["keygen", "-o", "k", "--json"]);
    assert_eq!(j["key_id"].as_str().expect("key id").len(), 16);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(e.path("k.key")).expect("k.key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(e.path("k.key")).expect("key");
    let out = e.run(&["keygen", "-o", "k"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(e.path("k.key")).expect("key"), before);
}

#[test]
fn build_inspect_verify_extract_round_trip() {
    let e = Env::new();
    e.key("a");
    std::fs::write(e.path("stack.json"), r#"{"kernel": "6.1.0-26", "k3s": "v1.31.2+k3s1"}"#).expect("stack");
    e.build("b.bundle", &["--stack-info", "stack.json"]);
    let j = e.json(&["inspect", "b.bundle", "--keyring", "ring", "--json"]);
    assert_eq!(j["manifest"]["version"], "2.1.0");
    assert_eq!(j["manifest"]["security_version"], 4);
    assert_eq!(j["manifest"]["stack"]["k3s"], "v1.31.2+k3s1");
    assert_eq!(j["payloads"][0]["n_chunks"], 5);
    assert_eq!(j["payloads"][0]["size_bytes"], 307_000);
    assert_eq!(j["signers"][0]["status"], "valid");
    let human = e.ok(&["inspect", "b.bundle"]);
    assert!(human.contains("security version:  4"), "{human}");
    let v = e.json(&["verify", "b.bundle", "--keyring", "ring", "--json"]);
    assert_eq!(v["verified"], true);
    assert_eq!(v["n_chunks_verified"], 5);
    e.ok(&["extract", "b.bundle", "--payload", "rootfs", "-o", "out.img", "--keyring", "ring"]);
    assert_eq!(std::fs::read(e.path("out.img")).expect("out"), std::fs::read(e.path("rootfs.img")).expect("in"));
}

#[test]
fn extract_reads_the_bundle_from_stdin() {
    let e = Env::new();
    e.key("a");
    e.build("b.bundle", &[]);
    let bundle = std::fs::File::open(e.path("b.bundle")).expect("bundle");
    let out = Command::new(BIN)
        .args(["extract", "-", "--payload", "rootfs", "-o", "-", "--keyring", "ring"])
        .current_dir(e.dir.path())
        .stdin(bundle)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data = std::fs::read(e.path("rootfs.img")).expect("in");
    assert_eq!(&out.stdout[..data.len()], &data[..]);
}

#[test]
fn tampered_copies_are_refused_with_distinct_exit_codes() {
    let e = Env::new();
    e.key("a");
    e.build("b.bundle", &[]);
    let verify = ["verify", "--keyring", "ring"];
    let len = std::fs::read(e.path("b.bundle")).expect("bundle").len();
    // The last byte is inside the delta frames; one in the middle is inside a stored chunk.
    let cases: &[(&str, Edit, i32)] = &[
        ("untouched", Box::new(|_| {}), 0),
        ("bad magic", Box::new(|b| b[0] ^= 1), 3),
        ("truncated", Box::new(|b| b.truncate(b.len() / 2)), 3),
        ("trailing garbage", Box::new(|b| b.extend_from_slice(b"xx")), 3),
        ("manifest bit", Box::new(|b| b[40] ^= 4), 4),
        (
            "signature bit",
            Box::new(|b| {
                let at = 24 + manifest_len(b) + 20;
                b[at] ^= 1
            }),
            4,
        ),
        ("chunk bit", Box::new(move |b| b[len / 5] ^= 0x10), 5),
    ];
    for (name, edit, code) in cases {
        assert_eq!(e.code_after("b.bundle", edit, &verify), *code, "{name}");
    }
    // A nonexistent keyring is an operator error, not a bundle error.
    assert_eq!(e.run(&["verify", "b.bundle", "--keyring", "nowhere"]).status.code(), Some(1));
    // A tampered bundle is never extracted: no output file appears.
    assert_eq!(e.code_after("b.bundle", |b| b[len / 5] ^= 0x10, &["extract", "-o", "x.img", "--keyring", "ring"]), 5);
    assert!(!e.path("x.img").exists());
}

#[test]
fn expired_bundle_is_refused() {
    let e = Env::new();
    e.key("a");
    e.build("b.bundle", &["--created", "2020-01-01T00:00:00Z", "--expires", "2021-01-01T00:00:00+02:00"]);
    let out = e.run(&["verify", "b.bundle", "--keyring", "ring"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired"));
}

#[test]
fn threshold_signing_with_sign() {
    let e = Env::new();
    e.key("a");
    e.key("b");
    e.build("b.bundle", &[]);
    let out = e.run(&["verify", "b.bundle", "--keyring", "ring", "--threshold", "2"]);
    assert_eq!(out.status.code(), Some(4));
    let s = e.json(&["sign", "b.bundle", "--key", "b.key", "--json"]);
    assert_eq!(s["n_signatures"], 2);
    // Signing again with the same key replaces its signature rather than adding a second one.
    assert_eq!(e.json(&["sign", "b.bundle", "--key", "b.key", "--json"])["n_signatures"], 2);
    let v = e.json(&["verify", "b.bundle", "--keyring", "ring", "--threshold", "2", "--json"]);
    assert_eq!(v["valid_signers"].as_array().expect("signers").len(), 2);
}

#[test]
fn delta_plan_against_an_old_image_fetches_only_what_changed() {
    let e = Env::new();
    e.key("a");
    e.build("b.bundle", &[]);
    // The old image: the same content moved by three blocks, with one block changed.
    let new = std::fs::read(e.path("rootfs.img")).expect("in");
    let mut old = vec![7u8; 3 * 4096];
    old.extend_from_slice(&new);
    old[3 * 4096 + 10 * 4096 + 5] ^= 0xff;
    std::fs::write(e.path("old.img"), &old).expect("old");
    let j = e.json(&["delta-plan", "b.bundle", "--have", "old.img", "--keyring", "ring", "--json"]);
    let full = j["full_install_bytes"].as_u64().expect("full");
    let fetch = j["fetched_bytes"].as_u64().expect("fetch");
    assert!(fetch < full, "delta {fetch} not below full {full}");
    // Block 10 changed and the short last block cannot be matched: both come from the bundle, nothing else.
    // Block 10's frame is 8 KiB; the last frame holds only the short last block.
    assert_eq!(j["fetched_raw_bytes"], 8192 + 307_000 % 4096);
    assert_eq!(j["reused_bytes"].as_u64().expect("reused") + j["fetched_raw_bytes"].as_u64().expect("raw"), 307_000);
    let human = e.ok(&["delta-plan", "b.bundle", "--have", "old.img"]);
    assert!(human.contains("reuse"), "{human}");
}

#[test]
fn usage_errors_exit_2() {
    let e = Env::new();
    assert_eq!(e.run(&["build"]).status.code(), Some(2));
    assert_eq!(e.run(&["frobnicate"]).status.code(), Some(2));
    let _ = Path::new(BIN);
}

/// A `--payload` without `=`, or with an empty name or file, is a usage error (exit 2) found before anything is read.
#[test]
fn issue_14_bad_payload_spec_is_a_usage_error() {
    let e = Env::new();
    e.key("a");
    for spec in ["rootfs", "=rootfs.img", "rootfs=", "="] {
        let out = e.run(&[
            "build",
            "--payload",
            spec,
            "--version",
            "1",
            "--security-version",
            "1",
            "--compatible",
            "qemu-x86_64",
            "--key",
            "a.key",
            "-o",
            "b.bundle",
        ]);
        assert_eq!(out.status.code(), Some(2), "{spec:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!e.path("b.bundle").exists());
    }
}

/// A `--payload` name the manifest would refuse is a usage error (exit 2), and a name given twice is refused (exit 1),
/// both before any payload is read, rather than as a malformed manifest (exit 3) once every payload has been read.
#[test]
fn issue_14_bad_payload_name_is_refused_before_reading() {
    let e = Env::new();
    e.key("a");
    let build = |payloads: &[&str]| {
        let mut args = vec!["build"];
        for p in payloads {
            args.extend(["--payload", p]);
        }
        args.extend(["--version", "1", "--security-version", "1", "--compatible", "x", "--key", "a.key"]);
        args.extend(["-o", "b.bundle"]);
        let code = e.run(&args).status.code();
        assert_eq!(e.path("b.bundle").exists(), code == Some(0), "{payloads:?}");
        let _ = std::fs::remove_file(e.path("b.bundle"));
        code
    };
    let long = format!("{}=rootfs.img", "n".repeat(65));
    for spec in ["root fs=rootfs.img", "a/b=rootfs.img", "é=rootfs.img", "root\nfs=rootfs.img", &long] {
        assert_eq!(build(&[spec]), Some(2), "{spec:?}");
    }
    assert_eq!(build(&["rootfs=rootfs.img", "rootfs=rootfs.img"]), Some(1));
    // The name is checked before any payload is opened: /dev/zero alone would be refused with exit 1.
    assert_eq!(build(&["rootfs=/dev/zero", "root fs=rootfs.img"]), Some(2));
    let longest = format!("{}=rootfs.img", "n".repeat(64));
    assert_eq!(build(&["A-z_0.9=rootfs.img", &longest]), Some(0));
}

/// Every `--json` document starts with its `schema` and uses the names of docs/cli.md, in the words of docs/json.md.
#[test]
fn issue_14_json_starts_with_its_schema_and_uses_the_documented_names() {
    let e = Env::new();
    let check = |args: &[&str], schema: &str, fields: &[&str]| -> serde_json::Value {
        let out = e.ok(args);
        let head = format!("{{\n  \"schema\": \"{schema}\",\n");
        assert!(out.starts_with(&head), "{args:?}: {out}");
        let j: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
        let mut got: Vec<&str> = j.as_object().expect("an object").keys().map(String::as_str).collect();
        let mut want = fields.to_vec();
        want.push("schema");
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{args:?}");
        j
    };
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        k.sort_unstable();
        k
    };
    check(&["keygen", "-o", "a", "--json"], "edge-image.keygen/1", &["key_id", "secret_key", "public_key"]);
    std::fs::copy(e.path("a.pub"), e.path("ring/a.pub")).expect("trust key");
    let head = ["bundle_bytes", "full_install_bytes", "manifest_blake3", "manifest", "payloads", "signers"];
    let built = check(
        &[
            "build",
            "--payload",
            "rootfs=rootfs.img",
            "--version",
            "2.1.0",
            "--security-version",
            "4",
            "--compatible",
            "x",
            "--chunk-size",
            "64K",
            "--key",
            "a.key",
            "-o",
            "b.bundle",
            "--json",
        ],
        "edge-image.build/1",
        &head,
    );
    let inspected = check(&["inspect", "b.bundle", "--keyring", "ring", "--json"], "edge-image.inspect/1", &head);
    assert_eq!(built["manifest_blake3"], inspected["manifest_blake3"]);
    let payload = [
        "block_size",
        "chunk_size",
        "chunks_bytes",
        "compression_ratio",
        "delta_bytes",
        "frame_size",
        "n_chunks",
        "name",
        "size_bytes",
    ];
    assert_eq!(keys(&inspected["payloads"][0]), payload);
    assert_eq!(keys(&inspected["signers"][0]), ["key_id", "status"]);
    let verified = check(
        &["verify", "b.bundle", "--keyring", "ring", "--json"],
        "edge-image.verify/1",
        &["verified", "name", "version", "security_version", "valid_signers", "n_chunks_verified", "manifest_blake3"],
    );
    assert_eq!(verified["manifest_blake3"], inspected["manifest_blake3"]);
    assert_eq!(verified["name"], "edge-stack");
    check(
        &["extract", "b.bundle", "-o", "out.img", "--keyring", "ring", "--json"],
        "edge-image.extract/1",
        &["payload", "size_bytes", "output"],
    );
    e.ok(&["keygen", "-o", "b"]);
    check(&["sign", "b.bundle", "--key", "b.key", "--json"], "edge-image.sign/1", &["key_id", "n_signatures"]);
    check(
        &["delta-plan", "b.bundle", "--have", "rootfs.img", "--json"],
        "edge-image.delta-plan/1",
        &[
            "payload",
            "image_bytes",
            "reused_bytes",
            "fetched_raw_bytes",
            "metadata_bytes",
            "range_bytes",
            "fetched_bytes",
            "full_install_bytes",
            "n_chunks_local",
            "n_chunks_frames",
            "n_chunks_whole",
            "n_ranges",
            "ranges",
        ],
    );
}

/// Files whose size and type the tool does not control are checked before they are read: a payload or an old
/// image that is a character device, a directory or a FIFO, and keyring entries that are links to devices or FIFOs,
/// are refused with exit 1 and the path and its type named, instead of reading without end or waiting for a writer.
#[test]
fn issue_14_files_that_are_not_regular_are_refused() {
    let e = Env::new();
    e.key("a");
    e.build("b.bundle", &[]);
    std::fs::create_dir(e.path("dir")).expect("dir");
    let made = Command::new("mkfifo").arg(e.path("fifo")).status().expect("mkfifo (coreutils)");
    assert!(made.success());
    let refused = |args: &[&str], path: &str, kind: &str| {
        let out = e.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("{path} is a {kind}")), "{args:?}: {stderr}");
    };
    for (payload, kind) in
        [("/dev/null", "character device"), ("/dev/zero", "character device"), ("dir", "directory"), ("fifo", "FIFO")]
    {
        let spec = format!("rootfs={payload}");
        let args = ["build", "--payload", &spec, "--version", "1", "--security-version", "1", "--compatible", "x"];
        refused(&[&args[..], &["--key", "a.key", "-o", "c.bundle"]].concat(), payload, kind);
    }
    refused(&["delta-plan", "b.bundle", "--have", "/dev/null"], "/dev/null", "character device");
    refused(&["delta-plan", "b.bundle", "--have", "/dev/zero"], "/dev/zero", "character device");
    refused(&["delta-plan", "b.bundle", "--have", "fifo"], "fifo", "FIFO");
    // Keyring entries, for verify (the updater loads its keyring with the same code).
    for (entry, kind) in [("null.pub", "character device"), ("zero.pub", "character device"), ("fifo.pub", "FIFO")] {
        let target = match entry {
            "null.pub" => PathBuf::from("/dev/null"),
            "zero.pub" => PathBuf::from("/dev/zero"),
            _ => e.path("fifo"),
        };
        std::os::unix::fs::symlink(&target, e.path(&format!("ring/{entry}"))).expect("symlink");
        refused(&["verify", "b.bundle", "--keyring", "ring"], entry, kind);
        std::fs::remove_file(e.path(&format!("ring/{entry}"))).expect("remove");
    }
    // A huge key file is refused by its size before it is read.
    std::fs::File::create(e.path("ring/big.pub")).expect("create").set_len(1 << 30).expect("a sparse GiB");
    let out = e.run(&["verify", "b.bundle", "--keyring", "ring"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("big.pub is 1073741824 bytes, expected at most 1024"));
    std::fs::remove_file(e.path("ring/big.pub")).expect("remove");
    e.ok(&["verify", "b.bundle", "--keyring", "ring"]);
    assert!(!e.path("c.bundle").exists());
}

/// A type error in the disk layout file names the file, the line and column, and shows the key.
#[test]
fn issue_14_layout_type_error_names_the_line_and_key() {
    let e = Env::new();
    std::fs::write(e.path("layout.toml"), "compatible = \"x\"\nthreshold = \"2\"\n").expect("layout");
    let out = e.run(&["disk", "layout.toml", "-o", "disk.img"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for part in ["layout.toml", "line 2, column 13", "threshold = \"2\""] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
}
