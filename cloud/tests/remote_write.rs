//! The forwarder against real TSDBs from Debian's packages, started here on loopback: VictoriaMetrics and Prometheus
//! (its remote-write receiver refuses a sample out of order, so an ordering bug fails these tests). Nodes send
//! their backlogs through the node API; the forwarder sends the queue by remote write; the TSDB's query API must
//! then hold every sample exactly once, with the labels the endpoint adds, through an outage of the TSDB and a
//! restart of the endpoint in the middle of a request.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fleet_wire::admin::Role;
use fleet_wire::telemetry::{Body, Counters, Metrics, Record, Sample};
use support::{Backend, Env, Node};
use testkit::tsdb::{Kind, Tsdb};

/// The backlog's first sample time: ten minutes ago (a TSDB takes a backlog this old as it comes).
fn t0_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time");
    i64::try_from(now.as_millis()).expect("ms") - 600_000
}

/// Record `i` of a node: three series at `t0 + i s`, each valued `i` (and the counter `10 i`).
fn record(seq: u64, t0: i64, i: u64) -> Record {
    let sample = |name: &str, labels: &[(&str, &str)], value: f64| Sample {
        name: name.into(),
        labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        value,
    };
    let samples = vec![
        sample("edge_node_load1", &[], i as f64),
        sample("edge_node_network_receive_bytes_total", &[("device", "eth0")], 10.0 * i as f64),
        sample("edge_init_service_up", &[("service", "app")], 1.0),
    ];
    Record { seq, body: Body::Metrics(Metrics { time_ms: t0 + 1000 * i as i64, samples }) }
}

fn send(node: &Node, records: Vec<Record>) {
    let reply = node.telemetry(records, Counters::default());
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
}

/// An endpoint forwarding to `tsdb`, with `n` nodes enrolled and accepted.
fn setup(backend: Backend, tsdb: &Tsdb, n: u8) -> (Env, Vec<Node>) {
    let url = tsdb.write_url();
    let env = Env::with_config(backend, |c| {
        c.remote_write = Some(edge_cloud::forward::RemoteWrite {
            idle: Duration::from_millis(20),
            batch_rows: 7,
            ..edge_cloud::forward::RemoteWrite::new(&url)
        })
    });
    let admin = env.admin(Role::Operator);
    let token = admin.enrollment_token("accept");
    let nodes = (0..n)
        .map(|i| {
            let node = env.node(40 + i);
            assert_eq!(node.enroll(&token).status, 201);
            node
        })
        .collect();
    (env, nodes)
}

/// Each node's backlog of `n` records, sent in batches of 10, the nodes' batches interleaved.
fn send_backlogs(nodes: &[Node], t0: i64, from: u64, n: u64) {
    for start in (from..from + n).step_by(10) {
        for node in nodes {
            send(node, (start..(start + 10).min(from + n)).map(|i| record(i + 1, t0, i)).collect());
        }
    }
}

fn start_forwarder(env: &Env, holder: &str) -> tokio::task::JoinHandle<()> {
    let rw = env.app.config.remote_write.clone().expect("forwarding");
    env.rt.spawn(edge_cloud::forward::run(
        env.store.clone(),
        env.app.clock.clone(),
        rw,
        holder.to_owned(),
        env.app.metrics.clone(),
    ))
}

