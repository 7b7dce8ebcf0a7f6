//! `/etc/edge/agent.toml`: the endpoint, how it is trusted, the enrollment token, what the node says of itself (site,
//! labels), the poll and backoff timing, and where the updater's config and edge-init's socket are; docs/agent.md,
//! "Configuration".
//!
//! The file is read once into [`ConfigFile`] (unknown keys refused, every key defaulted) and validated into
//! [`Config`], whose fields cannot hold a bad value; every error names the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where applications take the update lock, by default.
pub const UPDATE_LOCK_FILE: &str = "/run/edge-agent/update.lock";

/// The largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The config file as written: every key with its default.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    /// The endpoint's base URL, `https://host[:port]` (or `http://` when `allow_http` is set).
    pub endpoint: String,
    /// Allow a plain `http://` endpoint (a loopback test, an operator's proxy on the node's LAN); logged as a
    /// warning at every start.
    pub allow_http: bool,
    /// The CA certificate (PEM) the endpoint's TLS certificate must chain to; no other root is trusted.
    pub ca_file: PathBuf,
    /// The file holding the fleet enrollment token (so the token is not in this file).
    pub token_file: PathBuf,
    /// The site the node is at, sent with its inventory.
    pub site: String,
    /// Labels the node sends with its inventory (an admin's labels on the endpoint win).
    pub labels: BTreeMap<String, String>,
    /// The shortest poll interval, whatever the endpoint suggests.
    pub poll_floor_secs: u64,
    /// The longest poll interval, and the slow retry of a refused enrollment or a rejected node.
    pub poll_ceiling_secs: u64,
    /// The first backoff after a failed contact; it doubles with each further failure.
    pub backoff_base_secs: u64,
    /// The largest backoff.
    pub backoff_cap_secs: u64,
    /// Each wait is shortened by a random part of up to this fraction, so that nodes spread out.
    pub jitter: f64,
    /// How long one request may take, connect included.
    pub request_timeout_secs: u64,
    /// The most reports sent in one batch.
    pub report_batch: usize,
    /// The updater's config (`edge-update --config`).
    pub update_config: PathBuf,
    /// `edge-init`'s control socket (reboots).
    pub init_socket: PathBuf,
    /// The update lock: while an application holds a flock(2) on this file, the agent does not flip (docs/agent.md,
    /// "Flips, windows and the update lock").
    pub update_lock_file: PathBuf,
    /// The longest the update lock holds a flip back when the endpoint's rule sets no bound (a bundle pinned or
    /// given to a group rather than rolled out by a deployment).
    pub update_lock_max_secs: u64,
    /// Collect the node's logs and metrics, spool them and ship them (docs/telemetry.md).
    pub telemetry: bool,
    /// The telemetry spool's bound in bytes on the data partition; past it the oldest records go, counted.
    pub telemetry_spool_max_bytes: u64,
    /// How often new telemetry records are synced to the data partition: a power cut loses at most the records of
    /// the last this many milliseconds.
    pub telemetry_sync_ms: u64,
    /// How often the telemetry is sent (a backlog goes batch after batch at once).
    pub telemetry_interval_secs: u64,
    /// The most records in one telemetry batch.
    pub telemetry_batch_records: usize,
    /// The most payload bytes in one telemetry batch, before compression.
    pub telemetry_batch_bytes: usize,
    /// How often the node's metrics are sampled.
    pub metrics_interval_secs: u64,
    /// Where the node's metrics are served in the Prometheus text format (`host:port`; empty: not served).
    pub metrics_listen: String,
}

