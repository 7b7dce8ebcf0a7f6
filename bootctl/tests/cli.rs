//! `edge-bootctl` as an operator meets it, on both backends, with the bootloaders' own tools reading what it wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bootctl::backend::state_to_env;
use bootctl::grubstate::GrubStore;
use bootctl::rules::{BootState, Slot};
use bootctl::uboot::{encode_redundant, Env, FileDevice};

const BIN: &str = env!("CARGO_BIN_EXE_edge-bootctl");

struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn boot_into(&self, slot: Slot) {
        std::fs::write(self.path("cmdline"), format!("ro quiet edge.slot={slot}\n")).expect("cmdline");
    }
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN).arg("--config").arg(self.path("bootctl.toml")).args(args).output().expect("run edge-bootctl")
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    }
    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("json")
    }
}

fn grub_node() -> Node {
    let node = Node { dir: tempfile::tempdir().expect("tempdir") };
    let state_dir = node.path("esp");
    std::fs::create_dir(&state_dir).expect("esp");
    let open = |i: usize| {
        let p = state_dir.join(format!("state{i}.env"));
        std::fs::write(&p, []).expect("create");
        (FileDevice::open(&p, bootctl::blockdev::Access::ReadWrite).expect("open"), p)
    };
    GrubStore::new([open(0), open(1)]).provision(&BootState::provisioned(Slot::A)).expect("provision");
    let config =
        format!("backend = \"grub\"\ngrub_state_dir = {:?}\ncmdline = {:?}\n", state_dir, node.path("cmdline"));
    std::fs::write(node.path("bootctl.toml"), config).expect("config");
    node.boot_into(Slot::A);
    node
}

