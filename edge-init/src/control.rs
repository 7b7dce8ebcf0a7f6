//! The server side of the control socket (docs/edge-init.md, "Control socket"): reading one request from a
//! connection, refusing anyone but root, and writing the typed reply of `platform::ctl`; and the status reply, in
//! its text and JSON forms, built from the supervisor's states.
//!
//! It is a module of its own so that PID 1's loop keeps only the decisions (what a request does to the services);
//! the bytes on the wire are spelt by `platform::ctl`, beside the client that reads them.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use platform::ctl::{Refusal, Reply, Request, ServiceState, ServiceStatus, Status, STATUS_SCHEMA};

use crate::error::{chain, Error};
use crate::supervise::{describe, NotReady, State};
use crate::sys::{self, Exit, Halt};

/// Serves one control connection: reads its request line, refuses a peer that is not root, and otherwise writes
/// what `answer` (given the request and the peer's pid) replies. Returns the shutdown a served `reboot`,
/// `poweroff` or `halt` asks for, to start once the connection is closed.
pub fn serve(stream: UnixStream, answer: impl FnOnce(Request, u32) -> Reply) -> Option<Halt> {
    let (pid, uid) = match sys::peer(&stream) {
        Ok(p) => p,
        Err(source) => {
            log::warn!("{}", chain(&Error::PeerCredentials { source }));
            return None;
        }
    };
    let mut out = &stream;
    let _ = stream.set_nonblocking(false);
    // Bounds on a slow client: the loop serves one connection at a time.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    // The request is read even from a peer that is refused, so that it gets the answer rather than a reset.
    if BufReader::new((&stream).take(512)).read_line(&mut line).is_err() {
        return None;
    }
    if uid != 0 {
        log::warn!("control socket: refused pid {pid} (uid {uid}): only root may ask");
        let _ = out.write_all(Reply::Refused(Refusal::NotRoot).to_wire().as_bytes());
        return None;
    }
    let (reply, how) = match Request::parse(&line) {
        Err(_) => (Reply::Refused(Refusal::UnknownRequest { line: line.trim().to_owned() }), None),
        Ok(req) => {
            let how = halt_of(&req);
            (answer(req, pid), how)
        }
    };
    let _ = out.write_all(reply.to_wire().as_bytes());
    drop(stream);
    how
}

/// The shutdown a request asks for.
fn halt_of(req: &Request) -> Option<Halt> {
    match req {
        Request::Reboot => Some(Halt::Reboot),
        Request::Poweroff => Some(Halt::PowerOff),
        Request::Halt => Some(Halt::Halt),
        _ => None,
    }
}

/// One service as the status reply shows it.
#[derive(Debug, Clone, Copy)]
pub struct ServiceView<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its state.
    pub state: &'a State,
    /// How many times it was started again since boot.
    pub n_restarts: u32,
    /// Its last `STATUS=`.
    pub status: &'a str,
    /// Crashes it may still have within its window.
    pub crash_budget_left: u32,
}

/// What the status reply shows: every service, the data partition, the watchdog and the health answer.
#[derive(Debug, Clone)]
pub struct View<'a> {
    /// Every service, in the order of the services file.
    pub services: Vec<ServiceView<'a>>,
    /// The data partition, in words.
    pub data: &'a str,
    /// The hardware watchdog, in words.
    pub watchdog: String,
    /// The last reset was the watchdog's.
    pub watchdog_reset: bool,
    /// `Ok`, or what is not ready.
    pub health: Result<(), NotReady>,
}

impl View<'_> {
    /// `ctl status`: one line per service, then the data partition, the watchdog and the health.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for s in &self.services {
            let mut line = format!("{:<16} {}", s.name, describe(s.state));
            if s.n_restarts > 0 {
                line.push_str(&format!(", {} restarts", s.n_restarts));
            }
            if !s.status.is_empty() {
                line.push_str(&format!(" ({})", s.status));
            }
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str(&format!("data: {}\nwatchdog: {}\n", self.data, self.watchdog));
        out.push_str(&format!(
            "health: {}\n",
            self.health.as_ref().map_or_else(|e| format!("not ready: {e}"), |()| "ok".to_owned())
        ));
        out
    }

    /// `ctl status --json`: the typed status (docs/json.md).
    pub fn status(&self) -> Status {
        Status {
            schema: STATUS_SCHEMA.to_owned(),
            services: self
                .services
                .iter()
                .map(|s| ServiceStatus {
                    crash_budget_left: s.crash_budget_left,
                    ..service_status(s.name, s.state, s.n_restarts, s.status)
                })
                .collect(),
            data: self.data.to_owned(),
            watchdog: self.watchdog.clone(),
            watchdog_reset: self.watchdog_reset,
            health: self.health.as_ref().map_or_else(ToString::to_string, |()| "ok".to_owned()),
        }
    }
}

