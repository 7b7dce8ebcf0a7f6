//! `edge-bootctl` as an operator meets it, on both backends, with the bootloaders' own tools reading what it wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bootctl::backend::state_to_env;
use bootctl::error::exit;
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

/// A node whose boot state is a redundant U-Boot environment of 8 KiB copies in one file (`state.bin`), of which
/// the first `copies` are written (slot A good), booted from A.
fn uboot_node(copies: usize) -> (Node, PathBuf) {
    let node = Node { dir: tempfile::tempdir().expect("tempdir") };
    let env_file = node.path("state.bin");
    let mut env = Env::new();
    env.set("bootdelay", "0").expect("set");
    state_to_env(&BootState::provisioned(Slot::A), &mut env).expect("state");
    let mut bytes = Vec::new();
    for (i, flag) in [1, 0].into_iter().enumerate().take(copies) {
        bytes.extend(encode_redundant(&env, 0x2000, flag).expect(if i == 0 { "copy 0" } else { "copy 1" }));
    }
    std::fs::write(&env_file, bytes).expect("env");
    let fw_config = node.path("fw_env.config");
    std::fs::write(&fw_config, format!("{} 0x0 0x2000\n{} 0x2000 0x2000\n", env_file.display(), env_file.display()))
        .expect("fw_env.config");
    let config =
        format!("backend = \"uboot\"\nuboot_fw_env_config = {:?}\ncmdline = {:?}\n", fw_config, node.path("cmdline"));
    std::fs::write(node.path("bootctl.toml"), config).expect("config");
    node.boot_into(Slot::A);
    (node, env_file)
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
    assert_eq!(s["schema"], "edge-bootctl.status/1");
    assert_eq!((&s["slots"][0]["active"], &s["slots"][1]["active"]), (&true.into(), &false.into()));
    // A cannot be made active while B is not good (nothing to fall back to); B can.
    let out = node.run(&["set-active", "A"]);
    assert_eq!(out.status.code(), Some(exit::REFUSED));
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

/// `simulate-boot` does what the bootloader does at power-on, for nodes whose slots are files: the slot the rules
/// pick, a try taken off a slot on trial and written back, the slot printed.
#[test]
fn issue_14_simulate_boot_takes_a_try_as_the_bootloader_does() {
    let node = grub_node();
    node.ok(&["set-active", "B"]);
    for tries_left in [2, 1, 0] {
        assert_eq!(node.ok(&["simulate-boot"]).trim(), "B");
        let s = node.status();
        assert_eq!((s["slots"][1]["tries"].as_u64(), s["slots"][1]["good"].as_bool()), (Some(tries_left), Some(false)));
    }
    // Out of tries: the bootloader falls back to the good slot, and takes nothing from it.
    assert_eq!(node.ok(&["simulate-boot"]).trim(), "A");
    let s = node.status();
    assert_eq!((s["next_boot"].as_str(), s["next_slot"].as_str()), (Some("good"), Some("A")));
    // It changes nothing else: the state is the rules' own `boot`.
    let mut store = GrubStore::open_dir(&node.path("esp"), bootctl::blockdev::Access::ReadOnly).expect("open");
    let state = store.read().expect("read").state;
    assert_eq!(state.boot().1, state);
}

/// `status --json` starts with its schema and uses the names of docs/boot-state.md, a slot in docs/json.md's one
/// shape; another crate (`edge-update status`) gets the same value and text from `bootctl::wire::Status`.
#[test]
fn issue_14_status_json_starts_with_its_schema_and_uses_the_documented_names() {
    let node = grub_node();
    node.ok(&["set-active", "B"]);
    let out = node.ok(&["status", "--json"]);
    assert!(out.starts_with("{\n  \"schema\": \"edge-bootctl.status/1\",\n"), "{out}");
    let s: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        k.sort_unstable();
        k
    };
    let top = ["active", "backend", "booted", "copies", "copies_whole", "last_good", "next_boot", "next_slot"];
    assert_eq!(keys(&s), [&top[..], &["schema", "slots"]].concat());
    assert_eq!(keys(&s["copies"][0]), ["copy", "current", "location", "state"]);
    // docs/json.md: `slot`, `good`, `tries`, `order`, `active`, `booted`.
    assert_eq!(keys(&s["slots"][0]), ["active", "booted", "good", "order", "slot", "tries"]);
    let slot = |i: usize| {
        let v = &s["slots"][i];
        (v["slot"].as_str(), v["good"].as_bool(), v["tries"].as_u64(), v["order"].as_u64(), v["active"].as_bool())
    };
    assert_eq!(slot(0), (Some("A"), Some(true), Some(0), Some(2), Some(false)));
    assert_eq!(slot(1), (Some("B"), Some(false), Some(3), Some(1), Some(true)));
    assert_eq!((s["slots"][0]["booted"].as_bool(), s["slots"][1]["booted"].as_bool()), (Some(true), Some(false)));

    // The library gives another crate the same document and the same text as the binary.
    let config = bootctl::config::Config::load(&node.path("bootctl.toml")).expect("config");
    let mut backend = bootctl::backend::open(&config, bootctl::blockdev::Access::ReadOnly).expect("backend");
    let status = bootctl::wire::Status::read(&mut *backend, Some(Slot::A)).expect("status");
    assert_eq!(serde_json::to_string_pretty(&status).expect("serializes"), out.trim_end());
    assert_eq!(status.human(), node.ok(&["status"]).trim_end());
}

