//! The end-to-end demo (`bash scripts/demo.sh`), driven through the fleet endpoint: `edge-cloud` (its router over a
//! SQLite store, on the host's 127.0.0.1) and a node in QEMU (OVMF, GRUB, a Debian kernel, `edge-init` as PID 1,
//! `edge-update` and `edge-agent` as its services) whose disk carries the site's enrollment token. The node
//! enrolls and waits in the pending pool; the operator accepts it and gives its group 2.0.0, which the agent
//! installs and the health checks commit on slot B; then a broken 3.0.0, which fails its health check on slot A and
//! is rolled back by the bootloader's fallback to B.
//!
//! It prints a timeline: the time since QEMU started, the event, both slots as `edge-bootctl status` sees them
//! whenever the node can be asked, and what the endpoint shows of the node. The node's console is copied to
//! `DEMO_DIR/console.log`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edge_cloud::harness::{Database, Endpoint};
use fleet_wire::admin::{NodeDetail, NodeList};
use qemu_tests::node::{self, Assets, BundleSpec, Variant};
use qemu_tests::{report, Vm};

const BOOT: Duration = Duration::from_secs(300);
const CMD: Duration = Duration::from_secs(60);
const AGENT: Duration = Duration::from_secs(600);

/// The timeline, printed as it happens.
struct Timeline<'a> {
    started: Instant,
    endpoint: &'a Endpoint,
    node: Option<String>,
}

impl Timeline<'_> {
    fn header(&self) {
        println!("{:>7}  {:<56}  {:<30}  {:<30}  endpoint sees", "time", "event", "slot A", "slot B");
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

    /// Prints `event` while the node cannot be asked (it is booting, or about to reboot).
    fn note(&self, event: &str) {
        self.line(event, "", "");
    }

    fn line(&self, event: &str, a: &str, b: &str) {
        let t = self.started.elapsed().as_secs_f64();
        println!("{t:>6.1}s  {event:<56}  {a:<30}  {b:<30}  {}", self.seen());
    }

    /// The node as the endpoint shows it: standing, version, phase and last report.
    fn seen(&self) -> String {
        let Some(id) = &self.node else { return "no node yet".to_owned() };
        let (status, body) = self.endpoint.admin("GET", &format!("/v1/admin/nodes/{id}"), None);
        let Ok(d) = serde_json::from_slice::<NodeDetail>(&body) else { return format!("(HTTP {status})") };
        let n = d.node;
        let or = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        format!("{} {} {} (last: {})", n.status, or(n.booted_version), or(n.phase), or(n.last_report))
    }
}

/// Polls `what` once a second until it gives a value, for at most `limit`.
fn wait_for<T>(limit: Duration, doing: &str, mut what: impl FnMut() -> Option<T>) -> qemu_tests::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = what() {
            return Ok(v);
        }
        if start.elapsed() > limit {
            let waiting_for = format!("the endpoint: {doing}");
            return Err(qemu_tests::Error::ConsoleTimeout {
                waiting_for,
                timeout: limit,
                ended: false,
                console_tail: String::new(),
            });
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// What `edge-update` (or the updater inside `edge-agent`) said on a console line, without the line's prefixes and
/// the log level.
fn message(line: &str) -> &str {
    let said =
        ["edge-update: ", "edge-agent: "].iter().find_map(|p| line.split_once(p).map(|(_, m)| m)).unwrap_or(line);
    said.split_once(": ").filter(|(level, _)| ["info", "warn", "error"].contains(level)).map_or(said, |(_, m)| m)
}

fn read(path: &Path) -> qemu_tests::Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| qemu_tests::Error::ReadFile { path: path.to_owned(), source })
}

fn run(dir: &Path) -> qemu_tests::Result<()> {
    eprintln!("demo: building the test node (kernel, initramfs, slot images, GRUB; cached after the first run)");
    let assets = Assets::get()?;
    let v1 = assets.bundle(&BundleSpec::good("1.0.0", 1))?;
    let v2 = assets.bundle(&BundleSpec::good("2.0.0", 2))?;
    let broken = assets.bundle(&BundleSpec::good("3.0.0", 3).variant(Variant::Unhealthy))?;
    let tls = assets.fleet_tls();
    let mut endpoint = Endpoint::new(Database::Sqlite, &assets.keyring(), Some("https://10.0.2.100")).with_tls(
        &tls.server_cert,
        &tls.server_key,
        &tls.ca_cert,
    );
    endpoint.start(2);
    let seed = assets.dir().join("disks/demo-seed");
    let _ = std::fs::remove_dir_all(&seed);
    std::fs::create_dir_all(seed.join("edge-agent"))
        .map_err(|source| qemu_tests::Error::WriteFile { path: seed.clone(), source })?;
    let token = endpoint.enrollment_token("pending");
    let token_file = seed.join("edge-agent/fleet-token");
    std::fs::write(&token_file, format!("{token}\n"))
        .map_err(|source| qemu_tests::Error::WriteFile { path: token_file, source })?;
    let disk = assets.disk_seeded("demo", &v1, Some(&seed))?;
    println!();
    println!(
        "The fleet endpoint: edge-cloud on {} (SQLite, TLS), which the node reaches as https://10.0.2.100/",
        endpoint.url()
    );
    println!("and verifies against the fleet's CA baked into its image.");
    println!("A node in QEMU: disk {} made by `edge-image disk` with 1.0.0 in slot A", disk.display());
    println!("and the site's enrollment token on its data partition.");
    println!();

    let mut line = Timeline { started: Instant::now(), endpoint: &endpoint, node: None };
    let mut vm = assets.start("demo", &disk, Some(endpoint.port()))?;
    let result = story(&mut vm, &mut line, &endpoint, [&v2, &broken]);
    let console = dir.join("console.log");
    let _ = std::fs::copy(vm.log_path(), &console);
    println!();
    println!("The node's console: {}", console.display());
    result
}

