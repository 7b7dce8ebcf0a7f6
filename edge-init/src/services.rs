//! `/etc/edge/services.toml`: the services `edge-init` runs, loaded once at start and checked into types that
//! cannot hold bad values (docs/edge-init.md, "Services").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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
    service: Vec<RawService>,
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

/// Parses and checks services text, in an order where every service comes after those it is `after`.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Service>, Error> {
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
    order(out).map_err(bad)
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
        parse(text, Path::new("services.toml")).map_err(|e| e.detail)
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
