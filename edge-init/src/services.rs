//! `/etc/edge/services.toml`: the services `edge-init` runs, loaded once at start and checked into types that
//! cannot hold bad values (docs/edge-init.md, "Services").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cmdline::PartSpec;

/// The services file's default path.
pub const DEFAULT_PATH: &str = crate::paths::SERVICES;

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
    /// Its name (see [`check_name`]), the prefix of its log lines and its cgroup's name.
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

/// What is wrong with a services file: where (the file, the service, the key) and what.
#[derive(Debug)]
pub struct Error {
    /// The file.
    pub path: PathBuf,
    /// The service it concerns, when it concerns one (by its name, so never for a bad name).
    pub service: Option<String>,
    /// The key it concerns (`backoff_secs`, `watchdog.timeout_secs`), when it concerns one.
    pub key: Option<&'static str>,
    /// What is wrong.
    pub problem: Problem,
}

/// What is wrong in a services file, one variant per check.
#[derive(Debug)]
pub enum Problem {
    /// The file cannot be read.
    Read(std::io::Error),
    /// The path is not a regular file (a FIFO would block boot, a device never end).
    NotAFile,
    /// The file is larger than any services file ([`MAX_FILE_BYTES`]).
    TooLarge {
        /// Its size, or how much was read before giving up.
        size_bytes: u64,
    },
    /// Not TOML, a value of the wrong type, or an unknown key: the parser's own words, which name the line.
    Syntax(String),
    /// A service name that is not an identifier (see [`check_name`]).
    Name(String),
    /// A second service with the same name.
    Duplicate,
    /// A list that must not be empty is (argv).
    Empty,
    /// A string holding a NUL byte, which no system call can pass on.
    Nul,
    /// An environment variable name that is empty or holds `=` or NUL.
    EnvName(String),
    /// A stop signal that is not one of the names [`signal_number`] knows.
    Signal(String),
    /// A number outside its range.
    OutOfRange {
        /// The value given.
        value: u64,
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
    },
    /// `after` names a service that is not defined.
    UnknownAfter(String),
    /// These services wait for each other.
    Cycle(Vec<String>),
    /// A `modules` entry that does not start with a module name.
    Module(String),
    /// A `data.device` that is no partition spec.
    Device(String),
    /// A path that must be absolute is not.
    NotAbsolute(PathBuf),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "services file {}", self.path.display())?;
        if let Some(s) = &self.service {
            write!(f, ", service {s}")?;
        }
        if let Some(k) = self.key {
            write!(f, ", {k}")?;
        }
        write!(f, ": ")?;
        match &self.problem {
            // The I/O error is the source, which the cause chain prints after this.
            Problem::Read(_) => write!(f, "cannot read it"),
            Problem::NotAFile => write!(f, "not a regular file"),
            Problem::TooLarge { size_bytes } => {
                write!(f, "{size_bytes} bytes, larger than a services file may be ({MAX_FILE_BYTES})")
            }
            Problem::Syntax(words) => write!(f, "{words}"),
            Problem::Name(name) => write!(f, "{name:?} is not a service name: {NAME_RULE}"),
            Problem::Duplicate => write!(f, "defined twice"),
            Problem::Empty => write!(f, "is empty"),
            Problem::Nul => write!(f, "holds a NUL byte"),
            Problem::EnvName(k) => write!(f, "{k:?} is not a variable name: not empty, without '=' or NUL"),
            Problem::Signal(s) => write!(f, "{s:?} is not TERM, INT, HUP, QUIT, USR1, USR2 or KILL"),
            Problem::OutOfRange { value, min, max: u64::MAX } => write!(f, "{value} is below {min}"),
            Problem::OutOfRange { value, min, max } => write!(f, "{value} is not within {min} to {max}"),
            Problem::UnknownAfter(a) => write!(f, "{a:?} is not defined"),
            Problem::Cycle(names) => write!(f, "services {} wait for each other (a cycle in after)", names.join(", ")),
            Problem::Module(m) => write!(f, "{m:?} does not start with a module name"),
            Problem::Device(d) => write!(f, "{d:?} is not PARTLABEL=, PARTUUID= or a /dev path"),
            Problem::NotAbsolute(p) => write!(f, "{} is not an absolute path", p.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            Problem::Read(e) => Some(e),
            _ => None,
        }
    }
}