#[test]
fn status_without_a_slot_on_the_command_line_and_bad_input() {
    let node = grub_node();
    std::fs::write(node.path("cmdline"), "ro quiet\n").expect("cmdline");
    assert_eq!(node.status()["booted"], serde_json::Value::Null);
    assert_eq!(node.run(&["mark-good"]).status.code(), Some(exit::BOOTED));
    assert_eq!(node.run(&["set-active", "C"]).status.code(), Some(2));
    assert_eq!(node.run(&["frobnicate"]).status.code(), Some(2));
    // Both copies destroyed: a clear error, nothing written.
    std::fs::write(node.path("esp/state0.env"), [0u8; 1024]).expect("zero");
    std::fs::write(node.path("esp/state1.env"), [0u8; 1024]).expect("zero");
    let out = node.run(&["set-active", "B"]);
    assert_eq!(out.status.code(), Some(exit::STATE));
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
    assert_eq!(out.status.code(), Some(exit::REFUSED));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    node.ok(&["provision", "--good", "A", "--force"]);
    assert_eq!(node.status()["active"], "A");
}

#[test]
fn update_cycle_on_uboot_read_by_fw_printenv() {
    let (node, env_file) = uboot_node(2);
    let fw_config = node.path("fw_env.config");
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
        assert_eq!(out.status.code(), Some(exit::CONFIG));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("fw_env.config"), "{stderr}");
    }
    std::fs::write(&fw_config, format!("{} 0x0 0x2000\n{} 0x2000 0x2000\n", env_file.display(), env_file.display()))
        .expect("fw_env.config");
    // A blank state area is provisioned into both copies, which fw_printenv then reads.
    std::fs::write(&env_file, vec![0u8; 0x4000]).expect("blank");
    assert_eq!(node.run(&["status"]).status.code(), Some(exit::STATE));
    node.ok(&["provision", "--good", "A"]);
    assert_eq!(node.status()["copies_whole"], true);
    let out = Command::new("fw_printenv")
        .args(["-c", fw_config.to_str().expect("utf-8"), "-f", "/nonexistent-default-env", "edge_active"])
        .output()
        .expect("fw_printenv");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "edge_active=A\n");
}

/// A missing `state1.env` (copy 0 whole) does not stop any verb: the state is read from copy 0, status reports copy 1
/// missing, and the next write, which goes to copy 1, creates it.
#[test]
fn issue_14_missing_second_copy() {
    let node = grub_node();
    std::fs::remove_file(node.path("esp/state1.env")).expect("remove copy 1");
    let s = node.status();
    assert_eq!((s["active"].as_str(), s["copies_whole"].as_bool()), (Some("A"), Some(false)));
    assert_eq!((s["copies"][0]["state"].as_str(), s["copies"][0]["current"].as_bool()), (Some("whole"), Some(true)));
    assert_eq!((s["copies"][1]["state"].as_str(), s["copies"][1]["current"].as_bool()), (Some("missing"), Some(false)));
    let human = node.ok(&["status"]);
    assert!(human.ends_with("copies:     0 whole (read), 1 missing (the next write creates it)\n"), "{human}");
    node.ok(&["set-active", "B"]);
    assert_eq!(std::fs::read(node.path("esp/state1.env")).expect("created").len(), 1024);
    assert!(grub_editenv_list(&node.path("esp/state1.env")).contains("edge_active=B\n"));
    let s = node.status();
    assert_eq!((s["active"].as_str(), s["copies_whole"].as_bool()), (Some("B"), Some(true)));
    assert_eq!(s["copies"][1]["current"], true);
}