/// Waits until the queue is empty (the forwarder's own pace; a minute at most).
fn wait_drained(env: &Env) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.rt.block_on(env.store.metric_queue_len()).expect("queue") > 0 {
        assert!(Instant::now() < deadline, "the queue did not drain in a minute");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that the TSDB holds, for every node, exactly `n` samples of each series, valued as sent.
fn assert_exactly_once(tsdb: &Tsdb, nodes: &[Node], t0: i64, n: u64) {
    let at = (t0 as f64 + 1000.0 * n as f64) / 1000.0 + 1.0;
    let want_count: BTreeMap<String, f64> = nodes.iter().map(|node| (node.id.to_string(), n as f64)).collect();
    let sum = (0..n).sum::<u64>() as f64;
    let want_sum: BTreeMap<String, f64> = nodes.iter().map(|node| (node.id.to_string(), sum)).collect();
    for series in [
        "edge_node_load1",
        "edge_node_network_receive_bytes_total{device=\"eth0\"}",
        "edge_init_service_up{service=\"app\"}",
    ] {
        let counts = tsdb.values_by(&format!("count_over_time({series}[1h])"), at, "node");
        assert_eq!(counts, want_count, "{series}: samples per node in the TSDB");
    }
    assert_eq!(tsdb.values_by("sum_over_time(edge_node_load1[1h])", at, "node"), want_sum, "values as sent");
    let labelled = tsdb.query("edge_node_load1{site=\"depot-7\"}", at);
    assert_eq!(labelled.len(), nodes.len(), "the endpoint's site label on every series");
}

fn a_backlog_reaches_the_tsdb_once_in_order(kind: Kind, backend: Backend) {
    let tsdb = Tsdb::start(kind);
    let (env, nodes) = setup(backend, &tsdb, 3);
    let t0 = t0_ms();
    send_backlogs(&nodes, t0, 0, 40);
    let forwarder = start_forwarder(&env, "replica-1");
    wait_drained(&env);
    forwarder.abort();
    assert_exactly_once(&tsdb, &nodes, t0, 40);
    assert_eq!(env.rt.block_on(env.store.forwarder_counts()).expect("counts"), (120, 0));
}

fn an_outage_of_the_tsdb_and_a_restart_of_the_endpoint_lose_and_double_nothing(kind: Kind, backend: Backend) {
    let mut tsdb = Tsdb::start(kind);
    let (env, nodes) = setup(backend, &tsdb, 2);
    let t0 = t0_ms();

    // The TSDB is down while the nodes send their first records: the forwarder keeps trying.
    tsdb.pause();
    send_backlogs(&nodes, t0, 0, 20);
    let forwarder = start_forwarder(&env, "replica-1");
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.app.metrics.remote_write_counts().2 == 0 {
        assert!(Instant::now() < deadline, "the forwarder never tried");
        std::thread::sleep(Duration::from_millis(20));
    }
    forwarder.abort();
    assert_eq!(env.rt.block_on(env.store.metric_queue_len()).expect("queue"), 40, "nothing left the queue");
    tsdb.resume();

    // The endpoint dies in the middle of a request the TSDB took: its ids are recorded, its rows still queued. It
    // was a short request (3 rows, fewer than a request holds), so that sending the queue's oldest rows instead of
    // exactly it would mix records the TSDB has with new ones, which Prometheus refuses whole.
    let store = env.store.clone();
    env.rt.block_on(store.forwarder_claim("replica-1", 0, 30)).expect("claim").expect("the lease");
    let rows = env.rt.block_on(store.queued_metrics(3)).expect("rows");
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    assert!(env.rt.block_on(store.forwarder_begin("replica-1", &ids, 0)).expect("begin"));
    let rows = env.rt.block_on(store.queued_metrics_by_id(&ids)).expect("rows");
    let body = edge_cloud::remote_write::body(&edge_cloud::remote_write::build(&rows).series);
    let r = ureq::post(&tsdb.write_url())
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .send(&body[..])
        .expect("the TSDB takes the request");
    assert!(r.status().is_success());

    // More records while the endpoint is away, then it starts again (the same replica).
    send_backlogs(&nodes, t0, 20, 20);
    let forwarder = start_forwarder(&env, "replica-1");
    wait_drained(&env);
    forwarder.abort();
    assert_exactly_once(&tsdb, &nodes, t0, 40);
    let (forwarded, refused) = env.rt.block_on(env.store.forwarder_counts()).expect("counts");
    assert_eq!(forwarded + refused, 80, "every record left the queue once");
}

#[test]
fn backlog_victoria_metrics_sqlite() {
    a_backlog_reaches_the_tsdb_once_in_order(Kind::VictoriaMetrics, Backend::Sqlite);
}

#[test]
fn backlog_prometheus_sqlite() {
    a_backlog_reaches_the_tsdb_once_in_order(Kind::Prometheus, Backend::Sqlite);
}

#[test]
fn backlog_prometheus_postgres() {
    a_backlog_reaches_the_tsdb_once_in_order(Kind::Prometheus, Backend::Postgres);
}

#[test]
fn outage_victoria_metrics_sqlite() {
    an_outage_of_the_tsdb_and_a_restart_of_the_endpoint_lose_and_double_nothing(Kind::VictoriaMetrics, Backend::Sqlite);
}

#[test]
fn outage_prometheus_sqlite() {
    an_outage_of_the_tsdb_and_a_restart_of_the_endpoint_lose_and_double_nothing(Kind::Prometheus, Backend::Sqlite);
}

#[test]
fn outage_victoria_metrics_postgres() {
    an_outage_of_the_tsdb_and_a_restart_of_the_endpoint_lose_and_double_nothing(
        Kind::VictoriaMetrics,
        Backend::Postgres,
    );
}