/// What a service name may be, in words.
pub const NAME_RULE: &str = "a letter or digit, then up to 63 letters, digits, '-', '_', '.' or '@'";

/// Whether `name` is a service name: an identifier that is safe as one component of a path (its cgroup), so never
/// `.` or `..`, never a `/`, NUL or space, never starting with `-` or `.`, and at most 64 bytes.
pub fn check_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

/// A day, the longest any delay or window may be.
const DAY: u64 = 24 * 60 * 60;
/// An hour, the longest a grace period or a wait at boot may be.
const HOUR: u64 = 60 * 60;

/// The range of each duration key, in seconds: a value past these is a typo or an attack (`i64::MAX` seconds would
/// overflow the deadlines computed from it), never a setting. docs/edge-init.md's key tables give the same.
pub const DURATION_LIMITS: [(&str, u64, u64); 7] = [
    ("backoff_secs", 1, DAY),
    ("backoff_max_secs", 1, DAY),
    ("crash_window_secs", 0, DAY),
    ("grace_secs", 0, HOUR),
    ("start_timeout_secs", 1, DAY),
    ("watchdog.timeout_secs", 1, HOUR),
    ("data.wait_secs", 0, HOUR),
];

/// `value` seconds as a duration, when within the range [`DURATION_LIMITS`] gives `key`.
fn seconds(key: &'static str, value: u64) -> Result<Duration, Problem> {
    let (_, min, max) = DURATION_LIMITS.iter().find(|(k, ..)| *k == key).expect("every duration key has limits");
    if (*min..=*max).contains(&value) {
        Ok(Duration::from_secs(value))
    } else {
        Err(Problem::OutOfRange { value, min: *min, max: *max })
    }
}

