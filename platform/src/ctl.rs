//! The protocol of `edge-init`'s control socket (docs/edge-init.md, "Control socket") as types, and its one
//! client. One request line, then the answer: a first line `ok` or the reason for a refusal, and for `status` the
//! body.
//!
//! It is a module of its own because the protocol has one server (`edge-init`'s control module) and several
//! clients (`edge-init ctl`, the updater's health check and reboot, later the fleet agent): the words of the
//! requests, the refusals and the status reply are spelt here only. The status reply derives `Serialize` and
//! `Deserialize` for clients that read it with serde_json; `edge-init` writes it with [`Status::to_json`], which
//! keeps serde_json out of PID 1 (a test checks that serde_json reads back the same value).

use std::fmt::{self, Write as _};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The control socket's path on a node.
pub const SOCKET: &str = "/run/edge-init/control.sock";

/// How long a client waits for an answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// `schema` of the `status --json` reply (docs/json.md).
pub const STATUS_SCHEMA: &str = "edge-init.status/1";

/// What a client can ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Every service and its state, the data partition and the watchdog, as text.
    Status,
    /// The same as JSON ([`Status`]).
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
    pub fn parse(line: &str) -> Result<Request> {
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
            _ => return Err(Error::ParseRequest { line: line.trim().to_owned() }),
        })
    }

    /// Whether an `ok` answer carries a body after its first line.
    pub fn has_body(&self) -> bool {
        matches!(self, Request::Status | Request::StatusJson)
    }
}

impl fmt::Display for Request {
    /// The request line, without its line break.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Status => f.write_str("status"),
            Request::StatusJson => f.write_str("status --json"),
            Request::Health => f.write_str("health"),
            Request::Start(s) => write!(f, "start {s}"),
            Request::Stop(s) => write!(f, "stop {s}"),
            Request::Restart(s) => write!(f, "restart {s}"),
            Request::Reboot => f.write_str("reboot"),
            Request::Poweroff => f.write_str("poweroff"),
            Request::Halt => f.write_str("halt"),
        }
    }
}

/// An answer other than `ok`: its first line, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The peer is not root.
    NotRoot,
    /// The request line is not one of the protocol's.
    UnknownRequest {
        /// The line, trimmed.
        line: String,
    },
    /// `start`, `stop` or `restart` of a service the services file does not have.
    NoService {
        /// The name asked for.
        name: String,
    },
    /// `start`, `stop` or `restart` while a shutdown runs.
    ShuttingDown,
    /// `health`: not every service is up, or one is restarting.
    NotReady {
        /// What is not, such as `app restarting`.
        why: String,
    },
    /// A first line this version does not know (from a newer `edge-init`).
    Other {
        /// The line.
        line: String,
    },
}

impl Refusal {
    /// Reads a first line other than `ok`.
    pub fn parse(line: &str) -> Refusal {
        let line = line.trim_end_matches(['\r', '\n']);
        if line == Refusal::NotRoot.to_string() {
            return Refusal::NotRoot;
        }
        if line == Refusal::ShuttingDown.to_string() {
            return Refusal::ShuttingDown;
        }
        if let Some(why) = line.strip_prefix("not ready: ") {
            return Refusal::NotReady { why: why.to_owned() };
        }
        if let Some(name) = line.strip_prefix("no service ") {
            return Refusal::NoService { name: name.to_owned() };
        }
        let unknown = line.strip_prefix("unknown request \"").and_then(|l| l.strip_suffix('"'));
        if let Some(l) = unknown.filter(|l| !l.contains('"') && !l.contains('\\')) {
            return Refusal::UnknownRequest { line: l.to_owned() };
        }
        Refusal::Other { line: line.to_owned() }
    }
}

