//! What the updater's tests share: a node in a temporary directory (file slots, GRUB boot state copies, a kernel
//! command line, a keyring, a config), bundles built with the real writer, and a bootloader stand-in that applies
//! the slot rules the way the generated grub.cfg does (checked against real GRUB in `qemu-tests`).
#![allow(dead_code)] // Each test crate uses a different part of this module.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use bootctl::blockdev::Access;
use bootctl::grubstate::GrubStore;
use bootctl::rules::{BootState, Slot};
use image_layout::keys::SecretKey;
use image_layout::writer::{build, BuildOptions, PayloadInput};
use time::OffsetDateTime;

/// The board string of every test node.
pub const COMPATIBLE: &str = "test-board";
/// Size of each slot file.
pub const SLOT_BYTES: u64 = 4 << 20;

/// The signer of test bundles.
pub fn key() -> &'static SecretKey {
    static K: OnceLock<SecretKey> = OnceLock::new();
    K.get_or_init(|| SecretKey::from_seed([9; 32]))
}

/// A payload of `len` bytes from `seed`: half compressible text, half noise, like a filesystem image.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (out.len() / 4096) % 2 == 0 {
            out.extend_from_slice(format!("line {} of the image {seed}\n", out.len()).as_bytes());
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// An image like `base` with a few scattered changes and blocks inserted, as a rebuilt filesystem looks (its
/// blocks move in whole 4 KiB units).
pub fn changed(base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for i in (0..v.len()).step_by(300_000) {
        v[i] ^= 0xff;
    }
    v.splice(69_632..69_632, payload(3 * 4096, 9));
    v.truncate(base.len());
    v
}

/// How a test bundle is made.
pub struct Spec {
    pub version: &'static str,
    pub security_version: u64,
    pub compatible: &'static str,
    pub chunk_size: u32,
    pub expires: Option<OffsetDateTime>,
    /// The seed of another signer than [`key`].
    pub signer: Option<[u8; 32]>,
}

impl Spec {
    pub fn new(version: &'static str, security_version: u64) -> Spec {
        Spec { version, security_version, compatible: COMPATIBLE, chunk_size: 64 << 10, expires: None, signer: None }
    }
}

/// Builds a bundle of `payload` at `out`.
pub fn bundle(out: &Path, payload: &[u8], spec: &Spec) {
    let created = OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("time");
    let mut o = BuildOptions::new(spec.version, spec.security_version, spec.compatible, created);
    o.chunk_size = spec.chunk_size;
    o.frame_size = 8 << 10;
    o.expires = spec.expires;
    o.threads = 1;
    o.stack = serde_json::json!({ "base": "debian-12", "app": spec.version });
    let input = PayloadInput {
        name: "rootfs".into(),
        reader: Box::new(std::io::Cursor::new(payload.to_vec())),
        path: "p".into(),
    };
    match spec.signer {
        Some(seed) => build(&o, vec![input], &[SecretKey::from_seed(seed)], out, &|_| {}),
        None => build(&o, vec![input], std::slice::from_ref(key()), out, &|_| {}),
    }
    .expect("build");
}

/// A node in a temporary directory, booted from slot A, B empty.
pub struct TestNode {
    pub dir: tempfile::TempDir,
}

impl TestNode {
    pub fn new() -> TestNode {
        TestNode::with_config("")
    }

    /// A node whose config has `extra` appended (top-level keys must come before any table in it).
    pub fn with_config(extra: &str) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = TestNode { dir };
        std::fs::create_dir_all(n.path("keys")).expect("mkdir");
        key().write_pair(&n.path("keys/test")).expect("write keys");
        for s in ["a.img", "b.img"] {
            let f = std::fs::File::create(n.path(s)).expect("create slot");
            f.set_len(SLOT_BYTES).expect("size slot");
        }
        std::fs::write(n.path("a.img"), payload(SLOT_BYTES as usize, 1)).expect("slot A image");
        std::fs::create_dir_all(n.path("esp")).expect("mkdir");
        for (i, b) in bootctl::grubstate::provision(&BootState::provisioned(Slot::A)).iter().enumerate() {
            std::fs::write(n.path(&format!("esp/state{i}.env")), b).expect("state");
        }
        n.set_booted(Slot::A);
        let d = n.dir.path().display();
        let config = format!(
            "compatible = \"{COMPATIBLE}\"\nkeyring = \"{d}/keys\"\ndata_dir = \"{d}/data\"\nreboot = \"none\"\n\
             {extra}\n[slots]\na = \"{d}/a.img\"\nb = \"{d}/b.img\"\n\
             [bootctl]\nbackend = \"grub\"\ngrub_state_dir = \"{d}/esp\"\ncmdline = \"{d}/cmdline\"\nroot = \"{d}\"\n"
        );
        std::fs::write(n.path("update.toml"), config).expect("config");
        n
    }

    /// Sets a top-level config key (`value` as TOML).
    pub fn set_config_key(&self, key: &str, value: &str) {
        let text = std::fs::read_to_string(self.path("update.toml")).expect("config");
        std::fs::write(self.path("update.toml"), format!("{key} = {value}\n{text}")).expect("config");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn set_booted(&self, s: Slot) {
        std::fs::write(self.path("cmdline"), format!("quiet edge.slot={s}\n")).expect("cmdline");
    }

    pub fn state(&self) -> BootState {
        GrubStore::open_dir(&self.path("esp"), Access::ReadOnly).expect("open").read().expect("read").state
    }

    /// What the bootloader does at power-on: pick a slot by the rules, save the state, "boot" it.
    pub fn power_on(&self) -> Slot {
        let (boot, next) = self.state().boot();
        let mut store = GrubStore::open_dir(&self.path("esp"), Access::ReadWrite).expect("open");
        if next != self.state() {
            store.write(&next).expect("write");
        }
        self.set_booted(boot.slot());
        boot.slot()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&Path>) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edge-update"));
        cmd.arg("--config").arg(self.path("update.toml")).args(args);
        if let Some(p) = stdin {
            cmd.stdin(std::fs::File::open(p).expect("stdin file"));
        }
        cmd.output().expect("run edge-update")
    }

    /// Runs and requires exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf8")
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("json")
    }

    pub fn phase(&self) -> Option<String> {
        self.status()["journal"]["update"]["phase"].as_str().map(str::to_owned)
    }

    pub fn slot_bytes(&self, s: Slot) -> Vec<u8> {
        std::fs::read(self.path(if s == Slot::A { "a.img" } else { "b.img" })).expect("read slot")
    }

    /// Everything an install may change, to show that a refusal changed nothing.
    pub fn snapshot(&self) -> Vec<Vec<u8>> {
        let mut v = vec![self.slot_bytes(Slot::A), self.slot_bytes(Slot::B)];
        for f in ["esp/state0.env", "esp/state1.env", "data/journal.json"] {
            v.push(std::fs::read(self.path(f)).unwrap_or_default());
        }
        v
    }
}
