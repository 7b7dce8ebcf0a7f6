//! `/etc/edge/services.toml`: the services `edge-init` runs, loaded once at start and checked into types that
//! cannot hold bad values (docs/edge-init.md, "Services").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cmdline::PartSpec;

/// The services file's default path.
pub const DEFAULT_PATH: &str = "/etc/edge/services.toml";

/// When a service that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Whatever the way it ended.
    Always,
    /// When it exited non-zero or died of a signal.
    OnFailure,
    /// Never (a one-shot job, such as `edge-update boot`).
    Never,
}

/// When a started service counts as up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ready {
    /// As soon as it is started.
    Started,
    /// When it sends `READY=1` on `NOTIFY_SOCKET` (sd_notify), within `start_timeout_secs`.
    Notify,
    /// When it has exited 0 (a one-shot job that later services wait for).
    Exited,
}

/// Where a service's output goes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, untagged)]
pub enum Output {
    /// `"kmsg"`: the kernel log, each line prefixed with the service's name.
    Kmsg(KmsgOutput),
    /// `{ file = "...", max_bytes = N }`: a size-capped file (on the data partition), rotated once to `.1`.
    File {
        /// The file.
        file: PathBuf,
        /// Rotated when it would grow past this.
        max_bytes: u64,
    },
}

/// The only string form of [`Output`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KmsgOutput {
    /// The kernel log.
    Kmsg,
}

/// One service as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    argv: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default = "default_restart")]
    restart: Restart,
    #[serde(default = "default_backoff")]
    backoff_secs: u64,
    #[serde(default = "default_backoff_max")]
    backoff_max_secs: u64,
    #[serde(default = "default_crash_budget")]
    crash_budget: u32,
    #[serde(default = "default_crash_window")]
    crash_window_secs: u64,
    #[serde(default = "default_stop_signal")]
    stop_signal: String,
    #[serde(default = "default_grace")]
    grace_secs: u64,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default = "default_ready")]
    ready: Ready,
    #[serde(default = "default_start_timeout")]
    start_timeout_secs: u64,
    #[serde(default = "default_output")]
    output: Output,
    #[serde(default)]
    critical: bool,
}

