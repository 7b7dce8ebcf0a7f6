//! The whole node in QEMU: OVMF, the node's GRUB, a Debian kernel, edge-init as PID 1 from an initramfs into a slot,
//! and edge-update, on a disk made by `edge-image disk`; one test per scenario of docs/qemu-tests.md.
//!
//! Bundles are served by a real HTTP server on the host's 127.0.0.1, which the guest reaches as
//! `http://10.0.2.100/` through QEMU's one forward; the guest has no other route out.

use testkit::http_server;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http_server::Server;
use qemu_tests::node::{self, Assets, BundleSpec, Variant};
use qemu_tests::{ok, Arch, Vm};

/// Fails the test with the error and its causes.
/// How long one boot may take from power-on to the services, on a busy 2-core machine under TCG.
const BOOT: Duration = Duration::from_secs(240);
/// How long a shell command may take.
const CMD: Duration = Duration::from_secs(60);
/// How long an install of a whole slot may take.
const INSTALL: Duration = Duration::from_secs(600);

/// Serves `bundle` at `/NAME` on a fresh loopback server.
fn serve(bundle: &Path) -> (Server, String) {
    let server = Server::start();
    let url = publish(&server, bundle);
    (server, url)
}

/// Serves `bundle` at `/NAME` on `server`; returns its URL as the guest sees it.
fn publish(server: &Server, bundle: &Path) -> String {
    let name = bundle.file_name().expect("a bundle file name").to_string_lossy().into_owned();
    server.put(&format!("/{name}"), read(bundle));
    format!("http://{}/{name}", qemu_tests::HOST_SERVER_ADDR)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The block device of a slot in the guest: the ESP is partition 1 of an x86_64 node's disk, slot A 2 and B 3; the
/// U-Boot disk of an arm64 node has its boot files and state in 1 and 2, slot A in 3 and B in 4.
fn slot_device(arch: Arch, slot: char) -> String {
    let first = if arch == Arch::X86_64 { 2 } else { 3 };
    format!("/dev/vda{}", first + u32::from(slot == 'B'))
}

/// Waits for the next boot and returns its slot letter.
fn next_boot(vm: &mut Vm) -> char {
    ok(node::next_boot(vm, BOOT))
}

/// Waits until `edge-update boot` has run to its end in this boot, successfully.
fn services_up(vm: &mut Vm) {
    ok(node::services_up(vm, BOOT));
}

/// `edge-bootctl status` in the guest.
fn bootctl_status(vm: &mut Vm) -> String {
    ok(vm.sh_ok("edge-bootctl status", CMD))
}

/// `edge-update status` in the guest.
fn update_status(vm: &mut Vm) -> String {
    ok(vm.sh_ok("edge-update status", CMD))
}

/// `edge-update status --json`.
fn update_status_json(vm: &mut Vm) -> serde_json::Value {
    serde_json::from_str(&ok(vm.sh_ok("edge-update status --json", CMD))).expect("status JSON")
}

/// The version the booted root says it is.
fn version(vm: &mut Vm) -> String {
    ok(vm.sh_ok("cat /etc/edge/version", CMD)).trim().to_owned()
}

/// Installs from `source` into the slot that is not booted, asks `edge-init` to reboot, and waits for the next
/// boot to begin; returns the slot it boots.
fn install_and_reboot(vm: &mut Vm, source: &str) -> char {
    ok(vm.sh_ok(&format!("edge-update install {source}"), INSTALL));
    ok(vm.sh_detached("edge-init ctl reboot", CMD));
    next_boot(vm)
}

/// Waits for `slot` to be committed with `version` in this boot and for the services to be up; checks that the
/// booted root is that version and the boot state says so.
fn committed(vm: &mut Vm, slot: char, version_: &str) {
    let line = ok(vm.expect(&format!("slot {slot} committed with"), BOOT));
    assert!(line.contains(version_), "{line}");
    services_up(vm);
    let status = bootctl_status(vm);
    assert!(status.contains(&format!("slot {slot}:     good, active, booted")), "{status}");
    assert_eq!(version(vm), version_);
}

fn a_first_boot_from_slot_a_starts_the_services(arch: Arch) {
    let assets = ok(Assets::of(arch));
    let bundle = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    let disk = ok(assets.disk("a_first_boot", &bundle));
    let mut vm = ok(assets.start("a_first_boot", &disk, None));
    assert_eq!(next_boot(&mut vm), 'A');
    ok(vm.expect(&format!("switched root to {} (PARTLABEL=edge-slot-a)", slot_device(arch, 'A')), BOOT));
    ok(vm.expect("watchdog i6300ESB timer: timeout asked 20 s", BOOT));
    ok(vm.expect("edge-init: app: ready", BOOT));
    services_up(&mut vm);
    let up = vm.uptime();
    let status = bootctl_status(&mut vm);
    assert!(status.contains("slot A:     good, active, booted"), "{status}");
    let services = ok(vm.sh_ok("edge-init ctl status", CMD));
    // The ESP, where x86_64's boot state is, is mounted by a service; arm64's boot state is a raw partition.
    let esp: &[&str] = if arch == Arch::X86_64 { &["esp"] } else { &[] };
    for name in ["net", "app", "shell", "update-boot"].iter().chain(esp) {
        assert!(services.lines().any(|l| l.split_whitespace().next() == Some(*name)), "{name} in\n{services}");
    }
    assert_eq!(ok(vm.sh_ok("cat /etc/edge/version", CMD)).trim(), "1.0.0");
    assert_eq!(ok(vm.sh_ok("cat /proc/1/comm", CMD)).trim(), "edge-init");
    let qmp = ok(vm.qmp(r#"{"execute": "query-status"}"#));
    assert!(qmp.contains("\"running\""), "{qmp}");
    eprintln!("a ({arch}): QEMU start to services up: {:.1} s", up.as_secs_f64());
}

fn b_update_a_to_b_over_http_is_committed_and_keeps_the_data(arch: Arch) {
    let assets = ok(Assets::of(arch));
    let v1 = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    let v2 = ok(assets.bundle(&BundleSpec::good("2.0.0", 2)));
    let disk = ok(assets.disk("b_update", &v1));
    let (server, url) = serve(&v2);
    let mut vm = ok(assets.start("b_update", &disk, Some(server.port())));
    assert_eq!(next_boot(&mut vm), 'A');
    services_up(&mut vm);
    ok(vm.sh_ok("head -c 1048576 /dev/urandom >/data/keep && sha256sum /data/keep >/data/keep.sum && sync", CMD));
    let sum = ok(vm.sh_ok("cat /data/keep.sum", CMD));

    let offered = Instant::now();
    let out = ok(vm.sh_ok(&format!("edge-update install {url}"), INSTALL));
    assert!(out.contains("2.0.0"), "{out}");
    let installed = offered.elapsed();
    let status = bootctl_status(&mut vm);
    assert!(status.contains("next boot:  B (trial"), "{status}");
    ok(vm.sh_detached("edge-init ctl reboot", CMD));

    assert_eq!(next_boot(&mut vm), 'B');
    let committed = ok(vm.expect("slot B committed with", BOOT));
    let to_commit = offered.elapsed();
    assert!(committed.contains("2.0.0"), "{committed}");
    services_up(&mut vm);
    let status = bootctl_status(&mut vm);
    assert!(status.contains("slot B:     good, active, booted"), "{status}");
    let update = update_status(&mut vm);
    assert!(update.contains("committed"), "{update}");
    assert_eq!(ok(vm.sh_ok("cat /etc/edge/version", CMD)).trim(), "2.0.0");
    assert_eq!(ok(vm.sh_ok("sha256sum /data/keep", CMD)), sum, "the data partition's file changed");
    eprintln!(
        "b: offered to installed {:.1} s, offered to committed {:.1} s, {} bytes served",
        installed.as_secs_f64(),
        to_commit.as_secs_f64(),
        server.bytes_sent()
    );
}

fn d_a_failed_health_check_rolls_back(arch: Arch) {
    let assets = ok(Assets::of(arch));
    let v1 = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    let bad = ok(assets.bundle(&BundleSpec::good("2.0.0", 2).variant(Variant::Unhealthy)));
    let disk = ok(assets.disk("d_unhealthy", &v1));
    let (server, url) = serve(&bad);
    let mut vm = ok(assets.start("d_unhealthy", &disk, Some(server.port())));
    assert_eq!(next_boot(&mut vm), 'A');
    services_up(&mut vm);
    ok(vm.sh_ok(&format!("edge-update install {url}"), INSTALL));
    ok(vm.sh_detached("edge-init ctl reboot", CMD));

    assert_eq!(next_boot(&mut vm), 'B');
    ok(vm.expect("health check command \"/usr/libexec/edge-node/check\" failed (try 2/2)", BOOT));
    ok(vm.expect("slot B: marked bad", BOOT));
    assert_eq!(next_boot(&mut vm), 'A', "the node falls back to slot A");
    let rolled = ok(vm.expect("slot B rolled back", BOOT));
    services_up(&mut vm);
    let status = bootctl_status(&mut vm);
    // B keeps its place first in the boot order, but with no tries and not good it is never booted.
    assert!(status.contains("next boot:  A (good)"), "{status}\n{rolled}");
    assert!(status.contains("slot A:     good, booted"), "{status}");
    assert!(status.contains("slot B:     not good, 0 tries left"), "{status}");
    let update = update_status(&mut vm);
    assert!(update.contains("rolled back") || update.contains("rolled-back"), "{update}");
    assert_eq!(ok(vm.sh_ok("cat /etc/edge/version", CMD)).trim(), "1.0.0");
}

fn c_update_b_back_to_a_so_both_directions_work(arch: Arch) {
    let assets = ok(Assets::of(arch));
    let v1 = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    let v2 = ok(assets.bundle(&BundleSpec::good("2.0.0", 2)));
    let v3 = ok(assets.bundle(&BundleSpec::good("3.0.0", 3)));
    let disk = ok(assets.disk("c_both_ways", &v1));
    let server = Server::start();
    let (url2, url3) = (publish(&server, &v2), publish(&server, &v3));
    let mut vm = ok(assets.start("c_both_ways", &disk, Some(server.port())));
    assert_eq!(next_boot(&mut vm), 'A');
    services_up(&mut vm);

    assert_eq!(install_and_reboot(&mut vm, &url2), 'B');
    committed(&mut vm, 'B', "2.0.0");
    assert_eq!(install_and_reboot(&mut vm, &url3), 'A', "the update from B goes to A");
    committed(&mut vm, 'A', "3.0.0");
    let status = bootctl_status(&mut vm);
    assert!(status.contains("slot B:     good\n"), "B stays good as the fallback:\n{status}");
    let update = update_status(&mut vm);
    assert!(update.contains("3.0.0") && update.contains("committed"), "{update}");
}

/// A copy of `bundle` with its signatures taken out (the header says none; the body is unchanged).
fn unsigned_copy(bundle: &Path, out: &Path) {
    let bytes = read(bundle);
    let (manifest_len, body) = bundle_header(&bytes);
    let mut copy = bytes[..24 + manifest_len].to_vec();
    copy[16..20].copy_from_slice(&0u32.to_le_bytes());
    copy.extend_from_slice(&bytes[body..]);
    write(out, &copy);
}

/// A bundle's manifest length and where its body starts, from its header (docs/bundle-format.md, "Header").
fn bundle_header(bytes: &[u8]) -> (usize, usize) {
    let manifest_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    let n_signatures = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")) as usize;
    (manifest_len, 24 + manifest_len + 72 * n_signatures)
}

/// The chunk area of `bundle`'s first payload: its byte offset in the file and its length.
fn chunk_area(bytes: &[u8]) -> (usize, usize) {
    let (manifest_len, body) = bundle_header(bytes);
    let manifest: serde_json::Value = serde_json::from_slice(&bytes[24..24 + manifest_len]).expect("manifest JSON");
    let chunks = &manifest["payloads"][0]["chunks"];
    let offset = chunks["offset"].as_u64().expect("offset") as usize;
    (body + offset, chunks["size_bytes"].as_u64().expect("size") as usize)
}

/// A copy of `bundle` with one byte flipped in the middle of its first payload's chunk area (signed and indexed as
/// before, so only the chunk's hash can tell).
fn corrupt_copy(bundle: &Path, out: &Path) {
    let mut bytes = read(bundle);
    let (start, len) = chunk_area(&bytes);
    bytes[start + len / 2] ^= 0xff;
    write(out, &bytes);
}

fn g_bad_bundles_are_refused_and_change_nothing(arch: Arch) {
    let assets = ok(Assets::of(arch));
    let v1 = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    let v2 = ok(assets.bundle(&BundleSpec::good("2.0.0", 2)));
    let v3 = ok(assets.bundle(&BundleSpec::good("3.0.0", 3)));
    let stranger = ok(assets.bundle(&BundleSpec::good("3.0.0", 3).signed_by("stranger")));
    let other_board = ok(assets.bundle(&BundleSpec::good("3.0.0", 3).compatible("edge-qemu-aarch64")));
    let bundles = assets.dir().join("bundles");
    let (unsigned, corrupt) = (bundles.join("g-unsigned-3.0.0.edgeb"), bundles.join("g-corrupt-3.0.0.edgeb"));
    unsigned_copy(&v3, &unsigned);
    corrupt_copy(&v3, &corrupt);
    let disk = ok(assets.disk("g_bad_bundles", &v1));
    let server = Server::start();
    let mut vm = ok(assets.start("g_bad_bundles", &disk, Some(server.port())));
    assert_eq!(next_boot(&mut vm), 'A');
    services_up(&mut vm);
    // Committing 2.0.0 (security version 2) gives the node an anti-rollback floor for the downgrade.
    assert_eq!(install_and_reboot(&mut vm, &publish(&server, &v2)), 'B');
    committed(&mut vm, 'B', "2.0.0");

    let boot_state = bootctl_status(&mut vm);
    let journal = update_status_json(&mut vm)["journal"].clone();
    let refused = [
        ("unsigned", &unsigned, 4, "signature"),
        ("signed by an untrusted key", &stranger, 4, "signature"),
        ("for another board", &other_board, 7, "edge-qemu-aarch64"),
        ("a downgrade", &v1, 7, "security"),
    ];
    for (what, bundle, code, says) in refused {
        let out = ok(vm.sh(&format!("edge-update install {}", publish(&server, bundle)), INSTALL));
        assert_eq!(out.code, code, "a bundle {what}: exit {}:\n{}", out.code, out.output);
        assert!(out.output.contains(says), "a bundle {what} is refused naming {says:?}:\n{}", out.output);
        assert_eq!(bootctl_status(&mut vm), boot_state, "a bundle {what} changed the boot state");
        let status = update_status_json(&mut vm);
        assert_eq!(status["journal"], journal, "a bundle {what} changed the update journal");
        // What changed is the event log's last failure: this refusal, with its cause.
        let failure = &status["last_failure"];
        assert_eq!(failure["event"], "install-failed", "a bundle {what}: {status}");
        assert!(failure["reason"].as_str().is_some_and(|r| r.contains(says)), "a bundle {what}: {status}");
    }

    // A damaged chunk is only found when it arrives, after the target was made unbootable: the install stops there,
    // the booted slot and the boot order are as they were, and the half-written target is never booted.
    let out = ok(vm.sh(&format!("edge-update install --full {}", publish(&server, &corrupt)), INSTALL));
    assert_eq!(out.code, 5, "a corrupted chunk: exit {}:\n{}", out.code, out.output);
    assert!(out.output.contains("chunk"), "the refusal names the chunk:\n{}", out.output);
    let status = bootctl_status(&mut vm);
    assert!(status.contains("next boot:  B (good)"), "{status}");
    assert!(status.contains("slot B:     good, active, booted"), "{status}");
    assert!(status.contains("slot A:     not good, 0 tries left"), "{status}");
    ok(vm.sh_detached("edge-init ctl reboot", CMD));
    assert_eq!(next_boot(&mut vm), 'B');
    services_up(&mut vm);
    assert_eq!(version(&mut vm), "2.0.0");
}

/// The two boot-state copies on the node's disk: each copy's byte offset in `disk` and its bytes. x86_64: two GRUB
/// environment blocks of 1 KiB on the ESP; arm64: the two copies of 8 KiB of the redundant U-Boot environment at the
/// start of the partition edge-state.
fn state_copies(arch: Arch, disk: &Path) -> Vec<(u64, Vec<u8>)> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(disk).unwrap_or_else(|e| panic!("open {}: {e}", disk.display()));
    let read_at = |at: u64, len: usize| {
        let mut bytes = vec![0; len];
        file.read_exact_at(&mut bytes, at).unwrap_or_else(|e| panic!("read {} at {at}: {e}", disk.display()));
        bytes
    };
    let mut reader = std::fs::File::open(disk).unwrap_or_else(|e| panic!("open {}: {e}", disk.display()));
    let (header, entries) = platform::gpt::read_entries(&mut reader)
        .unwrap_or_else(|e| panic!("read the GPT of {}: {e}", disk.display()))
        .unwrap_or_else(|| panic!("{} has a GPT", disk.display()));
    if arch == Arch::Aarch64 {
        let state = entries.iter().find(|e| e.name == "edge-state").expect("a partition named edge-state");
        let first = state.first_lba * header.sector_bytes;
        let size = node::UBOOT_ENV_BYTES;
        return (0..2).map(|i| (first + (i * size) as u64, read_at(first + (i * size) as u64, size))).collect();
    }
    // The ESP is the partition of the ESP type, as the disk's GPT says.
    let esp = entries.iter().find(|e| e.type_guid == platform::gpt::ESP_TYPE).expect("an ESP");
    let first = esp.first_lba * header.sector_bytes;
    let last = (esp.last_lba + 1) * header.sector_bytes;
    let esp = read_at(first, (last - first) as usize);
    let mut copies = Vec::new();
    for at in (0..esp.len() - 1024).step_by(512) {
        let block = &esp[at..at + 1024];
        if block.starts_with(b"# GRUB Environment Block\n") && find(block, b"edge_begin=").is_some() {
            copies.push((first + at as u64, block.to_vec()));
        }
    }
    assert_eq!(copies.len(), 2, "two boot-state copies on the ESP of {}", disk.display());
    copies
}

/// Which of two whole copies (as [`state_copies`] gives them) the bootloader reads: the newer one. GRUB's copies
/// count their generation modulo 3 in `edge_begin`; U-Boot's carry a flags byte that the newer copy has one higher
/// (modulo 256).
fn newest(arch: Arch, copies: &[(u64, Vec<u8>)]) -> usize {
    if arch == Arch::Aarch64 {
        use bootctl::uboot::{decode_redundant, CopyId, FlagScheme};
        let (_, choice) = decode_redundant(&copies[0].1, &copies[1].1, FlagScheme::Incremental).expect("a whole copy");
        return usize::from(choice.current == CopyId::Redundant);
    }
    let generation = |block: &[u8]| {
        let at = find(block, b"edge_begin=").expect("edge_begin") + b"edge_begin=".len();
        block[at] - b'0'
    };
    if (generation(&copies[0].1) + 2) % 3 == generation(&copies[1].1) {
        0
    } else {
        1
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn h_a_torn_boot_state_write_still_boots_a_good_slot(arch: Arch) {
    let assets = ok(Assets::of(arch));
    let v1 = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    let v2 = ok(assets.bundle(&BundleSpec::good("2.0.0", 2)));
    let disk = ok(assets.disk("h_torn_state", &v1));
    let (server, url) = serve(&v2);
    let mut vm = ok(assets.start("h_torn_state", &disk, Some(server.port())));
    assert_eq!(next_boot(&mut vm), 'A');
    services_up(&mut vm);
    let before = state_copies(arch, &disk);

    // The flip writes B active on trial into the older copy; the power goes right after, and then that write is
    // torn as a cut halfway would leave it. GRUB's block of 1 KiB spreads its variables over two sectors: its first
    // sector new, its second as the copy was before. U-Boot's copy holds its CRC and every variable in its first
    // sector (the rest is padding, the same before and after), so a cut between sectors leaves either copy whole;
    // what tears it is a cut inside that sector, on a device that does not write a sector at once: new bytes up to
    // the middle of those that changed, the old ones after.
    ok(vm.sh_ok(&format!("edge-update install {url} && sync"), INSTALL));
    let status = bootctl_status(&mut vm);
    assert!(status.contains("next boot:  B (trial"), "{status}");
    vm.power_cut();
    let after = state_copies(arch, &disk);
    let (at, ref block) = after[newest(arch, &after)];
    let old = &before.iter().find(|(old_at, _)| *old_at == at).expect("the same copy before").1;
    assert_ne!(block, old, "the flip wrote the copy at {at}");
    let cut = match arch {
        Arch::X86_64 => 512,
        Arch::Aarch64 => {
            let first = block.iter().zip(old).position(|(a, b)| a != b).expect("a changed byte");
            let last = block.iter().zip(old).rposition(|(a, b)| a != b).expect("a changed byte");
            (first + last).div_ceil(2)
        }
    };
    let mut torn = block[..cut].to_vec();
    torn.extend_from_slice(&old[cut..]);
    assert!(torn != *block && torn != *old, "the torn copy is neither the old one nor the new one");
    let file =
        std::fs::OpenOptions::new().write(true).open(&disk).unwrap_or_else(|e| panic!("open {}: {e}", disk.display()));
    std::os::unix::fs::FileExt::write_all_at(&file, &torn, at)
        .unwrap_or_else(|e| panic!("write the torn copy into {} at {at}: {e}", disk.display()));
    drop(file);

    ok(vm.power_on());
    assert_eq!(next_boot(&mut vm), 'A', "the bootloader takes the whole copy, which boots the good slot");
    let rolled = ok(vm.expect("slot B rolled back", BOOT));
    assert!(rolled.contains("fell back"), "{rolled}");
    services_up(&mut vm);
    let status = bootctl_status(&mut vm);
    assert!(status.contains("slot A:     good, active, booted"), "{status}");
    assert!(!status.contains("both whole"), "the torn copy is reported:\n{status}");
    assert_eq!(version(&mut vm), "1.0.0");

    // The node writes its state again over the torn copy: the retried update goes through.
    assert_eq!(install_and_reboot(&mut vm, &url), 'B');
    committed(&mut vm, 'B', "2.0.0");
    assert!(bootctl_status(&mut vm).contains("copies:     both whole"));
}

fn i_an_update_from_a_usb_stick_with_no_network(arch: Arch) {
    let assets = ok(Assets::of(arch));
    let v1 = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    let v2 = ok(assets.bundle(&BundleSpec::good("2.0.0", 2)));
    let disk = ok(assets.disk("i_usb_stick", &v1));
    // The stick: a FAT file system with the bundle on it, as an operator would copy it.
    let stick = assets.dir().join("disks/i_usb_stick-stick.img");
    let _ = std::fs::remove_file(&stick);
    ok(qemu_tests::host_command(
        std::process::Command::new("mkfs.vfat").args(["-n", "EDGE-STICK", "-C"]).arg(&stick).arg("65536"),
    ));
    ok(qemu_tests::host_command(
        std::process::Command::new("mcopy").arg("-i").arg(&stick).arg(&v2).arg("::/update.edgeb"),
    ));
    // No network forward: the guest has no route to anything.
    let mut options = ok(assets.vm_options("i_usb_stick", &disk, None));
    options.extra_disks.push(stick);
    let mut vm = ok(Vm::start(assets.tools(), options));
    assert_eq!(next_boot(&mut vm), 'A');
    services_up(&mut vm);
    ok(vm.sh_ok("mkdir -p /run/stick && mount -t vfat -o ro /dev/vdb /run/stick", CMD));
    assert_eq!(install_and_reboot(&mut vm, "/run/stick/update.edgeb"), 'B');
    committed(&mut vm, 'B', "2.0.0");
    let update = update_status(&mut vm);
    assert!(update.contains("/run/stick/update.edgeb"), "{update}");
}

/// Bytes of 4 KiB blocks of `new` found nowhere in `old`: what really changed, wherever blocks moved.
fn changed_bytes(old: &Path, new: &Path) -> u64 {
    let old: std::collections::HashSet<Vec<u8>> = read(old).chunks(4096).map(<[u8]>::to_vec).collect();
    read(new).chunks(4096).filter(|block| !old.contains(*block)).map(|block| block.len() as u64).sum()
}

fn j_a_delta_update_fetches_far_less_than_the_bundle(arch: Arch) {
    let assets = ok(Assets::of(arch));
    let v1 = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    let v2 = ok(assets.bundle(&BundleSpec::good("2.0.0", 2)));
    let disk = ok(assets.disk("j_delta", &v1));
    let (server, url) = serve(&v2);
    let mut vm = ok(assets.start("j_delta", &disk, Some(server.port())));
    assert_eq!(next_boot(&mut vm), 'A');
    services_up(&mut vm);
    let out = ok(vm.sh_ok(&format!("edge-update install --json {url} 2>/dev/null"), INSTALL));
    let result: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("result").is_some())
        .unwrap_or_else(|| panic!("a result line in\n{out}"));
    let fetched = result["fetched_bytes"].as_u64().expect("fetched_bytes");
    let reused = result["reused_bytes"].as_u64().expect("reused_bytes");
    let image = result["image_bytes"].as_u64().expect("image_bytes");
    let bundle = std::fs::metadata(&v2).expect("the bundle").len();
    let changed = changed_bytes(&assets.root_image(Variant::Good, "1.0.0"), &assets.root_image(Variant::Good, "2.0.0"));
    assert!(fetched > 0 && fetched <= server.bytes_sent(), "fetched {fetched}, served {}", server.bytes_sent());
    assert!(fetched * 50 < bundle, "a delta fetches far less than the bundle: {fetched} of {bundle} bytes");
    assert!(reused > image / 2, "most of the image comes from slot A: {reused} of {image} bytes");
    let status: serde_json::Value =
        serde_json::from_str(&ok(vm.sh_ok("edge-update status --json", CMD))).expect("status JSON");
    assert_eq!(status["journal"]["update"]["fetched_bytes"].as_u64(), Some(fetched), "{status}");
    // What slot B holds is the new image, byte for byte.
    let want = ok(qemu_tests::host_command(
        std::process::Command::new("sha256sum").arg(assets.root_image(Variant::Good, "2.0.0")),
    ));
    let got = ok(vm.sh_ok(&format!("head -c {image} {} | sha256sum", slot_device(arch, 'B')), CMD));
    assert_eq!(got.split_whitespace().next(), want.split_whitespace().next(), "slot B holds the 2.0.0 image");
    eprintln!(
        "j: delta fetched {fetched} bytes of a {bundle}-byte bundle ({:.2} %); {changed} bytes of the image changed; \
         {reused} bytes reused from slot A",
        fetched as f64 * 100.0 / bundle as f64
    );
}

/// The tries `set-active` gave slot B, from `edge-bootctl status` after a flip.
fn tries_of_b(vm: &mut Vm) -> u32 {
    let status = bootctl_status(vm);
    let line = status.lines().find(|l| l.starts_with("slot B:")).unwrap_or_else(|| panic!("slot B in\n{status}"));
    let tries = line.split(',').find_map(|part| part.trim().strip_suffix(" tries left"));
    tries.and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("tries of B in {line:?}"))
}

/// Installs `variant` 2.0.0 on a node running 1.0.0 on slot A and reboots it; B is then booted once per try, and
/// `each_try` is what the console must show on each (in order) before the node resets, and `after_reset` what the
/// boot after each try shows; then the node must be back on A, with B rolled back.
fn tries_run_out(arch: Arch, name: &str, variant: Variant, each_try: &[&str], after_reset: Option<&str>) {
    let assets = ok(Assets::of(arch));
    let v1 = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    let bad = ok(assets.bundle(&BundleSpec::good("2.0.0", 2).variant(variant)));
    let disk = ok(assets.disk(name, &v1));
    let (server, url) = serve(&bad);
    let mut vm = ok(assets.start(name, &disk, Some(server.port())));
    assert_eq!(next_boot(&mut vm), 'A');
    services_up(&mut vm);
    ok(vm.sh_ok(&format!("edge-update install {url}"), INSTALL));
    let tries = tries_of_b(&mut vm);
    assert!(tries >= 1, "B has tries");
    ok(vm.sh_detached("edge-init ctl reboot", CMD));
    let started = Instant::now();
    for n in 1..=tries {
        assert_eq!(next_boot(&mut vm), 'B', "try {n} of {tries} boots B");
        if let (Some(text), true) = (after_reset, n > 1) {
            ok(vm.expect(text, BOOT));
        }
        for text in each_try {
            ok(vm.expect(text, BOOT));
        }
    }
    assert_eq!(next_boot(&mut vm), 'A', "after {tries} tries of B the node is back on A");
    if let Some(text) = after_reset {
        ok(vm.expect(text, BOOT));
    }
    let rolled = ok(vm.expect("slot B rolled back", BOOT));
    assert!(rolled.contains("the bootloader fell back to slot A"), "{rolled}");
    services_up(&mut vm);
    let status = bootctl_status(&mut vm);
    assert!(status.contains("slot A:     good, booted"), "{status}");
    assert!(status.contains("slot B:     not good, 0 tries left"), "{status}");
    assert_eq!(version(&mut vm), "1.0.0");
    let update = update_status(&mut vm);
    assert!(update.contains("rolled-back") || update.contains("rolled back"), "{update}");
    eprintln!("{name}: {tries} tries of B and back on A in {:.0} s", started.elapsed().as_secs_f64());
}

fn e1_a_hanging_slot_is_reset_by_the_watchdog_until_its_tries_run_out(arch: Arch) {
    tries_run_out(
        arch,
        "e1_hang",
        Variant::Hang,
        &["critical service stuck is down; the watchdog is no longer petted"],
        // The reset that follows is the watchdog's, not a reboot: the next boot's edge-init reads it back.
        Some("the last reset was a watchdog reset"),
    );
}

fn e2_a_panicking_slot_is_rebooted_until_its_tries_run_out(arch: Arch) {
    tries_run_out(arch, "e2_panic", Variant::Panic, &["Kernel panic - not syncing", "Rebooting in 10 seconds"], None);
}

/// A seeded PRNG for the power-cut instants: the seed is printed, and `EDGE_QEMU_SEED` repeats a run.
struct Rng(http_server::SplitMix64);

impl Rng {
    fn from_env(test: &str) -> Rng {
        let seed = std::env::var("EDGE_QEMU_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            now.as_nanos() as u64
        });
        eprintln!("{test}: seed {seed} (EDGE_QEMU_SEED={seed} repeats these instants)");
        Rng(http_server::SplitMix64(seed))
    }

    /// A number in `lo..hi`.
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }
}