impl Default for ConfigFile {
    fn default() -> ConfigFile {
        ConfigFile {
            endpoint: String::new(),
            allow_http: false,
            ca_file: PathBuf::from("/etc/edge/fleet-ca.pem"),
            token_file: PathBuf::from("/etc/edge/fleet-token"),
            site: String::new(),
            labels: BTreeMap::new(),
            poll_floor_secs: 15,
            poll_ceiling_secs: 3600,
            backoff_base_secs: 5,
            backoff_cap_secs: 900,
            jitter: 0.2,
            request_timeout_secs: 30,
            report_batch: 50,
            update_config: PathBuf::from(updater::config::DEFAULT_PATH),
            init_socket: PathBuf::from(platform::ctl::SOCKET),
            update_lock_file: PathBuf::from(UPDATE_LOCK_FILE),
            update_lock_max_secs: 3600,
            telemetry: true,
            telemetry_spool_max_bytes: 64 << 20,
            telemetry_sync_ms: 1000,
            telemetry_interval_secs: 60,
            telemetry_batch_records: 2000,
            telemetry_batch_bytes: 512 << 10,
            metrics_interval_secs: 60,
            metrics_listen: "127.0.0.1:9101".to_owned(),
        }
    }
}

/// The telemetry's settings, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Whether the agent collects and ships telemetry at all.
    pub enabled: bool,
    /// The spool's bounds.
    pub limits: crate::telemetry::spool::Limits,
    /// The sync interval.
    pub sync: Duration,
    /// The ship interval.
    pub interval: Duration,
    /// The most payload bytes in a batch.
    pub batch_bytes: usize,
    /// The sample interval.
    pub metrics_interval: Duration,
    /// Where the Prometheus page is served.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// The endpoint's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// TLS, verified against `ca_file` alone.
    Https,
    /// Plain HTTP (`allow_http`).
    Http,
}

/// The validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from (errors about its files name it).
    pub path: PathBuf,
    /// The endpoint's base URL without a trailing `/`.
    pub endpoint: String,
    /// Its scheme.
    pub scheme: Scheme,
    /// The CA certificate file (used with `https`).
    pub ca_file: PathBuf,
    /// The token file.
    pub token_file: PathBuf,
    /// The site, if set.
    pub site: Option<String>,
    /// The labels, checked by the protocol's rule.
    pub labels: BTreeMap<String, String>,
    /// The timing of the loop.
    pub timing: Timing,
    /// One request's deadline.
    pub request_timeout: Duration,
    /// Reports per batch, 1 to the protocol's bound.
    pub report_batch: usize,
    /// The updater's config file.
    pub update_config: PathBuf,
    /// edge-init's control socket.
    pub init_socket: PathBuf,
    /// The update lock file.
    pub update_lock_file: PathBuf,
    /// The telemetry.
    pub telemetry: TelemetryConfig,
}

/// Poll and backoff timing, as the loop's decisions take it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// The shortest poll interval.
    pub poll_floor: Duration,
    /// The longest poll interval.
    pub poll_ceiling: Duration,
    /// The first backoff.
    pub backoff_base: Duration,
    /// The largest backoff.
    pub backoff_cap: Duration,
    /// The jitter fraction, in `0.0..1.0`.
    pub jitter: f64,
    /// The longest the update lock holds a flip back when the endpoint's rule sets no bound.
    pub update_lock_max: Duration,
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let bytes = image_layout::fsutil::read_bounded(path, MAX_CONFIG_BYTES)
            .map_err(|source| Error::ReadConfig { path: path.to_owned(), source })?;
        let text = String::from_utf8(bytes).map_err(|e| Error::ParseConfig {
            path: path.to_owned(),
            at: None,
            key: None,
            detail: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            let span = e.span();
            Error::ParseConfig {
                path: path.to_owned(),
                at: span.as_ref().map(|s| bootctl::config::line_column(text, s.start)),
                key: span.and_then(|s| bootctl::config::key_at(text, s.start)),
                detail: e.message().trim_end().to_owned(),
            }
        })?;
        file.validate(path)
    }
}

