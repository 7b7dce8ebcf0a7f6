//! `edge-agent` as an operator meets it: its help, a bad config's error and exit code, `id`, `status`, and `run`
//! signalling readiness before any network and retrying an endpoint that is not there.

mod support;

use std::process::{Command, Output};

fn edge_agent(node: &support::Node, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("--config")
        .arg(&node.config)
        .arg("--root")
        .arg(node.root())
        .args(args)
        .output()
        .expect("run edge-agent")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_names_the_verbs() {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent")).arg("--help").output().expect("run");
    assert!(out.status.success());
    let help = text(&out.stdout);
    for verb in ["run", "id", "status"] {
        assert!(help.contains(verb), "{help}");
    }
}

#[test]
fn a_bad_config_is_an_error_naming_file_and_key_with_exit_3() {
    let node = support::Node::new("http://127.0.0.1:9");
    let text_before = std::fs::read_to_string(&node.config).expect("config");
    std::fs::write(&node.config, format!("{text_before}jitter = 2.0\n")).expect("write");
    let out = edge_agent(&node, &["id"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("agent.toml") && err.contains("jitter"), "{err}");
    std::fs::write(&node.config, format!("{text_before}surprise = 1\n")).expect("write");
    let out = edge_agent(&node, &["id"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("surprise"), "{}", text(&out.stderr));
}

#[test]
fn id_prints_the_same_node_id_every_time_and_a_corrupt_key_stops_it() {
    let node = support::Node::new("http://127.0.0.1:9");
    let first = edge_agent(&node, &["id"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let id = text(&first.stdout).trim().to_owned();
    assert!(id.parse::<fleet_wire::node::NodeId>().is_ok(), "{id}");
    assert_eq!(text(&edge_agent(&node, &["id"]).stdout).trim(), id);
    let key = node.root().join("data/edge-agent/node.key");
    std::fs::write(&key, "garbage\n").expect("write");
    let out = edge_agent(&node, &["id"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("node.key"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&key).expect("key"), "garbage\n", "not replaced");
}

#[test]
fn status_shows_the_node_and_its_spool() {
    let ep = support::Endpoint::start(fleet_wire::node::NodeStatus::Pending);
    let node = support::Node::new(&ep.url());
    node.event("booted", "booted slot A");
    support::agent(&node).round();
    let out = edge_agent(&node, &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(s["schema"], "edge-agent.status/1");
    assert_eq!(s["state"]["status"], "pending");
    assert_eq!((s["last_seq"].as_u64(), s["pending_reports"].as_u64()), (Some(2), Some(0)));
    let human = text(&edge_agent(&node, &["status"]).stdout);
    assert!(human.contains("pending") && human.contains("2 numbered"), "{human}");
}

#[test]
fn run_is_ready_before_any_network_and_retries_an_absent_endpoint() {
    let node = support::Node::new(&format!("http://127.0.0.1:{}", testkit::http_server::closed_port()));
    let socket_path = node.root().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
    socket.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("--config")
        .arg(&node.config)
        .arg("--root")
        .arg(node.root())
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("a readiness datagram");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(node.root().join("data/edge-agent/node.key").exists(), "the key is there when it is ready");
    // The endpoint is not there: the failed contact is logged, and the agent stays up, retrying; it is stopped as
    // edge-init stops it.
    use std::io::BufRead as _;
    let stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let line = stderr.lines().map_while(Result::ok).find(|l| l.contains("enrollment:")).expect("a failed contact");
    assert!(line.starts_with("edge-agent: warn: "), "{line}");
    assert!(child.try_wait().expect("wait").is_none(), "still running");
    child.kill().expect("kill");
    let _ = child.wait();
}

#[test]
fn run_with_a_config_it_cannot_use_logs_it_is_ready_and_stays_up() {
    let node = support::Node::new("http://127.0.0.1:9");
    std::fs::write(&node.config, "endpoint = \"ftp://nowhere\"\n").expect("write");
    let socket_path = node.root().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
    socket.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("--config")
        .arg(&node.config)
        .arg("--root")
        .arg(node.root())
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::BufRead as _;
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("an error line");
    assert!(line.starts_with("edge-agent: error: config") && line.contains("endpoint"), "{line}");
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("a readiness datagram");
    assert_eq!(&buf[..n], b"READY=1");
    // A service that exited would be restarted over and over and count against edge-init's health answer.
    assert!(child.try_wait().expect("wait").is_none(), "still running");
    child.kill().expect("kill");
    let _ = child.wait();
}
