//! `/etc/edge/update.toml`: the slots, the boot state backend, the keyring, the board, the journal's directory and
//! the health checks, and fetching over HTTP; docs/updater.md, "Configuration".

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::http::HttpOptions;

/// The config file's default path.
pub const DEFAULT_PATH: &str = "/etc/edge/update.toml";

/// The largest config file read: a page of keys and health checks, with room for comments; a path that is not a
/// regular file (a FIFO, a device) is refused before it is opened.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The whole config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The board string a bundle's `compatible` must equal (required).
    pub compatible: String,
    /// The trusted keys: a directory of `*.pub` files, or one key file.
    pub keyring: PathBuf,
    /// Distinct trusted signatures a bundle needs.
    pub threshold: usize,
    /// The directory of the journal, the event log and the slot index caches (on the data partition).
    pub data_dir: PathBuf,
    /// The payload written to a slot.
    pub payload: String,
    /// The slot devices.
    pub slots: Slots,
    /// The boot state backend: the `[bootctl]` table when this file has one, otherwise `bootctl_config`'s keys
    /// (so one file serves both tools), otherwise every key's default.
    #[serde(skip)]
    pub bootctl: bootctl::config::Config,
    /// The `[bootctl]` table as written here, if any (`bootctl` holds what is in force).
    #[serde(rename = "bootctl")]
    pub bootctl_table: Option<bootctl::config::Config>,
    /// `edge-bootctl`'s config file, read for the boot state backend when this file has no `[bootctl]` table.
    pub bootctl_config: PathBuf,
    /// How a reboot is requested when the updater needs one (after a failed health check).
    pub reboot: RebootMethod,
    /// `edge-init`'s control socket (reboot requests and the services check).
    pub init_socket: PathBuf,
    /// Where mounts are listed (to refuse a mounted target).
    pub mountinfo: PathBuf,
    /// Where block devices are listed with their partition labels (to resolve `PARTLABEL=`).
    pub sys_class_block: PathBuf,
    /// Where device nodes are.
    pub dev_dir: PathBuf,
    /// The health checks run on a trial boot.
    pub health: Health,
    /// Fetching bundles over HTTP(S).
    pub http: Http,
}

/// Fetching bundles over HTTP(S); docs/updater.md, "HTTP".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// How long a TCP (and TLS) connect may take.
    pub connect_timeout_secs: u64,
    /// How long a request may wait for bytes; a range request's deadline is this plus the connect timeout.
    pub read_timeout_secs: u64,
    /// Consecutive failures without a byte of progress that are retried (each logged); the next one gives up.
    pub max_retries: u32,
    /// The minimum rate: at least this many bytes in every `min_rate_window_secs` of waiting on the server, or the
    /// install fails; 0 turns the check off.
    pub min_rate_bytes: u64,
    /// The window of the minimum rate.
    pub min_rate_window_secs: u64,
}

impl Default for Http {
    fn default() -> Http {
        let o = HttpOptions::default();
        Http {
            connect_timeout_secs: o.connect_timeout.as_secs(),
            read_timeout_secs: o.read_timeout.as_secs(),
            max_retries: o.max_retries,
            min_rate_bytes: o.min_rate_bytes,
            min_rate_window_secs: o.min_rate_window.as_secs(),
        }
    }
}

/// The two slots' devices: a block device, `PARTLABEL=name`, or a regular file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Slots {
    /// Slot A.
    pub a: String,
    /// Slot B.
    pub b: String,
}

impl Default for Slots {
    fn default() -> Slots {
        Slots { a: "PARTLABEL=edge-slot-a".to_owned(), b: "PARTLABEL=edge-slot-b".to_owned() }
    }
}

/// How to reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebootMethod {
    /// Ask `edge-init` over its control socket, so services stop in order and the data partition is synced.
    Init,
    /// sync(2), then reboot(2) directly.
    Syscall,
    /// Do not reboot; log that a reboot is needed (a supervisor other than `edge-init` handles it).
    None,
}

/// The health checks; docs/updater.md, "Health checks".
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    /// All checks must pass within this many seconds of the start of `boot`.
    pub deadline_secs: u64,
    /// Ask `edge-init` whether every service is up and none is restarting.
    pub services: bool,
    /// Commands that must exit 0.
    pub commands: Vec<CommandCheck>,
    /// HTTP probes on the node.
    pub http: Vec<HttpCheck>,
}

impl Default for Health {
    fn default() -> Health {
        Health { deadline_secs: 300, services: false, commands: Vec::new(), http: Vec::new() }
    }
}