impl ConfigFile {
    /// Checks every key and builds the [`Config`].
    pub fn validate(self, path: &Path) -> Result<Config> {
        let bad = |key: &'static str, detail: String| Error::Config { path: path.to_owned(), key, detail };
        let (endpoint, scheme) = parse_endpoint(&self.endpoint).map_err(|d| bad("endpoint", d))?;
        if scheme == Scheme::Http && !self.allow_http {
            return Err(bad("endpoint", "an http:// endpoint needs allow_http = true".to_owned()));
        }
        for (key, p) in [
            ("ca_file", &self.ca_file),
            ("token_file", &self.token_file),
            ("update_config", &self.update_config),
            ("init_socket", &self.init_socket),
            ("update_lock_file", &self.update_lock_file),
        ] {
            if !p.is_absolute() {
                return Err(bad(key, format!("{} is not an absolute path", p.display())));
            }
        }
        let site = if self.site.is_empty() {
            None
        } else {
            fleet_wire::node::check_text("site", &self.site, fleet_wire::node::MAX_NAME_CHARS)
                .map_err(|e| bad("site", e.to_string()))?;
            Some(self.site)
        };
        fleet_wire::node::check_labels(&self.labels).map_err(|e| bad("labels", e.to_string()))?;
        // A day bounds every wait: far beyond any sensible one, and far from overflowing any sum of them.
        let secs = |key: &'static str, v: u64| -> Result<Duration> {
            if (1..=86_400).contains(&v) {
                Ok(Duration::from_secs(v))
            } else {
                Err(bad(key, format!("{v} out of range 1..=86400")))
            }
        };
        let timing = Timing {
            poll_floor: secs("poll_floor_secs", self.poll_floor_secs)?,
            poll_ceiling: secs("poll_ceiling_secs", self.poll_ceiling_secs)?,
            backoff_base: secs("backoff_base_secs", self.backoff_base_secs)?,
            backoff_cap: secs("backoff_cap_secs", self.backoff_cap_secs)?,
            jitter: self.jitter,
            // A week: far beyond any critical section worth delaying an update for.
            update_lock_max: match self.update_lock_max_secs {
                v @ 0..=604_800 => Duration::from_secs(v),
                v => return Err(bad("update_lock_max_secs", format!("{v} out of range 0..=604800"))),
            },
        };
        if timing.poll_floor > timing.poll_ceiling {
            return Err(bad("poll_floor_secs", "must not exceed poll_ceiling_secs".to_owned()));
        }
        if timing.backoff_base > timing.backoff_cap {
            return Err(bad("backoff_base_secs", "must not exceed backoff_cap_secs".to_owned()));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(bad("jitter", format!("{} out of range 0.0..1.0", self.jitter)));
        }
        let request_timeout = secs("request_timeout_secs", self.request_timeout_secs)?;
        let max = fleet_wire::node::MAX_REPORTS_PER_BATCH;
        if !(1..=max).contains(&self.report_batch) {
            return Err(bad("report_batch", format!("{} out of range 1..={max}", self.report_batch)));
        }
        let range = |key: &'static str, v: u64, lo: u64, hi: u64| -> Result<u64> {
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(bad(key, format!("{v} out of range {lo}..={hi}")))
            }
        };
        let max_bytes = range(
            "telemetry_spool_max_bytes",
            self.telemetry_spool_max_bytes,
            crate::telemetry::spool::Limits::MIN_MAX_BYTES.max(1 << 20),
            1 << 40,
        )?;
        let batch_records = range(
            "telemetry_batch_records",
            self.telemetry_batch_records as u64,
            1,
            fleet_wire::telemetry::MAX_RECORDS_PER_BATCH as u64,
        )?;
        // A batch's JSON is its payloads and a little more a record; half the endpoint's bound leaves room for it.
        let batch_bytes = range(
            "telemetry_batch_bytes",
            self.telemetry_batch_bytes as u64,
            4096,
            fleet_wire::telemetry::MAX_BATCH_RAW_BYTES as u64 / 2,
        )?;
        let metrics_listen = match self.metrics_listen.as_str() {
            "" => None,
            text => Some(
                text.parse::<std::net::SocketAddr>().map_err(|e| bad("metrics_listen", format!("{text:?}: {e}")))?,
            ),
        };
        let telemetry = TelemetryConfig {
            enabled: self.telemetry,
            limits: crate::telemetry::spool::Limits::of_max(max_bytes, batch_records),
            sync: Duration::from_millis(range("telemetry_sync_ms", self.telemetry_sync_ms, 10, 60_000)?),
            interval: secs("telemetry_interval_secs", self.telemetry_interval_secs)?,
            batch_bytes: batch_bytes as usize,
            metrics_interval: Duration::from_secs(range("metrics_interval_secs", self.metrics_interval_secs, 1, 3600)?),
            metrics_listen,
        };
        Ok(Config {
            path: path.to_owned(),
            endpoint,
            scheme,
            ca_file: self.ca_file,
            token_file: self.token_file,
            site,
            labels: self.labels,
            timing,
            request_timeout,
            report_batch: self.report_batch,
            update_config: self.update_config,
            init_socket: self.init_socket,
            update_lock_file: self.update_lock_file,
            telemetry,
        })
    }
}

