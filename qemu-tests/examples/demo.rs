//! The end-to-end demo (`bash scripts/demo.sh`): a node in QEMU (OVMF, GRUB, a Debian kernel, `edge-init` as PID 1)
//! on slot A is updated over HTTP to 2.0.0 on slot B, which its health checks commit; then it is given a broken
//! 3.0.0, which fails its health check on slot A and is rolled back by the bootloader's fallback to B.
//!
//! It prints a timeline: the time since QEMU started, the event, and both slots as `edge-bootctl status` sees them
//! whenever the node can be asked. The node's console is copied to `DEMO_DIR/console.log`.

use testkit::http_server;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http_server::Server;
use qemu_tests::node::{self, Assets, BundleSpec, Variant};
use qemu_tests::{report, Vm};

const BOOT: Duration = Duration::from_secs(300);
const CMD: Duration = Duration::from_secs(60);
const INSTALL: Duration = Duration::from_secs(600);

/// The timeline, printed as it happens.
struct Timeline {
    started: Instant,
}

impl Timeline {
    fn header(&self) {
        println!("{:>7}  {:<62}  {:<32}  slot B", "time", "event", "slot A");
    }

    /// Prints `event` with the slots as the node reports them now.
    fn event(&self, vm: &mut Vm, event: &str) -> qemu_tests::Result<()> {
        let status = vm.sh_ok("edge-bootctl status", CMD)?;
        let slot = |s: char| {
            let prefix = format!("slot {s}:");
            status.lines().find_map(|l| l.strip_prefix(&prefix)).map_or("?".to_owned(), |v| v.trim().to_owned())
        };
        self.line(event, &slot('A'), &slot('B'));
        Ok(())
    }

    /// Prints `event` while the node cannot be asked (it is booting).
    fn note(&self, event: &str) {
        self.line(event, "", "");
    }

    fn line(&self, event: &str, a: &str, b: &str) {
        let t = self.started.elapsed().as_secs_f64();
        println!("{t:>6.1}s  {event:<62}  {a:<32}  {b}");
    }
}

fn next_boot(vm: &mut Vm) -> qemu_tests::Result<char> {
    node::next_boot(vm, BOOT)
}

fn services_up(vm: &mut Vm) -> qemu_tests::Result<()> {
    node::services_up(vm, BOOT)
}

