//! The health checks of a trial boot (docs/updater.md, "Health checks"): commands that must exit 0 within their
//! timeout, HTTP probes on the node, and `edge-init`'s answer to "are all services up and none restarting".
//! Every check must pass within one deadline; a check may be tried a few times before it counts as failed,
//! because services take a while to come up after a boot.

use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use platform::ctl::{self, Refusal, Reply, Request};

use crate::config::{CommandCheck, Config, HttpCheck};

/// Pause between two tries of a check.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

/// How much of a failed command's stderr its reason keeps: the end, where the error usually is.
const STDERR_TAIL_BYTES: usize = 1024;

/// Which check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `edge-init`'s answer about the services.
    Services,
    /// A command, by its arguments.
    Command(Vec<String>),
    /// An HTTP probe, by its URL.
    Probe(String),
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Services => f.write_str("services"),
            Check::Command(argv) => write!(f, "command {:?}", argv.join(" ")),
            Check::Probe(url) => write!(f, "probe {url}"),
        }
    }
}

/// How a command check's process ended, when it did not pass.
#[derive(Debug)]
pub enum CommandEnd {
    /// It exited with a status other than 0, or was killed.
    Exited(ExitStatus),
    /// Waiting for it failed.
    Wait(io::Error),
    /// It ran past its timeout and was killed with its process group.
    TimedOut(Duration),
}

impl fmt::Display for CommandEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandEnd::Exited(status) => write!(f, "exited with {status}"),
            CommandEnd::Wait(e) => write!(f, "cannot wait: {e}"),
            CommandEnd::TimedOut(t) => write!(f, "timed out after {} s", t.as_secs_f32()),
        }
    }
}

/// What one try of a check found. Its text is the `reason` the journal and the event log keep, so each variant
/// says its cause in its own message (the reason is one line).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The command could not be started.
    #[error("cannot start: {error}")]
    StartCommand {
        /// Why.
        error: io::Error,
    },
    /// The command ended badly; the end of what it wrote on stderr, as one line.
    #[error("{end}{}", if stderr.is_empty() { String::new() } else { format!("; stderr: {stderr}") })]
    Command {
        /// How it ended.
        end: CommandEnd,
        /// The end of its stderr (line breaks as ` / `).
        stderr: String,
    },
    /// The probe got no HTTP answer (refused, timed out, TLS, a bad URL): the HTTP client's error.
    #[error("{error}")]
    ProbeTransport {
        /// What the HTTP client saw.
        error: ureq::Error,
    },
    /// The probe got another status than the one expected.
    #[error("status {status}, expected {expected}")]
    ProbeStatus {
        /// What came.
        status: u16,
        /// What the check expects.
        expected: u16,
    },
    /// `edge-init` answered that not every service is up.
    #[error("edge-init says: {refusal}")]
    ServicesNotReady {
        /// Its answer.
        refusal: Refusal,
    },
    /// `edge-init` could not be asked.
    #[error("{}", crate::error::chain(error))]
    AskInit {
        /// Why.
        error: platform::Error,
    },
}

/// A health check that failed its last try, or the deadline: what made the trial boot unhealthy.
#[derive(Debug, thiserror::Error)]
#[error("{check}: {failure}{}", if *deadline_reached { " (deadline reached)" } else { "" })]
pub struct Unhealthy {
    /// The check.
    pub check: Check,
    /// What its last try found.
    pub failure: Failure,
    /// Whether the checks' deadline ended the tries.
    pub deadline_reached: bool,
}

/// Runs every check; `Err` says which one failed and how.
pub fn run(config: &Config) -> Result<(), Unhealthy> {
    let deadline = Instant::now() + config.health_deadline();
    let h = &config.health;
    if h.services {
        retry(Check::Services, 10, deadline, || services(&config.init_socket))?;
    }
    for c in &h.commands {
        retry(Check::Command(c.argv.clone()), c.attempts, deadline, || command(c, deadline))?;
    }
    for c in &h.http {
        retry(Check::Probe(c.url.clone()), c.attempts, deadline, || probe(c, deadline))?;
    }
    Ok(())
}

fn retry(
    check: Check,
    attempts: u32,
    deadline: Instant,
    mut try_once: impl FnMut() -> Result<(), Failure>,
) -> Result<(), Unhealthy> {
    let mut attempt = 1;
    loop {
        let failure = match try_once() {
            Ok(()) => {
                log::info!("health check {check} passed");
                return Ok(());
            }
            Err(e) => {
                log::warn!("health check {check} failed (try {attempt}/{attempts}): {e}");
                e
            }
        };
        if Instant::now() + RETRY_PAUSE >= deadline {
            return Err(Unhealthy { check, failure, deadline_reached: true });
        }
        if attempt >= attempts.max(1) {
            return Err(Unhealthy { check, failure, deadline_reached: false });
        }
        std::thread::sleep(RETRY_PAUSE);
        attempt += 1;
    }
}

fn remaining(deadline: Instant, cap: Duration) -> Duration {
    deadline.saturating_duration_since(Instant::now()).min(cap)
}