/// The endpoint's base URL: `http(s)://authority`, an optional `/` at the end, no path, query or fragment (the
/// node API's paths are signed as the endpoint sees them, so no prefix can be put in front of them).
fn parse_endpoint(url: &str) -> std::result::Result<(String, Scheme), String> {
    if url.is_empty() {
        return Err("must be set to the fleet endpoint's URL".to_owned());
    }
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(format!("{url:?} is not an https:// or http:// URL"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let ok = !authority.is_empty()
        && authority.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
        && ureq::http::Uri::try_from(url).is_ok();
    if !ok {
        return Err(format!("{url:?} is not scheme://host[:port] (no path, query or user)"));
    }
    let base = url.strip_suffix('/').unwrap_or(url).to_owned();
    Ok((base, scheme))
}

/// The Markdown table of every key and its default, for docs/agent.md ("Configuration").
pub fn defaults_table() -> String {
    let d = ConfigFile::default();
    let p = |p: &Path| format!("`{:?}`", p.display().to_string());
    let n = |v: u64| format!("`{v}`");
    let rows = [
        ("endpoint", "required".to_owned(), "the fleet endpoint, `https://host[:port]`"),
        (
            "allow_http",
            format!("`{}`", d.allow_http),
            "allow an `http://` endpoint (loopback tests, an operator's proxy on the LAN); warned at start",
        ),
        ("ca_file", p(&d.ca_file), "the CA (PEM) the endpoint's certificate must chain to; no other root is trusted"),
        ("token_file", p(&d.token_file), "the fleet enrollment token, one line (kept out of this file)"),
        ("site", "`\"\"`".to_owned(), "the node's site, sent with its inventory (empty: none)"),
        ("labels", "`{}`".to_owned(), "labels sent with the inventory, `key = \"value\"`; an admin's labels win"),
        ("poll_floor_secs", n(d.poll_floor_secs), "the shortest poll interval, whatever the endpoint suggests"),
        (
            "poll_ceiling_secs",
            n(d.poll_ceiling_secs),
            "the longest poll interval; also the slow retry of a refused enrollment or a rejected node",
        ),
        ("backoff_base_secs", n(d.backoff_base_secs), "the first wait after a failed contact; doubles per failure"),
        ("backoff_cap_secs", n(d.backoff_cap_secs), "the longest wait after failed contacts"),
        ("jitter", format!("`{}`", d.jitter), "each wait is shortened by a random part of up to this fraction"),
        ("request_timeout_secs", n(d.request_timeout_secs), "one request's deadline, connect included"),
        ("report_batch", format!("`{}`", d.report_batch), "reports per batch, 1 to 100"),
        ("update_config", p(&d.update_config), "the updater's config"),
        ("init_socket", p(&d.init_socket), "`edge-init`'s control socket (reboots)"),
        (
            "update_lock_file",
            p(&d.update_lock_file),
            "while an application holds a flock(2) on this file, the agent does not flip an update",
        ),
        (
            "update_lock_max_secs",
            n(d.update_lock_max_secs),
            "the longest the update lock holds a flip back when the endpoint sets no bound (0 to 604800)",
        ),
        ("telemetry", format!("`{}`", d.telemetry), "collect, spool and ship the node's logs and metrics"),
        (
            "telemetry_spool_max_bytes",
            n(d.telemetry_spool_max_bytes),
            "the telemetry spool's bound on the data partition; past it the oldest records go, counted (1 MiB to 1 TiB)",
        ),
        (
            "telemetry_sync_ms",
            n(d.telemetry_sync_ms),
            "new records are synced this often: a power cut loses at most this much of them (10 to 60000)",
        ),
        (
            "telemetry_interval_secs",
            n(d.telemetry_interval_secs),
            "how often telemetry is sent; a backlog goes batch after batch",
        ),
        (
            "telemetry_batch_records",
            format!("`{}`", d.telemetry_batch_records),
            "the most records in one batch (1 to 4096)",
        ),
        (
            "telemetry_batch_bytes",
            format!("`{}`", d.telemetry_batch_bytes),
            "the most record bytes in one batch before compression (4096 to 4194304)",
        ),
        ("metrics_interval_secs", n(d.metrics_interval_secs), "how often the node's metrics are sampled (1 to 3600)"),
        (
            "metrics_listen",
            format!("`{:?}`", d.metrics_listen),
            "where the node's metrics are served in the Prometheus text format (empty: not served)",
        ),
    ];
    docgen::key_table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(&format!("endpoint = \"https://fleet.example:8443\"\n{text}"), Path::new("/etc/edge/agent.toml"))
    }

    #[test]
    fn good_configs_are_read() {
        let c = parse("").expect("defaults");
        assert_eq!((c.endpoint.as_str(), c.scheme), ("https://fleet.example:8443", Scheme::Https));
        assert_eq!(c.timing.poll_floor, Duration::from_secs(15));
        let c = parse("site = \"shop-12\"\n[labels]\nrole = \"till\"").expect("site and labels");
        assert_eq!(c.site.as_deref(), Some("shop-12"));
        assert_eq!(c.labels["role"], "till");
        let c = Config::parse("endpoint = \"http://127.0.0.1:8080/\"\nallow_http = true", Path::new("a.toml"))
            .expect("http");
        assert_eq!((c.endpoint.as_str(), c.scheme), ("http://127.0.0.1:8080", Scheme::Http));
    }

    #[test]
    fn each_bad_key_is_named() {
        let check = |text: &str, key: &str| {
            let r = parse(text);
            assert!(matches!(&r, Err(Error::Config { key: k, .. }) if *k == key), "{text}: {r:?}");
        };
        check("poll_floor_secs = 0", "poll_floor_secs");
        check("poll_floor_secs = 100\npoll_ceiling_secs = 50", "poll_floor_secs");
        check("backoff_cap_secs = 86401", "backoff_cap_secs");
        check("backoff_base_secs = 60\nbackoff_cap_secs = 30", "backoff_base_secs");
        check("jitter = 1.0", "jitter");
        check("jitter = -0.1", "jitter");
        check("report_batch = 0", "report_batch");
        check("report_batch = 101", "report_batch");
        check("update_lock_max_secs = 604801", "update_lock_max_secs");
        check("update_lock_file = \"update.lock\"", "update_lock_file");
        check("ca_file = \"ca.pem\"", "ca_file");
        check("[labels]\n\"9x\" = \"y\"", "labels");
        check("site = \"a\\u0001b\"", "site");
        let endpoint = |url: &str| {
            let r = Config::parse(&format!("endpoint = {url:?}"), Path::new("a.toml"));
            assert!(matches!(&r, Err(Error::Config { key: "endpoint", .. })), "{url}: {r:?}");
        };
        for url in ["", "ftp://x", "https://", "https://x/v1", "https://x?q", "https://u@x", "http://127.0.0.1"] {
            endpoint(url);
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_line_and_key() {
        let r = parse("poll_every = 3");
        assert!(matches!(&r, Err(Error::ParseConfig { at: Some((2, _)), .. })), "{r:?}");
        let r = parse("jitter = \"lots\"");
        assert!(matches!(&r, Err(Error::ParseConfig { key: Some(k), .. }) if k == "jitter"), "{r:?}");
    }

    #[test]
    fn a_config_that_is_not_a_small_regular_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).expect("write");
        for path in [big.as_path(), dir.path(), &dir.path().join("missing.toml")] {
            let r = Config::load(path);
            assert!(matches!(&r, Err(Error::ReadConfig { path: p, .. }) if p == path), "{path:?}: {r:?}");
        }
    }
}
