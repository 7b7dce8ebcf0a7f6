//! `edge-image disk` checked with the tools a node and an operator use: `sfdisk` and `sgdisk` read the partition
//! table, `fsck.fat`, mtools and `grub-editenv` the ESP, `e2fsck` and `debugfs` the data partition; the slots are
//! compared with the payloads byte for byte. Every refusal asserts one exact variant and that no output is left.
//!
//! The boot state the disks carry is `tests/boot-state/state0.env` and `state1.env` (GRUB) and `uboot.env` (U-Boot),
//! made once by `edge-bootctl provision --good A` (how is in `tests/boot-state/README.md`): `edge-image` does not
//! depend on `bootctl`, not even for its tests, so the fixture is committed rather than generated here. A U-Boot
//! board's disk is read back with the same tools, `mkimage` (`boot.scr`) and `fw_printenv` (the state partition).

use std::path::{Path, PathBuf};
use std::process::Command;

use edge_image::disk::{self, layout::Layout};
use edge_image::error::Error;
use edge_image::wire::DiskReport;
use image_layout::keys::SecretKey;
use image_layout::writer::{build, BuildOptions, PayloadInput};
use testkit::host::{run, tool};
use time::OffsetDateTime;

/// The signer of every bundle in these tests, made once (deriving a public key is slow in a debug build).
fn signer() -> &'static SecretKey {
    static K: std::sync::OnceLock<SecretKey> = std::sync::OnceLock::new();
    K.get_or_init(|| SecretKey::from_seed([7; 32]))
}

const MIB: usize = 1 << 20;
const COMPATIBLE: &str = "edge-qemu-x86_64";
/// The sizes of the fixture's layout, in MiB: a disk of 1 + 8 + 8 + 8 + 16 + 1.
const ESP_MIB: usize = 8;
const SLOT_MIB: usize = 8;
const DATA_MIB: usize = 16;

/// A 64-bit LCG (Knuth's MMIX constants), so that test payloads are the same on every run.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) as u8
        })
        .collect()
}

/// A payload with data, a zero run (left as a hole in the disk) and a tail that is not a whole chunk.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut p = noise(len, seed);
    p[MIB..2 * MIB].fill(0);
    p
}

/// The committed boot state fixture, `tests/boot-state/`.
fn boot_state_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/boot-state")
}

/// A directory holding everything a layout names: keyring, GRUB binary and script, boot state, bundles, seed, extra
/// ESP file.
struct Fixture {
    dir: tempfile::TempDir,
    grub_efi: Vec<u8>,
    grub_cfg: Vec<u8>,
    state: [Vec<u8>; 2],
    uboot_script: Vec<u8>,
    uboot_state: Vec<u8>,
    payload_a: Vec<u8>,
    payload_b: Vec<u8>,
}

/// The fixture's layout; `{extra}` lines go before the first table.
fn layout_text(extra: &str, b: Option<&str>) -> String {
    let b = b.map(|b| format!("b = \"{b}\"\n")).unwrap_or_default();
    format!(
        r#"{extra}
compatible = "{COMPATIBLE}"
keyring = "keys"

[esp]
size = "{ESP_MIB}MiB"
grub_efi = "BOOTX64.EFI"
grub_cfg = "grub.cfg"
boot_state = "state"
files = {{ "EFI/edge/extra.txt" = "extra.txt" }}

[slots]
size = "{SLOT_MIB}MiB"
a = "v1.bundle"
{b}
[data]
size = "{DATA_MIB}MiB"
seed = "seed"
"#
    )
}

/// The fixture's layout for a U-Boot board, with the default boot and state sizes; `{extra}` lines go in `[uboot]`.
fn uboot_layout_text(extra: &str, b: Option<&str>) -> String {
    let b = b.map(|b| format!("b = \"{b}\"\n")).unwrap_or_default();
    format!(
        r#"
compatible = "{COMPATIBLE}"
keyring = "keys"

[uboot]
boot_script = "boot.cmd"
boot_state = "uboot.env"
files = {{ "DTB/extra.txt" = "extra.txt" }}
{extra}

[slots]
size = "{SLOT_MIB}MiB"
a = "v1.bundle"
{b}
[data]
size = "{DATA_MIB}MiB"
seed = "seed"
"#
    )
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let read = |name: &str| std::fs::read(boot_state_fixture().join(name)).expect("boot state fixture");
        let f = Fixture {
            dir,
            grub_efi: noise(200_000, 3),
            // Any script will do: the disk copies it and does not read it.
            grub_cfg: b"# a test script\nset timeout=0\nset edge_dir=\"($root)/EFI/edge\"\n".to_vec(),
            state: [read("state0.env"), read("state1.env")],
            // Any text will do: the disk compiles it and does not read it. Its length is not a multiple of 4.
            uboot_script: b"# a test script\nsetenv bootargs \"root=PARTLABEL=edge-slot-a\"\necho EDGE\n".to_vec(),
            uboot_state: read("uboot.env"),
            payload_a: payload(1, 3 * MIB + 4321),
            payload_b: payload(2, 2 * MIB + 77),
        };
        std::fs::create_dir(f.path("keys")).expect("keys");
        signer().write_pair(&f.path("keys/signer")).expect("key pair");
        std::fs::write(f.path("BOOTX64.EFI"), &f.grub_efi).expect("grub");
        std::fs::write(f.path("grub.cfg"), &f.grub_cfg).expect("grub.cfg");
        std::fs::create_dir(f.path("state")).expect("state");
        for (i, copy) in f.state.iter().enumerate() {
            std::fs::write(f.path(&format!("state/state{i}.env")), copy).expect("state copy");
        }
        std::fs::write(f.path("extra.txt"), "extra\n").expect("extra");
        std::fs::write(f.path("boot.cmd"), &f.uboot_script).expect("boot.cmd");
        std::fs::write(f.path("uboot.env"), &f.uboot_state).expect("uboot.env");
        std::fs::write(f.path("uboot.toml"), uboot_layout_text("", Some("v2.bundle"))).expect("layout");
        std::fs::create_dir_all(f.path("seed/etc/edge")).expect("seed");
        std::fs::write(f.path("seed/etc/hostname"), "node-1\n").expect("seed file");
        std::fs::write(f.path("seed/etc/edge/services.toml"), "# none\n").expect("seed file");
        // The seed belongs to someone other than root, as it does for a build without root; as root, chown makes it
        // so (as another user it fails, and the files are that user's anyway).
        for p in ["seed", "seed/etc", "seed/etc/hostname", "seed/etc/edge", "seed/etc/edge/services.toml"] {
            let _ = std::os::unix::fs::lchown(f.path(p), Some(1234), Some(1234));
        }
        f.bundle("v1.bundle", "1.0.0", COMPATIBLE, &f.payload_a, signer());
        f.bundle("v2.bundle", "2.0.0", COMPATIBLE, &f.payload_b, signer());
        f.write_layout("layout.toml", "", Some("v2.bundle"));
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bundle(&self, name: &str, version: &str, compatible: &str, payload: &[u8], key: &SecretKey) {
        let created = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let opts = BuildOptions::new(version, 1, compatible, created);
        let input = PayloadInput {
            name: "rootfs".to_owned(),
            reader: Box::new(std::io::Cursor::new(payload.to_vec())),
            path: PathBuf::from("rootfs"),
        };
        build(&opts, vec![input], std::slice::from_ref(key), &self.path(name), &|_| {}).expect("bundle builds");
    }

    fn write_layout(&self, name: &str, extra: &str, b: Option<&str>) {
        std::fs::write(self.path(name), layout_text(extra, b)).expect("layout");
    }

    /// Builds the disk of layout `layout` into `out`.
    fn build(&self, layout: &str, out: &str) -> Result<DiskReport, Error> {
        let l = Layout::load(&self.path(layout))?;
        disk::build(&l, &self.path(out), OffsetDateTime::now_utc(), false)
    }

    /// Builds, expecting `err`, and checks that neither the output nor a temporary file is left.
    fn refused(&self, layout: &str) -> Error {
        let err = self.build(layout, "refused.img").expect_err("refused");
        for entry in std::fs::read_dir(self.dir.path()).expect("list") {
            let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
            assert!(!name.contains("refused.img"), "{name} left behind after {err}");
        }
        err
    }
}