fn grub_editenv_list(file: &Path) -> String {
    let out = Command::new("grub-editenv").arg(file).arg("list").output().expect("grub-editenv (grub-common)");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The whole update cycle through the CLI: install into B, a trial boot, mark-good; then a bad update rolled back.
#[test]
fn update_cycle_on_grub() {
    let node = grub_node();
    let s = node.status();
    assert_eq!(
        (s["backend"].as_str(), s["booted"].as_str(), s["next_slot"].as_str()),
        (Some("grub"), Some("A"), Some("A"))
    );
    assert_eq!(s["copies_whole"], true);
    // A cannot be made active while B is not good (nothing to fall back to); B can.
    let out = node.run(&["set-active", "A"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing would be left to fall back to"));
    node.ok(&["set-active", "B"]);
    let s = node.status();
    assert_eq!(
        (s["active"].as_str(), s["next_boot"].as_str(), s["next_slot"].as_str()),
        (Some("B"), Some("trial"), Some("B"))
    );
    assert_eq!(s["slots"][1]["tries"], 3);
    // GRUB's own tool reads the state copy the CLI wrote (the newest one is copy 0: provisioning made copy 1 newer).
    assert!(grub_editenv_list(&node.path("esp/state0.env")).contains("edge_active=B\n"));
    // The bootloader takes a try and boots B; B passes its checks.
    let mut store = GrubStore::open_dir(&node.path("esp"), bootctl::blockdev::Access::ReadWrite).expect("open");
    let (_, after_boot) = store.read().expect("read").state.boot();
    store.write(&after_boot).expect("bootloader's write");
    node.boot_into(Slot::B);
    assert_eq!(node.ok(&["booted"]).trim(), "B");
    node.ok(&["mark-good"]);
    let s = node.status();
    assert_eq!(
        (s["next_boot"].as_str(), s["next_slot"].as_str(), s["last_good"].as_str()),
        (Some("good"), Some("B"), Some("B"))
    );
    // A bad update into A: its health check fails, mark-bad, and the next boot is B again.
    node.ok(&["set-active", "A"]);
    node.boot_into(Slot::A);
    node.ok(&["mark-bad"]);
    let s = node.status();
    assert_eq!((s["next_boot"].as_str(), s["next_slot"].as_str()), (Some("good"), Some("B")));
    let human = node.ok(&["status"]);
    assert!(human.contains("slot A:     not good, 0 tries left, active, booted"), "{human}");
}

#[test]
fn status_without_a_slot_on_the_command_line_and_bad_input() {
    let node = grub_node();
    std::fs::write(node.path("cmdline"), "ro quiet\n").expect("cmdline");
    assert_eq!(node.status()["booted"], serde_json::Value::Null);
    assert_eq!(node.run(&["mark-good"]).status.code(), Some(1));
    assert_eq!(node.run(&["set-active", "C"]).status.code(), Some(2));
    assert_eq!(node.run(&["frobnicate"]).status.code(), Some(2));
    // Both copies destroyed: a clear error, nothing written.
    std::fs::write(node.path("esp/state0.env"), [0u8; 1024]).expect("zero");
    std::fs::write(node.path("esp/state1.env"), [0u8; 1024]).expect("zero");
    let out = node.run(&["set-active", "B"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("neither copy of the boot state in") && stderr.contains("esp is whole"), "{stderr}");
    assert_eq!(std::fs::read(node.path("esp/state0.env")).expect("read"), vec![0u8; 1024]);
    // Recovery: provision names the slot known to work; a second provision needs --force.
    node.boot_into(Slot::B);
    node.ok(&["provision", "--good", "B"]);
    let s = node.status();
    assert_eq!(
        (s["active"].as_str(), s["next_boot"].as_str(), s["copies_whole"].as_bool()),
        (Some("B"), Some("good"), Some(true))
    );
    let out = node.run(&["provision", "--good", "A"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    node.ok(&["provision", "--good", "A", "--force"]);
    assert_eq!(node.status()["active"], "A");
}

#[test]
fn update_cycle_on_uboot_read_by_fw_printenv() {
    let node = Node { dir: tempfile::tempdir().expect("tempdir") };
    let env_file = node.path("state.bin");
    let mut env = Env::new();
    env.set("bootdelay", "0").expect("set");
    state_to_env(&BootState::provisioned(Slot::A), &mut env).expect("state");
    let mut bytes = encode_redundant(&env, 0x2000, 1).expect("copy 0");
    bytes.extend(encode_redundant(&env, 0x2000, 0).expect("copy 1"));
    std::fs::write(&env_file, bytes).expect("env");
    let fw_config = node.path("fw_env.config");
    std::fs::write(&fw_config, format!("{} 0x0 0x2000\n{} 0x2000 0x2000\n", env_file.display(), env_file.display()))
        .expect("fw_env.config");
    let config =
        format!("backend = \"uboot\"\nuboot_fw_env_config = {:?}\ncmdline = {:?}\n", fw_config, node.path("cmdline"));
    std::fs::write(node.path("bootctl.toml"), config).expect("config");
    node.boot_into(Slot::A);
    assert_eq!(node.status()["backend"], "uboot");
    node.ok(&["set-active", "B"]);
    let out = Command::new("fw_printenv")
        .args(["-c", fw_config.to_str().expect("utf-8"), "-f", "/nonexistent-default-env"])
        .output()
        .expect("fw_printenv (libubootenv-tool)");
    let listed = String::from_utf8_lossy(&out.stdout);
    for line in ["edge_active=B", "edge_b_good=0", "edge_b_tries=3", "edge_last_good=A", "bootdelay=0"] {
        assert!(listed.lines().any(|l| l == line), "fw_printenv lacks {line}:\n{listed}");
    }
    node.boot_into(Slot::B);
    node.ok(&["mark-good"]);
    let s = node.status();
    assert_eq!((s["slots"][1]["good"].as_bool(), s["copies_whole"].as_bool()), (Some(true), Some(true)));
    // A layout the boot script cannot use is refused with the file named: one copy, or copies apart.
    let one = format!("{} 0x0 0x2000\n", env_file.display());
    let apart = format!("{} 0x0 0x2000\n{} 0x4000 0x2000\n", env_file.display(), env_file.display());
    for bad in [one, apart] {
        std::fs::write(&fw_config, bad).expect("fw_env.config");
        let out = node.run(&["status"]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("fw_env.config"), "{stderr}");
    }
    std::fs::write(&fw_config, format!("{} 0x0 0x2000\n{} 0x2000 0x2000\n", env_file.display(), env_file.display()))
        .expect("fw_env.config");
    // A blank state area is provisioned into both copies, which fw_printenv then reads.
    std::fs::write(&env_file, vec![0u8; 0x4000]).expect("blank");
    assert_eq!(node.run(&["status"]).status.code(), Some(1));
    node.ok(&["provision", "--good", "A"]);
    assert_eq!(node.status()["copies_whole"], true);
    let out = Command::new("fw_printenv")
        .args(["-c", fw_config.to_str().expect("utf-8"), "-f", "/nonexistent-default-env", "edge_active"])
        .output()
        .expect("fw_printenv");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "edge_active=A\n");
}
