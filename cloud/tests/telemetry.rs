//! The telemetry intake against a real endpoint on loopback, on SQLite and on PostgreSQL: batches stored once
//! whatever is resent, log lines read back by `after`, `since`, `grep` and the newest first, metric records queued
//! with the labels the endpoint adds, retention by size, and every refusal (another node's path, a reserved label,
//! a body that is not zstd or inflates past its bound) leaving the database as it was.

mod support;

use std::collections::BTreeMap;

use fleet_wire::admin::Role;
use fleet_wire::telemetry::{
    self, Body, Counters, LogLine, LogPage, Metrics, Record, Sample, TelemetryAck, TelemetryBatch, TelemetryStatus,
};
use support::{Backend, Env, Node};

both!(
    batches_are_stored_once_and_read_back,
    refused_batches_change_nothing,
    logs_are_kept_within_their_size,
    decommission_deletes_the_telemetry,
    the_cli_reads_and_follows_a_node_s_logs,
    lines_go_when_older_than_their_retention,
);

fn log(seq: u64, time_ms: i64, source: &str, text: &str) -> Record {
    Record { seq, body: Body::Log(LogLine { time_ms, source: source.into(), level: 6, text: text.into(), lost: 0 }) }
}

fn metrics(seq: u64, time_ms: i64, load: f64) -> Record {
    let samples = vec![
        Sample { name: "edge_node_load1".into(), labels: BTreeMap::new(), value: load },
        Sample {
            name: "edge_node_network_receive_bytes_total".into(),
            labels: [("device".to_owned(), "eth0".to_owned())].into(),
            value: 1000.0,
        },
    ];
    Record { seq, body: Body::Metrics(Metrics { time_ms, samples }) }
}

/// The batch's body as the agent sends it: JSON, zstd-compressed.
fn body(records: Vec<Record>, counters: Counters) -> Vec<u8> {
    let json = serde_json::to_vec(&TelemetryBatch { records, counters }).expect("json");
    zstd::encode_all(&json[..], 3).expect("zstd")
}

fn send(node: &Node, body: &[u8]) -> support::Reply {
    node.telemetry_body(body)
}

fn enrolled(env: &Env, seed: u8) -> (Node, support::Admin) {
    let admin = env.admin(Role::Operator);
    let token = admin.enrollment_token("accept");
    let node = env.node(seed);
    let reply = node.enroll(&token);
    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
    (node, admin)
}

fn logs(admin: &support::Admin, node: &Node, query: &str) -> LogPage {
    admin.ok("GET", &format!("/v1/admin/nodes/{}/logs?{query}", node.id), None)
}

/// An endpoint that queues metric records for a TSDB (none listens: no forwarder runs in these tests).
fn forwarding(backend: Backend) -> Env {
    Env::with_config(backend, |c| {
        c.remote_write = Some(edge_cloud::forward::RemoteWrite::new("http://127.0.0.1:9/api/v1/write"))
    })
}