/// The partitions as `sfdisk --json` reads them.
fn sfdisk(disk: &Path) -> serde_json::Value {
    serde_json::from_str(&run(tool("sfdisk").arg("--json").arg(disk))).expect("sfdisk prints JSON")
}

/// Partition `n`'s bytes, located by `sfdisk` (not by our own report).
fn partition(disk: &Path, n: usize) -> Vec<u8> {
    let t = sfdisk(disk);
    let p = &t["partitiontable"]["partitions"][n - 1];
    let start = p["start"].as_u64().expect("start") as usize * 512;
    let size = p["size"].as_u64().expect("size") as usize * 512;
    let bytes = std::fs::read(disk).expect("disk");
    bytes[start..start + size].to_vec()
}

/// Reads a file from the ESP of `disk` with mtools.
fn mcopy(disk: &Path, file: &str) -> Vec<u8> {
    let image = format!("{}@@{}", disk.display(), MIB);
    let out = Command::new("mcopy").args(["-n", "-i", &image, &format!("::/{file}"), "-"]).output().expect("mcopy");
    assert!(out.status.success(), "mcopy {file}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn the_partition_table_is_what_sfdisk_and_sgdisk_expect() {
    let f = Fixture::new();
    let r = f.build("layout.toml", "disk.img").expect("builds");
    let disk = f.path("disk.img");
    let total = (1 + ESP_MIB + 2 * SLOT_MIB + DATA_MIB + 1) * MIB;
    assert_eq!(std::fs::metadata(&disk).expect("disk").len(), total as u64);
    assert_eq!(r.size_bytes, total as u64);
    let t = sfdisk(&disk);
    let t = &t["partitiontable"];
    assert_eq!(t["label"], "gpt");
    assert_eq!(t["id"].as_str().expect("id").to_lowercase(), r.disk_guid);
    assert_eq!(t["firstlba"], 34);
    assert_eq!(t["lastlba"], total as u64 / 512 - 34);
    let esp = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    let linux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
    let want = [
        ("edge-esp", 2048, ESP_MIB, esp),
        ("edge-slot-a", 2048 * (1 + ESP_MIB), SLOT_MIB, linux),
        ("edge-slot-b", 2048 * (1 + ESP_MIB + SLOT_MIB), SLOT_MIB, linux),
        ("edge-data", 2048 * (1 + ESP_MIB + 2 * SLOT_MIB), DATA_MIB, linux),
    ];
    let parts = t["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 4);
    for (i, (p, (name, start, mib, type_guid))) in parts.iter().zip(want).enumerate() {
        assert_eq!(p["name"], name);
        assert_eq!(p["start"], start);
        assert_eq!(p["size"], mib * 2048);
        assert_eq!(p["type"], type_guid);
        let ours = &r.partitions[i];
        assert_eq!((ours.number as usize, ours.label.as_str()), (i + 1, name));
        assert_eq!(p["uuid"].as_str().expect("uuid").to_lowercase(), ours.unique_guid);
        assert_eq!((ours.first_lba, ours.last_lba), (start as u64, (start + mib * 2048 - 1) as u64));
    }
    let verify = run(tool("sgdisk").arg("-v").arg(&disk));
    assert!(verify.contains("No problems found"), "{verify}");
}

/// What `grub-editenv` lists of an environment block.
fn grub_editenv_list(path: &Path) -> String {
    run(Command::new("grub-editenv").arg(path).arg("list"))
}

#[test]
fn grub_editenv_reads_the_boot_state_fixture_as_slot_a_good_and_active() {
    for (i, want_gen) in [(0, "edge_begin=0"), (1, "edge_begin=1")] {
        let path = boot_state_fixture().join(format!("state{i}.env"));
        assert_eq!(std::fs::metadata(&path).expect("fixture").len(), 1024);
        let listed = grub_editenv_list(&path);
        for line in [want_gen, "edge_active=A", "edge_last_good=A", "edge_a_good=1", "edge_b_good=0", "edge_b_tries=0"]
        {
            assert!(listed.lines().any(|l| l == line), "state{i}.env: {line} in {listed}");
        }
    }
}

#[test]
fn the_esp_holds_grub_its_script_and_the_boot_state_as_given() {
    let f = Fixture::new();
    f.build("layout.toml", "disk.img").expect("builds");
    let disk = f.path("disk.img");
    let esp = partition(&disk, 1);
    std::fs::write(f.path("esp.img"), &esp).expect("esp");
    run(tool("fsck.fat").arg("-n").arg(f.path("esp.img")));

    assert_eq!(mcopy(&disk, "EFI/BOOT/BOOTX64.EFI"), f.grub_efi);
    assert_eq!(mcopy(&disk, "EFI/BOOT/grub.cfg"), f.grub_cfg);
    assert_eq!(mcopy(&disk, "EFI/edge/extra.txt"), b"extra\n");

    for (i, want) in f.state.iter().enumerate() {
        let got = mcopy(&disk, &format!("EFI/edge/state{i}.env"));
        assert_eq!(&got, want, "state{i}.env");
        // GRUB's save_env rewrites the block through the sectors it occupies: they must be contiguous, which here
        // means the whole 1024 bytes sit in a row, sector aligned, in the partition.
        let at = esp.windows(1024).position(|w| w == &want[..]).expect("the block lies in a row on the ESP");
        assert_eq!(at % 512, 0);
        let path = f.path(&format!("state{i}.env"));
        std::fs::write(&path, &got).expect("state");
        assert_eq!(grub_editenv_list(&path), grub_editenv_list(&boot_state_fixture().join(format!("state{i}.env"))));
    }
}

#[test]
fn blocks_made_by_grub_editenv_are_taken_as_they_are() {
    // The disk checks only that each copy is a GRUB environment block; what the variables mean is edge-bootctl's.
    let f = Fixture::new();
    for i in 0..2 {
        let path = f.path(&format!("state/state{i}.env"));
        std::fs::remove_file(&path).expect("remove");
        run(Command::new("grub-editenv").arg(&path).arg("create"));
        run(Command::new("grub-editenv").arg(&path).args(["set", &format!("edge_begin={i}"), "edge_active=B"]));
    }
    f.build("layout.toml", "disk.img").expect("builds");
    for i in 0..2 {
        let made = std::fs::read(f.path(&format!("state/state{i}.env"))).expect("state");
        assert_eq!(mcopy(&f.path("disk.img"), &format!("EFI/edge/state{i}.env")), made);
    }
}

/// Slot A at partition `a` and slot B right after it hold the fixture's payloads (1.0.0 and 2.0.0), then zeros, and
/// the report names each slot's bundle.
fn check_slots(f: &Fixture, r: &DiskReport, disk: &Path, a: usize) {
    for (n, payload, version) in [(a, &f.payload_a, "1.0.0"), (a + 1, &f.payload_b, "2.0.0")] {
        let slot = partition(disk, n);
        assert_eq!(slot.len(), SLOT_MIB * MIB);
        assert!(slot[..payload.len()] == payload[..], "partition {n} starts with its payload");
        assert!(slot[payload.len()..].iter().all(|&b| b == 0), "partition {n} is zeros after its payload");
        let b = r.partitions[n - 1].bundle.as_ref().expect("a slot reports its bundle");
        assert_eq!((b.version.as_str(), b.payload.as_str()), (version, "rootfs"));
        assert_eq!(b.payload_bytes, payload.len() as u64);
    }
    assert!(r.partitions.iter().filter(|p| p.bundle.is_some()).count() == 2);
}

#[test]
fn the_slots_hold_the_verified_payloads_and_zeros() {
    let f = Fixture::new();
    let r = f.build("layout.toml", "disk.img").expect("builds");
    let disk = f.path("disk.img");
    check_slots(&f, &r, &disk, 2);
    // The zero run in the payload and the unused tail of each slot are holes.
    use std::os::unix::fs::MetadataExt;
    let allocated = std::fs::metadata(&disk).expect("disk").blocks() * 512;
    assert!(allocated < (8 * MIB) as u64, "{allocated} bytes allocated");

    f.write_layout("no-b.toml", "", None);
    let r = f.build("no-b.toml", "no-b.img").expect("builds");
    assert!(r.partitions[2].bundle.is_none());
    assert!(partition(&f.path("no-b.img"), 3).iter().all(|&b| b == 0), "an absent slot B is zeros");
}

#[test]
fn the_data_partition_is_ext4_with_the_seed_owned_by_root() {
    let f = Fixture::new();
    f.build("layout.toml", "disk.img").expect("builds");
    let data = f.path("data.img");
    std::fs::write(&data, partition(&f.path("disk.img"), 4)).expect("data");
    run(tool("e2fsck").arg("-fn").arg(&data));
    assert_eq!(run(tool("debugfs").args(["-R", "cat /etc/hostname"]).arg(&data)), "node-1\n");
    assert_eq!(run(tool("debugfs").args(["-R", "cat /etc/edge/services.toml"]).arg(&data)), "# none\n");
    for p in ["/", "/etc", "/etc/hostname", "/etc/edge/services.toml"] {
        let stat = run(tool("debugfs").args(["-R", &format!("stat {p}")]).arg(&data));
        assert!(stat.contains("User:     0   Group:     0"), "{p}: {stat}");
        assert!(stat.contains("mtime: 0x12cea600:00000000"), "{p}: {stat}");
    }
    let header = run(tool("dumpe2fs").arg("-h").arg(&data));
    assert!(header.lines().any(|l| l.starts_with("Filesystem volume name:") && l.ends_with("edge-data")), "{header}");

    std::fs::write(f.path("unseeded.toml"), layout_text("", None).replace("seed = \"seed\"\n", "")).expect("layout");
    f.build("unseeded.toml", "unseeded.img").expect("builds");
    std::fs::write(&data, partition(&f.path("unseeded.img"), 4)).expect("data");
    run(tool("e2fsck").arg("-fn").arg(&data));
    let ls = run(tool("debugfs").args(["-R", "ls -p /"]).arg(&data));
    let names: Vec<&str> = ls.lines().filter_map(|l| l.split('/').nth(5)).filter(|n| !n.is_empty()).collect();
    assert_eq!(names, [".", "..", "lost+found"]);
}

/// With `data.updater_dir`, the data partition holds the updater's journal as the updater itself reads it: both
/// slots' bundles, slot A's security version as the floor, and each slot's stack; the seed is left as it was. A
/// seed that already holds the journal is refused, leaving nothing.
#[test]
fn the_updater_dir_gets_a_journal_of_what_the_slots_hold() {
    let f = Fixture::new();
    let with_dir = layout_text("", Some("v2.bundle"))
        .replace("seed = \"seed\"\n", "seed = \"seed\"\nupdater_dir = \"var/edge-update\"\n");
    std::fs::write(f.path("updater.toml"), &with_dir).expect("layout");
    let r = f.build("updater.toml", "disk.img").expect("builds");
    let data = f.path("data.img");
    std::fs::write(&data, partition(&f.path("disk.img"), 4)).expect("data");
    run(tool("e2fsck").arg("-fn").arg(&data));
    let cat = |p: &str| run(tool("debugfs").args(["-R", &format!("cat {p}")]).arg(&data));
    assert_eq!(cat("/etc/hostname"), "node-1\n", "the seed is there too");
    let journal_file = f.path("journal.json");
    std::fs::write(&journal_file, cat("/var/edge-update/journal.json")).expect("journal");
    let journal = updater::journal::Journal::load(&journal_file).expect("the updater reads the journal");
    let value = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).expect("JSON");
    assert_eq!(
        value(&journal.to_bytes()),
        value(&std::fs::read(&journal_file).expect("journal")),
        "the disk writes the journal in the shape the updater writes it"
    );
    let (a, b) = (r.partitions[1].bundle.as_ref().expect("A"), r.partitions[2].bundle.as_ref().expect("B"));
    let slot_a = journal.slot_a.as_ref().expect("slot A recorded");
    let slot_b = journal.slot_b.as_ref().expect("slot B recorded");
    assert_eq!((slot_a.bundle.version.as_str(), slot_b.bundle.version.as_str()), ("1.0.0", "2.0.0"));
    assert_eq!(
        (&slot_a.bundle.manifest_blake3, &slot_b.bundle.manifest_blake3),
        (&a.manifest_blake3, &b.manifest_blake3)
    );
    assert_eq!((slot_a.size_bytes, slot_b.size_bytes), (f.payload_a.len() as u64, f.payload_b.len() as u64));
    assert_eq!(journal.security_version, a.security_version, "slot A's security version is the floor");
    assert!(journal.update.is_none(), "no update in progress");
    for (slot, hash) in [("A", &a.manifest_blake3), ("B", &b.manifest_blake3)] {
        let stack_file = f.path(&format!("slot-{slot}.stack.json"));
        std::fs::write(&stack_file, cat(&format!("/var/edge-update/slot-{slot}.stack.json"))).expect("stack");
        assert!(updater::install::recorded_stack(&stack_file, hash).is_some(), "slot {slot}'s stack is kept");
        assert!(updater::install::recorded_stack(&stack_file, &"0".repeat(64)).is_none(), "for that bundle only");
    }
    let stat = run(tool("debugfs").args(["-R", "stat /var/edge-update/journal.json"]).arg(&data));
    assert!(stat.contains("User:     0   Group:     0") && stat.contains("Mode:  0644"), "{stat}");
    assert!(!f.path("seed/var").exists(), "the seed directory is not written to");

    std::fs::create_dir_all(f.path("seed/var/edge-update")).expect("seed dir");
    std::fs::write(f.path("seed/var/edge-update/journal.json"), "{}").expect("a stale journal");
    let err = f.refused("updater.toml");
    assert!(matches!(&err, Error::SeedTaken { path } if path.ends_with("var/edge-update/journal.json")), "{err:?}");
    std::fs::remove_file(f.path("seed/var/edge-update/journal.json")).expect("remove");
    std::fs::write(f.path("seed/var/edge-update/slot-B.stack.json"), "{}").expect("a stale stack file");
    let err = f.refused("updater.toml");
    assert!(
        matches!(&err, Error::SeedTaken { path } if path.ends_with("var/edge-update/slot-B.stack.json")),
        "{err:?}"
    );
}

#[test]
fn the_same_inputs_give_the_same_bytes() {
    let f = Fixture::new();
    let first = f.build("layout.toml", "one.img").expect("builds");
    // What mke2fs copies from the host changes: the seed's timestamps (and, as root, its owner).
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    let seeded = std::fs::File::options().write(true).open(f.path("seed/etc/hostname")).expect("seed file");
    seeded.set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t)).expect("set times");
    let _ = std::os::unix::fs::lchown(f.path("seed/etc/hostname"), Some(4321), Some(4321));
    let second = f.build("layout.toml", "two.img").expect("builds");
    assert_eq!(first.disk_guid, second.disk_guid);
    let one = std::fs::read(f.path("one.img")).expect("one");
    let two = std::fs::read(f.path("two.img")).expect("two");
    assert!(one == two, "two builds of the same inputs differ");

    // Another layout text gives other identities.
    f.write_layout("other.toml", "# another node", Some("v2.bundle"));
    let other = f.build("other.toml", "three.img").expect("builds");
    assert_ne!(first.disk_guid, other.disk_guid);
    assert_ne!(first.partitions[3].unique_guid, other.partitions[3].unique_guid);
}

