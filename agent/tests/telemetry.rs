//! The agent's telemetry against the real endpoint (`edge-cloud`'s router over SQLite on a loopback port): kernel
//! log records (a file in the kernel's record format stands in for `/dev/kmsg`, read by the same code) and metric
//! samples go through the spool to the endpoint in order and once, across an outage of the endpoint, a restart of
//! the agent in the same boot, records the ring overwrote before they were read (counted in the next line's
//! `lost`), and a new boot.

mod support;

use std::io::Write as _;

use edge_agent::telemetry::run::Shipped;
use edge_cloud::harness::{Database, Endpoint};
use fleet_wire::telemetry::{LogPage, TelemetryStatus};
use support::{agent, Node};

const BOOT_1: &str = "6c03d8c4-d5d9-4eb9-9b66-e0831ebd5b67";
const BOOT_2: &str = "0f0e0d0c-0b0a-0908-0706-050403020100";

fn write_boot(node: &Node, id: &str) {
    let path = node.root().join("proc/sys/kernel/random/boot_id");
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    std::fs::write(path, format!("{id}\n")).expect("boot id");
}

/// Appends kernel log records `seqs` as `app: line N` to the node's kernel log file.
fn log_lines(node: &Node, seqs: impl IntoIterator<Item = u64>) {
    let path = node.root().join("dev/kmsg");
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("kmsg");
    for seq in seqs {
        write!(f, "14,{seq},{},-;app: line {seq}\n SUBSYSTEM=test\n", seq * 1000).expect("write");
    }
}

fn logs(cloud: &Endpoint, id: &str) -> LogPage {
    cloud.admin_ok("GET", &format!("/v1/admin/nodes/{id}/logs?from=first&limit=5000"), None)
}

/// The endpoint serving, the node enrolled (accepted at once) in its first boot; the agent open, and the node's id.
fn enrolled(node: &Node) -> (Endpoint, edge_agent::agent::Agent<support::TestClock>, String) {
    let mut cloud = Endpoint::new(Database::Sqlite, &node.root().join("etc/keys/test.pub"), None);
    support::point_at(node, &cloud.url());
    cloud.start(1);
    std::fs::write(node.root().join("etc/fleet-token"), format!("{}\n", cloud.enrollment_token("accept")))
        .expect("token");
    write_boot(node, BOOT_1);
    let mut a = agent(node);
    a.round();
    let id = a.node_id().to_string();
    (cloud, a, id)
}