fn batches_are_stored_once_and_read_back(backend: Backend) {
    let env = forwarding(backend);
    let (node, admin) = enrolled(&env, 1);
    let counters = Counters { dropped: [("log".to_owned(), 3)].into(), damaged: 0, torn_bytes: 10 };
    let first = vec![
        log(1, 1_000, "kernel", "eth0: link up"),
        log(2, 1_100, "app", "tick 1"),
        metrics(3, 1_200, 0.5),
        log(4, 1_300, "app", "tick 2 error"),
    ];
    let reply = send(&node, &body(first.clone(), counters.clone()));
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json::<TelemetryAck>(), TelemetryAck { stored: 4, duplicates: 0, acked_seq: 4 });

    // The same batch again, then one that overlaps it and skips seq 7 (dropped on the node): each stored once.
    let reply = send(&node, &body(first, counters.clone()));
    assert_eq!(reply.json::<TelemetryAck>(), TelemetryAck { stored: 0, duplicates: 4, acked_seq: 4 });
    let second = vec![
        log(4, 1_300, "app", "tick 2 error"),
        metrics(5, 1_400, 0.75),
        log(6, 1_500, "app", "tick 3"),
        log(8, 1_600, "app", "tick 4 error"),
    ];
    let reply = send(&node, &body(second, counters.clone()));
    assert_eq!(reply.json::<TelemetryAck>(), TelemetryAck { stored: 3, duplicates: 1, acked_seq: 8 });
    // A metrics record taken before the node's last one (its clock went back) is refused, counted, acknowledged.
    let reply = send(&node, &body(vec![metrics(9, 1_300, 0.1)], counters.clone()));
    assert_eq!(reply.json::<TelemetryAck>(), TelemetryAck { stored: 1, duplicates: 0, acked_seq: 9 });

    let all = logs(&admin, &node, "from=first");
    let seqs: Vec<u64> = all.lines.iter().map(|l| l.seq).collect();
    assert_eq!((seqs, all.next_after), (vec![1, 2, 4, 6, 8], 8));
    assert_eq!(all.lines[0].time, "1970-01-01T00:00:01.000Z");
    assert_eq!((all.lines[0].source.as_str(), all.lines[0].text.as_str()), ("kernel", "eth0: link up"));
    let grep = logs(&admin, &node, "grep=error&from=first");
    assert_eq!(grep.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![4, 8]);
    let after = logs(&admin, &node, "after=4");
    assert_eq!(after.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![6, 8]);
    let since = logs(&admin, &node, "since_ms=1300&from=first&limit=2");
    assert_eq!((since.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), since.next_after), (vec![4, 6], 6));
    let newest = logs(&admin, &node, "limit=2");
    assert_eq!(newest.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![6, 8]);
    let nothing_new = logs(&admin, &node, "after=8");
    assert_eq!((nothing_new.lines.len(), nothing_new.next_after), (0, 8));

    let status: TelemetryStatus = admin.ok("GET", &format!("/v1/admin/nodes/{}/telemetry", node.id), None);
    assert_eq!(
        (status.acked_seq, status.n_logs, status.n_metrics, status.n_metrics_refused, status.counters),
        (9, 5, 2, 1, counters)
    );

    // The two metric records wait in the queue, in order, with the node's id and site as labels.
    let queued = env.rt.block_on(env.store.queued_metrics(10)).expect("queue");
    assert_eq!(queued.iter().map(|q| q.time_ms).collect::<Vec<_>>(), vec![1_200, 1_400]);
    let want: BTreeMap<String, String> =
        [("node".to_owned(), node.id.to_string()), ("site".to_owned(), "depot-7".to_owned())].into();
    assert_eq!(queued[0].labels, want);
    assert_eq!(queued[1].samples[0].value, 0.75);
    // The forwarder's lease, a request on its way (kept across a restart), its end.
    let store = env.store.clone();
    assert_eq!(env.rt.block_on(store.forwarder_claim("replica-1", 100, 30)).expect("claim"), Some(vec![]));
    assert_eq!(env.rt.block_on(store.forwarder_claim("replica-2", 110, 30)).expect("claim"), None, "the lease holds");
    assert!(env.rt.block_on(store.forwarder_begin("replica-1", &[queued[0].id], 111)).expect("begin"));
    assert!(!env.rt.block_on(store.forwarder_begin("replica-2", &[queued[1].id], 111)).expect("begin"));
    let again = env.rt.block_on(store.forwarder_claim("replica-2", 131, 30)).expect("claim after the lease");
    assert_eq!(again, Some(vec![queued[0].id]), "the next holder sends the same request again");
    let same = env.rt.block_on(store.queued_metrics_by_id(&[queued[0].id])).expect("by id");
    assert_eq!(same, vec![queued[0].clone()]);
    env.rt.block_on(store.forwarder_done("replica-2", &[queued[0].id], false, 132)).expect("done");
    assert_eq!(env.rt.block_on(store.metric_queue_len()).expect("len"), 1);
    assert_eq!(env.rt.block_on(store.forwarder_counts()).expect("counts"), (1, 0));
    assert_eq!(env.rt.block_on(store.forwarder_claim("replica-2", 133, 30)).expect("claim"), Some(vec![]));
    let points = env.rt.block_on(env.store.chart_points(node.id.as_str(), 0)).expect("points");
    assert!(points.contains(&("edge_node_load1".to_owned(), 1_400, 0.75)), "{points:?}");

    // A restart of the endpoint keeps everything: the next resend is still a duplicate.
    let mut env = env;
    env.restart();
    let node = node.at(&env.url);
    let reply = send(&node, &body(vec![log(8, 1_600, "app", "tick 4 error")], Counters::default()));
    assert_eq!(reply.json::<TelemetryAck>(), TelemetryAck { stored: 0, duplicates: 1, acked_seq: 9 });
}