#[test]
fn a_bundle_signed_by_an_untrusted_key_is_refused() {
    let f = Fixture::new();
    f.bundle("stranger.bundle", "1.0.0", COMPATIBLE, &f.payload_a, &SecretKey::from_seed([9; 32]));
    std::fs::write(f.path("l.toml"), layout_text("", Some("stranger.bundle"))).expect("layout");
    let err = f.refused("l.toml");
    assert!(
        matches!(&err, Error::SlotBundle { slot: 'B', path, source }
            if path.ends_with("stranger.bundle") && matches!(**source, image_layout::Error::NotEnoughSignatures { valid: 0, threshold: 1 })),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), 4);
}

#[test]
fn a_bundle_whose_manifest_was_altered_is_refused() {
    let f = Fixture::new();
    let mut b = std::fs::read(f.path("v1.bundle")).expect("bundle");
    let at = b.windows(5).position(|w| w == b"1.0.0").expect("version in the manifest");
    b[at] = b'9';
    std::fs::write(f.path("v1.bundle"), b).expect("write");
    let err = f.refused("layout.toml");
    assert!(
        matches!(&err, Error::SlotBundle { slot: 'A', source, .. } if matches!(**source, image_layout::Error::BadSignature { .. })),
        "{err:?}"
    );
}

