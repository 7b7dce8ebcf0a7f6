//! What an operator reads must be true (issue 14, "What an operator reads must be true"): the event log names the
//! failure's whole cause and the update it is about, a flip whose reboot cannot be asked for is a success, `status`
//! shows the boot state as `edge-bootctl` does, what each slot holds, and whether an install runs or was stopped,
//! and the machine-readable lines each carry their schema.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bootctl::rules::Slot;
use common::{bundle, payload, Spec, TestNode};

fn events(n: &TestNode) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(n.path("data/events.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).expect("an event line is JSON")).collect()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The error and its causes as `main` prints them on stderr, joined as the event log joins them.
fn chain_on_stderr(out: &std::process::Output) -> String {
    let err = stderr(out);
    let mut parts = Vec::new();
    for line in err.lines() {
        if let Some(e) = line.strip_prefix("edge-update: error: ") {
            parts.push(e.to_owned());
        } else if let Some(c) = line.trim_start().strip_prefix("caused by: ") {
            parts.push(c.to_owned());
        }
    }
    parts.join(": ")
}

fn commit_v2(n: &TestNode) {
    bundle(&n.path("v2.bundle"), &payload(1 << 20, 2), &Spec::new("2.0", 2));
    n.ok(&["install", n.path("v2.bundle").to_str().expect("utf8")]);
    assert_eq!(n.power_on(), Slot::B);
    n.ok(&["boot"]);
    assert_eq!(n.phase().as_deref(), Some("committed"));
}

#[test]
fn issue_14_a_failed_install_records_its_whole_cause_and_no_other_update() {
    let n = TestNode::new();
    commit_v2(&n);
    // Not a bundle at all: the cause ("bad magic" and the like) is only known below the top error.
    std::fs::write(n.path("root1.ext4"), vec![0x55; 4096]).expect("write");
    let out = n.run(&["install", n.path("root1.ext4").to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let e = events(&n).pop().expect("an event");
    assert_eq!((e["schema"].as_str(), e["event"].as_str()), (Some("edge-update.event/1"), Some("install-failed")));
    let chain = chain_on_stderr(&out);
    assert!(chain.matches(": ").count() >= 1, "a cause below the error: {chain}");
    assert_eq!(e["reason"].as_str(), Some(chain.as_str()), "{e}");
    // Not the committed update's target, version and phase: this install never got a bundle to name.
    assert!(e.get("target").is_none() && e.get("version").is_none() && e.get("phase").is_none(), "{e}");

    // A bundle that was read and refused (a downgrade) is named, without the journal's phase of another update.
    bundle(&n.path("v1.bundle"), &payload(1 << 20, 1), &Spec::new("1.5", 1));
    let out = n.run(&["install", n.path("v1.bundle").to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let e = events(&n).pop().expect("an event");
    assert_eq!(
        (e["event"].as_str(), e["target"].as_str(), e["version"].as_str()),
        (Some("install-failed"), Some("A"), Some("1.5"))
    );
    assert!(e.get("phase").is_none(), "{e}");
    assert_eq!(e["reason"].as_str(), Some(chain_on_stderr(&out).as_str()));
    // Every line of the log carries the schema, and status shows the last failure.
    assert!(events(&n).iter().all(|e| e["schema"] == "edge-update.event/1"));
    let s = n.status();
    assert_eq!(s["last_failure"]["version"].as_str(), Some("1.5"), "{s}");
    assert_eq!(s["journal"]["update"]["phase"].as_str(), Some("committed"));
}

#[test]
fn issue_14_a_flip_whose_reboot_cannot_be_asked_for_is_a_success() {
    let n = TestNode::new();
    n.set_config_key("init_socket", &format!("{:?}", n.path("no-edge-init.sock").display().to_string()));
    bundle(&n.path("v2.bundle"), &payload(1 << 20, 2), &Spec::new("2.0", 2));
    let out = n.run(&["install", "--reboot", "--json", n.path("v2.bundle").to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().expect("a result")).expect("json");
    assert_eq!((result["schema"].as_str(), result["result"].as_str()), (Some("edge-update.result/1"), Some("flipped")));
    assert_eq!(result["reboot"], false);
    assert!(result["reboot_error"].as_str().is_some_and(|r| !r.is_empty()), "{result}");
    let kinds: Vec<String> = events(&n).iter().map(|e| e["event"].as_str().expect("event").to_owned()).collect();
    assert_eq!(kinds, ["started", "flipped", "reboot-failed"]);
    // Flipped, not waiting for a reboot that was never asked for; the next reboot tries it all the same.
    assert_eq!(n.phase().as_deref(), Some("flipped"));
    assert_eq!(n.status()["journal"]["update"]["reboot"], false);
    assert_eq!(n.power_on(), Slot::B);
    n.ok(&["boot"]);
    assert_eq!(n.phase().as_deref(), Some("committed"));
}

#[test]
fn issue_14_status_shows_the_boot_state_as_bootctl_does_and_what_each_slot_holds() {
    let n = TestNode::new();
    bundle(&n.path("v2.bundle"), &payload(1 << 20, 2), &Spec::new("2.0", 2));
    n.ok(&["install", n.path("v2.bundle").to_str().expect("utf8")]);
    let s = n.status();
    assert_eq!(s["schema"], "edge-update.status/1");
    assert_eq!((s["boot"]["next_boot"].as_str(), s["boot"]["next_slot"].as_str()), (Some("trial"), Some("B")));
    assert_eq!(s["boot"]["last_good"], "A");
    let b = &s["slots"][1];
    assert_eq!(
        (b["slot"].as_str(), b["active"].as_bool(), b["good"].as_bool(), b["tries"].as_u64()),
        (Some("B"), Some(true), Some(false), Some(3))
    );
    // The slot just installed holds its bundle (not "unknown"), in the journal's words.
    assert_eq!(b["bundle"]["version"], "2.0");
    assert_eq!(b["bundle"]["manifest_blake3"], s["journal"]["update"]["bundle"]["manifest_blake3"]);
    assert_eq!(s["slots"][0]["booted"], true);
    // The text shows the boot state exactly as edge-bootctl's library renders it.
    let config = bootctl::config::Config { grub_state_dir: n.path("esp"), ..bootctl::config::Config::default() };
    let mut backend = bootctl::backend::open(&config, bootctl::blockdev::Access::ReadOnly).expect("open");
    let bootctl_text = bootctl::wire::Status::read(&mut *backend, Some(Slot::A)).expect("read").human();
    let text = n.ok(&["status"]);
    assert!(text.starts_with(&bootctl_text), "{text}\n---\n{bootctl_text}");
}

#[test]
fn issue_14_progress_lines_are_synced_progress_each_once_with_a_schema() {
    let n = TestNode::new();
    bundle(&n.path("v2.bundle"), &payload(3 << 20, 2), &Spec::new("2.0", 2));
    let out = n.ok(&["install", "--json", n.path("v2.bundle").to_str().expect("utf8")]);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let (result, progress) = lines.split_last().expect("lines");
    assert_eq!(result["schema"], "edge-update.result/1");
    assert!(!progress.is_empty());
    assert!(progress.iter().all(|p| p["schema"] == "edge-update.progress/1" && p.get("synced").is_none()), "{out}");
    assert!(progress.windows(2).all(|w| w[0] != w[1]), "a line repeated: {out}");
    let last_writing = progress.iter().rfind(|p| p["stage"] == "writing").expect("writing");
    assert_eq!(last_writing["done_bytes"], last_writing["image_bytes"]);
}

#[test]
fn issue_14_a_second_cancel_is_not_an_error() {
    let n = TestNode::new();
    bundle(&n.path("v2.bundle"), &payload(1 << 20, 2), &Spec::new("2.0", 2));
    n.ok(&["install", n.path("v2.bundle").to_str().expect("utf8")]);
    n.ok(&["cancel"]);
    let state = n.state();
    n.ok(&["cancel"]);
    assert_eq!(n.phase().as_deref(), Some("cancelled"));
    assert_eq!(n.state(), state);
    let cancels = events(&n).iter().filter(|e| e["event"] == "cancelled").count();
    assert_eq!(cancels, 1);
}

/// An install from a pipe fed only the first part of the bundle: it has started writing and waits for more.
struct Waiting {
    child: Child,
    _stdin: std::process::ChildStdin,
}

fn start_waiting(n: &TestNode, bundle_bytes: &[u8]) -> Waiting {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-update"))
        .arg("--config")
        .arg(n.path("update.toml"))
        .args(["install", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&bundle_bytes[..bundle_bytes.len() / 2]).expect("feed");
    // The install holds the lock and has recorded its update once it is writing chunks.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = n.status();
        if s["running"] == true && s["journal"]["update"]["phase"] == "downloading" {
            break;
        }
        assert!(Instant::now() < deadline, "the install never started: {s}");
        std::thread::yield_now();
    }
    Waiting { child, _stdin: stdin }
}

#[test]
fn issue_14_status_tells_a_running_install_from_a_stopped_one_and_the_stop_is_recorded() {
    let n = TestNode::new();
    let path = n.path("v2.bundle");
    bundle(&path, &payload(3 << 20, 2), &Spec::new("2.0", 2));
    let bytes = std::fs::read(&path).expect("read");

    // Killed outright: nothing can be recorded then, but status no longer claims it runs.
    let mut w = start_waiting(&n, &bytes);
    assert!(n.ok(&["status"]).contains(", running,"));
    w.child.kill().expect("kill");
    w.child.wait().expect("wait");
    let s = n.status();
    assert_eq!((s["running"].as_bool(), s["journal"]["update"]["phase"].as_str()), (Some(false), Some("downloading")));
    assert!(n.ok(&["status"]).contains("interrupted (no edge-update is running"));

    // Stopped with SIGTERM: recorded as interrupted, and the exit code is the signal's.
    let mut w = start_waiting(&n, &bytes);
    let pid = w.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = w.child.wait().expect("wait");
    assert_eq!(status.code(), Some(143));
    let e = events(&n).pop().expect("an event");
    assert_eq!(
        (e["event"].as_str(), e["phase"].as_str(), e["target"].as_str()),
        (Some("interrupted"), Some("downloading"), Some("B"))
    );
    assert_eq!(n.status()["last_failure"]["event"], "interrupted");

    // Resumed from another source: the journal and the event log name the new one, and the install completes.
    n.ok(&["install", path.to_str().expect("utf8")]);
    let s = n.status();
    assert_eq!(s["journal"]["update"]["source"].as_str(), path.to_str());
    assert_eq!(s["journal"]["update"]["phase"], "flipped");
    let kinds: Vec<String> = events(&n).iter().map(|e| e["event"].as_str().expect("event").to_owned()).collect();
    assert!(kinds.ends_with(&["resumed".to_owned(), "flipped".to_owned()]), "{kinds:?}");
}

#[test]
fn issue_14_a_rollback_is_recorded_with_its_reason() {
    let n = TestNode::with_config(
        "[health]\ndeadline_secs = 30\n[[health.commands]]\nargv = [\"sh\", \"-c\", \"echo no app >&2; exit 1\"]\nattempts = 1",
    );
    bundle(&n.path("v2.bundle"), &payload(1 << 20, 2), &Spec::new("2.0", 2));
    n.ok(&["install", n.path("v2.bundle").to_str().expect("utf8")]);
    assert_eq!(n.power_on(), Slot::B);
    assert_eq!(n.run(&["boot"]).status.code(), Some(8));
    assert_eq!(n.power_on(), Slot::A);
    n.ok(&["boot"]);
    let s = n.status();
    let reason = s["journal"]["update"]["reason"].as_str().expect("a reason").to_owned();
    assert!(reason.ends_with("stderr: no app"), "{reason}");
    for kind in ["rolling-back", "rolled-back"] {
        let e = events(&n).into_iter().find(|e| e["event"] == kind).expect(kind);
        assert_eq!(e["reason"].as_str(), Some(reason.as_str()), "{e}");
    }
    assert_eq!(s["last_failure"]["event"], "rolled-back");
}

/// A stand-in for `edge-init`'s control socket that takes one request line, tells the test it has it, then answers
/// `reply` (or closes without an answer) once the test says so.
fn init_stub(
    path: std::path::PathBuf,
    reply: Option<&'static str>,
) -> (std::sync::mpsc::Receiver<String>, std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    use std::io::BufRead;
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    let (got_tx, got_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().expect("accept");
        let mut line = String::new();
        std::io::BufReader::new(&s).read_line(&mut line).expect("read");
        got_tx.send(line).expect("tell the test");
        let _ = go_rx.recv();
        if let Some(reply) = reply {
            let _ = (&s).write_all(format!("{reply}\n").as_bytes());
        }
    });
    (got_rx, go_tx, server)
}

#[test]
fn issue_14_a_reboot_that_edge_init_refuses_is_no_reboot() {
    for reply in [Some("refused: shutting down"), None] {
        let n = TestNode::new();
        let sock = n.path("control.sock");
        n.set_config_key("init_socket", &format!("{:?}", sock.display().to_string()));
        bundle(&n.path("v2.bundle"), &payload(1 << 20, 2), &Spec::new("2.0", 2));
        let (got, go, server) = init_stub(sock, reply);
        let child = Command::new(env!("CARGO_BIN_EXE_edge-update"))
            .arg("--config")
            .arg(n.path("update.toml"))
            .args(["install", "--reboot", "--json", n.path("v2.bundle").to_str().expect("utf8")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        assert_eq!(got.recv().expect("a request"), "reboot\n");
        go.send(()).expect("answer");
        let out = child.wait_with_output().expect("wait");
        server.join().expect("stub");
        assert_eq!(out.status.code(), Some(0), "{reply:?}: {}", stderr(&out));
        let stdout = String::from_utf8(out.stdout).expect("utf8");
        let result: serde_json::Value = serde_json::from_str(stdout.lines().last().expect("a result")).expect("json");
        assert_eq!(result["reboot"], false, "{reply:?}: {result}");
        let kinds: Vec<String> = events(&n).iter().map(|e| e["event"].as_str().expect("event").to_owned()).collect();
        assert_eq!(kinds, ["started", "flipped", "reboot-failed"], "{reply:?}");
        assert_eq!(n.phase().as_deref(), Some("flipped"));
    }
}

/// After a `--reboot` flip, `edge-init` answers `ok` and starts its shutdown, which stops every service with
/// SIGTERM, the install among them: that is the install done, not interrupted.
#[test]
fn issue_14_a_stop_signal_after_the_flip_is_a_finished_install() {
    let n = TestNode::new();
    let sock = n.path("control.sock");
    n.set_config_key("init_socket", &format!("{:?}", sock.display().to_string()));
    bundle(&n.path("v2.bundle"), &payload(1 << 20, 2), &Spec::new("2.0", 2));
    let (got, go, server) = init_stub(sock, Some("ok"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-update"))
        .arg("--config")
        .arg(n.path("update.toml"))
        .args(["install", "--reboot", n.path("v2.bundle").to_str().expect("utf8")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert_eq!(got.recv().expect("a request"), "reboot\n");
    // The shutdown's SIGTERM arrives while the install waits for the answer.
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = child.wait().expect("wait");
    go.send(()).expect("let the stub go");
    server.join().expect("stub");
    assert_eq!(status.code(), Some(0));
    let kinds: Vec<String> = events(&n).iter().map(|e| e["event"].as_str().expect("event").to_owned()).collect();
    assert_eq!(kinds, ["started", "flipped"]);
    assert_eq!(n.phase().as_deref(), Some("rebooting"));
    assert_eq!(n.power_on(), Slot::B);
}