fn default_restart() -> Restart {
    Restart::OnFailure
}
fn default_backoff() -> u64 {
    1
}
fn default_backoff_max() -> u64 {
    60
}
fn default_crash_budget() -> u32 {
    5
}
fn default_crash_window() -> u64 {
    300
}
fn default_stop_signal() -> String {
    "TERM".to_owned()
}
fn default_grace() -> u64 {
    10
}
fn default_ready() -> Ready {
    Ready::Started
}
fn default_start_timeout() -> u64 {
    60
}
fn default_output() -> Output {
    Output::Kmsg(KmsgOutput::Kmsg)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    modules: Vec<String>,
    #[serde(default)]
    watchdog: RawWatchdog,
    #[serde(default)]
    data: RawData,
    #[serde(default)]
    service: Vec<RawService>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawWatchdog {
    enabled: bool,
    device: Option<PathBuf>,
    identity: Option<String>,
    timeout_secs: u64,
}

impl Default for RawWatchdog {
    fn default() -> Self {
        RawWatchdog { enabled: true, device: None, identity: None, timeout_secs: 30 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawData {
    device: String,
    mount: PathBuf,
    fstype: String,
    options: String,
    format: Vec<String>,
    fsck: Vec<String>,
    wait_secs: u64,
}

impl Default for RawData {
    fn default() -> Self {
        RawData {
            device: "PARTLABEL=edge-data".to_owned(),
            mount: PathBuf::from("/data"),
            fstype: "ext4".to_owned(),
            options: "noatime".to_owned(),
            format: ["/sbin/mkfs.ext4", "-q", "-L", "edge-data"].map(str::to_owned).to_vec(),
            fsck: ["/sbin/e2fsck", "-p"].map(str::to_owned).to_vec(),
            wait_secs: 10,
        }
    }
}

/// Everything in `/etc/edge/services.toml`: the node-level tables and the services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `hostname`: set at boot (else `/etc/hostname`, else `edge`).
    pub hostname: Option<String>,
    /// `modules`: kernel modules to load at boot, each `"name param=value ..."` as in `/etc/modules`.
    pub modules: Vec<Module>,
    /// `[watchdog]`.
    pub watchdog: WatchdogConfig,
    /// `[data]`.
    pub data: DataConfig,
    /// `[[service]]`, in start order.
    pub services: Vec<Service>,
}

/// One kernel module to load, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its name (`-` and `_` are the same to the kernel).
    pub name: String,
    /// Its parameters, `key=value` words as `finit_module` takes them.
    pub params: String,
}

/// `[watchdog]`: the hardware watchdog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// `enabled` (default true; `edge.watchdog=0` on the kernel command line also turns it off).
    pub enabled: bool,
    /// `device`: this device node (else the first whose sysfs `identity` matches, else `/dev/watchdog0`).
    pub device: Option<PathBuf>,
    /// `identity`: the watchdog whose `/sys/class/watchdog/*/identity` is this.
    pub identity: Option<String>,
    /// `timeout_secs` (default 30): asked of the hardware; it is petted at a third of what it really uses.
    pub timeout: Duration,
}

/// `[data]`: the data partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataConfig {
    /// `device` (default `PARTLABEL=edge-data`; `edge.data=` on the kernel command line wins).
    pub device: PartSpec,
    /// `mount` (default `/data`).
    pub mount: PathBuf,
    /// `fstype` (default `ext4`).
    pub fstype: String,
    /// `options` (default `noatime`): mount options, comma-separated.
    pub options: String,
    /// `format`: the program and arguments that make a filesystem on a blank partition (the device is added
    /// last); empty: never format.
    pub format: Vec<String>,
    /// `fsck`: the program and arguments run once when the mount fails (the device is added last); empty: none.
    pub fsck: Vec<String>,
    /// `wait_secs` (default 10): how long to wait for the device to appear.
    pub wait: Duration,
}

/// One service, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its name (letters, digits, `-`, `_`, `.`), the prefix of its log lines and its cgroup's name.
    pub name: String,
    /// The program and its arguments (no shell).
    pub argv: Vec<String>,
    /// Environment variables, on top of a minimal one.
    pub env: BTreeMap<String, String>,
    /// Working directory (default `/`).
    pub cwd: PathBuf,
    /// User to run as (a name from /etc/passwd or a number); root when unset.
    pub user: Option<String>,
    /// Group to run as; the user's group when unset.
    pub group: Option<String>,
    /// Restart policy.
    pub restart: Restart,
    /// First restart delay; it doubles with every crash in a row.
    pub backoff: Duration,
    /// The largest restart delay.
    pub backoff_max: Duration,
    /// More crashes than this within `crash_window` and the service is given up (`failed`).
    pub crash_budget: u32,
    /// The window of the crash budget.
    pub crash_window: Duration,
    /// The signal that asks it to stop.
    pub stop_signal: i32,
    /// How long it has after the stop signal before its whole cgroup is killed.
    pub grace: Duration,
    /// Services that must be up before it starts.
    pub after: Vec<String>,
    /// When it counts as up.
    pub ready: Ready,
    /// How long it may take to be up.
    pub start_timeout: Duration,
    /// Where its output goes.
    pub output: Output,
    /// The watchdog is petted only while every critical service is alive.
    pub critical: bool,
}

/// What is wrong with a services file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, naming the service and the key.
    pub detail: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "services file {}: {}", self.path.display(), self.detail)
    }
}

impl std::error::Error for Error {}