#[test]
fn a_bundle_for_another_board_is_refused() {
    let f = Fixture::new();
    f.bundle("arm.bundle", "1.0.0", "edge-rpi4", &f.payload_a, signer());
    std::fs::write(f.path("l.toml"), layout_text("", None).replace("v1.bundle", "arm.bundle")).expect("layout");
    let err = f.refused("l.toml");
    assert!(
        matches!(&err, Error::BundleCompatible { slot: 'A', found, expected, .. }
            if &**found == "edge-rpi4" && &**expected == COMPATIBLE),
        "{err:?}"
    );
}

#[test]
fn a_payload_larger_than_the_slot_is_refused() {
    let f = Fixture::new();
    f.bundle("big.bundle", "1.0.0", COMPATIBLE, &noise(SLOT_MIB * MIB + 1, 5), signer());
    std::fs::write(f.path("l.toml"), layout_text("", Some("big.bundle"))).expect("layout");
    let err = f.refused("l.toml");
    let (slot_bytes, size_bytes) = ((SLOT_MIB * MIB) as u64, (SLOT_MIB * MIB + 1) as u64);
    assert!(
        matches!(&err, Error::PayloadTooLarge { slot: 'B', size_bytes: s, slot_bytes: t, .. }
            if *s == size_bytes && *t == slot_bytes),
        "{err:?}"
    );
}

#[test]
fn a_missing_payload_is_refused() {
    let f = Fixture::new();
    f.write_layout("l.toml", "payload = \"kernel\"", None);
    let err = f.refused("l.toml");
    assert!(
        matches!(&err, Error::SlotBundle { slot: 'A', source, .. }
            if matches!(&**source, image_layout::Error::NoSuchPayload { name } if name == "kernel")),
        "{err:?}"
    );
}

#[test]
fn a_layout_that_does_not_fit_its_size_is_refused() {
    let f = Fixture::new();
    f.write_layout("l.toml", "size = \"41MiB\"", None);
    let err = f.refused("l.toml");
    assert!(
        matches!(err, Error::LayoutTooSmall { size_bytes, needed_bytes, .. }
            if size_bytes == 41 << 20 && needed_bytes == 42 << 20),
        "{err:?}"
    );
    f.write_layout("fits.toml", "size = \"42MiB\"", None);
    f.build("fits.toml", "fits.img").expect("42 MiB is enough");
}

#[test]
fn an_unknown_layout_key_is_refused() {
    let f = Fixture::new();
    std::fs::write(f.path("l.toml"), layout_text("", None).replace("[data]", "[data]\nfilesystem = \"xfs\""))
        .expect("l");
    let err = f.refused("l.toml");
    assert!(matches!(&err, Error::ParseLayout { path, .. } if path.ends_with("l.toml")), "{err:?}");
}

#[test]
fn a_missing_grub_binary_is_refused() {
    let f = Fixture::new();
    std::fs::remove_file(f.path("BOOTX64.EFI")).expect("remove");
    let err = f.refused("layout.toml");
    assert!(matches!(&err, Error::ReadFile { path, .. } if path.ends_with("BOOTX64.EFI")), "{err:?}");
}

#[test]
fn a_boot_state_copy_of_the_wrong_size_is_refused() {
    for len in [0, 512, 1023, 1025, 2048] {
        let f = Fixture::new();
        let mut copy = f.state[1].clone();
        copy.resize(len, b'#');
        std::fs::write(f.path("state/state1.env"), copy).expect("write");
        let err = f.refused("layout.toml");
        assert!(
            matches!(&err, Error::StateBlockSize { path, size_bytes }
                if path.ends_with("state/state1.env") && *size_bytes == len as u64),
            "{len}: {err:?}"
        );
        assert_eq!(err.exit_code(), 1);
    }
}

