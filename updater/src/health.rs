//! The health checks of a trial boot (docs/updater.md, "Health checks"): commands that must exit 0 within their
//! timeout, HTTP probes on the node, and `edge-init`'s answer to "are all services up and none restarting".
//! Every check must pass within one deadline; a check may be tried a few times before it counts as failed,
//! because services take a while to come up after a boot.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{CommandCheck, Config, HttpCheck};

/// Pause between two tries of a check.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

/// How much of a failed command's stderr its reason keeps: the end, where the error usually is.
const STDERR_TAIL_BYTES: usize = 1024;

/// Runs every check; `Err` says which one failed and how.
pub fn run(config: &Config) -> Result<(), String> {
    let deadline = Instant::now() + config.health_deadline();
    let h = &config.health;
    if h.services {
        retry("services", 10, deadline, || services(&config.init_socket))?;
    }
    for c in &h.commands {
        retry(&format!("command {:?}", c.argv.join(" ")), c.attempts, deadline, || command(c, deadline))?;
    }
    for c in &h.http {
        retry(&format!("probe {}", c.url), c.attempts, deadline, || probe(c, deadline))?;
    }
    Ok(())
}

fn retry(
    name: &str,
    attempts: u32,
    deadline: Instant,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        match check() {
            Ok(()) => {
                log::info!("health check {name} passed");
                return Ok(());
            }
            Err(e) => {
                log::warn!("health check {name} failed (try {attempt}/{attempts}): {e}");
                last = e;
            }
        }
        if Instant::now() + RETRY_PAUSE >= deadline {
            return Err(format!("{name}: {last} (deadline reached)"));
        }
        if attempt < attempts {
            std::thread::sleep(RETRY_PAUSE);
        }
    }
    Err(format!("{name}: {last}"))
}

fn remaining(deadline: Instant, cap: Duration) -> Duration {
    deadline.saturating_duration_since(Instant::now()).min(cap)
}

/// Runs a command in its own process group, killing the group at the timeout.
fn command(c: &CommandCheck, deadline: Instant) -> Result<(), String> {
    let timeout = remaining(deadline, Duration::from_secs(c.timeout_secs));
    let mut child = Command::new(&c.argv[0])
        .args(&c.argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
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
        Ok(Ok(status)) => Err(format!("exited with {status}")),
        Ok(Err(e)) => Err(format!("cannot wait: {e}")),
        Err(_) => {
            let _ = crate::sys::kill_process_group(pgid);
            Err(format!("timed out after {} s", timeout.as_secs_f32()))
        }
    };
    // Reaps the child (killed above when it timed out).
    let _ = waiter.join();
    // Anything the command left running in its group goes too, which also closes the stderr pipe it held.
    let _ = crate::sys::kill_process_group(pgid);
    result.map_err(|e| {
        // A process that left the group may hold the pipe open: its stderr is then not waited for.
        let tail = err_rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
        if tail.is_empty() {
            e
        } else {
            format!("{e}; stderr: {tail}")
        }
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
fn probe(c: &HttpCheck, deadline: Instant) -> Result<(), String> {
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
        Err(e) => return Err(e.to_string()),
    };
    if status == c.status {
        Ok(())
    } else {
        Err(format!("status {status}, expected {}", c.status))
    }
}

/// Asks `edge-init` whether every service is up and none is restarting.
fn services(socket: &Path) -> Result<(), String> {
    match ask_init(socket, "health") {
        Ok(reply) if reply == "ok" => Ok(()),
        Ok(reply) => Err(format!("edge-init says: {reply}")),
        Err(e) => Err(format!("cannot ask edge-init at {}: {e}", socket.display())),
    }
}

/// Sends one request line to `edge-init`'s control socket and returns its one reply line (docs/updater.md,
/// "Talking to edge-init").
pub fn ask_init(socket: &Path, request: &str) -> io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(format!("{request}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(services(&c.init_socket), Ok(()));
        assert!(services(&c.init_socket).is_err_and(|e| e.contains("restarting: web")));
        server.join().expect("server");
    }
}