/// A command check.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    /// The program and its arguments (no shell).
    pub argv: Vec<String>,
    /// Killed (with its process group) after this many seconds.
    #[serde(default = "default_check_timeout")]
    pub timeout_secs: u64,
    /// Tries before the check fails, a few seconds apart, within the deadline.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

/// An HTTP probe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// The URL (on the node: `http://127.0.0.1:...`).
    pub url: String,
    /// The status expected.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Per request.
    #[serde(default = "default_check_timeout")]
    pub timeout_secs: u64,
    /// Tries before the check fails, a few seconds apart, within the deadline.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

fn default_check_timeout() -> u64 {
    30
}
fn default_attempts() -> u32 {
    10
}
fn default_status() -> u16 {
    200
}

impl Default for Config {
    fn default() -> Config {
        Config {
            compatible: String::new(),
            keyring: PathBuf::from("/etc/edge/keys"),
            threshold: 1,
            data_dir: PathBuf::from("/data/edge-update"),
            payload: "rootfs".to_owned(),
            slots: Slots::default(),
            bootctl: bootctl::config::Config::default(),
            bootctl_table: None,
            bootctl_config: PathBuf::from(bootctl::config::DEFAULT_PATH),
            reboot: RebootMethod::Init,
            init_socket: PathBuf::from("/run/edge-init/control.sock"),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            sys_class_block: PathBuf::from("/sys/class/block"),
            dev_dir: PathBuf::from("/dev"),
            health: Health::default(),
            http: Http::default(),
        }
    }
}

impl Config {
    /// Loads and checks a config file, and the boot state backend's (`bootctl_config`) when it has no `[bootctl]`
    /// table.
    pub fn load(path: &Path) -> Result<Config> {
        let bytes = image_layout::fsutil::read_bounded(path, MAX_CONFIG_BYTES)
            .map_err(|source| Error::ReadConfigFile { path: path.to_owned(), source })?;
        let text = String::from_utf8(bytes).map_err(|e| Error::Config {
            path: path.to_owned(),
            detail: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        })?;
        let mut c = Config::parse(&text, path)?;
        if c.bootctl_table.is_none() {
            c.bootctl = bootctl::config::Config::load_default(&c.bootctl_config)
                .map_err(|e| Error::Config { path: c.bootctl_config.clone(), detail: crate::error::chain(&e) })?;
        }
        Ok(c)
    }

    /// Parses and checks config text (`path` names it in errors, with the line, column and key of a TOML error);
    /// without a `[bootctl]` table the backend is every key's default (`load` reads `bootctl_config`).
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let bad = |detail: String| Error::Config { path: path.to_owned(), detail };
        let mut c: Config = toml::from_str(text).map_err(|e| {
            let span = e.span();
            Error::ParseConfig {
                path: path.to_owned(),
                at: span.as_ref().map(|s| bootctl::config::line_column(text, s.start)),
                key: span.and_then(|s| bootctl::config::key_at(text, s.start)),
                detail: e.message().trim_end().to_owned(),
            }
        })?;
        if let Some(t) = &c.bootctl_table {
            c.bootctl = t.clone();
        }
        if c.compatible.is_empty() {
            return Err(bad("compatible must be set to this board's string".to_owned()));
        }
        if c.threshold == 0 {
            return Err(bad("threshold 0 out of range 1..".to_owned()));
        }
        c.bootctl.check().map_err(|detail| bad(format!("bootctl.{detail}")))?;
        if c.slots.a == c.slots.b {
            return Err(bad(format!("slots.a and slots.b are both {:?}", c.slots.a)));
        }
        for (i, check) in c.health.commands.iter().enumerate() {
            if check.argv.is_empty() {
                return Err(bad(format!("health.commands[{i}].argv is empty")));
            }
        }
        for (key, secs) in [
            ("http.connect_timeout_secs", c.http.connect_timeout_secs),
            ("http.read_timeout_secs", c.http.read_timeout_secs),
            ("http.min_rate_window_secs", c.http.min_rate_window_secs),
        ] {
            // A day is far beyond any sensible wait, and keeps every sum of these far from overflowing.
            if !(1..=86_400).contains(&secs) {
                return Err(bad(format!("{key} {secs} out of range 1..=86400")));
            }
        }
        for (i, check) in c.health.http.iter().enumerate() {
            if !check.url.starts_with("http://") && !check.url.starts_with("https://") {
                return Err(bad(format!("health.http[{i}].url {:?} is not an http(s) URL", check.url)));
            }
        }
        Ok(c)
    }

    /// The journal's path.
    pub fn journal_path(&self) -> PathBuf {
        self.data_dir.join("journal.json")
    }

    /// The event log's path (JSON Lines, only appended to; `edge-agent` ships it by offset).
    pub fn events_path(&self) -> PathBuf {
        self.data_dir.join("events.jsonl")
    }

    /// The lock that keeps two `edge-update` runs from acting at once.
    pub fn lock_path(&self) -> PathBuf {
        self.data_dir.join("lock")
    }

    /// What the bundle a slot holds lists as its stack (components and versions), kept by the install for the fleet
    /// agent's inventory ([`crate::install::recorded_stack`]).
    pub fn stack_path(&self, slot: bootctl::rules::Slot) -> PathBuf {
        self.data_dir.join(format!("slot-{slot}.stack.json"))
    }

    /// The chunk hashes of a target verified and held for a later flip (`held`); read by nobody else.
    pub fn held_path(&self, slot: bootctl::rules::Slot) -> PathBuf {
        self.data_dir.join(format!("slot-{slot}.held"))
    }

    /// The cached block fingerprints of what a slot holds (for delta installs).
    pub fn slot_index_path(&self, slot: bootctl::rules::Slot) -> PathBuf {
        self.data_dir.join(format!("slot-{slot}.index"))
    }

    /// The HTTP source's options: the `[http]` keys, and the backoff of [`HttpOptions::default`].
    pub fn http_options(&self) -> HttpOptions {
        HttpOptions {
            connect_timeout: Duration::from_secs(self.http.connect_timeout_secs),
            read_timeout: Duration::from_secs(self.http.read_timeout_secs),
            max_retries: self.http.max_retries,
            min_rate_bytes: self.http.min_rate_bytes,
            min_rate_window: Duration::from_secs(self.http.min_rate_window_secs),
            ..HttpOptions::default()
        }
    }

    /// The health deadline.
    pub fn health_deadline(&self) -> Duration {
        Duration::from_secs(self.health.deadline_secs)
    }
}