#[test]
fn a_boot_state_copy_with_the_wrong_header_is_refused() {
    let f = Fixture::new();
    // A U-Boot environment of the same size, say: a CRC and then variables, no GRUB header.
    let mut copy = vec![0u8; 1024];
    copy[4..].copy_from_slice(&f.state[0][..1020]);
    std::fs::write(f.path("state/state0.env"), copy).expect("write");
    let err = f.refused("layout.toml");
    assert!(matches!(&err, Error::StateBlockHeader { path } if path.ends_with("state/state0.env")), "{err:?}");

    // One flipped bit in the header is enough.
    let f = Fixture::new();
    let mut copy = f.state[1].clone();
    copy[2] ^= 0x20;
    std::fs::write(f.path("state/state1.env"), copy).expect("write");
    let err = f.refused("layout.toml");
    assert!(matches!(&err, Error::StateBlockHeader { path } if path.ends_with("state/state1.env")), "{err:?}");
}

#[test]
fn a_missing_boot_state_copy_is_refused() {
    let f = Fixture::new();
    std::fs::remove_file(f.path("state/state1.env")).expect("remove");
    let err = f.refused("layout.toml");
    assert!(matches!(&err, Error::ReadFile { path, .. } if path.ends_with("state/state1.env")), "{err:?}");
}

#[test]
fn an_empty_or_missing_grub_script_is_refused() {
    let f = Fixture::new();
    std::fs::write(f.path("grub.cfg"), "").expect("write");
    let err = f.refused("layout.toml");
    assert!(matches!(&err, Error::GrubCfgEmpty { path } if path.ends_with("grub.cfg")), "{err:?}");
    std::fs::remove_file(f.path("grub.cfg")).expect("remove");
    let err = f.refused("layout.toml");
    assert!(matches!(&err, Error::ReadFile { path, .. } if path.ends_with("grub.cfg")), "{err:?}");
}

#[test]
fn edge_image_disk_end_to_end() {
    let f = Fixture::new();
    let bin = env!("CARGO_BIN_EXE_edge-image");
    let out =
        Command::new(bin).args(["disk", "layout.toml", "-o", "node.img", "--json"]).current_dir(f.dir.path()).output();
    let out = out.expect("run edge-image");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(j["output"], "node.img");
    assert_eq!(j["size_bytes"], 42 * MIB);
    let inspect = Command::new(bin).args(["inspect", "v1.bundle", "--json"]).current_dir(f.dir.path()).output();
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.expect("inspect").stdout).expect("JSON");
    let parts = j["partitions"].as_array().expect("partitions");
    let labels: Vec<&str> = parts.iter().map(|p| p["label"].as_str().expect("label")).collect();
    assert_eq!(labels, ["edge-esp", "edge-slot-a", "edge-slot-b", "edge-data"]);
    assert_eq!(parts[0]["filesystem"], "fat16");
    assert_eq!(parts[0]["first_lba"], 2048);
    assert_eq!(parts[0]["last_lba"], 2048 + ESP_MIB * 2048 - 1);
    assert_eq!(parts[0]["size_bytes"], ESP_MIB * MIB);
    assert_eq!(parts[1]["number"], 2);
    assert_eq!(parts[1]["bundle"]["name"], "edge-stack");
    assert_eq!(parts[1]["bundle"]["version"], "1.0.0");
    assert_eq!(parts[1]["bundle"]["manifest_blake3"], inspect["manifest_blake3"]);
    assert_eq!(parts[2]["bundle"]["version"], "2.0.0");
    assert_eq!(parts[3]["filesystem"], "ext4");
    assert!(parts[3]["bundle"].is_null());

    // The exit code keeps the class of what the reader found: an untrusted signer is 4, another board 1.
    f.bundle("stranger.bundle", "1.0.0", COMPATIBLE, &f.payload_a, &SecretKey::from_seed([9; 32]));
    std::fs::write(f.path("l.toml"), layout_text("", Some("stranger.bundle"))).expect("layout");
    let refused = Command::new(bin).args(["disk", "l.toml", "-o", "x.img"]).current_dir(f.dir.path()).output();
    let refused = refused.expect("run");
    assert_eq!(refused.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("slot B bundle") && stderr.contains("stranger.bundle"), "{stderr}");
    assert!(!f.path("x.img").exists());

    // A wrong boot state copy is refused by the binary too, naming the file.
    std::fs::write(f.path("state/state0.env"), b"# GRUB Environment Block\n").expect("write");
    let refused = Command::new(bin).args(["disk", "layout.toml", "-o", "y.img"]).current_dir(f.dir.path()).output();
    let refused = refused.expect("run");
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("state0.env") && stderr.contains("1024"), "{stderr}");
    assert!(!f.path("y.img").exists());
}

#[test]
fn the_docs_table_of_layout_keys_is_current() {
    docgen::check_doc(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/disk-image.md"),
        &[(
            "<!-- generated by edge_image::disk::layout::keys_table; UPDATE_GOLDEN=1 cargo test -p edge-image --test disk -->\n",
            "<!-- end of generated table -->\n",
            edge_image::disk::layout::keys_table(),
        )],
        "UPDATE_GOLDEN=1 cargo test -p edge-image --test disk",
    );
}

/// Every file the layout names, and the layout itself, is checked before it is read: a FIFO or a link to /dev/zero
/// in its place is refused with its path named, instead of waiting for a writer or reading without end, and a file
/// larger than its bound is refused by its size. Nothing is left behind.
#[test]
fn issue_14_files_the_layout_names_are_typed_and_bounded() {
    let f = Fixture::new();
    // Puts `make` in the place of `name`, expects the refusal `check` describes, and puts the file back.
    let swap = |name: &str, make: &dyn Fn(&Path), check: &dyn Fn(&Error) -> bool| {
        let path = f.path(name);
        let saved = std::fs::read(&path).expect("fixture file");
        std::fs::remove_file(&path).expect("remove");
        make(&path);
        let err = f.refused("layout.toml");
        assert!(check(&err), "{name}: {err:?}");
        std::fs::remove_file(&path).expect("remove");
        std::fs::write(&path, saved).expect("restore");
    };
    let fifo = |path: &Path| {
        let made = Command::new("mkfifo").arg(path).status().expect("mkfifo (coreutils)");
        assert!(made.success());
    };
    let zero = |path: &Path| std::os::unix::fs::symlink("/dev/zero", path).expect("symlink");
    let sparse = |len: u64| move |path: &Path| std::fs::File::create(path).expect("create").set_len(len).expect("len");
    let is_type = |name: &'static str, kind: &'static str| move |e: &Error| matches!(e, Error::FileType { path, found, .. } if path.ends_with(name) && *found == kind);
    let too_large = |name: &'static str, max: u64| move |e: &Error| matches!(e, Error::FileTooLarge { path, max_bytes, .. } if path.ends_with(name) && *max_bytes == max);
    let named = ["layout.toml", "grub.cfg", "state/state0.env", "BOOTX64.EFI", "extra.txt", "v1.bundle", "v2.bundle"];
    for name in named {
        swap(name, &fifo, &is_type(name, "FIFO"));
        swap(name, &zero, &is_type(name, "character device"));
    }
    let esp_bytes = (ESP_MIB * MIB) as u64;
    swap("layout.toml", &sparse((1 << 20) + 1), &too_large("layout.toml", 1 << 20));
    swap("grub.cfg", &sparse((1 << 20) + 1), &too_large("grub.cfg", 1 << 20));
    swap("BOOTX64.EFI", &sparse(esp_bytes + 1), &too_large("BOOTX64.EFI", esp_bytes));
    swap("extra.txt", &sparse(esp_bytes + 1), &too_large("extra.txt", esp_bytes));
    // A longer boot state copy is the wrong size, as before, not merely too large.
    swap(
        "state/state1.env",
        &sparse(1 << 30),
        &|e| matches!(e, Error::StateBlockSize { size_bytes, .. } if *size_bytes == 1 << 30),
    );
    f.build("layout.toml", "ok.img").expect("the restored files build");

    // The binary says which file it refused.
    std::fs::remove_file(f.path("grub.cfg")).expect("remove");
    fifo(&f.path("grub.cfg"));
    let bin = env!("CARGO_BIN_EXE_edge-image");
    let out = Command::new(bin).args(["disk", "layout.toml", "-o", "x.img"]).current_dir(f.dir.path()).output();
    let out = out.expect("run edge-image");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("grub.cfg"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!f.path("x.img").exists());
}

