//! One enroll, report and poll cycle of a given `edge-agent` binary against the loopback stand-in endpoint of the
//! agent's tests, under GNU time: prints the agent's peak RSS. `bench/agent.sh` runs it on the static musl release
//! build (bench/README.md, "edge-agent memory").
//!
//! Usage: agent_cycle EDGE_AGENT_BINARY [N_EVENTS [install|install-range [PAYLOAD_MIB]]]
//!
//! With `install`, the desired state names a signed bundle in the stand-in's store, and the cycle installs it
//! (the updater's streaming install into a slot file) before it reports; the stand-in serves it whole, as a plain
//! store without Range would. With `install-range`, testkit's server serves it with Range, and the updater plans a
//! delta install against the booted slot (which holds the same payload but for its first MiB).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;

fn main() {
    let mut args = std::env::args().skip(1);
    let agent = args.next().expect("usage: agent_cycle EDGE_AGENT_BINARY [N_EVENTS]");
    let n_events: usize = args.next().map_or(200, |n| n.parse().expect("a number of events"));
    let mode = args.next();
    let install = matches!(mode.as_deref(), Some("install" | "install-range"));
    let range = mode.as_deref() == Some("install-range");
    let server = testkit::http_server::Server::start();
    let payload_mib: usize = args.next().map_or(1, |n| n.parse().expect("a payload size in MiB"));
    let ep = support::Endpoint::start(fleet_wire::node::NodeStatus::Accepted);
    let node = support::Node::with_slots(&ep.url(), (payload_mib + 4) << 20);
    if install {
        let payload = u32::try_from(payload_mib << 20).expect("a payload under 4 GiB");
        let (bytes, hash) = support::bundle_of(&support::bundle_key(), "2.0.0", payload);
        ep.lock().files.insert("/bundles/b1".into(), bytes.clone());
        server.put("/bundles/b1", bytes.clone());
        let url = if range { server.url("/bundles/b1") } else { format!("{}/bundles/b1", ep.url()) };
        if range {
            // The booted slot holds the payload already, but for its first MiB: a delta install takes the rest.
            let mut a = support::payload(payload);
            a[..1 << 20].fill(0);
            std::fs::write(node.root().join("slot-a.img"), &a).expect("slot A");
        }
        ep.lock().desired = Some(fleet_wire::node::DesiredState {
            status: fleet_wire::node::NodeStatus::Accepted,
            poll_interval_secs: 60,
            bundle: Some(fleet_wire::node::BundleRef {
                name: "edge-stack".into(),
                version: "2.0.0".into(),
                security_version: 1,
                manifest_hash: hash,
                size_bytes: bytes.len() as u64,
                urls: vec![url],
            }),
            actions: vec![],
        });
    }
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
    if install {
        let journal = std::fs::read_to_string(node.root().join("data/edge-update/journal.json")).expect("a journal");
        let j: serde_json::Value = serde_json::from_str(&journal).expect("json");
        let u = &j["update"];
        println!("install: phase {}, {} bytes fetched, {} reused", u["phase"], u["bytes_fetched"], u["bytes_reused"]);
    }
    println!(
        "edge-agent {agent}: one cycle{} ({} requests, {reports} reports stored, {n_events} events tailed): peak RSS {rss_kib} KiB ({:.2} MiB)",
        match (install, range) {
            (true, true) => " with a delta install over Range",
            (true, false) => " with an install",
            _ => "",
        },
        seen.len(),
        rss_kib as f64 / 1024.0
    );
}