/// The largest services file read: far more than any node's services, and bounded so a file that is not one cannot
/// fill PID 1's memory.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Reads and checks the services file at `path`, as boot does and as `edge-init check` does. The path must be a
/// regular file (checked before it is opened, so a FIFO cannot block, and again once open) of at most
/// [`MAX_FILE_BYTES`].
pub fn load(path: &Path) -> Result<Config, Error> {
    use std::io::Read;
    let fail = |problem| Error { path: path.to_owned(), service: None, key: None, problem };
    let is_file = |m: std::io::Result<std::fs::Metadata>| m.map(|m| (m.is_file(), m.len())).map_err(Problem::Read);
    if !is_file(std::fs::metadata(path)).map_err(fail)?.0 {
        return Err(fail(Problem::NotAFile));
    }
    let file = std::fs::File::open(path).map_err(|e| fail(Problem::Read(e)))?;
    let (regular, len) = is_file(file.metadata()).map_err(fail)?;
    if !regular {
        return Err(fail(Problem::NotAFile));
    }
    if len > MAX_FILE_BYTES {
        return Err(fail(Problem::TooLarge { size_bytes: len }));
    }
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(|e| fail(Problem::Read(e)))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(fail(Problem::TooLarge { size_bytes: text.len() as u64 }));
    }
    parse(&text, path)
}

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
    let at = |service: Option<&str>, key: Option<&'static str>| {
        let path = path.to_owned();
        let service = service.map(str::to_owned);
        move |problem: Problem| Error { path, service, key, problem }
    };
    // The parser's own text names the line and shows it; one line of it is enough in a log.
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let shown: Vec<String> =
            e.to_string().lines().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty() && l != "|").collect();
        at(None, None)(Problem::Syntax(shown.join(" ")))
    })?;
    let mut out = Vec::new();
    for r in raw.service {
        let name = r.name.clone();
        if !check_name(&name) {
            return Err(at(None, Some("name"))(Problem::Name(name)));
        }
        let bad = |key: &'static str| at(Some(&name), Some(key));
        if out.iter().any(|s: &Service| s.name == name) {
            return Err(bad("name")(Problem::Duplicate));
        }
        if r.argv.is_empty() || r.argv[0].is_empty() {
            return Err(bad("argv")(Problem::Empty));
        }
        if r.argv.iter().any(|a| a.contains('\0')) {
            return Err(bad("argv")(Problem::Nul));
        }
        for (k, v) in &r.env {
            if k.is_empty() || k.contains(['=', '\0']) {
                return Err(bad("env")(Problem::EnvName(k.clone())));
            }
            if v.contains('\0') {
                return Err(bad("env")(Problem::Nul));
            }
        }
        let stop_signal =
            signal_number(&r.stop_signal).ok_or_else(|| bad("stop_signal")(Problem::Signal(r.stop_signal.clone())))?;
        let backoff = seconds("backoff_secs", r.backoff_secs).map_err(bad("backoff_secs"))?;
        let backoff_max = seconds("backoff_max_secs", r.backoff_max_secs).map_err(bad("backoff_max_secs"))?;
        if backoff_max < backoff {
            let (value, min, max) = (r.backoff_max_secs, r.backoff_secs, DAY);
            return Err(bad("backoff_max_secs")(Problem::OutOfRange { value, min, max }));
        }
        if let Output::File { max_bytes, .. } = &r.output {
            if *max_bytes < 4096 {
                return Err(bad("output.max_bytes")(Problem::OutOfRange {
                    value: *max_bytes,
                    min: 4096,
                    max: u64::MAX,
                }));
            }
        }
        out.push(Service {
            argv: r.argv,
            env: r.env,
            cwd: r.cwd.unwrap_or_else(|| PathBuf::from("/")),
            user: r.user,
            group: r.group,
            restart: r.restart,
            backoff,
            backoff_max,
            crash_budget: r.crash_budget,
            crash_window: seconds("crash_window_secs", r.crash_window_secs).map_err(bad("crash_window_secs"))?,
            stop_signal,
            grace: seconds("grace_secs", r.grace_secs).map_err(bad("grace_secs"))?,
            after: r.after,
            ready: r.ready,
            start_timeout: seconds("start_timeout_secs", r.start_timeout_secs).map_err(bad("start_timeout_secs"))?,
            output: r.output,
            critical: r.critical,
            name,
        });
    }
    let services = order(out).map_err(|(service, problem)| at(service.as_deref(), Some("after"))(problem))?;
    let mut modules = Vec::new();
    for m in &raw.modules {
        let (name, params) = m.trim().split_once(' ').unwrap_or((m.trim(), ""));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
            return Err(at(None, Some("modules"))(Problem::Module(m.clone())));
        }
        modules.push(Module { name: name.to_owned(), params: params.trim().to_owned() });
    }
    let w = raw.watchdog;
    let watchdog = WatchdogConfig {
        enabled: w.enabled,
        device: w.device,
        identity: w.identity,
        timeout: seconds("watchdog.timeout_secs", w.timeout_secs).map_err(at(None, Some("watchdog.timeout_secs")))?,
    };
    let d = raw.data;
    let device =
        PartSpec::parse(&d.device).ok_or_else(|| at(None, Some("data.device"))(Problem::Device(d.device.clone())))?;
    if !d.mount.is_absolute() {
        return Err(at(None, Some("data.mount"))(Problem::NotAbsolute(d.mount)));
    }
    let data = DataConfig {
        device,
        mount: d.mount,
        fstype: d.fstype,
        options: d.options,
        format: d.format,
        fsck: d.fsck,
        wait: seconds("data.wait_secs", d.wait_secs).map_err(at(None, Some("data.wait_secs")))?,
    };
    Ok(Config { hostname: raw.hostname, modules, watchdog, data, services })
}