/// Where the interrupted install stood, from `edge-update status --json`: its phase and the fraction of its chunks
/// on the slot, for `url` (nothing done for another bundle).
fn install_progress(vm: &mut Vm, url: &str) -> (String, f64) {
    let status = update_status_json(vm);
    let update = &status["journal"]["update"];
    let phase = update["phase"].as_str().unwrap_or("none").to_owned();
    if update["source"].as_str() != Some(url) {
        return (phase, 0.0);
    }
    let n = update["n_chunks"].as_u64().unwrap_or(1).max(1);
    let done: u64 = update["chunks_done"]
        .as_array()
        .map(|ranges| ranges.iter().map(|r| r[1].as_u64().unwrap_or(0) - r[0].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0);
    (phase, done as f64 / n as f64)
}

/// Whether a boot-state copy says `target` was made active on trial: not good, with tries (what `set-active` writes).
/// A variable ends at a newline in a GRUB block, at a NUL in a U-Boot environment.
fn says_flipped(block: &[u8], target: char) -> bool {
    let t = target.to_ascii_lowercase();
    let has = |var: &str| [b'\n', 0].iter().any(|&end| find(block, &[var.as_bytes(), &[end]].concat()).is_some());
    has(&format!("edge_active={target}")) && has(&format!("edge_{t}_good=0")) && !has(&format!("edge_{t}_tries=0"))
}

fn f_power_cuts_during_the_install_and_the_flip_lose_nothing(arch: Arch) {
    // Where each cut falls: 4 in the stream, 1 after it (the last sync, the read-back or the flip), 2 at the flip.
    #[derive(Clone, Copy, PartialEq)]
    enum Cut {
        Stream,
        AfterStream,
        Flip,
    }
    let plan = [Cut::Stream, Cut::Stream, Cut::Stream, Cut::Stream, Cut::AfterStream, Cut::Flip, Cut::Flip];
    let mut rng = Rng::from_env("f");
    let assets = ok(Assets::of(arch));
    let v1 = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    // A cut at the flip may land after it was saved; the trial then commits, and the next cut needs a new update.
    let offers: Vec<(PathBuf, &str)> = [("2.0.0", 2), ("3.0.0", 3), ("2.0.0", 4), ("3.0.0", 5)]
        .into_iter()
        .map(|(version, sv)| (ok(assets.bundle(&BundleSpec::good(version, sv))), version))
        .collect();
    let disk = ok(assets.disk("f_power_cuts", &v1));
    let copies: Vec<(u64, usize)> =
        state_copies(arch, &disk).into_iter().map(|(at, bytes)| (at, bytes.len())).collect();
    let disk_file = std::fs::File::open(&disk).unwrap_or_else(|e| panic!("open {}: {e}", disk.display()));
    let read_copies = || -> Vec<Vec<u8>> {
        copies
            .iter()
            .map(|&(at, len)| {
                let mut block = vec![0; len];
                std::os::unix::fs::FileExt::read_exact_at(&disk_file, &mut block, at)
                    .unwrap_or_else(|e| panic!("read the boot-state copy at {at} of {}: {e}", disk.display()));
                block
            })
            .collect()
    };
    let server = Server::start();
    let urls: Vec<String> = offers.iter().map(|(bundle, _)| publish(&server, bundle)).collect();
    let areas: Vec<f64> = offers.iter().map(|(bundle, _)| chunk_area(&read(bundle)).1 as f64).collect();
    let mut vm = ok(assets.start("f_power_cuts", &disk, Some(server.port())));
    let mut slot = next_boot(&mut vm);
    assert_eq!(slot, 'A');
    services_up(&mut vm);
    ok(vm.sh_ok("head -c 1048576 /dev/urandom >/data/keep && sha256sum /data/keep >/data/keep.sum && sync", CMD));
    let sum = ok(vm.sh_ok("cat /data/keep.sum", CMD));

    let mut offer = 0;
    for (i, &cut) in plan.iter().enumerate() {
        let round = i + 1;
        let url = &urls[offer];
        let target = if slot == 'A' { 'B' } else { 'A' };
        let (_, done) = install_progress(&mut vm, url);
        let before = read_copies();
        // A full install, so the whole chunk area streams and the cut can fall anywhere in it; its log goes to the
        // console.
        let sent = server.bytes_sent();
        ok(vm.sh_ok(&format!("(edge-update install --full {url} 2>&1 | cat >/dev/console) &"), CMD));
        let deadline = Instant::now() + INSTALL;
        let area = areas[offer];
        let what = if cut == Cut::AfterStream {
            // The last cut of the install falls after the stream, in the last sync or the read-back.
            while (server.bytes_sent() - sent) as f64 + 4096.0 < (1.0 - done) * area {
                assert!(Instant::now() < deadline, "round {round}: the stream did not end");
                std::thread::sleep(Duration::from_millis(10));
            }
            let delay = rng.between(0.0, 0.8);
            std::thread::sleep(Duration::from_secs_f64(delay));
            match vm.seen("chunks read back and verified") {
                Some(_) => format!("{:.0} ms after the stream ended, at the flip", delay * 1000.0),
                None => format!("{:.0} ms after the stream ended", delay * 1000.0),
            }
        } else if cut == Cut::Stream {
            let at = sent + ((1.0 - done) * area * rng.between(0.02, 0.98)) as u64;
            loop {
                if server.bytes_sent() >= at {
                    break format!("at byte {} of the stream", server.bytes_sent() - sent);
                }
                // The stream may end before the chosen byte (a resumed install fetches less than planned).
                if vm.seen("chunks read back and verified").is_some() {
                    break "after the read-back, at the flip".to_owned();
                }
                assert!(Instant::now() < deadline, "round {round}: the install got stuck before byte {at}");
                std::thread::sleep(Duration::from_millis(10));
            }
        } else {
            // The flip is set-active (a boot-state copy written and synced), then the journal saying `flipped`.
            // The host watches the copies in the disk file and cuts a random few milliseconds after one changes to
            // say the target is on trial: before, while or after the journal is written.
            loop {
                let now = read_copies();
                if now.iter().zip(&before).any(|(new, old)| new != old && says_flipped(new, target)) {
                    break;
                }
                assert!(Instant::now() < deadline, "round {round}: no flip seen");
                std::thread::sleep(Duration::from_millis(1));
            }
            // The first at once, so that the journal is likely not yet written; the second anywhere in 40 ms.
            let first = plan.iter().position(|&c| c == Cut::Flip) == Some(i);
            let delay = if first { 0.0 } else { rng.between(0.0, 0.04) };
            std::thread::sleep(Duration::from_secs_f64(delay));
            format!("{:.0} ms after set-active wrote the boot state, at the flip", delay * 1000.0)
        };
        vm.power_cut();
        ok(vm.power_on());
        let booted = next_boot(&mut vm);
        services_up(&mut vm);
        let status = bootctl_status(&mut vm);
        assert!(
            status.contains(&format!("slot {booted}:     good, active, booted"))
                || status.contains(&format!("slot {booted}:     good, booted")),
            "round {round}: the node runs a good slot:\n{status}"
        );
        assert_eq!(ok(vm.sh_ok("sha256sum /data/keep", CMD)), sum, "round {round}: the data partition's file changed");
        let (phase, done) = install_progress(&mut vm, url);
        eprintln!("f: cut {round} {what}: booted {booted}, update {phase} with {:.0} % of its chunks", done * 100.0);
        if phase == "committed" {
            // The cut fell after the flip was saved: the trial booted and committed.
            assert_eq!(booted, target, "round {round}: a committed update boots its slot");
            slot = booted;
            offer += 1;
            assert!(offer < offers.len(), "no more updates to offer after round {round}");
        } else {
            assert_eq!(booted, slot, "round {round}: an update not committed leaves the node on its slot");
        }
    }
    // The retried update completes.
    let target = if slot == 'A' { 'B' } else { 'A' };
    assert_eq!(install_and_reboot(&mut vm, &urls[offer]), target);
    committed(&mut vm, target, offers[offer].1);
    assert_eq!(ok(vm.sh_ok("sha256sum /data/keep", CMD)), sum, "the data partition's file changed");
}

/// Each scenario as a test of each architecture it runs on: `x86_64::NAME` and `aarch64::NAME`, the same code with
/// the architecture as the node's parameter. arm64 runs the scenarios its boot path changes: a boot, an update and
/// its commit, the rollbacks (a failed check, a hang reset by the watchdog), power cuts, a torn state copy and a
/// delta; the others exercise the updater and the network alike on both and run on x86_64 only.
macro_rules! scenarios {
    ($arch:ident: $($scenario:ident),* $(,)?) => {
        mod $arch {
            $(
                #[test]
                fn $scenario() {
                    let started = std::time::Instant::now();
                    super::$scenario(super::Arch::from_name(stringify!($arch)).expect("an architecture"));
                    eprintln!(
                        "scenario {} ({}): {:.1} s",
                        stringify!($scenario),
                        stringify!($arch),
                        started.elapsed().as_secs_f64()
                    );
                }
            )*
        }
    };
}

scenarios!(x86_64:
    a_first_boot_from_slot_a_starts_the_services,
    b_update_a_to_b_over_http_is_committed_and_keeps_the_data,
    c_update_b_back_to_a_so_both_directions_work,
    d_a_failed_health_check_rolls_back,
    e1_a_hanging_slot_is_reset_by_the_watchdog_until_its_tries_run_out,
    e2_a_panicking_slot_is_rebooted_until_its_tries_run_out,
    f_power_cuts_during_the_install_and_the_flip_lose_nothing,
    g_bad_bundles_are_refused_and_change_nothing,
    h_a_torn_boot_state_write_still_boots_a_good_slot,
    i_an_update_from_a_usb_stick_with_no_network,
    j_a_delta_update_fetches_far_less_than_the_bundle,
);

scenarios!(aarch64:
    a_first_boot_from_slot_a_starts_the_services,
    b_update_a_to_b_over_http_is_committed_and_keeps_the_data,
    d_a_failed_health_check_rolls_back,
    e1_a_hanging_slot_is_reset_by_the_watchdog_until_its_tries_run_out,
    f_power_cuts_during_the_install_and_the_flip_lose_nothing,
    h_a_torn_boot_state_write_still_boots_a_good_slot,
    j_a_delta_update_fetches_far_less_than_the_bundle,
);