/// The signal numbers of the names a stop signal may have.
pub fn signal_number(name: &str) -> Option<i32> {
    use signal_hook::consts::signal::*;
    Some(match name.trim_start_matches("SIG") {
        "TERM" => SIGTERM,
        "INT" => SIGINT,
        "HUP" => SIGHUP,
        "QUIT" => SIGQUIT,
        "USR1" => SIGUSR1,
        "USR2" => SIGUSR2,
        "KILL" => SIGKILL,
        _ => return None,
    })
}

/// Parses and checks the file's text; the services come in an order where every service comes after those it is
/// `after`.
pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
    let bad = |detail: String| Error { path: path.to_owned(), detail };
    // The parser's own text names the line and shows it; one line of it is enough in a log.
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let shown: Vec<String> =
            e.to_string().lines().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty() && l != "|").collect();
        bad(shown.join(" "))
    })?;
    let mut out = Vec::new();
    for r in raw.service {
        let name = r.name.clone();
        let ok_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok_name {
            return Err(bad(format!("service name {name:?}: letters, digits, '-', '_' and '.' only")));
        }
        if out.iter().any(|s: &Service| s.name == name) {
            return Err(bad(format!("service {name} is defined twice")));
        }
        if r.argv.is_empty() || r.argv[0].is_empty() {
            return Err(bad(format!("service {name}: argv is empty")));
        }
        let stop_signal = signal_number(&r.stop_signal).ok_or_else(|| {
            bad(format!(
                "service {name}: stop_signal {:?} is not TERM, INT, HUP, QUIT, USR1, USR2 or KILL",
                r.stop_signal
            ))
        })?;
        if r.backoff_secs == 0 || r.backoff_max_secs < r.backoff_secs {
            return Err(bad(format!("service {name}: backoff_secs must be 1 or more and at most backoff_max_secs")));
        }
        if let Output::File { max_bytes, .. } = &r.output {
            if *max_bytes < 4096 {
                return Err(bad(format!("service {name}: output max_bytes {max_bytes} below 4096")));
            }
        }
        out.push(Service {
            name,
            argv: r.argv,
            env: r.env,
            cwd: r.cwd.unwrap_or_else(|| PathBuf::from("/")),
            user: r.user,
            group: r.group,
            restart: r.restart,
            backoff: Duration::from_secs(r.backoff_secs),
            backoff_max: Duration::from_secs(r.backoff_max_secs),
            crash_budget: r.crash_budget,
            crash_window: Duration::from_secs(r.crash_window_secs),
            stop_signal,
            grace: Duration::from_secs(r.grace_secs),
            after: r.after,
            ready: r.ready,
            start_timeout: Duration::from_secs(r.start_timeout_secs),
            output: r.output,
            critical: r.critical,
        });
    }
    let services = order(out).map_err(bad)?;
    let mut modules = Vec::new();
    for m in &raw.modules {
        let (name, params) = m.trim().split_once(' ').unwrap_or((m.trim(), ""));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
            return Err(bad(format!("modules: {m:?} does not start with a module name")));
        }
        modules.push(Module { name: name.to_owned(), params: params.trim().to_owned() });
    }
    let w = raw.watchdog;
    if !(1..=3600).contains(&w.timeout_secs) {
        return Err(bad(format!("watchdog.timeout_secs {} is not within 1..3600", w.timeout_secs)));
    }
    let watchdog = WatchdogConfig {
        enabled: w.enabled,
        device: w.device,
        identity: w.identity,
        timeout: Duration::from_secs(w.timeout_secs),
    };
    let d = raw.data;
    let device = PartSpec::parse(&d.device)
        .ok_or_else(|| bad(format!("data.device {:?} is not PARTLABEL=, PARTUUID= or a /dev path", d.device)))?;
    if !d.mount.is_absolute() {
        return Err(bad(format!("data.mount {} is not an absolute path", d.mount.display())));
    }
    let data = DataConfig {
        device,
        mount: d.mount,
        fstype: d.fstype,
        options: d.options,
        format: d.format,
        fsck: d.fsck,
        wait: Duration::from_secs(d.wait_secs),
    };
    Ok(Config { hostname: raw.hostname, modules, watchdog, data, services })
}