/// Sorts services so that each comes after those it is `after` (stable otherwise); an unknown name (with the
/// service that names it) or a cycle is an error.
fn order(services: Vec<Service>) -> Result<Vec<Service>, (Option<String>, Problem)> {
    for s in &services {
        for a in &s.after {
            if !services.iter().any(|o| &o.name == a) {
                return Err((Some(s.name.clone()), Problem::UnknownAfter(a.clone())));
            }
        }
    }
    let mut left = services;
    let mut out: Vec<Service> = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let Some(i) = left.iter().position(|s| s.after.iter().all(|a| out.iter().any(|o| &o.name == a))) else {
            return Err((None, Problem::Cycle(left.iter().map(|s| s.name.clone()).collect())));
        };
        out.push(left.remove(i));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Vec<Service>, Error> {
        parse(text, Path::new("services.toml")).map(|c| c.services)
    }

    /// A file with one service `a` and `extra` lines in it.
    fn one(extra: &str) -> String {
        format!("[[service]]\nname = \"a\"\nargv = [\"/bin/a\"]\n{extra}")
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
        // Each bad file gives the service and key it concerns, and one problem.
        let bad = |text: &str, service: Option<&str>, key: Option<&str>, problem: fn(&Problem) -> bool| {
            let e = check(text).expect_err(text);
            assert_eq!((e.service.as_deref(), e.key), (service, key), "{text}: {e}");
            assert!(problem(&e.problem), "{text}: {e}");
        };
        let a = Some("a");
        bad(&one("restart = \"sometimes\""), None, None, |p| matches!(p, Problem::Syntax(w) if w.contains("restart")));
        bad(&one("surprise = 1"), None, None, |p| matches!(p, Problem::Syntax(w) if w.contains("surprise")));
        bad(&one("stop_signal = \"SEGV\""), a, Some("stop_signal"), |p| matches!(p, Problem::Signal(_)));
        bad(&one("after = [\"b\"]"), a, Some("after"), |p| matches!(p, Problem::UnknownAfter(b) if b == "b"));
        bad(&one("backoff_secs = 0"), a, Some("backoff_secs"), |p| matches!(p, Problem::OutOfRange { value: 0, .. }));
        bad(&one("backoff_secs = 9\nbackoff_max_secs = 8"), a, Some("backoff_max_secs"), |p| {
            matches!(p, Problem::OutOfRange { value: 8, min: 9, .. })
        });
        bad(&one("output = { file = \"/x\", max_bytes = 10 }"), a, Some("output.max_bytes"), |p| {
            matches!(p, Problem::OutOfRange { value: 10, min: 4096, .. })
        });
        bad("[[service]]\nname = \"a b\"\nargv = [\"/bin/a\"]", None, Some("name"), |p| matches!(p, Problem::Name(_)));
        bad("[[service]]\nname = \"a\"\nargv = []", a, Some("argv"), |p| matches!(p, Problem::Empty));
        bad(&format!("{}\n{}", one(""), one("")), a, Some("name"), |p| matches!(p, Problem::Duplicate));
        bad(
            "[[service]]\nname = \"a\"\nargv = [\"/a\"]\nafter = [\"b\"]\n[[service]]\nname = \"b\"\nargv = [\"/b\"]\nafter = [\"a\"]",
            None,
            Some("after"),
            |p| matches!(p, Problem::Cycle(names) if names == &["a", "b"]),
        );
        bad("modules = [\"../x\"]", None, Some("modules"), |p| matches!(p, Problem::Module(_)));
        bad("[data]\ndevice = \"sda\"", None, Some("data.device"), |p| matches!(p, Problem::Device(_)));
        bad("[data]\nmount = \"data\"", None, Some("data.mount"), |p| matches!(p, Problem::NotAbsolute(_)));
        assert!(check("").expect("no services is valid").is_empty());
    }

    #[test]
    fn issue_14_service_names_are_identifiers() {
        // A name becomes a path component (the service's cgroup): `..` was edge-init's own cgroup, `.` the
        // services' cgroup, and each was killed whole when the service ended.
        let check_one = |name: &str, valid: bool| {
            let quoted = format!("{name:?}").replace("\\0", "\\u0000");
            let text = format!("[[service]]\nname = {quoted}\nargv = [\"/bin/true\"]\n");
            match check(&text) {
                Ok(_) => assert!(valid, "{name:?} accepted"),
                Err(e) => {
                    assert!(!valid, "{name:?} refused: {e}");
                    assert!(matches!(&e.problem, Problem::Name(n) if n == name), "{name:?}: {e}");
                    assert_eq!(e.key, Some("name"));
                }
            }
            assert_eq!(check_name(name), valid, "{name:?}");
        };
        for name in ["app", "k3s", "update-boot", "a", "9", "db_1", "web.v2", "getty@tty1", &"x".repeat(64)] {
            check_one(name, true);
        }
        let long = "x".repeat(65);
        for name in ["", ".", "..", "...", ".hidden", "-a", "_a", "@a", "a/b", "../x", "a b", "a\0b", "é", &long] {
            check_one(name, false);
        }
    }

    #[test]
    fn issue_14_durations_are_bounded() {
        let check_one = |key: &str, value: u64, valid: bool| {
            let text = match key.split_once('.') {
                Some((table, k)) => format!("[{table}]\n{k} = {value}\n"),
                // The largest backoff is at least the first: each is checked with the other out of the way.
                None if key == "backoff_secs" => one(&format!("backoff_max_secs = {DAY}\n{key} = {value}")),
                None => one(&format!("backoff_secs = 1\n{key} = {value}")),
            };
            match parse(&text, Path::new("services.toml")) {
                Ok(_) => assert!(valid, "{key} = {value} accepted"),
                Err(e) => {
                    assert!(!valid, "{key} = {value} refused: {e}");
                    assert_eq!(e.key, Some(DURATION_LIMITS.iter().find(|(k, ..)| *k == key).expect("limits").0));
                    assert!(matches!(e.problem, Problem::OutOfRange { value: v, .. } if v == value), "{e}");
                }
            }
        };
        for (key, min, max) in DURATION_LIMITS {
            check_one(key, min, true);
            check_one(key, max, true);
            check_one(key, max + 1, false);
            check_one(key, i64::MAX as u64, false);
            if min > 0 {
                check_one(key, min - 1, false);
            }
        }
    }

    #[test]
    fn issue_14_environment_names_and_nul_bytes_are_refused() {
        let check_one = |extra: &str, problem: fn(&Problem) -> bool| {
            let text = format!("[[service]]\nname = \"a\"\n{extra}");
            let text = if extra.starts_with("argv") { text } else { format!("{text}\nargv = [\"/bin/a\"]") };
            let e = check(&text).expect_err(extra);
            let key = if extra.starts_with("env") { "env" } else { "argv" };
            assert_eq!((e.service.as_deref(), e.key), (Some("a"), Some(key)), "{extra}: {e}");
            assert!(problem(&e.problem), "{extra}: {e}");
        };
        check_one("env = { \"A=B\" = \"x\" }", |p| matches!(p, Problem::EnvName(k) if k == "A=B"));
        check_one("env = { \"\" = \"x\" }", |p| matches!(p, Problem::EnvName(k) if k.is_empty()));
        check_one("env = { \"A\\u0000\" = \"x\" }", |p| matches!(p, Problem::EnvName(_)));
        check_one("env = { A = \"x\\u0000y\" }", |p| matches!(p, Problem::Nul));
        check_one("argv = [\"/bin/a\", \"x\\u0000\"]", |p| matches!(p, Problem::Nul));
        let env = &check(&one("env = { A = \"x=y\", B_2 = \"\" }")).expect("valid")[0].env;
        assert_eq!(env.get("A").map(String::as_str), Some("x=y"));
    }
}