/// A copy longer than the 1024 bytes of the format is damaged, even when its first block is the newest whole
/// one: it is never read, and the next write (which goes to it) cuts it back to 1024 bytes.
#[test]
fn issue_14_copy_of_the_wrong_size_is_not_trusted() {
    let node = grub_node();
    // Provisioning made copy 1 the newer; this write goes to copy 0, which becomes the newest.
    node.ok(&["set-active", "B"]);
    let copy0 = node.path("esp/state0.env");
    let mut long = std::fs::read(&copy0).expect("copy 0");
    long.resize(2048, b'#');
    std::fs::write(&copy0, long).expect("2048 bytes");
    let s = node.status();
    assert_eq!((s["active"].as_str(), s["copies"][0]["state"].as_str()), (Some("A"), Some("damaged")));
    assert_eq!(s["copies"][1]["current"], true);
    node.ok(&["set-active", "B"]);
    assert_eq!(std::fs::metadata(&copy0).expect("copy 0").len(), 1024);
    let s = node.status();
    assert_eq!((s["active"].as_str(), s["copies_whole"].as_bool()), (Some("B"), Some(true)));
}

/// A boot state copy that is not a regular file (a link to a device, a FIFO) is refused with the path named and
/// exit 4, before it is opened: nothing hangs and nothing is written.
#[test]
fn issue_14_copy_that_is_not_a_regular_file_is_refused() {
    let node = grub_node();
    let copy1 = node.path("esp/state1.env");
    let before = std::fs::read(node.path("esp/state0.env")).expect("copy 0");
    std::fs::remove_file(&copy1).expect("remove");
    std::os::unix::fs::symlink("/dev/null", &copy1).expect("symlink");
    let check = || {
        for verb in [&["status"][..], &["set-active", "B"], &["provision", "--good", "A", "--force"]] {
            let out = node.run(verb);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(exit::STATE), "{verb:?}: {stderr}");
            assert!(stderr.contains(&copy1.display().to_string()), "{verb:?}: {stderr}");
        }
        assert_eq!(std::fs::read(node.path("esp/state0.env")).expect("copy 0"), before);
    };
    check();
    std::fs::remove_file(&copy1).expect("remove");
    assert!(Command::new("mkfifo").arg(&copy1).status().expect("mkfifo (coreutils)").success());
    check();
}

/// A U-Boot state environment whose file ends after its first copy is read from that copy, status reports the
/// second missing, and the next write creates it, which `fw_printenv` then reads; a FIFO as the environment's
/// device is refused with exit 4.
#[test]
fn issue_14_uboot_second_copy_missing() {
    let (node, env_file) = uboot_node(1);
    let fw_config = node.path("fw_env.config");
    let s = node.status();
    assert_eq!((s["active"].as_str(), s["copies_whole"].as_bool()), (Some("A"), Some(false)));
    assert_eq!((s["copies"][0]["current"].as_bool(), s["copies"][1]["state"].as_str()), (Some(true), Some("missing")));
    node.ok(&["set-active", "B"]);
    assert_eq!(std::fs::metadata(&env_file).expect("env").len(), 0x4000);
    let s = node.status();
    assert_eq!((s["active"].as_str(), s["copies_whole"].as_bool()), (Some("B"), Some(true)));
    let out = Command::new("fw_printenv")
        .args(["-c", fw_config.to_str().expect("utf-8"), "-f", "/nonexistent-default-env", "edge_active"])
        .output()
        .expect("fw_printenv (libubootenv-tool)");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "edge_active=B\n");
    let fifo = node.path("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    for device in [Path::new("/dev/null"), &fifo] {
        let lines = format!("{} 0x0 0x2000\n{} 0x2000 0x2000\n", device.display(), device.display());
        std::fs::write(&fw_config, lines).expect("fw_env.config");
        let out = node.run(&["status"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(exit::STATE), "{stderr}");
        assert!(stderr.contains(&device.display().to_string()), "{stderr}");
    }
}