/// A service's state as the JSON reply has it: `state`, one kebab-case word, and beside it what the text form puts
/// in words: `pid` while a process runs, `exit_code` or `signal` once it has exited, `reason` once it has failed;
/// each null otherwise.
fn service_status(name: &str, state: &State, n_restarts: u32, status: &str) -> ServiceStatus {
    let (state, pid, exit_code, signal, reason) = match state {
        State::Waiting => (ServiceState::Waiting, None, None, None, None),
        State::Starting { pid, .. } => (ServiceState::Starting, Some(*pid), None, None, None),
        State::Up { pid, .. } => (ServiceState::Up, Some(*pid), None, None, None),
        State::Stopping { pid, .. } => (ServiceState::Stopping, Some(*pid), None, None, None),
        State::Backoff { .. } => (ServiceState::Restarting, None, None, None, None),
        State::Exited { exit: None } => (ServiceState::Stopped, None, None, None, None),
        State::Exited { exit: Some(Exit::Code(c)) } => (ServiceState::Exited, None, Some(*c), None, None),
        State::Exited { exit: Some(Exit::Signal(s)) } => (ServiceState::Exited, None, None, Some(*s), None),
        State::Failed { reason } => (ServiceState::Failed, None, None, None, Some(reason.clone())),
    };
    ServiceStatus {
        name: name.to_owned(),
        state,
        pid,
        exit_code,
        signal,
        reason,
        n_restarts,
        crash_budget_left: 0,
        status: status.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_14_a_state_is_one_word_and_its_details() {
        let check = |state: State, expected: &str| {
            let json = format!("{{{}}}", service_status("s", &state, 0, "").state_fields());
            let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
            assert_eq!(v, serde_json::from_str::<serde_json::Value>(expected).expect("expected JSON"), "{state:?}");
        };
        let since = Duration::ZERO;
        let none = r#""pid":null,"exit_code":null,"signal":null,"reason":null"#;
        check(State::Waiting, &format!(r#"{{"state":"waiting",{none}}}"#));
        check(
            State::Starting { pid: 7, since },
            r#"{"state":"starting","pid":7,"exit_code":null,"signal":null,"reason":null}"#,
        );
        check(State::Up { pid: 8, since }, r#"{"state":"up","pid":8,"exit_code":null,"signal":null,"reason":null}"#);
        check(
            State::Stopping { pid: 9, deadline: since, restart: true },
            r#"{"state":"stopping","pid":9,"exit_code":null,"signal":null,"reason":null}"#,
        );
        check(State::Backoff { until: since }, &format!(r#"{{"state":"restarting",{none}}}"#));
        check(State::Exited { exit: None }, &format!(r#"{{"state":"stopped",{none}}}"#));
        check(
            State::Exited { exit: Some(Exit::Code(3)) },
            r#"{"state":"exited","pid":null,"exit_code":3,"signal":null,"reason":null}"#,
        );
        check(
            State::Exited { exit: Some(Exit::Signal(9)) },
            r#"{"state":"exited","pid":null,"exit_code":null,"signal":9,"reason":null}"#,
        );
        check(
            State::Failed { reason: "crashed \"3\" times".to_owned() },
            r#"{"state":"failed","pid":null,"exit_code":null,"signal":null,"reason":"crashed \"3\" times"}"#,
        );
    }

    #[test]
    fn the_status_text_and_json_say_the_same() {
        let (up, failed) = (State::Up { pid: 212, since: Duration::ZERO }, State::Failed { reason: "crashed".into() });
        let view = View {
            services: vec![
                ServiceView { name: "app", state: &up, n_restarts: 0, status: "serving", crash_budget_left: 5 },
                ServiceView { name: "update-boot", state: &failed, n_restarts: 2, status: "", crash_budget_left: 0 },
            ],
            data: "mounted /dev/vda4 on /data",
            watchdog: "none".into(),
            watchdog_reset: false,
            health: Err(NotReady { services: vec!["update-boot failed: crashed".into()] }),
        };
        assert_eq!(
            view.text(),
            "app              up (pid 212) (serving)\nupdate-boot      failed: crashed, 2 restarts\n\
             data: mounted /dev/vda4 on /data\nwatchdog: none\nhealth: not ready: update-boot failed: crashed\n"
        );
        let json = view.status().to_json();
        assert!(json.starts_with(
            "{\"schema\":\"edge-init.status/1\",\"services\":[{\"name\":\"app\",\"state\":\"up\",\"pid\":212,"
        ));
        assert!(json.ends_with(",\"watchdog_reset\":false,\"health\":\"update-boot failed: crashed\"}"), "{json}");
        assert!(json.contains("\"n_restarts\":0,\"crash_budget_left\":5,\"status\":\"serving\""), "{json}");
    }
}