impl fmt::Display for Refusal {
    /// The first line as it goes on the wire, without its line break.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotRoot => f.write_str("refused: only root may use the control socket"),
            Refusal::UnknownRequest { line } => write!(f, "unknown request {line:?}"),
            Refusal::NoService { name } => write!(f, "no service {name}"),
            Refusal::ShuttingDown => f.write_str("refused: shutting down"),
            Refusal::NotReady { why } => write!(f, "not ready: {why}"),
            Refusal::Other { line } => f.write_str(line),
        }
    }
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `ok`, and what followed that line: the status for `status` (text) and `status --json` (one JSON line),
    /// with its final line break; empty for every other request.
    Ok {
        /// The body.
        body: String,
    },
    /// Not done, and why.
    Refused(Refusal),
}

impl Reply {
    /// `ok` with no body.
    pub fn ok() -> Reply {
        Reply::Ok { body: String::new() }
    }

    /// `ok` with `text` as the body, ending in exactly one line break.
    pub fn ok_with(text: &str) -> Reply {
        Reply::Ok { body: format!("{}\n", text.trim_end()) }
    }

    /// The answer's bytes as they go on the wire.
    pub fn to_wire(&self) -> String {
        match self {
            Reply::Ok { body } => format!("ok\n{body}"),
            Reply::Refused(r) => format!("{r}\n"),
        }
    }
}

/// Sends `request` to the control socket at `socket` and reads the answer (for a request without a body, only its
/// first line: a server that keeps the connection open does not hold the client).
pub fn ask(socket: &Path, request: &Request) -> Result<Reply> {
    let io = |source| Error::AskInit { socket: socket.to_owned(), source };
    let mut s = UnixStream::connect(socket).map_err(io)?;
    s.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(io)?;
    s.write_all(format!("{request}\n").as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(s);
    let mut first = String::new();
    reader.read_line(&mut first).map_err(io)?;
    if first.is_empty() {
        return Err(Error::NoReply { socket: socket.to_owned() });
    }
    let first = first.trim_end_matches(['\r', '\n']);
    if first != "ok" {
        return Ok(Reply::Refused(Refusal::parse(first)));
    }
    let mut body = String::new();
    if request.has_body() {
        reader.read_to_string(&mut body).map_err(io)?;
    }
    Ok(Reply::Ok { body })
}

/// The answer to `status --json`: every service, the data partition, the watchdog and the health, in the words of
/// docs/json.md (docs/edge-init.md, "Control socket", has the table of fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// [`STATUS_SCHEMA`].
    pub schema: String,
    /// Every service, in the order of the services file.
    pub services: Vec<ServiceStatus>,
    /// The data partition, as the text form says it.
    pub data: String,
    /// The hardware watchdog, as the text form says it (`none` when there is none).
    pub watchdog: String,
    /// The watchdog's driver says the last reset was its own (`WDIOF_CARDRESET` in its boot status): the node hung.
    #[serde(default)]
    pub watchdog_reset: bool,
    /// `ok`, or what is not ready, as `health` answers.
    pub health: String,
}

/// One service in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Its name.
    pub name: String,
    /// Its state, one word.
    pub state: ServiceState,
    /// Its process while `starting`, `up` or `stopping`.
    pub pid: Option<u32>,
    /// Its exit status when `exited` by itself.
    pub exit_code: Option<i32>,
    /// The signal that killed it when `exited` by one.
    pub signal: Option<i32>,
    /// Why it `failed`.
    pub reason: Option<String>,
    /// How many times it was started again since boot.
    pub n_restarts: u32,
    /// Crashes it may still have within its crash window before it is given up (0 once `failed`).
    #[serde(default)]
    pub crash_budget_left: u32,
    /// Its last `STATUS=` (empty when none).
    pub status: String,
}

/// A service's state as `status --json` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceState {
    /// Waiting for the services it is `after`.
    Waiting,
    /// Started, not yet ready.
    Starting,
    /// Up.
    Up,
    /// Being stopped.
    Stopping,
    /// Waiting out its backoff before it starts again.
    Restarting,
    /// Stopped on request, before it ran.
    Stopped,
    /// Ended, and not started again.
    Exited,
    /// Given up: its crash budget is spent.
    Failed,
}