/// Sorts services so that each comes after those it is `after` (stable otherwise); an unknown name or a cycle is
/// an error.
fn order(services: Vec<Service>) -> Result<Vec<Service>, String> {
    for s in &services {
        for a in &s.after {
            if !services.iter().any(|o| &o.name == a) {
                return Err(format!("service {}: after {a:?}, which is not defined", s.name));
            }
        }
    }
    let mut left = services;
    let mut out: Vec<Service> = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let Some(i) = left.iter().position(|s| s.after.iter().all(|a| out.iter().any(|o| &o.name == a))) else {
            let names: Vec<&str> = left.iter().map(|s| s.name.as_str()).collect();
            return Err(format!("services {} wait for each other (a cycle in after)", names.join(", ")));
        };
        out.push(left.remove(i));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Vec<Service>, String> {
        parse(text, Path::new("services.toml")).map(|c| c.services).map_err(|e| e.detail)
    }

    #[test]
    fn a_full_service_and_the_defaults() {
        let s = check(
            r#"
            [[service]]
            name = "app"
            argv = ["/usr/bin/k3s", "server"]
            env = { K3S_TOKEN = "x" }
            cwd = "/var/lib/app"
            user = "app"
            restart = "always"
            stop_signal = "SIGINT"
            grace_secs = 30
            after = ["update-boot"]
            ready = "notify"
            output = { file = "/data/log/app.log", max_bytes = 1048576 }
            critical = true

            [[service]]
            name = "update-boot"
            argv = ["/usr/bin/edge-update", "boot"]
            restart = "never"
            ready = "exited"
            "#,
        )
        .expect("valid");
        assert_eq!(s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["update-boot", "app"]);
        let app = &s[1];
        assert_eq!((app.restart, app.stop_signal, app.grace), (Restart::Always, 2, Duration::from_secs(30)));
        assert_eq!(app.output, Output::File { file: "/data/log/app.log".into(), max_bytes: 1 << 20 });
        let boot = &s[0];
        assert_eq!((boot.cwd.as_path(), boot.output.clone()), (Path::new("/"), Output::Kmsg(KmsgOutput::Kmsg)));
        assert_eq!(
            (boot.crash_budget, boot.backoff, boot.backoff_max),
            (5, Duration::from_secs(1), Duration::from_secs(60))
        );
    }

    #[test]
    fn bad_files_name_what_is_wrong() {
        let bad = |text: &str, needle: &str| {
            let e = check(text).expect_err(text);
            assert!(e.contains(needle), "{text}: {e}");
        };
        let one = |extra: &str| format!("[[service]]\nname = \"a\"\nargv = [\"/bin/a\"]\n{extra}");
        bad(&one("restart = \"sometimes\""), "restart");
        bad(&one("stop_signal = \"SEGV\""), "stop_signal");
        bad(&one("after = [\"b\"]"), "not defined");
        bad(&one("surprise = 1"), "surprise");
        bad(&one("backoff_secs = 0"), "backoff_secs");
        bad(&one("output = { file = \"/x\", max_bytes = 10 }"), "max_bytes");
        bad("[[service]]\nname = \"a b\"\nargv = [\"/bin/a\"]", "letters");
        bad("[[service]]\nname = \"a\"\nargv = []", "argv is empty");
        bad(&format!("{}\n{}", one(""), one("")), "defined twice");
        bad(
            "[[service]]\nname = \"a\"\nargv = [\"/a\"]\nafter = [\"b\"]\n[[service]]\nname = \"b\"\nargv = [\"/b\"]\nafter = [\"a\"]",
            "cycle",
        );
        assert_eq!(check("").expect("no services is valid"), Vec::new());
    }
}