/// Gives the node's group `bundle` (uploaded to the endpoint's store) and waits for the agent to install it and
/// `edge-init` to reboot into the trial.
fn give(vm: &mut Vm, line: &Timeline<'_>, endpoint: &Endpoint, bundle: &Path, what: &str) -> qemu_tests::Result<()> {
    let hash = endpoint.upload(&read(bundle)?);
    let _: serde_json::Value =
        endpoint.admin_ok("PUT", "/v1/admin/groups/harbour", Some(serde_json::json!({"bundle": hash})));
    line.event(vm, &format!("operator: group harbour gets {what}"))?;
    let flipped = vm.expect("is active on trial", AGENT)?;
    // Not asked through the shell: edge-init reboots the node as soon as the agent asks, and a reboot in the middle
    // of the shell's command would leave it unfinished.
    line.note(&format!("agent: fetched from the endpoint, {}", message(&flipped)));
    let slot = node::next_boot(vm, BOOT)?;
    line.note(&format!("edge-init reboots; GRUB boots slot {slot} on trial"));
    Ok(())
}

fn story(vm: &mut Vm, line: &mut Timeline<'_>, endpoint: &Endpoint, bundles: [&PathBuf; 2]) -> qemu_tests::Result<()> {
    line.header();
    line.note("QEMU started: OVMF, then GRUB reads the boot state");
    let slot = node::next_boot(vm, BOOT)?;
    line.note(&format!("GRUB boots slot {slot}; edge-init is PID 1"));
    node::services_up(vm, BOOT)?;
    vm.sh_ok("echo 'site config' >/data/site.conf && sync", CMD)?;
    line.event(vm, "services up, running 1.0.0; /data/site.conf written")?;
    let id = wait_for(AGENT, "the node enrolls", || {
        let (_, body) = endpoint.admin("GET", "/v1/admin/nodes?status=pending", None);
        let list: NodeList = serde_json::from_slice(&body).ok()?;
        list.nodes.first().map(|n| n.id.to_string())
    })?;
    line.node = Some(id.clone());
    line.event(vm, &format!("agent: enrolled as {id}, pending"))?;
    let _: serde_json::Value = endpoint.admin_ok("POST", &format!("/v1/admin/nodes/{id}/accept"), None);
    let _: serde_json::Value =
        endpoint.admin_ok("PUT", &format!("/v1/admin/nodes/{id}/group"), Some(serde_json::json!({"group": "harbour"})));
    line.event(vm, "operator: node accepted into group harbour")?;

    give(vm, line, endpoint, bundles[0], "2.0.0")?;
    let committed = vm.expect("committed with", BOOT)?;
    node::services_up(vm, BOOT)?;
    wait_for(AGENT, "the endpoint sees 2.0.0", || line.seen().contains("2.0.0 committed").then_some(()))?;
    line.event(vm, message(&committed))?;

    give(vm, line, endpoint, bundles[1], "3.0.0 (its health check fails)")?;
    let failed = vm.expect("failed (try 2/2)", BOOT)?;
    line.note(message(&failed));
    let bad = vm.expect("marked bad", BOOT)?;
    line.note(&format!("{}; edge-update reboots", message(&bad)));
    let slot = node::next_boot(vm, BOOT)?;
    line.note(&format!("GRUB boots slot {slot}: A has no tries and is not good"));
    let rolled = vm.expect("rolled back", BOOT)?;
    node::services_up(vm, BOOT)?;
    wait_for(AGENT, "the endpoint sees the rollback", || line.seen().contains("rolled-back").then_some(()))?;
    line.event(vm, message(&rolled))?;
    let version = vm.sh_ok("cat /etc/edge/version", CMD)?;
    let site = vm.sh_ok("cat /data/site.conf", CMD)?;
    line.event(vm, &format!("running {} again; /data/site.conf: {:?}", version.trim(), site.trim()))?;
    println!();
    println!("{}", vm.sh_ok("edge-update status", CMD)?.trim_end());
    println!();
    println!("The endpoint's history of the node, oldest first:");
    for r in endpoint.reports(&id) {
        println!("  #{:<3} {:<14} {:<8} {}", r.seq, r.kind.to_string(), r.version.unwrap_or_default(), r.message);
    }
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
