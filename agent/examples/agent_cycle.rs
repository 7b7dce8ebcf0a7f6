//! Contacts of a given `edge-agent` binary with the real endpoint (`edge_cloud::harness`: edge-cloud's router over
//! a SQLite file on a loopback port), each run under GNU time: prints the agent's largest peak RSS. `bench/agent.sh`
//! runs it on the static musl release build (bench/README.md, "edge-agent memory").
//!
//! Usage: agent_cycle EDGE_AGENT_BINARY [N_EVENTS [install|install-delta [PAYLOAD_MIB]]]
//!
//! The first run (`run --once`) enrolls with a token whose policy accepts the node at once, ships the N_EVENTS
//! lines of the updater's event log waiting on the node, and polls. With `install` or `install-delta`, a signed
//! bundle of a PAYLOAD_MIB payload is then uploaded to the endpoint's store and named for the node's group, and a
//! second run installs it from the store (the updater's streaming install into a slot file) and reports: with
//! `install` the booted slot holds none of the payload, so every byte is fetched; with `install-delta` it holds
//! the payload but for its first MiB, so the updater fetches only the ranges that differ.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use edge_cloud::harness::{Database, Endpoint};
use fleet_wire::admin::NodeList;

/// Runs `agent run --once` for `node` under GNU time; returns its peak RSS in KiB.
fn run_once(agent: &str, node: &support::Node) -> u64 {
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(agent)
        .arg("--config")
        .arg(&node.config)
        .arg("--root")
        .arg(node.root())
        .args(["run", "--once"])
        .output()
        .expect("run /usr/bin/time");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());
    stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes): "))
        .and_then(|v| v.trim().parse().ok())
        .expect("GNU time's maximum resident set size")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let agent = args.next().expect("usage: agent_cycle EDGE_AGENT_BINARY [N_EVENTS [install|install-delta [MIB]]]");
    let n_events: usize = args.next().map_or(200, |n| n.parse().expect("a number of events"));
    let mode = args.next();
    let install = matches!(mode.as_deref(), Some("install" | "install-delta"));
    let delta = mode.as_deref() == Some("install-delta");
    let payload_mib: usize = args.next().map_or(1, |n| n.parse().expect("a payload size in MiB"));

    let node = support::Node::with_slots("http://127.0.0.1:9", (payload_mib + 4) << 20);
    let mut ep = Endpoint::new(Database::Sqlite, &node.root().join("etc/keys/test.pub"), None);
    support::point_at(&node, &ep.url());
    ep.start(60);
    let token = ep.enrollment_token("accept");
    std::fs::write(node.root().join("etc/fleet-token"), format!("{token}\n")).expect("token file");
    for i in 0..n_events {
        node.event("booted", &format!("booted slot A, event {i}"));
    }

    let mut peak = run_once(&agent, &node);
    let list: NodeList = ep.admin_ok("GET", "/v1/admin/nodes", None);
    let id = list.nodes.first().expect("the node enrolled").id.to_string();
    if install {
        let payload = u32::try_from(payload_mib << 20).expect("a payload under 4 GiB");
        let (bytes, hash) = support::bundle_of(&support::bundle_key(), "2.0.0", payload);
        if delta {
            // The booted slot holds the payload already, but for its first MiB: a delta install takes the rest.
            let mut a = support::payload(payload);
            a[..1 << 20].fill(0);
            std::fs::write(node.root().join("slot-a.img"), &a).expect("slot A");
        }
        assert_eq!(ep.upload(&bytes), hash);
        let _: serde_json::Value =
            ep.admin_ok("PUT", "/v1/admin/groups/bench", Some(serde_json::json!({ "bundle": hash })));
        let _: serde_json::Value =
            ep.admin_ok("PUT", &format!("/v1/admin/nodes/{id}/group"), Some(serde_json::json!({"group": "bench"})));
        peak = peak.max(run_once(&agent, &node));
        let journal = node.root().join("data/edge-update/journal.json");
        let j: serde_json::Value = serde_json::from_str(&read(&journal)).expect("json");
        let u = &j["update"];
        println!("install: phase {}, {} bytes fetched, {} reused", u["phase"], u["bytes_fetched"], u["bytes_reused"]);
    }
    let reports = ep.reports(&id).len();
    println!(
        "edge-agent {agent}: enroll, report, poll{} ({reports} reports stored, {n_events} events tailed): peak RSS {peak} KiB ({:.2} MiB)",
        match (install, delta) {
            (true, true) => ", then a delta install from the endpoint's store",
            (true, false) => ", then a full install from the endpoint's store",
            _ => "",
        },
        peak as f64 / 1024.0
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
