//! The whole node in QEMU: OVMF, the node's GRUB, a Debian kernel, edge-init as PID 1 from an initramfs into a slot,
//! and edge-update, on a disk made by `edge-image disk`; one test per scenario of docs/qemu-tests.md.
//!
//! Bundles are served by a real HTTP server on the host's 127.0.0.1, which the guest reaches as
//! `http://10.0.2.100/` through QEMU's one forward; the guest has no other route out.

#[path = "../../updater/tests/common/http_server.rs"]
mod http_server;

use std::path::Path;
use std::time::{Duration, Instant};

use http_server::Server;
use qemu_tests::node::{Assets, BundleSpec, Variant};
use qemu_tests::{report, Vm};

/// Fails the test with the error and its causes.
fn ok<T>(result: qemu_tests::Result<T>) -> T {
    result.unwrap_or_else(|err| panic!("{}", report(&err)))
}

/// How long one boot may take from power-on to the services, on a busy 2-core machine under TCG.
const BOOT: Duration = Duration::from_secs(240);
/// How long a shell command may take.
const CMD: Duration = Duration::from_secs(60);
/// How long an install of a whole slot may take.
const INSTALL: Duration = Duration::from_secs(600);

/// Serves `bundle` at `/NAME` on a fresh loopback server.
fn serve(bundle: &Path) -> (Server, String) {
    let server = Server::start();
    let name = bundle.file_name().expect("a bundle file name").to_string_lossy().into_owned();
    let bytes = std::fs::read(bundle).unwrap_or_else(|e| panic!("read {}: {e}", bundle.display()));
    server.put(&format!("/{name}"), bytes);
    (server, format!("http://{}/{name}", qemu_tests::HOST_SERVER_ADDR))
}

/// The port of `server` on 127.0.0.1.
fn port(server: &Server) -> u16 {
    let url = server.url("/");
    let port = url.trim_start_matches("http://127.0.0.1:").trim_end_matches('/');
    port.parse().unwrap_or_else(|e| panic!("port of {url}: {e}"))
}

/// Waits for the next boot's kernel command line and returns its slot letter.
fn next_boot(vm: &mut Vm) -> char {
    let line = ok(vm.expect("Command line:", BOOT));
    let slot = line.split_whitespace().find_map(|w| w.strip_prefix("edge.slot=")).unwrap_or("?");
    slot.chars().next().unwrap_or('?')
}

/// Waits until `edge-update boot` has run to its end in this boot, successfully.
fn services_up(vm: &mut Vm) {
    ok(vm.expect("edge-init: update-boot: exited 0", BOOT));
}

/// `edge-bootctl status` in the guest.
fn bootctl_status(vm: &mut Vm) -> String {
    ok(vm.sh_ok("edge-bootctl status", CMD))
}

/// `edge-update status` in the guest.
fn update_status(vm: &mut Vm) -> String {
    ok(vm.sh_ok("edge-update status", CMD))
}

#[test]
fn a_first_boot_from_slot_a_starts_the_services() {
    let assets = ok(Assets::get());
    let bundle = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    let disk = ok(assets.disk("a_first_boot", &bundle));
    let mut vm = ok(assets.start("a_first_boot", &disk, None));
    assert_eq!(next_boot(&mut vm), 'A');
    ok(vm.expect("switched root to /dev/vda2 (PARTLABEL=edge-slot-a)", BOOT));
    ok(vm.expect("watchdog i6300ESB timer: timeout asked 20 s", BOOT));
    ok(vm.expect("edge-init: app: ready", BOOT));
    services_up(&mut vm);
    let up = vm.uptime();
    let status = bootctl_status(&mut vm);
    assert!(status.contains("slot A:     good, active, booted"), "{status}");
    let services = ok(vm.sh_ok("edge-init ctl status", CMD));
    for name in ["net", "esp", "app", "shell", "update-boot"] {
        assert!(services.lines().any(|l| l.split_whitespace().next() == Some(name)), "{name} in\n{services}");
    }
    assert_eq!(ok(vm.sh_ok("cat /etc/edge/version", CMD)).trim(), "1.0.0");
    assert_eq!(ok(vm.sh_ok("cat /proc/1/comm", CMD)).trim(), "edge-init");
    let qmp = ok(vm.qmp(r#"{"execute": "query-status"}"#));
    assert!(qmp.contains("\"running\""), "{qmp}");
    eprintln!("a: QEMU start to services up: {:.1} s", up.as_secs_f64());
}

#[test]
fn b_update_a_to_b_over_http_is_committed_and_keeps_the_data() {
    let assets = ok(Assets::get());
    let v1 = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    let v2 = ok(assets.bundle(&BundleSpec::good("2.0.0", 2)));
    let disk = ok(assets.disk("b_update", &v1));
    let (server, url) = serve(&v2);
    let mut vm = ok(assets.start("b_update", &disk, Some(port(&server))));
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

#[test]
fn d_a_failed_health_check_rolls_back() {
    let assets = ok(Assets::get());
    let v1 = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    let bad = ok(assets.bundle(&BundleSpec::good("2.0.0", 2).variant(Variant::Unhealthy)));
    let disk = ok(assets.disk("d_unhealthy", &v1));
    let (server, url) = serve(&bad);
    let mut vm = ok(assets.start("d_unhealthy", &disk, Some(port(&server))));
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
