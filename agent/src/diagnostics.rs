//! What a `diagnostics` action collects (`fleet_wire::node::Diagnostics`): the updater's status as `edge-update
//! status --json` prints it (the boot state as `edge-bootctl status --json` has it inside), the last lines of the
//! event log, the tail of the kernel log (where `edge-init` writes every service's output) and the agent's config
//! (docs/agent.md, "Remote actions").
//!
//! Nothing secret is in it: the enrollment token lives in its own file, which is named but never read here, and
//! the node key is neither named nor read.

use std::collections::VecDeque;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;

use fleet_wire::node::Diagnostics;

use crate::config::Config;
use crate::paths::Paths;

/// Event log lines collected.
pub const N_EVENTS: usize = 100;
/// Kernel log lines collected.
pub const N_LOG_LINES: usize = 300;
/// The most bytes read of the kernel log (its ring buffer is smaller).
const MAX_LOG_BYTES: usize = 4 << 20;
/// The most bytes of the event log's end read.
const EVENTS_TAIL_BYTES: u64 = 64 << 10;

/// Collects the diagnostics now.
pub fn collect(config: &Config, update: Option<&updater::config::Config>, paths: &Paths) -> Diagnostics {
    let status = match update {
        Some(u) => match updater::status::read(u) {
            Ok(s) => serde_json::to_value(&s).unwrap_or(serde_json::Value::Null),
            Err(e) => serde_json::json!({ "error": crate::error::chain(&e) }),
        },
        None => {
            serde_json::json!({ "error": format!("the updater's config {} is not readable", config.update_config.display()) })
        }
    };
    Diagnostics {
        collected: crate::events::now(),
        status,
        events: update.map_or_else(Vec::new, |u| last_lines(&u.events_path())),
        log_tail: log_tail(&paths.kmsg),
        config: config_json(config),
    }
}

/// The last [`N_EVENTS`] whole lines of the event log.
fn last_lines(path: &Path) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else { return Vec::new() };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(EVENTS_TAIL_BYTES);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.take(EVENTS_TAIL_BYTES).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<String> = text.lines().skip(usize::from(start > 0)).map(crate::events::clip).collect();
    let excess = lines.len().saturating_sub(N_EVENTS);
    lines.drain(..excess);
    lines
}

/// The last [`N_LOG_LINES`] messages of the kernel log (`/dev/kmsg` records `LEVEL,SEQ,TIME,-;MESSAGE`, read
/// without waiting for new ones), or of a plain file in its place.
fn log_tail(path: &Path) -> Vec<String> {
    let Ok(mut f) = crate::sys::open_nonblocking(path) else { return Vec::new() };
    let mut tail = VecDeque::with_capacity(N_LOG_LINES);
    let mut buf = vec![0u8; 8192];
    let mut total = 0;
    let mut partial = Vec::new();
    while total < MAX_LOG_BYTES {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            // A record overwritten while it was read: go on with the next.
            Err(e) if e.raw_os_error() == Some(32) => continue,
            Err(_) => break,
        };
        total += n;
        partial.extend_from_slice(&buf[..n]);
        while let Some(i) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let message = match text.split_once(';') {
                Some((prefix, m)) if prefix.split(',').count() >= 3 => m.to_owned(),
                _ => text,
            };
            if tail.len() == N_LOG_LINES {
                tail.pop_front();
            }
            tail.push_back(crate::events::clip(&message));
        }
    }
    tail.into()
}

/// The agent's config, as in force; the token file is named, its content is not read.
fn config_json(c: &Config) -> serde_json::Value {
    serde_json::json!({
        "path": c.path,
        "endpoint": c.endpoint,
        "ca_file": c.ca_file,
        "token_file": c.token_file,
        "site": c.site,
        "labels": c.labels,
        "poll_floor_secs": c.timing.poll_floor.as_secs(),
        "poll_ceiling_secs": c.timing.poll_ceiling.as_secs(),
        "backoff_base_secs": c.timing.backoff_base.as_secs(),
        "backoff_cap_secs": c.timing.backoff_cap.as_secs(),
        "jitter": c.timing.jitter,
        "request_timeout_secs": c.request_timeout.as_secs(),
        "report_batch": c.report_batch,
        "update_config": c.update_config,
        "init_socket": c.init_socket,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_hold_the_logs_tails_and_no_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = Paths::under(dir.path());
        std::fs::create_dir_all(paths.kmsg.parent().expect("dev")).expect("mkdir");
        let kmsg: String = (0..400).map(|i| format!("6,{i},100,-;edge-init: line {i}\n")).collect();
        std::fs::write(&paths.kmsg, kmsg).expect("kmsg");
        let token = dir.path().join("token");
        std::fs::write(&token, "secret-token-value\n").expect("token");
        let text = format!("endpoint = \"https://f.example\"\ntoken_file = {:?}\n", token.display().to_string());
        let config = Config::parse(&text, Path::new("/etc/edge/agent.toml")).expect("config");
        let d = collect(&config, None, &paths);
        assert_eq!(d.log_tail.len(), N_LOG_LINES);
        assert_eq!(d.log_tail.last().map(String::as_str), Some("edge-init: line 399"));
        let json = serde_json::to_string(&d).expect("json");
        assert!(json.len() <= fleet_wire::node::MAX_DIAGNOSTICS_BYTES);
        assert!(!json.contains("secret-token-value"));
        assert!(json.contains("is not readable"), "{json}");
    }
}
