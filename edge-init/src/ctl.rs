//! The control socket's protocol and its client, `edge-init ctl` (docs/edge-init.md, "Control socket").
//! One request line, then the answer: a first line `ok` or the reason for a refusal, and for `status` the body.
//! `edge-update` uses the same socket for `health` and `reboot`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The control socket's default path.
pub const SOCKET: &str = "/run/edge-init/control.sock";

/// What a client can ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Every service and its state, the data partition and the watchdog, as text.
    Status,
    /// The same as JSON.
    StatusJson,
    /// `ok` when every service is up and none is restarting, else what is not (`edge-update`'s health question).
    Health,
    /// Start a stopped or failed service.
    Start(String),
    /// Stop a service (it stays stopped until `start`).
    Stop(String),
    /// Stop and start a service.
    Restart(String),
    /// Shut down and restart the machine.
    Reboot,
    /// Shut down and power off.
    Poweroff,
    /// Shut down and halt.
    Halt,
}

impl Request {
    /// Parses one request line.
    pub fn parse(line: &str) -> Result<Request, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        Ok(match words.as_slice() {
            ["status"] => Request::Status,
            ["status", "--json"] => Request::StatusJson,
            ["health"] => Request::Health,
            ["start", s] => Request::Start((*s).to_owned()),
            ["stop", s] => Request::Stop((*s).to_owned()),
            ["restart", s] => Request::Restart((*s).to_owned()),
            ["reboot"] => Request::Reboot,
            ["poweroff"] => Request::Poweroff,
            ["halt"] => Request::Halt,
            _ => return Err(format!("unknown request {:?}", line.trim())),
        })
    }
}

/// Quotes a string for JSON.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Sends `request` and returns the answer: `Ok(body)` after an `ok` line, `Err(reason)` otherwise.
pub fn ask(socket: &Path, request: &str) -> io::Result<Result<String, String>> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(format!("{request}\n").as_bytes())?;
    let mut reader = BufReader::new(s);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut body = String::new();
    reader.read_to_string(&mut body)?;
    Ok(if first.trim_end() == "ok" { Ok(body) } else { Err(first.trim_end().to_owned()) })
}

/// `edge-init ctl`'s usage.
pub const USAGE: &str = "usage: edge-init ctl [--socket PATH] status [--json] | health | start SVC | stop SVC | \
                         restart SVC | reboot | poweroff | halt";

/// `edge-init notify`'s usage.
pub const NOTIFY_USAGE: &str = "usage: edge-init notify READY=1 [STATUS=text]...";

/// Whether `args` ask for help (`--help` or `-h` anywhere: no service name or notify word starts with `-`).
fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "--help" || a == "-h")
}

/// `edge-init ctl ARGS...`: exit 0 when the answer is `ok` (or on `--help`), 1 when refused or unreachable, 2 for
/// bad usage.
pub fn main(args: &[String]) -> i32 {
    if wants_help(args) {
        println!("{USAGE}");
        return 0;
    }
    let mut socket = SOCKET.to_owned();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--socket" => match it.next() {
                Some(p) => socket = p.clone(),
                None => return usage(),
            },
            _ => rest.push(a.as_str()),
        }
    }
    let line = rest.join(" ");
    if Request::parse(&line).is_err() {
        return usage();
    }
    match ask(Path::new(&socket), &line) {
        Ok(Ok(body)) => {
            print!("{body}");
            0
        }
        Ok(Err(reason)) => {
            eprintln!("edge-init ctl {line}: {reason}");
            1
        }
        Err(e) => {
            eprintln!("edge-init ctl: cannot reach {socket}: {e}");
            1
        }
    }
}

/// `edge-init notify READY=1 [STATUS=...]`: sd_notify for services written as shell scripts; sends the words as
/// one datagram to `$NOTIFY_SOCKET` and waits (up to 5 s) until `edge-init` has read it, so that it still finds
/// this process, and through its session its service, when it reads the sender's credentials.
pub fn notify(args: &[String], socket: Option<&std::ffi::OsStr>) -> i32 {
    if wants_help(args) {
        println!("{NOTIFY_USAGE}");
        return 0;
    }
    // The words first: bad usage is exit 2 wherever it is run, with or without a socket to send to.
    if args.is_empty() || args.iter().any(|a| !a.contains('=')) {
        eprintln!("{NOTIFY_USAGE}");
        return 2;
    }
    let Some(socket) = socket else {
        eprintln!("edge-init notify: NOTIFY_SOCKET is not set (not started by edge-init?)");
        return 1;
    };
    let sent = std::os::unix::net::UnixDatagram::unbound().and_then(|s| {
        s.send_to(args.join("\n").as_bytes(), socket)?;
        Ok(s)
    });
    match sent {
        Ok(s) => {
            for _ in 0..500 {
                if crate::sys::unread(&s).map_or(true, |n| n == 0) {
                    return 0;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            0
        }
        Err(e) => {
            eprintln!("edge-init notify: {}: {e}", Path::new(socket).display());
            1
        }
    }
}

fn usage() -> i32 {
    eprintln!("{USAGE}");
    2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let check = |line: &str, expected: Result<Request, ()>| {
            assert_eq!(Request::parse(line).map_err(|_| ()), expected, "{line}");
        };
        check("status\n", Ok(Request::Status));
        check("status --json", Ok(Request::StatusJson));
        check("health", Ok(Request::Health));
        check("start app", Ok(Request::Start("app".into())));
        check("stop app", Ok(Request::Stop("app".into())));
        check("restart app", Ok(Request::Restart("app".into())));
        check("reboot", Ok(Request::Reboot));
        check("poweroff", Ok(Request::Poweroff));
        check("halt", Ok(Request::Halt));
        check("start", Err(()));
        check("start a b", Err(()));
        check("", Err(()));
        check("format /data", Err(()));
    }

    #[test]
    fn json_strings() {
        let check = |s: &str, expected: &str| assert_eq!(json_string(s), expected, "{s}");
        check("app", "\"app\"");
        check("a \"b\"\\", "\"a \\\"b\\\"\\\\\"");
        check("x\ny\u{1}", "\"x\\ny\\u0001\"");
    }
}