#[test]
fn logs_and_metrics_arrive_once_in_order_across_outages_restarts_and_boots() {
    let node = Node::new("http://127.0.0.1:9");
    let (mut cloud, a, id) = enrolled(&node);

    // The first records of the boot, and a sample.
    log_lines(&node, 0..20);
    let mut t = a.open_telemetry().expect("telemetry");
    t.collect().expect("collect");
    assert!(matches!(t.ship(), Shipped::Done(n) if n >= 21), "every record sent");
    let got = logs(&cloud, &id);
    assert_eq!(got.lines.len(), 20);
    assert!(got
        .lines
        .iter()
        .enumerate()
        .all(|(i, l)| l.text == format!("line {i}") && l.source == "app" && l.lost == 0));

    // The endpoint goes away; the node keeps logging; the agent restarts in the same boot.
    cloud.stop();
    log_lines(&node, 20..50);
    t.collect().expect("collect");
    assert!(matches!(t.ship(), Shipped::Failed(_)));
    let pending = t.n_pending();
    assert!(pending >= 31, "{pending} waiting");
    drop(t);
    let mut t = a.open_telemetry().expect("telemetry after a restart");
    assert_eq!(t.n_pending(), pending, "the spool kept every record");
    // The ring overwrote records 50 to 54 before the agent read them.
    log_lines(&node, 55..60);
    t.collect().expect("collect");
    cloud.start(1);
    assert!(matches!(t.ship(), Shipped::Done(_)));
    assert_eq!(t.n_pending(), 0);

    // A new boot: the kernel log starts over at 0, and is read from its start.
    drop(t);
    write_boot(&node, BOOT_2);
    std::fs::remove_file(node.root().join("dev/kmsg")).expect("a new ring");
    log_lines(&node, 0..3);
    let mut t = a.open_telemetry().expect("telemetry on the next boot");
    t.collect().expect("collect");
    assert!(matches!(t.ship(), Shipped::Done(_)));

    let got = logs(&cloud, &id);
    let texts: Vec<String> = got.lines.iter().map(|l| l.text.clone()).collect();
    let want: Vec<String> = (0..50).chain(55..60).chain(0..3).map(|i| format!("line {i}")).collect();
    assert_eq!(texts, want, "every line once, in order");
    let seqs: Vec<u64> = got.lines.iter().map(|l| l.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let lost: Vec<(String, u64)> = got.lines.iter().filter(|l| l.lost > 0).map(|l| (l.text.clone(), l.lost)).collect();
    assert_eq!(lost, vec![("line 55".to_owned(), 5)], "the overwritten records are counted once");

    let status: TelemetryStatus = cloud.admin_ok("GET", &format!("/v1/admin/nodes/{id}/telemetry"), None);
    assert_eq!(status.n_logs, 58);
    assert_eq!(status.n_lost_at_source, 5);
    assert!(status.n_metrics >= 3, "a sample per collect: {}", status.n_metrics);
    assert_eq!(status.counters, fleet_wire::telemetry::Counters::default(), "nothing dropped or damaged");
    assert_eq!(t.counters(), edge_agent::telemetry::spool::Counters::default());
    let boots = std::fs::read_to_string(node.root().join("data/edge-agent/boots.json")).expect("boots");
    assert!(boots.contains("\"n_boots\":2"), "{boots}");
}

/// A node offline past its spool's bound: the oldest records go, and from the counters alone, what the endpoint stored
/// and what the node counted as dropped add up to what was produced, exactly, per kind.
#[test]
fn offline_past_the_bound_stored_plus_dropped_is_produced() {
    let node = Node::new("http://127.0.0.1:9");
    let mut config = std::fs::read_to_string(&node.config).expect("config");
    config.push_str("telemetry_spool_max_bytes = 1048576\ntelemetry_batch_records = 500\n");
    std::fs::write(&node.config, config).expect("config");
    let (mut cloud, a, id) = enrolled(&node);
    cloud.stop();

    // About 4 MiB of lines in 40 rounds, each with a sample of the metrics, while the endpoint is away.
    let mut t = a.open_telemetry().expect("telemetry");
    let (rounds, per_round) = (40u64, 750u64);
    for r in 0..rounds {
        log_lines(&node, r * per_round..(r + 1) * per_round);
        t.collect().expect("collect");
    }
    let spool_bytes: u64 = std::fs::read_dir(node.root().join("data/edge-agent/telemetry"))
        .expect("spool")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    assert!(spool_bytes <= 1_100_000, "the spool holds {spool_bytes} bytes");
    let dropped = t.counters();
    assert!(dropped.dropped_of("log") > 10_000, "{dropped:?}");

    cloud.start(1);
    assert!(matches!(t.ship(), Shipped::Done(_)));
    let status: TelemetryStatus = cloud.admin_ok("GET", &format!("/v1/admin/nodes/{id}/telemetry"), None);
    let produced_lines = rounds * per_round;
    assert_eq!(status.n_logs + status.counters.dropped.get("log").copied().unwrap_or(0), produced_lines);
    let produced_samples = rounds; // one metrics record a collect: the sample set fits one record
    assert_eq!(status.n_metrics + status.counters.dropped.get("metrics").copied().unwrap_or(0), produced_samples);
    // The lines kept are those that were on their way when the spool filled (the first batch after the last
    // acknowledged record is never dropped) and the newest, in order, each once.
    let got: LogPage =
        cloud.admin_ok("GET", &format!("/v1/admin/nodes/{id}/logs?from=first&limit=5000&grep=line"), None);
    let numbers: Vec<u64> =
        got.lines.iter().map(|l| l.text.trim_start_matches("line ").parse().expect("a number")).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in order, once");
    assert_eq!(numbers.first(), Some(&0), "the head on its way was kept");
    let newest: LogPage = cloud.admin_ok("GET", &format!("/v1/admin/nodes/{id}/logs?limit=1&grep=line"), None);
    assert_eq!(newest.lines.first().map(|l| l.text.clone()), Some(format!("line {}", produced_lines - 1)));
}