fn refused_batches_change_nothing(backend: Backend) {
    let env = Env::new(backend);
    let (a, admin) = enrolled(&env, 2);
    let b = env.node(3);
    assert_eq!(b.enroll(&admin.enrollment_token("accept")).status, 201);
    let good = body(vec![log(1, 1, "app", "hello")], Counters::default());
    let before = env.dump();
    let check = |what: &str, reply: support::Reply, want: (u16, &str)| {
        assert_eq!(reply.refusal(), (want.0, want.1.to_owned()), "{what}");
        assert_eq!(env.dump(), before, "{what}: the database changed");
    };
    // B, signing as itself, on A's path.
    let path_a = telemetry::telemetry_path(&a.id);
    let mut headers = b.sign("POST", &path_a, &good);
    headers.push(("content-encoding".into(), "zstd".into()));
    check("b on a's path", b.send_signed("POST", &path_a, &headers, &good), (403, "wrong-node"));
    // A label the endpoint sets itself.
    let mut m = metrics(1, 5, 1.0);
    if let Body::Metrics(ref mut x) = m.body {
        x.samples[0].labels.insert("node".into(), b.id.to_string());
    }
    check("reserved label", send(&a, &body(vec![m], Counters::default())), (400, "bad-field"));
    // Not zstd.
    check("not zstd", send(&a, b"{\"records\": []}"), (400, "bad-body"));
    // Inflates past its bound.
    let huge = zstd::encode_all(&vec![b' '; telemetry::MAX_BATCH_RAW_BYTES + 10][..], 19).expect("zstd");
    check("too large inflated", send(&a, &huge), (413, "too-large"));
    // Out of order.
    check(
        "out of order",
        send(&a, &body(vec![log(2, 1, "app", "b"), log(1, 1, "app", "a")], Counters::default())),
        (400, "bad-field"),
    );
    // An unknown encoding.
    let path = telemetry::telemetry_path(&a.id);
    let mut headers = a.sign("POST", &path, &good);
    headers.push(("content-encoding".into(), "br".into()));
    check("brotli", a.send_signed("POST", &path, &headers, &good), (415, "bad-encoding"));
    // The good batch is taken.
    assert_eq!(send(&a, &good).status, 200);
}

fn logs_are_kept_within_their_size(backend: Backend) {
    let env = Env::with_config(backend, |c| c.log_retention.max_bytes_per_node = 10_000);
    let (node, admin) = enrolled(&env, 4);
    let line = "x".repeat(65); // 100 bytes a line with "app" and 32
    for batch in 0..3u64 {
        let records = (1..=50).map(|i| log(batch * 50 + i, 0, "app", &line)).collect();
        assert_eq!(send(&node, &body(records, Counters::default())).status, 200);
    }
    let status: TelemetryStatus = admin.ok("GET", &format!("/v1/admin/nodes/{}/telemetry", node.id), None);
    assert!(status.log_bytes <= 10_000, "{} bytes kept", status.log_bytes);
    let kept = logs(&admin, &node, "from=first&limit=5000");
    assert_eq!(kept.lines.len() as u64 * 100, status.log_bytes);
    assert_eq!(kept.lines.last().map(|l| l.seq), Some(150), "the newest are kept");
    assert!(kept.lines.len() >= 90 - 50, "{} lines kept", kept.lines.len());
    assert_eq!(status.n_logs, 150);
}

fn decommission_deletes_the_telemetry(backend: Backend) {
    let env = forwarding(backend);
    let (node, _) = enrolled(&env, 5);
    let (other, _) = enrolled(&env, 6);
    let admin = env.admin(Role::Admin);
    for n in [&node, &other] {
        assert_eq!(send(n, &body(vec![log(1, 1, "app", "a"), metrics(2, 2, 1.0)], Counters::default())).status, 200);
    }
    let _: fleet_wire::admin::NodeSummary =
        admin.ok("POST", &format!("/v1/admin/nodes/{}/decommission", node.id), None);
    let queued = env.rt.block_on(env.store.queued_metrics(10)).expect("queue");
    assert_eq!(queued.iter().map(|q| q.node.as_str()).collect::<Vec<_>>(), vec![other.id.as_str()]);
    assert_eq!(logs(&admin, &node, "").lines.len(), 0);
    assert_eq!(logs(&admin, &other, "").lines.len(), 1);
    assert_eq!(send(&node, &body(vec![log(3, 1, "app", "b")], Counters::default())).refusal().0, 403);
}