/// The Markdown table of every key and its default, for docs/updater.md ("Configuration").
pub fn defaults_table() -> String {
    let d = Config::default();
    let p = |p: &Path| format!("`{:?}`", p.display().to_string());
    let rows = [
        ("compatible", "required".to_owned(), "the board string a bundle's `compatible` must equal"),
        ("keyring", p(&d.keyring), "trusted keys: a directory of `*.pub` files, or one key file"),
        ("threshold", format!("`{}`", d.threshold), "distinct trusted signatures a bundle needs"),
        ("data_dir", p(&d.data_dir), "journal, event log and slot index caches, on the data partition"),
        ("payload", format!("`{:?}`", d.payload), "the payload of the bundle written to a slot"),
        ("slots.a", format!("`{:?}`", d.slots.a), "slot A: a block device, `PARTLABEL=name`, or a regular file"),
        ("slots.b", format!("`{:?}`", d.slots.b), "slot B"),
        (
            "bootctl.*",
            "from `bootctl_config`".to_owned(),
            "the boot state backend, the keys of `bootctl.toml`; without this table, `bootctl_config` is read",
        ),
        (
            "bootctl_config",
            p(&d.bootctl_config),
            "`edge-bootctl`'s config, read when there is no `[bootctl]` table (missing: the defaults)",
        ),
        ("reboot", "`\"init\"`".to_owned(), "how `boot` reboots after a failed check: `init`, `syscall` or `none`"),
        ("init_socket", p(&d.init_socket), "`edge-init`'s control socket"),
        ("mountinfo", p(&d.mountinfo), "the mount table, to refuse a mounted target"),
        ("sys_class_block", p(&d.sys_class_block), "block devices and their partition labels"),
        ("dev_dir", p(&d.dev_dir), "device nodes"),
        ("health.deadline_secs", format!("`{}`", d.health.deadline_secs), "all checks must pass within this time"),
        (
            "health.services",
            format!("`{}`", d.health.services),
            "ask `edge-init` that every service is up, none restarting",
        ),
        ("health.commands", "`[]`".to_owned(), "`{ argv = [...], timeout_secs = 30, attempts = 10 }`, must exit 0"),
        ("health.http", "`[]`".to_owned(), "`{ url = \"...\", status = 200, timeout_secs = 30, attempts = 10 }`"),
        (
            "http.connect_timeout_secs",
            format!("`{}`", d.http.connect_timeout_secs),
            "a TCP (and TLS) connect may take this long",
        ),
        (
            "http.read_timeout_secs",
            format!("`{}`", d.http.read_timeout_secs),
            "a request may wait this long for bytes; a range request's deadline adds the connect timeout",
        ),
        (
            "http.max_retries",
            format!("`{}`", d.http.max_retries),
            "failures in a row without a byte of progress retried, each logged at warn; the next one gives up",
        ),
        (
            "http.min_rate_bytes",
            format!("`{}`", d.http.min_rate_bytes),
            "the install fails when fewer bytes come in a window of waiting on the server; `0`: no minimum",
        ),
        ("http.min_rate_window_secs", format!("`{}`", d.http.min_rate_window_secs), "the minimum rate's window"),
    ];
    docgen::key_table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_cases() {
        let check = |text: &str, ok: bool| {
            let r = Config::parse(&format!("compatible = \"qemu-x86_64\"\n{text}"), Path::new("u.toml"));
            assert_eq!(r.is_ok(), ok, "{text}: {r:?}");
        };
        check("", true);
        check("threshold = 2\n[slots]\na = \"/dev/vda2\"\nb = \"/dev/vda3\"", true);
        check("[bootctl]\nbackend = \"uboot\"\ntries = 5", true);
        check("[[health.commands]]\nargv = [\"/bin/true\"]", true);
        check("[[health.http]]\nurl = \"http://127.0.0.1:8080/healthz\"\nstatus = 204", true);
        check("threshold = 0", false);
        check("[slots]\na = \"x\"\nb = \"x\"", false);
        check("[bootctl]\ntries = 0", false);
        check("[[health.commands]]\nargv = []", false);
        check("[[health.http]]\nurl = \"ftp://x\"", false);
        check("reboot = \"maybe\"", false);
        check("surprise = 1", false);
        check("[http]\nmax_retries = 0\nmin_rate_bytes = 0\nmin_rate_window_secs = 1", true);
        check("[http]\nconnect_timeout_secs = 1\nread_timeout_secs = 86400", true);
        check("[http]\nmin_rate_window_secs = 0", false);
        check("[http]\nread_timeout_secs = 0", false);
        check("[http]\nconnect_timeout_secs = 86401", false);
        check("[http]\nmax_retries = -1", false);
        check("[http]\nretries = 3", false);
        assert!(matches!(Config::parse("", Path::new("u.toml")), Err(Error::Config { .. })));
    }

    #[test]
    fn issue_14_the_config_file_is_a_bounded_regular_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo.toml");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).expect("write");
        for path in [fifo.as_path(), Path::new("/dev/zero"), big.as_path(), dir.path()] {
            let r = Config::load(path);
            assert!(matches!(&r, Err(Error::ReadConfigFile { path: p, .. }) if p == path), "{path:?}: {r:?}");
        }
    }

    #[test]
    fn issue_14_toml_errors_name_the_line_and_the_key() {
        let text = "compatible = \"qemu-x86_64\"\n[health]\ndeadline_secs = \"20\"\n";
        let r = Config::parse(text, Path::new("u.toml"));
        assert!(
            matches!(&r, Err(Error::ParseConfig { at: Some((3, 17)), key: Some(k), .. }) if k == "deadline_secs"),
            "{r:?}"
        );
    }

    #[test]
    fn issue_14_the_boot_state_backend_is_read_from_bootctl_toml_unless_given_here() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bootctl_toml = dir.path().join("bootctl.toml");
        std::fs::write(&bootctl_toml, "backend = \"uboot\"\ntries = 5\n").expect("write");
        let update_toml = dir.path().join("update.toml");
        let write = |extra: &str| {
            let text =
                format!("compatible = \"x\"\nbootctl_config = {:?}\n{extra}", bootctl_toml.display().to_string());
            std::fs::write(&update_toml, text).expect("write");
        };
        write("");
        let c = Config::load(&update_toml).expect("load");
        assert_eq!((c.bootctl.backend, c.bootctl.tries), (bootctl::config::BackendKind::Uboot, 5));
        // A table here wins over the file.
        write("[bootctl]\ntries = 2\n");
        let c = Config::load(&update_toml).expect("load");
        assert_eq!((c.bootctl.backend, c.bootctl.tries), (bootctl::config::BackendKind::Grub, 2));
        // No table and no file: the defaults.
        std::fs::remove_file(&bootctl_toml).expect("rm");
        write("");
        assert_eq!(Config::load(&update_toml).expect("load").bootctl, bootctl::config::Config::default());
        // A broken bootctl.toml is an error that names it.
        std::fs::write(&bootctl_toml, "tries = \"many\"\n").expect("write");
        let r = Config::load(&update_toml);
        assert!(matches!(&r, Err(Error::Config { path, .. }) if *path == bootctl_toml), "{r:?}");
    }
}