/// Runs a command in its own process group, killing the group at the timeout.
fn command(c: &CommandCheck, deadline: Instant) -> Result<(), Failure> {
    let timeout = remaining(deadline, Duration::from_secs(c.timeout_secs));
    let mut child = Command::new(&c.argv[0])
        .args(&c.argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|error| Failure::StartCommand { error })?;
    let pgid = child.id();
    // The end of what the command says on stderr goes into its failure's reason; read on a thread so a chatty
    // command never blocks on a full pipe.
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            let _ = err_tx.send(read_tail(stderr, STDERR_TAIL_BYTES));
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(status);
    });
    let result = match rx.recv_timeout(timeout) {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(CommandEnd::Exited(status)),
        Ok(Err(e)) => Err(CommandEnd::Wait(e)),
        Err(_) => {
            let _ = crate::sys::kill_process_group(pgid);
            Err(CommandEnd::TimedOut(timeout))
        }
    };
    // Reaps the child (killed above when it timed out).
    let _ = waiter.join();
    // Anything the command left running in its group goes too, which also closes the stderr pipe it held.
    let _ = crate::sys::kill_process_group(pgid);
    result.map_err(|end| {
        // A process that left the group may hold the pipe open: its stderr is then not waited for.
        let stderr = err_rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
        Failure::Command { end, stderr }
    })
}

/// The last `max` bytes of a stream, as one line of text (line breaks as ` / `, empty lines dropped).
fn read_tail(mut r: impl io::Read, max: usize) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > max {
                    tail.drain(..tail.len() - max);
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&tail);
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" / ")
}

/// GETs a URL and compares the status.
fn probe(c: &HttpCheck, deadline: Instant) -> Result<(), Failure> {
    let timeout = remaining(deadline, Duration::from_secs(c.timeout_secs));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    let status = match agent.get(&c.url).call() {
        Ok(r) => r.status().as_u16(),
        // The check's name already carries the URL; say only what went wrong.
        Err(error) => return Err(Failure::ProbeTransport { error }),
    };
    if status == c.status {
        Ok(())
    } else {
        Err(Failure::ProbeStatus { status, expected: c.status })
    }
}

/// Asks `edge-init` whether every service is up and none is restarting.
fn services(socket: &Path) -> Result<(), Failure> {
    match ctl::ask(socket, &Request::Health) {
        Ok(Reply::Ok { .. }) => Ok(()),
        Ok(Reply::Refused(refusal)) => Err(Failure::ServicesNotReady { refusal }),
        Err(error) => Err(Failure::AskInit { error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    fn config(text: &str) -> Config {
        Config::parse(&format!("compatible = \"t\"\n[health]\ndeadline_secs = 20\n{text}"), Path::new("t")).expect("c")
    }

    #[test]
    fn command_checks() {
        let check = |argv: &str, ok: bool| {
            let c = config(&format!("[[health.commands]]\nargv = {argv}\ntimeout_secs = 1\nattempts = 1\n"));
            assert_eq!(run(&c).is_ok(), ok, "{argv}");
        };
        check("[\"true\"]", true);
        // A command that writes far more to stderr than a pipe holds still ends and passes: its stderr is drained.
        check("[\"sh\", \"-c\", \"head -c 1000000 /dev/zero >&2; exit 0\"]", true);
        check("[\"false\"]", false);
        check("[\"/nonexistent/check\"]", false);
        // A command past its timeout is killed with its whole group, and fails.
        check("[\"sh\", \"-c\", \"sleep 30 & sleep 30\"]", false);
    }

    /// A failed command's reason carries what it said on stderr (the end of it), as one line.
    #[test]
    fn issue_14_a_failed_command_check_keeps_its_stderr() {
        let c = config(
            "[[health.commands]]\nargv = [\"sh\", \"-c\", \"echo starting; echo k3s: disk full >&2; echo >&2; \
             echo see the log >&2; exit 3\"]\ntimeout_secs = 5\nattempts = 1\n",
        );
        let reason = run(&c).expect_err("fails");
        let reason = reason.to_string();
        assert!(reason.ends_with("stderr: k3s: disk full / see the log"), "{reason}");
        assert_eq!(read_tail(&b"a\nbcdef\n"[..], 4), "def");
    }

    #[test]
    fn services_check_asks_edge_init() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("control.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let server = std::thread::spawn(move || {
            for reply in ["ok", "restarting: web"] {
                let (s, _) = listener.accept().expect("accept");
                let mut line = String::new();
                BufReader::new(&s).read_line(&mut line).expect("read");
                assert_eq!(line, "health\n");
                (&s).write_all(format!("{reply}\n").as_bytes()).expect("write");
            }
        });
        let c = config("services = true\n");
        let c = Config { init_socket: sock, ..c };
        assert!(services(&c.init_socket).is_ok());
        let e = services(&c.init_socket);
        assert!(
            matches!(&e, Err(Failure::ServicesNotReady { refusal: Refusal::Other { line } }) if line == "restarting: web"),
            "{e:?}"
        );
        assert!(e.is_err_and(|e| e.to_string().contains("restarting: web")));
        server.join().expect("server");
    }
}