/// `disk --json` starts with its schema and uses the names of docs/cli.md; a slot's bundle has the bundle words of
/// docs/json.md.
#[test]
fn issue_14_disk_json_starts_with_its_schema() {
    let f = Fixture::new();
    let bin = env!("CARGO_BIN_EXE_edge-image");
    let stdout =
        run(Command::new(bin).args(["disk", "layout.toml", "-o", "node.img", "--json"]).current_dir(f.dir.path()));
    assert!(stdout.starts_with("{\n  \"schema\": \"edge-image.disk/1\",\n"), "{stdout}");
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        k.sort_unstable();
        k
    };
    assert_eq!(keys(&j), ["disk_guid", "output", "partitions", "schema", "size_bytes"]);
    let slot_a = &j["partitions"][1];
    let partition =
        ["bundle", "filesystem", "first_lba", "label", "last_lba", "number", "size_bytes", "type_guid", "unique_guid"];
    assert_eq!(keys(slot_a), partition);
    let bundle = ["file", "manifest_blake3", "name", "payload", "payload_bytes", "security_version", "version"];
    assert_eq!(keys(&slot_a["bundle"]), bundle);
    assert_eq!(slot_a["bundle"]["security_version"], 1);
}

/// The sizes of a U-Boot board's boot partitions with the defaults, in MiB: the disk is 1 + 4 + 1 + 8 + 8 + 16 + 1.
const BOOT_MIB: usize = 4;
const STATE_MIB: usize = 1;
/// Bytes of one environment copy in `uboot.env` (`bootctl`'s `env_size`).
const ENV_BYTES: usize = 0x2000;
/// `uboot::SCRIPT_NAME` and `uboot::SCRIPT_TIME`, as `mkimage` is given them.
const SCRIPT_NAME: &str = "edge boot script";
const SCRIPT_EPOCH: &str = "315532800";

/// What `fw_printenv` prints of `names` in the redundant environment at `offset` in `file` (two copies of
/// [`ENV_BYTES`] back to back), with a `fw_env.config` of its own and no default environment.
fn fw_printenv(dir: &Path, file: &Path, offset: usize, names: &[&str]) -> String {
    let config = dir.join(format!("fw_env.{offset}.config"));
    let line = |at: usize| format!("{} {at:#x} {ENV_BYTES:#x}\n", file.display());
    std::fs::write(&config, line(offset) + &line(offset + ENV_BYTES)).expect("fw_env.config");
    run(Command::new("fw_printenv").arg("-c").arg(&config).args(["-f", "/nonexistent"]).args(names))
}

/// `mkimage`'s `boot.scr` of `script`, with the name and time `edge-image` uses.
fn mkimage(dir: &Path, script: &[u8]) -> Vec<u8> {
    let (cmd, scr) = (dir.join("mkimage.cmd"), dir.join("mkimage.scr"));
    std::fs::write(&cmd, script).expect("script");
    let _ = std::fs::remove_file(&scr);
    run(Command::new("mkimage")
        .env("SOURCE_DATE_EPOCH", SCRIPT_EPOCH)
        .args(["-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", SCRIPT_NAME, "-d"])
        .arg(&cmd)
        .arg(&scr));
    std::fs::read(&scr).expect("boot.scr")
}

#[test]
fn fw_printenv_reads_the_uboot_boot_state_fixture_as_slot_a_good_and_active() {
    let f = Fixture::new();
    assert_eq!(f.uboot_state.len(), 2 * ENV_BYTES);
    let listed = fw_printenv(f.dir.path(), &boot_state_fixture().join("uboot.env"), 0, &[]);
    for line in ["edge_active=A", "edge_last_good=A", "edge_a_good=1", "edge_b_good=0", "edge_b_tries=0"] {
        assert!(listed.lines().any(|l| l == line), "{line} in {listed}");
    }
    // Both copies are whole: copy 1 (flags 2) is the current one, copy 0 (flags 1) the one a save replaces.
    assert_eq!((f.uboot_state[4], f.uboot_state[ENV_BYTES + 4]), (1, 2));
}