/// A type error in the config names the file, the line and column, and the key, and exits 3.
#[test]
fn issue_14_config_type_error_names_the_key_and_line() {
    let node = grub_node();
    let mut config = std::fs::read_to_string(node.path("bootctl.toml")).expect("config");
    assert_eq!(config.lines().count(), 3);
    config.push_str("tries = \"3\"\n");
    std::fs::write(node.path("bootctl.toml"), config).expect("config");
    let out = node.run(&["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit::CONFIG), "{stderr}");
    assert!(stderr.contains("bootctl.toml:4:9: key tries: invalid type: string \"3\""), "{stderr}");
}

/// Each class of error has its own exit code (docs/boot-state.md, "Exit codes").
#[test]
fn issue_14_exit_codes_by_class() {
    let node = grub_node();
    let code = |args: &[&str]| node.run(args).status.code();
    let missing = node.path("missing.toml");
    let with_config = |config: &Path, args: &[&str]| {
        Command::new(BIN).arg("--config").arg(config).args(args).output().expect("run").status.code()
    };
    // A config file named on the command line must exist; only the default one may be absent.
    assert_eq!(with_config(&missing, &["status"]), Some(exit::IO));
    assert_eq!(code(&["set-active", "C"]), Some(exit::USAGE));
    std::fs::write(&missing, "tries = 10\n").expect("config");
    assert_eq!(with_config(&missing, &["status"]), Some(exit::CONFIG));
    assert_eq!(code(&["set-active", "A"]), Some(exit::REFUSED));
    assert_eq!(code(&["provision", "--good", "A"]), Some(exit::REFUSED));
    std::fs::write(node.path("cmdline"), "quiet\n").expect("cmdline");
    assert_eq!(code(&["mark-good"]), Some(exit::BOOTED));
    std::fs::write(node.path("esp/state0.env"), [0u8; 1024]).expect("zero");
    std::fs::write(node.path("esp/state1.env"), [0u8; 1024]).expect("zero");
    assert_eq!(code(&["status"]), Some(exit::STATE));
}

/// The U-Boot backend's errors fall in the same classes as the GRUB backend's: a missing environment file is I/O,
/// a `fw_env.config` that does not parse or names raw flash is config, both copies with a bad CRC is boot state,
/// and the rules refuse the same changes.
#[test]
fn issue_15_uboot_exit_codes_by_class() {
    let (node, env_file) = uboot_node(2);
    let fw_config = node.path("fw_env.config");
    let code = |args: &[&str]| node.run(args).status.code();
    assert_eq!(code(&["set-active", "A"]), Some(exit::REFUSED));
    // Each message names the U-Boot environment, then its cause; a lost state has no deeper cause.
    let check = |config: String, expected: i32| {
        std::fs::write(&fw_config, &config).expect("fw_env.config");
        let out = node.run(&["status"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(expected), "{config:?}: {stderr}");
        assert!(stderr.starts_with("edge-bootctl: error: "), "{stderr}");
        assert_eq!(stderr.contains("\n  caused by: "), expected != exit::STATE, "{stderr}");
    };
    let missing = node.path("missing.bin");
    check(format!("{} 0x0 0x2000\n{} 0x2000 0x2000\n", missing.display(), missing.display()), exit::IO);
    check(format!("{} 0x0\n", env_file.display()), exit::CONFIG);
    check("/dev/mtd0 0x0 0x2000\n/dev/mtd0 0x2000 0x2000\n".to_owned(), exit::CONFIG);
    std::fs::write(&env_file, vec![0xffu8; 0x4000]).expect("erased");
    check(format!("{} 0x0 0x2000\n{} 0x2000 0x2000\n", env_file.display(), env_file.display()), exit::STATE);
}

/// `uboot-script` prints the committed bootctl/uboot/boot.cmd when given no option, a board's script with its
/// options, and refuses a value that would change the script's syntax, naming it; it reads no config, so it runs
/// on a build machine with none.
#[test]
fn uboot_script_prints_the_committed_script_or_a_boards() {
    let run = |args: &[&str]| Command::new(BIN).arg("uboot-script").args(args).output().expect("run edge-bootctl");
    let committed = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../bootctl/uboot/boot.cmd"))
        .expect("the committed boot.cmd");
    let out = run(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), committed);

    let out = run(&["--interface", "mmc", "--device", "1", "--state-block", "0x4800", "--initrd", ""]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(script.contains("if mmc read 0x50000000 0x4800 0x20; then"), "{script}");
    assert!(script.contains("load mmc 1:4 ${kernel_addr_r} /boot/vmlinuz"), "{script}");
    assert!(script.contains("setenv edge_initrd -") && !script.contains("ramdisk_addr_r"), "{script}");
    assert!(!script.contains("virtio"), "{script}");

    let out = run(&["--cmdline", "quiet; reset"]);
    assert_eq!(out.status.code(), Some(exit::CONFIG), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cmdline \"quiet; reset\""));
    assert!(out.stdout.is_empty());
    let out = run(&["--state-block", "lots"]);
    assert_eq!(out.status.code(), Some(exit::USAGE), "a usage error");
}