fn the_cli_reads_and_follows_a_node_s_logs(backend: Backend) {
    let env = Env::new(backend);
    let (node, _) = enrolled(&env, 7);
    let viewer = env.admin(Role::Viewer);
    let vars = [("EDGE_CLOUD_URL", env.url.as_str()), ("EDGE_CLOUD_TOKEN", viewer.secret.as_str())];
    let now_ms =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis())
            .expect("ms");
    let old = now_ms - 3 * 3_600_000;
    let records = vec![
        log(1, old, "kernel", "eth0: link up"),
        log(2, now_ms - 60_000, "app", "tick 1"),
        log(3, now_ms - 30_000, "app", "tick 2 error: disk full"),
    ];
    assert_eq!(send(&node, &body(records, Counters::default())).status, 200);
    let id = node.id.to_string();

    let run = support::edge_cloud(&["logs", &id], &vars);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 3, "{}", run.stdout);
    assert!(run.stdout.lines().next().is_some_and(|l| l.ends_with("kernel  info: eth0: link up")), "{}", run.stdout);
    let run = support::edge_cloud(&["logs", &id, "--since", "1h", "--grep", "error: disk"], &vars);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().collect::<Vec<_>>().len(), 1, "{}", run.stdout);
    assert!(run.stdout.contains("app  info: tick 2 error: disk full"), "{}", run.stdout);
    let run = support::edge_cloud(&["logs", &id, "--limit", "2", "--json"], &vars);
    let page: LogPage = serde_json::from_str(&run.stdout).expect("a page");
    assert_eq!(page.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![2, 3]);
    let run = support::edge_cloud(&["logs", &id, "--since", "yesterday"], &vars);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--since"), "{}", run.stderr);
    let run = support::edge_cloud(&["logs", "n-00000000000000000000000000000000"], &vars);
    assert_ne!(run.code, 0);

    // --follow: the lines there, then each new one as it comes, as JSON Lines.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edge-cloud"))
        .args(["logs", &id, "--follow", "--json", "--since", "1h"])
        .env("EDGE_CLOUD_URL", &env.url)
        .env("EDGE_CLOUD_TOKEN", &viewer.secret)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("edge-cloud logs --follow");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().expect("stdout")));
    let mut next = || -> fleet_wire::telemetry::LogEntry {
        serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("a JSON line")
    };
    assert_eq!((next().seq, next().seq), (2, 3));
    assert_eq!(send(&node, &body(vec![log(4, now_ms, "app", "tick 3")], Counters::default())).status, 200);
    let fourth = next();
    assert_eq!((fourth.seq, fourth.text.as_str()), (4, "tick 3"));
    let _ = child.kill();
    let _ = child.wait();
}

fn lines_go_when_older_than_their_retention(backend: Backend) {
    let env = Env::new(backend);
    let (node, admin) = enrolled(&env, 8);
    let now_ms = support::NOW as i64 * 1000;
    // Received at NOW: two lines and a chart point.
    let first = vec![log(1, now_ms, "app", "old 1"), log(2, now_ms, "app", "old 2"), metrics(3, now_ms, 0.5)];
    assert_eq!(send(&node, &body(first, Counters::default())).status, 200);
    // Ten days later: one more line and point.
    let later = support::NOW + 10 * 86_400;
    env.clock.set(later);
    let second = vec![log(4, later as i64 * 1000, "app", "new"), metrics(5, later as i64 * 1000, 0.75)];
    let b = body(second, Counters::default());
    let path = telemetry::telemetry_path(&node.id);
    let mut headers = node.sign_as(node.id.as_str(), &node.key, "POST", &path, &b, later);
    headers.push(("content-encoding".into(), "zstd".into()));
    assert_eq!(node.send_signed("POST", &path, &headers, &b).status, 200);
    let retention =
        edge_cloud::store::telemetry_sql::LogRetention { max_age_secs: 7 * 86_400, max_bytes_per_node: 1 << 20 };
    let gone = env.rt.block_on(env.store.prune_telemetry(retention, later as i64)).expect("prune");
    assert_eq!(gone, 2, "the lines received more than 7 days ago");
    let kept = logs(&admin, &node, "from=first");
    assert_eq!(kept.lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), vec!["new"]);
    let status: TelemetryStatus = admin.ok("GET", &format!("/v1/admin/nodes/{}/telemetry", node.id), None);
    assert_eq!(
        status.log_bytes,
        edge_cloud::store::telemetry_sql::line_bytes("app", "new"),
        "the bytes kept, measured again"
    );
    assert_eq!(status.n_logs, 3, "what was stored ever is not what is kept");
    // Chart points are kept a day.
    let points = env.rt.block_on(env.store.chart_points(node.id.as_str(), 0)).expect("points");
    assert!(points.iter().all(|p| p.1 == later as i64 * 1000), "{points:?}");
    assert!(!points.is_empty());
}