#[test]
fn a_uboot_disk_has_its_five_partitions_in_order() {
    let f = Fixture::new();
    let r = f.build("uboot.toml", "disk.img").expect("builds");
    let disk = f.path("disk.img");
    let total = (1 + BOOT_MIB + STATE_MIB + 2 * SLOT_MIB + DATA_MIB + 1) * MIB;
    assert_eq!(std::fs::metadata(&disk).expect("disk").len(), total as u64);
    assert_eq!(r.size_bytes, total as u64);
    let t = sfdisk(&disk);
    let t = &t["partitiontable"];
    assert_eq!(t["label"], "gpt");
    assert_eq!(t["id"].as_str().expect("id").to_lowercase(), r.disk_guid);
    let basic_data = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";
    let linux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
    let want = [
        ("edge-boot", 2048, BOOT_MIB, basic_data, Some("fat12")),
        // Block 0x2800: where bootctl's generated script reads the state with its defaults.
        ("edge-state", 0x2800, STATE_MIB, linux, Some("u-boot-env")),
        ("edge-slot-a", 2048 * (1 + BOOT_MIB + STATE_MIB), SLOT_MIB, linux, None),
        ("edge-slot-b", 2048 * (1 + BOOT_MIB + STATE_MIB + SLOT_MIB), SLOT_MIB, linux, None),
        ("edge-data", 2048 * (1 + BOOT_MIB + STATE_MIB + 2 * SLOT_MIB), DATA_MIB, linux, Some("ext4")),
    ];
    let parts = t["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 5);
    assert_eq!(r.partitions.len(), 5);
    let mut guids = Vec::new();
    for (i, (p, (name, start, mib, type_guid, filesystem))) in parts.iter().zip(want).enumerate() {
        assert_eq!(p["name"], name);
        assert_eq!(p["start"], start);
        assert_eq!(p["size"], mib * 2048);
        assert_eq!(p["type"], type_guid);
        let ours = &r.partitions[i];
        assert_eq!((ours.number as usize, ours.label.as_str()), (i + 1, name));
        assert_eq!(ours.filesystem.as_deref(), filesystem, "{name}");
        assert_eq!(p["uuid"].as_str().expect("uuid").to_lowercase(), ours.unique_guid);
        assert_eq!((ours.first_lba, ours.last_lba), (start as u64, (start + mib * 2048 - 1) as u64));
        guids.push(ours.unique_guid.clone());
    }
    guids.sort_unstable();
    guids.dedup();
    assert_eq!(guids.len(), 5, "five distinct PARTUUIDs");
    let verify = run(tool("sgdisk").arg("-v").arg(&disk));
    assert!(verify.contains("No problems found"), "{verify}");

    // The same inputs give the same bytes.
    f.build("uboot.toml", "again.img").expect("builds");
    assert!(std::fs::read(&disk).expect("disk") == std::fs::read(f.path("again.img")).expect("again"));
}

#[test]
fn the_uboot_boot_partition_holds_boot_scr_as_mkimage_compiles_it() {
    let f = Fixture::new();
    f.build("uboot.toml", "disk.img").expect("builds");
    let disk = f.path("disk.img");
    let boot = partition(&disk, 1);
    assert_eq!(&boot[54..62], b"FAT12   ", "a 4 MiB boot partition is FAT12");
    assert_eq!(&boot[43..54], b"EDGE-BOOT  ");
    std::fs::write(f.path("boot.img"), &boot).expect("boot");
    run(tool("fsck.fat").arg("-n").arg(f.path("boot.img")));

    let scr = mcopy(&disk, "boot.scr");
    assert_eq!(scr, mkimage(f.dir.path(), &f.uboot_script), "boot.scr is mkimage's, byte for byte");
    let listed = run(Command::new("mkimage").arg("-l").arg(f.path("mkimage.scr")));
    assert!(listed.contains("Script"), "{listed}");
    assert_eq!(mcopy(&disk, "DTB/extra.txt"), b"extra\n");

    // A larger boot partition is FAT16, and a script of another length compiles as mkimage compiles it.
    let script = "echo another\n".repeat(1000);
    std::fs::write(f.path("boot.cmd"), &script).expect("script");
    std::fs::write(f.path("big.toml"), uboot_layout_text("boot_size = \"8MiB\"", None)).expect("layout");
    let r = f.build("big.toml", "big.img").expect("builds");
    assert_eq!(r.partitions[0].filesystem.as_deref(), Some("fat16"));
    assert_eq!(r.partitions[1].first_lba, 2048 * 9);
    let boot = partition(&f.path("big.img"), 1);
    assert_eq!(&boot[54..62], b"FAT16   ");
    std::fs::write(f.path("boot.img"), &boot).expect("boot");
    run(tool("fsck.fat").arg("-n").arg(f.path("boot.img")));
    assert_eq!(mcopy(&f.path("big.img"), "boot.scr"), mkimage(f.dir.path(), script.as_bytes()));
}

#[test]
fn fw_printenv_reads_the_boot_state_from_the_state_partition() {
    let f = Fixture::new();
    let r = f.build("uboot.toml", "disk.img").expect("builds");
    let disk = f.path("disk.img");
    let state = partition(&disk, 2);
    assert!(state[..f.uboot_state.len()] == f.uboot_state[..], "the state partition starts with the boot state");
    assert!(state[f.uboot_state.len()..].iter().all(|&b| b == 0), "and is zeros after it");
    let offset = r.partitions[1].first_lba as usize * 512;
    assert_eq!(offset, 5 * MIB);
    assert_eq!(fw_printenv(f.dir.path(), &disk, offset, &["edge_active"]), "edge_active=A\n");
    assert_eq!(fw_printenv(f.dir.path(), &disk, offset, &["edge_a_good"]), "edge_a_good=1\n");

    // Any whole redundant environment is taken as it is: here the fixture after `fw_setenv`, which writes copy 0 with
    // the next flags, and with copy 1, the older one, torn.
    let env = f.path("uboot.env");
    let config = f.path("other.config");
    std::fs::write(&config, format!("{0} 0x0 {ENV_BYTES:#x}\n{0} {ENV_BYTES:#x} {ENV_BYTES:#x}\n", env.display()))
        .expect("config");
    run(Command::new("fw_setenv").arg("-c").arg(&config).args(["-f", "/nonexistent", "edge_active", "B"]));
    let mut bytes = std::fs::read(&env).expect("env");
    assert_eq!((bytes[4], bytes[ENV_BYTES + 4]), (3, 2), "fw_setenv wrote copy 0");
    bytes[ENV_BYTES + 5..ENV_BYTES + 50].fill(0x55);
    std::fs::write(&env, &bytes).expect("state");
    f.build("uboot.toml", "other.img").expect("builds");
    let other = f.path("other.img");
    assert_eq!(fw_printenv(f.dir.path(), &other, offset, &["edge_active"]), "edge_active=B\n");
}

#[test]
fn a_uboot_disk_holds_the_slots_and_the_data_partition() {
    let f = Fixture::new();
    let r = f.build("uboot.toml", "disk.img").expect("builds");
    let disk = f.path("disk.img");
    check_slots(&f, &r, &disk, 3);
    let data = f.path("data.img");
    std::fs::write(&data, partition(&disk, 5)).expect("data");
    run(tool("e2fsck").arg("-fn").arg(&data));
    assert_eq!(run(tool("debugfs").args(["-R", "cat /etc/hostname"]).arg(&data)), "node-1\n");
    let header = run(tool("dumpe2fs").arg("-h").arg(&data));
    assert!(header.lines().any(|l| l.starts_with("Filesystem volume name:") && l.ends_with("edge-data")), "{header}");

    // The updater's journal is written as on a UEFI disk.
    std::fs::write(
        f.path("updater.toml"),
        uboot_layout_text("", None).replace("seed = \"seed\"\n", "seed = \"seed\"\nupdater_dir = \"edge-update\"\n"),
    )
    .expect("layout");
    f.build("updater.toml", "updater.img").expect("builds");
    std::fs::write(&data, partition(&f.path("updater.img"), 5)).expect("data");
    let journal = run(tool("debugfs").args(["-R", "cat /edge-update/journal.json"]).arg(&data));
    let journal: serde_json::Value = serde_json::from_str(&journal).expect("journal");
    assert_eq!(journal["slot_a"]["bundle"]["version"], "1.0.0");
}

#[test]
fn a_layout_with_both_or_neither_boot_table_is_refused() {
    let f = Fixture::new();
    let esp = "[esp]\ngrub_efi = \"BOOTX64.EFI\"\ngrub_cfg = \"grub.cfg\"\nboot_state = \"state\"\n";
    let both = uboot_layout_text("", None).replace("[slots]", &format!("{esp}\n[slots]"));
    let text = layout_text("", None);
    let neither =
        format!("{}{}", &text[..text.find("[esp]").expect("[esp]")], &text[text.find("[slots]").expect("[slots]")..]);
    assert!(neither.contains("[slots]") && !neither.contains("[esp]"), "{neither}");
    for (name, text) in [("both.toml", both), ("neither.toml", neither)] {
        std::fs::write(f.path(name), text).expect("layout");
        let err = f.refused(name);
        assert!(
            matches!(&err, Error::LayoutKey { path, key, .. } if path.ends_with(name) && &**key == "esp, uboot"),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn a_uboot_boot_state_with_no_whole_copy_is_refused() {
    let f = Fixture::new();
    let mut torn = f.uboot_state.clone();
    torn[10] ^= 1;
    torn[ENV_BYTES + 10] ^= 1;
    std::fs::write(f.path("uboot.env"), &torn).expect("state");
    let err = f.refused("uboot.toml");
    assert!(
        matches!(&err, Error::UbootStateCrc { path, env_bytes } if path.ends_with("uboot.env") && *env_bytes == ENV_BYTES as u64),
        "{err:?}"
    );
    assert!(err.to_string().contains("holds no whole U-Boot environment copy"), "{err}");
    // One torn copy is what a power cut during a save leaves: the other is read, and the disk is built.
    torn[10] ^= 1;
    std::fs::write(f.path("uboot.env"), &torn).expect("state");
    f.build("uboot.toml", "one-torn.img").expect("one whole copy is enough");
}

#[test]
fn a_uboot_boot_state_of_the_wrong_size_is_refused() {
    let f = Fixture::new();
    for len in [0, 1, 1024, 2047, 2 * ENV_BYTES - 1, 2 * ENV_BYTES + 1, 2 * ENV_BYTES + 512] {
        let mut state = f.uboot_state.clone();
        state.resize(len, 0);
        std::fs::write(f.path("uboot.env"), &state).expect("state");
        let err = f.refused("uboot.toml");
        assert!(
            matches!(&err, Error::UbootStateSize { path, size_bytes } if path.ends_with("uboot.env") && *size_bytes == len as u64),
            "{len}: {err:?}"
        );
    }
    // Larger than the state partition.
    let mut state = f.uboot_state.clone();
    state.resize(STATE_MIB * MIB + 1024, 0);
    std::fs::write(f.path("uboot.env"), &state).expect("state");
    let err = f.refused("uboot.toml");
    assert!(
        matches!(&err, Error::UbootStateTooLarge { path, state_bytes, .. } if path.ends_with("uboot.env") && *state_bytes == (STATE_MIB * MIB) as u64),
        "{err:?}"
    );
    // A larger state partition takes it, when a copy is whole.
    let copy = |flags: u8| {
        let mut c = vec![0u8; STATE_MIB * MIB / 2 + 512];
        c[4] = flags;
        c[5..20].copy_from_slice(b"edge_active=A\0\0");
        let crc = crc32(&c[5..]);
        c[..4].copy_from_slice(&crc.to_le_bytes());
        c
    };
    std::fs::write(f.path("uboot.env"), [copy(1), copy(2)].concat()).expect("state");
    std::fs::write(f.path("large.toml"), uboot_layout_text("state_size = \"2MiB\"", None)).expect("layout");
    f.build("large.toml", "large.img").expect("a 2 MiB state partition holds it");
}

/// CRC-32 (IEEE), bit by bit: the test's own, so that a wrong table in the code under test cannot agree with it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn an_empty_or_binary_uboot_script_is_refused() {
    let f = Fixture::new();
    std::fs::write(f.path("boot.cmd"), "").expect("script");
    let err = f.refused("uboot.toml");
    assert!(matches!(&err, Error::BootScriptEmpty { path } if path.ends_with("boot.cmd")), "{err:?}");
    for bytes in [&b"echo \xc3\x28\n"[..], b"echo\0\n", &mkimage(f.dir.path(), b"echo hi\n")] {
        std::fs::write(f.path("boot.cmd"), bytes).expect("script");
        let err = f.refused("uboot.toml");
        assert!(matches!(&err, Error::BootScriptText { path, .. } if path.ends_with("boot.cmd")), "{err:?}");
    }
    std::fs::File::create(f.path("boot.cmd")).expect("create").set_len((1 << 20) + 1).expect("len");
    let err = f.refused("uboot.toml");
    assert!(
        matches!(&err, Error::FileTooLarge { path, max_bytes, .. } if path.ends_with("boot.cmd") && *max_bytes == 1 << 20),
        "{err:?}"
    );
    std::fs::remove_file(f.path("boot.cmd")).expect("remove");
    let err = f.refused("uboot.toml");
    assert!(matches!(&err, Error::ReadFile { path, .. } if path.ends_with("boot.cmd")), "{err:?}");
}

#[test]
fn an_extra_file_named_boot_scr_is_refused() {
    let f = Fixture::new();
    for dest in ["boot.scr", "BOOT.SCR", "boot.scr/x.txt"] {
        let text = uboot_layout_text("", None).replace("\"DTB/extra.txt\"", &format!("{dest:?}"));
        std::fs::write(f.path("l.toml"), text).expect("layout");
        let err = f.refused("l.toml");
        let want = format!("uboot.files.{dest:?}");
        assert!(matches!(&err, Error::LayoutKey { key, .. } if **key == *want), "{dest}: {err:?}");
    }
}

#[test]
fn edge_image_disk_builds_a_uboot_disk_end_to_end() {
    let f = Fixture::new();
    let bin = env!("CARGO_BIN_EXE_edge-image");
    let stdout =
        run(Command::new(bin).args(["disk", "uboot.toml", "-o", "node.img", "--json"]).current_dir(f.dir.path()));
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    assert_eq!(j["schema"], "edge-image.disk/1");
    let parts = j["partitions"].as_array().expect("partitions");
    let labels: Vec<&str> = parts.iter().map(|p| p["label"].as_str().expect("label")).collect();
    assert_eq!(labels, ["edge-boot", "edge-state", "edge-slot-a", "edge-slot-b", "edge-data"]);
    let numbers: Vec<u64> = parts.iter().map(|p| p["number"].as_u64().expect("number")).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
    let filesystems: Vec<Option<&str>> = parts.iter().map(|p| p["filesystem"].as_str()).collect();
    assert_eq!(filesystems, [Some("fat12"), Some("u-boot-env"), None, None, Some("ext4")]);
    assert!(parts[2]["filesystem"].is_null());
    assert_eq!(parts[1]["first_lba"], 0x2800);
    assert_eq!(parts[2]["bundle"]["version"], "1.0.0");
    let text = run(Command::new(bin).args(["disk", "uboot.toml", "-o", "node2.img"]).current_dir(f.dir.path()));
    assert!(text.lines().any(|l| l.contains("edge-state") && l.contains("u-boot-env")), "{text}");

    // A wrong boot state is refused by the binary too, naming the file.
    std::fs::write(f.path("uboot.env"), vec![0u8; 2 * ENV_BYTES]).expect("state");
    let out = Command::new(bin).args(["disk", "uboot.toml", "-o", "x.img"]).current_dir(f.dir.path()).output();
    let out = out.expect("run edge-image");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("uboot.env") && stderr.contains("no whole U-Boot environment copy"), "{stderr}");
    assert!(!f.path("x.img").exists());
}
