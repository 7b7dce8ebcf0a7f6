//! `edge-cloud logs NODE [--since WHEN] [--grep TEXT] [--limit N] [--follow]` (docs/telemetry.md, "Reading a node's
//! logs"): a node's log lines as the endpoint holds them, oldest first, one line each; `--follow` goes on printing new
//! lines as they arrive (asking every two seconds), as `tail -f` does. With `--json`, the page's JSON, or with
//! `--follow` one JSON object a line (JSON Lines).

use std::io::Write as _;
use std::time::Duration;

use cliout::Output;
use fleet_wire::telemetry::{LogEntry, LogPage};

use super::client::Client;
use crate::error::{Error, Result};

/// How often `--follow` asks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// `edge-cloud logs`'s own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// The node.
    pub node: String,
    /// Only lines logged since then: a time (RFC 3339) or an age (`90s`, `15m`, `2h`, `7d`).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only lines holding this text (case-sensitive).
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,
    /// At most this many lines (the newest of them), 1 to 5000.
    #[arg(long, default_value_t = 200)]
    pub limit: u32,
    /// Keep printing new lines as they arrive.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// `--since` as milliseconds since the epoch, `now_ms` being now.
pub fn parse_since(text: &str, now_ms: i64) -> std::result::Result<i64, String> {
    let text = text.trim();
    let unit = |c: char| match c {
        's' => Some(1_000),
        'm' => Some(60_000),
        'h' => Some(3_600_000),
        'd' => Some(86_400_000),
        _ => None,
    };
    if let Some(last) = text.chars().last() {
        if let (Some(ms), Ok(n)) = (unit(last), text[..text.len() - 1].parse::<i64>()) {
            return Ok(now_ms.saturating_sub(n.saturating_mul(ms)));
        }
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor an age such as 15m"))?;
    Ok(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
}

/// A syslog level's name.
fn level_name(level: u8) -> &'static str {
    ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]
        .get(usize::from(level))
        .copied()
        .unwrap_or("debug")
}

/// One line for a person: time, source, level, text, and what was lost before it.
pub fn line_text(l: &LogEntry) -> String {
    let lost = if l.lost > 0 { format!("  [{} lines lost before this one]", l.lost) } else { String::new() };
    format!("{}  {}  {}: {}{lost}\n", l.time, l.source, level_name(l.level), l.text)
}

fn query(args: &LogsArgs, after: Option<u64>, since_ms: Option<i64>) -> String {
    let mut q = vec![format!("limit={}", args.limit.clamp(1, 5000))];
    if let Some(a) = after {
        q.push(format!("after={a}"));
    }
    if let Some(s) = since_ms {
        q.push(format!("since_ms={s}"));
    }
    if let Some(g) = &args.grep {
        q.push(format!("grep={}", percent_encode(g)));
    }
    format!("/v1/admin/nodes/{}/logs?{}", args.node, q.join("&"))
}

/// Percent-encodes a query value (everything but unreserved characters).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs the verb: one page, or (`--follow`) the newest page and then every new line, until killed.
pub fn run(c: &Client, args: &LogsArgs, json: bool) -> Result<Output> {
    let now_ms = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis(),
    )
    .unwrap_or(i64::MAX);
    let since_ms = match &args.since {
        Some(s) => Some(parse_since(s, now_ms).map_err(|expected| Error::Usage { flag: "--since", expected })?),
        None => None,
    };
    let page: LogPage = c.call("GET", &query(args, None, since_ms), None)?;
    if !args.follow {
        return Ok(Output::report(&page, json, |p| {
            p.lines.iter().map(line_text).collect::<String>().trim_end_matches('\n').to_owned()
        }));
    }
    let mut after = page.next_after;
    let mut out = std::io::stdout().lock();
    let print = |out: &mut std::io::StdoutLock<'_>, lines: &[LogEntry]| {
        for l in lines {
            let text =
                if json { format!("{}\n", serde_json::to_string(l).expect("a line serializes")) } else { line_text(l) };
            // A closed stdout (`| head`) ends the follow.
            if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
                std::process::exit(0);
            }
        }
    };
    print(&mut out, &page.lines);
    loop {
        std::thread::sleep(FOLLOW_EVERY);
        let page: LogPage = c.call("GET", &query(args, Some(after), since_ms), None)?;
        print(&mut out, &page.lines);
        after = page.next_after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_ages_and_times() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_since("90s", now), Ok(now - 90_000));
        assert_eq!(parse_since("15m", now), Ok(now - 900_000));
        assert_eq!(parse_since("2h", now), Ok(now - 7_200_000));
        assert_eq!(parse_since("7d", now), Ok(now - 604_800_000));
        assert_eq!(parse_since("2027-01-15T08:00:00.250Z", now), Ok(1_800_000_000_250));
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("5w", now).is_err());
    }

    #[test]
    fn lines_read_as_a_log() {
        let l = LogEntry {
            seq: 3,
            time: "2027-01-15T08:00:00.250Z".into(),
            source: "app".into(),
            level: 3,
            text: "disk full".into(),
            lost: 2,
        };
        assert_eq!(line_text(&l), "2027-01-15T08:00:00.250Z  app  err: disk full  [2 lines lost before this one]\n");
        assert_eq!(percent_encode("a b&c"), "a%20b%26c");
    }
}