/// What `edge-update` said on a console line, without the line's prefixes and the log level.
fn message(line: &str) -> &str {
    let said = line.split_once("edge-update: ").map_or(line, |(_, m)| m);
    said.split_once(": ").filter(|(level, _)| ["info", "warn", "error"].contains(level)).map_or(said, |(_, m)| m)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn run(dir: &Path) -> qemu_tests::Result<()> {
    eprintln!("demo: building the test node (kernel, initramfs, slot images, GRUB; cached after the first run)");
    let assets = Assets::get()?;
    let v1 = assets.bundle(&BundleSpec::good("1.0.0", 1))?;
    let v2 = assets.bundle(&BundleSpec::good("2.0.0", 2))?;
    let broken = assets.bundle(&BundleSpec::good("3.0.0", 3).variant(Variant::Unhealthy))?;
    let disk = assets.disk("demo", &v1)?;
    let server = Server::start();
    let mut urls = Vec::new();
    for bundle in [&v2, &broken] {
        let name = bundle.file_name().expect("a file name").to_string_lossy().into_owned();
        let bytes =
            std::fs::read(bundle).map_err(|source| qemu_tests::Error::ReadFile { path: bundle.clone(), source })?;
        server.put(&format!("/{name}"), bytes);
        urls.push(format!("http://{}/{name}", qemu_tests::HOST_SERVER_ADDR));
    }
    let port = server.port();
    println!();
    println!("A node in QEMU: disk {} made by `edge-image disk` with 1.0.0 in slot A;", disk.display());
    println!("bundles served by an HTTP server on 127.0.0.1:{port}, which the node reaches as http://10.0.2.100/.");
    println!();

    let line = Timeline { started: Instant::now() };
    let mut vm = assets.start("demo", &disk, Some(port))?;
    let result = story(&mut vm, &line, &server, &urls, [&v2, &broken]);
    let console = dir.join("console.log");
    let _ = std::fs::copy(vm.log_path(), &console);
    println!();
    println!("The node's console: {}", console.display());
    result
}

/// Offers the bundle at `url` to the node (`edge-update install`), reboots it and waits for the trial boot.
fn offer(
    vm: &mut Vm,
    line: &Timeline,
    server: &Server,
    url: &str,
    bundle: &Path,
    what: &str,
    target: char,
) -> qemu_tests::Result<()> {
    let size = std::fs::metadata(bundle).map(|m| m.len()).unwrap_or(0);
    line.event(vm, &format!("{what}: a {} bundle", mib(size)))?;
    let sent = server.bytes_sent();
    vm.sh_ok(&format!("edge-update install {url}"), INSTALL)?;
    let fetched = server.bytes_sent() - sent;
    line.event(vm, &format!("written to {target}, read back, flipped: {} fetched (delta)", mib(fetched)))?;
    vm.sh_detached("edge-init ctl reboot", CMD)?;
    line.note("reboot");
    let slot = next_boot(vm)?;
    line.note(&format!("GRUB boots slot {slot} on trial (one try taken)"));
    Ok(())
}

fn story(
    vm: &mut Vm,
    line: &Timeline,
    server: &Server,
    urls: &[String],
    bundles: [&PathBuf; 2],
) -> qemu_tests::Result<()> {
    line.header();
    line.note("QEMU started: OVMF, then GRUB reads the boot state");
    let slot = next_boot(vm)?;
    line.note(&format!("GRUB boots slot {slot}; edge-init is PID 1"));
    services_up(vm)?;
    vm.sh_ok("echo 'site config' >/data/site.conf && sync", CMD)?;
    let version = vm.sh_ok("cat /etc/edge/version", CMD)?;
    line.event(vm, &format!("services up, running {}; /data/site.conf written", version.trim()))?;

    // The good update, then the broken one.
    offer(vm, line, server, &urls[0], bundles[0], "update 2.0.0 offered", 'B')?;
    let committed = vm.expect("committed with", BOOT)?;
    services_up(vm)?;
    line.event(vm, message(&committed))?;
    offer(vm, line, server, &urls[1], bundles[1], "update 3.0.0 offered (its health check fails)", 'A')?;
    let failed = vm.expect("failed (try 2/2)", BOOT)?;
    line.note(message(&failed));
    let bad = vm.expect("marked bad", BOOT)?;
    line.note(&format!("{}; edge-update reboots", message(&bad)));
    let slot = next_boot(vm)?;
    line.note(&format!("GRUB boots slot {slot}: A has no tries and is not good"));
    let rolled = vm.expect("rolled back", BOOT)?;
    services_up(vm)?;
    line.event(vm, message(&rolled))?;
    let version = vm.sh_ok("cat /etc/edge/version", CMD)?;
    let site = vm.sh_ok("cat /data/site.conf", CMD)?;
    line.event(vm, &format!("running {} again; /data/site.conf: {:?}", version.trim(), site.trim()))?;
    println!();
    println!("{}", vm.sh_ok("edge-update status", CMD)?.trim_end());
    Ok(())
}

fn main() {
    let dir = PathBuf::from(std::env::var_os("DEMO_DIR").unwrap_or_else(|| "/var/tmp/edge-demo".into()));
    if let Err(err) = std::fs::create_dir_all(&dir) {
        eprintln!("demo: {}: {err}", dir.display());
        std::process::exit(1);
    }
    if let Err(err) = run(&dir) {
        eprintln!("demo: {}", report(&err));
        std::process::exit(1);
    }
}