impl ServiceState {
    /// The word.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Waiting => "waiting",
            ServiceState::Starting => "starting",
            ServiceState::Up => "up",
            ServiceState::Stopping => "stopping",
            ServiceState::Restarting => "restarting",
            ServiceState::Stopped => "stopped",
            ServiceState::Exited => "exited",
            ServiceState::Failed => "failed",
        }
    }
}

impl Status {
    /// One line of JSON, fields in the documented order, written without serde_json (PID 1 does not link it).
    pub fn to_json(&self) -> String {
        let svcs: Vec<String> = self.services.iter().map(ServiceStatus::to_json).collect();
        format!(
            "{{\"schema\":{},\"services\":[{}],\"data\":{},\"watchdog\":{},\"watchdog_reset\":{},\"health\":{}}}",
            json_string(&self.schema),
            svcs.join(","),
            json_string(&self.data),
            json_string(&self.watchdog),
            self.watchdog_reset,
            json_string(&self.health)
        )
    }
}

impl ServiceStatus {
    /// One object of JSON, fields in the documented order.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"name\":{},{},\"n_restarts\":{},\"crash_budget_left\":{},\"status\":{}}}",
            json_string(&self.name),
            self.state_fields(),
            self.n_restarts,
            self.crash_budget_left,
            json_string(&self.status)
        )
    }

    /// `state` and its details (`pid`, `exit_code`, `signal`, `reason`), each null when it does not apply.
    pub fn state_fields(&self) -> String {
        fn or_null<T: ToString>(v: Option<T>) -> String {
            v.map_or_else(|| "null".to_owned(), |v| v.to_string())
        }
        format!(
            "\"state\":{},\"pid\":{},\"exit_code\":{},\"signal\":{},\"reason\":{}",
            json_string(self.state.as_str()),
            or_null(self.pid),
            or_null(self.exit_code),
            or_null(self.signal),
            self.reason.as_deref().map_or_else(|| "null".to_owned(), json_string)
        )
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
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let check = |line: &str, expected: Option<Request>| {
            let got = Request::parse(line);
            match (&got, &expected) {
                (Ok(r), Some(e)) => {
                    assert_eq!(r, e, "{line}");
                    assert_eq!(Request::parse(&r.to_string()).ok().as_ref(), Some(r), "{line} round trip");
                }
                (Err(Error::ParseRequest { line: l }), None) => assert_eq!(l, line.trim()),
                _ => panic!("{line}: {got:?}"),
            }
        };
        check("status\n", Some(Request::Status));
        check("status --json", Some(Request::StatusJson));
        check("health", Some(Request::Health));
        check("start app", Some(Request::Start("app".into())));
        check("stop app", Some(Request::Stop("app".into())));
        check("restart app", Some(Request::Restart("app".into())));
        check("reboot", Some(Request::Reboot));
        check("poweroff", Some(Request::Poweroff));
        check("halt", Some(Request::Halt));
        check("start", None);
        check("start a b", None);
        check("", None);
        check("format /data\n", None);
    }

    #[test]
    fn refusals_read_back_as_written() {
        let check = |r: Refusal, wire: &str| {
            assert_eq!(r.to_string(), wire);
            assert_eq!(Refusal::parse(wire), r, "{wire}");
            assert_eq!(Reply::Refused(r).to_wire(), format!("{wire}\n"));
        };
        check(Refusal::NotRoot, "refused: only root may use the control socket");
        check(Refusal::UnknownRequest { line: "format /data".into() }, "unknown request \"format /data\"");
        check(Refusal::NoService { name: "nosuch".into() }, "no service nosuch");
        check(Refusal::ShuttingDown, "refused: shutting down");
        check(Refusal::NotReady { why: "app restarting".into() }, "not ready: app restarting");
        check(Refusal::Other { line: "restarting: web".into() }, "restarting: web");
        // The refusal of a request that failed to parse is that error's own words.
        let err = Request::parse("format /data").expect_err("unknown");
        assert_eq!(err.to_string(), Refusal::UnknownRequest { line: "format /data".into() }.to_string());
    }

    #[test]
    fn replies_on_the_wire() {
        assert_eq!(Reply::ok().to_wire(), "ok\n");
        assert_eq!(Reply::ok_with("a\nb\n\n").to_wire(), "ok\na\nb\n");
        assert_eq!(Reply::ok_with("{}").to_wire(), "ok\n{}\n");
    }

    #[test]
    fn json_strings() {
        let check = |s: &str, expected: &str| assert_eq!(json_string(s), expected, "{s}");
        check("app", "\"app\"");
        check("a \"b\"\\", "\"a \\\"b\\\"\\\\\"");
        check("x\ny\u{1}", "\"x\\ny\\u0001\"");
    }

    fn service(state: ServiceState, pid: Option<u32>, exit_code: Option<i32>, reason: Option<&str>) -> ServiceStatus {
        ServiceStatus {
            name: "a\"pp".into(),
            state,
            pid,
            exit_code,
            signal: None,
            reason: reason.map(Into::into),
            n_restarts: 2,
            crash_budget_left: 3,
            status: "serving\tnow".into(),
        }
    }

    #[test]
    fn status_json_is_what_serde_reads_back() {
        let status = Status {
            schema: STATUS_SCHEMA.into(),
            services: vec![
                service(ServiceState::Up, Some(212), None, None),
                service(ServiceState::Exited, None, Some(3), None),
                service(ServiceState::Failed, None, None, Some("crashed \"3\" times")),
                service(ServiceState::Restarting, None, None, None),
            ],
            data: "mounted /dev/vda4 on /data".into(),
            watchdog: "none".into(),
            watchdog_reset: true,
            health: "ok".into(),
        };
        let json = status.to_json();
        assert!(!json.contains('\n'));
        assert_eq!(serde_json::from_str::<Status>(&json).expect("valid"), status);
        // Field order as documented, and the same text serde_json writes for these values.
        let by_serde: serde_json::Value = serde_json::to_value(&status).expect("serialize");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&json).expect("valid"), by_serde);
        assert!(json.starts_with(
            "{\"schema\":\"edge-init.status/1\",\"services\":[{\"name\":\"a\\\"pp\",\"state\":\"up\",\"pid\":212,\
             \"exit_code\":null,\"signal\":null,\"reason\":null,\"n_restarts\":2,\"crash_budget_left\":3,\
             \"status\":\"serving\\u0009now\"}"
        ));
    }

    #[test]
    fn the_client_reads_each_kind_of_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("control.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let answers: [(&str, &[u8]); 5] = [
            ("health\n", b"ok\n"),
            ("health\n", b"not ready: web restarting\n"),
            ("status\n", b"ok\napp up\nhealth: ok\n"),
            ("reboot\n", b"ok\n"),
            ("reboot\n", b""),
        ];
        let server = std::thread::spawn(move || {
            for (want, answer) in answers {
                let (s, _) = listener.accept().expect("accept");
                let mut line = String::new();
                BufReader::new(&s).read_line(&mut line).expect("read");
                assert_eq!(line, want);
                (&s).write_all(answer).expect("write");
            }
        });
        assert_eq!(ask(&sock, &Request::Health).expect("asked"), Reply::ok());
        assert_eq!(
            ask(&sock, &Request::Health).expect("asked"),
            Reply::Refused(Refusal::NotReady { why: "web restarting".into() })
        );
        assert_eq!(ask(&sock, &Request::Status).expect("asked"), Reply::Ok { body: "app up\nhealth: ok\n".into() });
        assert_eq!(ask(&sock, &Request::Reboot).expect("asked"), Reply::ok());
        assert!(matches!(ask(&sock, &Request::Reboot), Err(Error::NoReply { .. })));
        server.join().expect("server");
        assert!(matches!(ask(&dir.path().join("none.sock"), &Request::Health), Err(Error::AskInit { .. })));
    }
}
