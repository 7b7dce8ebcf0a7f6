//! One enroll, report and poll cycle of a given `edge-agent` binary against the loopback stand-in endpoint of the
//! agent's tests, under GNU time: prints the agent's peak RSS. `bench/agent.sh` runs it on the static musl release
//! build (bench/README.md, "edge-agent memory").
//!
//! Usage: agent_cycle EDGE_AGENT_BINARY [N_EVENTS]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;

fn main() {
    let mut args = std::env::args().skip(1);
    let agent = args.next().expect("usage: agent_cycle EDGE_AGENT_BINARY [N_EVENTS]");
    let n_events: usize = args.next().map_or(200, |n| n.parse().expect("a number of events"));
    let ep = support::Endpoint::start(fleet_wire::node::NodeStatus::Accepted);
    let node = support::Node::new(&ep.url());
    for i in 0..n_events {
        node.event("booted", &format!("booted slot A, event {i}"));
    }
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(&agent)
        .arg("--config")
        .arg(&node.config)
        .arg("--root")
        .arg(node.root())
        .args(["run", "--once"])
        .output()
        .expect("run /usr/bin/time");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let rss_kib: u64 = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes): "))
        .and_then(|v| v.trim().parse().ok())
        .expect("GNU time's maximum resident set size");
    let seen = ep.seen();
    let reports = ep.reports().len();
    assert!(seen.iter().all(|s| s.verified), "every request signed");
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());
    println!(
        "edge-agent {agent}: one cycle ({} requests, {reports} reports stored, {n_events} events tailed): peak RSS {rss_kib} KiB ({:.2} MiB)",
        seen.len(),
        rss_kib as f64 / 1024.0
    );
}
