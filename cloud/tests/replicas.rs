//! Two endpoints ("replicas") on one database, a node's reports sent to both at once: every seq is stored exactly
//! once and the acknowledgements add up. On PostgreSQL this is how an operator scales out; on SQLite it is two
//! pools on one file, which `BEGIN IMMEDIATE` keeps from deadlocking. Also the slow client cut by the deadline,
//! and the schema each backend's migrations make, checked against the table list `dump` reads.

mod support;

use std::io::{Read as _, Write as _};

use fleet_wire::admin::Role;
use fleet_wire::node::{self, ReportAck, ReportKind};
use support::{report, Backend, Env, NOW};

both!(
    reports_sent_to_two_replicas_at_once_are_stored_once,
    a_slow_client_is_cut_and_others_are_served,
    the_schema_is_what_dump_reads
);

fn reports_sent_to_two_replicas_at_once_are_stored_once(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Operator);
    let token = admin.enrollment_token("accept");
    let node = env.node(70);
    assert_eq!(node.enroll(&token).status, 201);
    let (url2, _store2, _server2) = env.replica();
    let nodes = [node.at(&env.url), node.at(&url2)];

    // One batch to both replicas at once, signed twice (each signature is its own request).
    let mut total = ReportAck { stored: 0, duplicates: 0, acked_seq: 0 };
    let add = |total: &mut ReportAck, ack: ReportAck| {
        total.stored += ack.stored;
        total.duplicates += ack.duplicates;
        total.acked_seq = total.acked_seq.max(ack.acked_seq);
    };
    let send = |n: &support::Node, seqs: std::ops::RangeInclusive<u64>, created: u64| {
        let reports = seqs.map(|s| report(s, ReportKind::Booted)).collect();
        let body = serde_json::to_vec(&node::ReportBatch { reports }).expect("json");
        let path = node::reports_path(&n.id);
        let headers = n.sign_as(n.id.as_str(), &n.key, "POST", &path, &body, created);
        let reply = n.send_signed("POST", &path, &headers, &body);
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        reply.json::<ReportAck>()
    };
    let acks = std::thread::scope(|s| {
        let a = s.spawn(|| send(&nodes[0], 1..=50, NOW));
        let b = s.spawn(|| send(&nodes[1], 1..=50, NOW - 1));
        [a.join().expect("replica 1"), b.join().expect("replica 2")]
    });
    acks.into_iter().for_each(|a| add(&mut total, a));
    assert_eq!((total.stored, total.duplicates, total.acked_seq), (50, 50, 50));

    // Interleaved batches: 51..=150 in overlapping windows, to both replicas from two threads.
    let acks = std::thread::scope(|s| {
        let a = s.spawn(|| (0..10).map(|i| send(&nodes[0], 51 + i * 10..=60 + i * 10, NOW + i)).collect::<Vec<_>>());
        let b =
            s.spawn(|| (0..10).map(|i| send(&nodes[1], 51 + i * 10..=65 + i * 10, NOW - 1 - i)).collect::<Vec<_>>());
        let mut acks = a.join().expect("replica 1");
        acks.extend(b.join().expect("replica 2"));
        acks
    });
    let before = total.stored;
    acks.into_iter().for_each(|a| add(&mut total, a));
    assert_eq!(total.stored - before, 105, "seqs 51..=155, each stored once");
    assert_eq!(total.acked_seq, 155);

    let mut seqs = Vec::new();
    let mut offset = 0;
    loop {
        let page: fleet_wire::admin::EventPage =
            admin.ok("GET", &format!("/v1/admin/nodes/{}/events?limit=100&offset={offset}", node.id), None);
        seqs.extend(page.events.iter().map(|e| e.report.seq));
        match page.next_offset {
            Some(next) => offset = next,
            None => break,
        }
    }
    seqs.sort();
    assert_eq!(seqs, (1..=155).collect::<Vec<_>>(), "every seq exactly once");
}

fn a_slow_client_is_cut_and_others_are_served(backend: Backend) {
    let env = Env::with_config(backend, |c| c.request_timeout = std::time::Duration::from_secs(1));
    let addr = env.url.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&addr).expect("connect");
    slow.write_all(
        b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"tok",
    )
    .expect("send the head");
    // While it stalls, another client is served.
    let admin = env.admin(Role::Viewer);
    let list: fleet_wire::admin::NodeList = admin.ok("GET", "/v1/admin/nodes", None);
    assert!(list.nodes.is_empty());
    // The stalled request gets its refusal when the deadline passes (the read is bounded, not timed).
    slow.set_read_timeout(Some(std::time::Duration::from_secs(60))).expect("read bound");
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\":\"timeout\""), "{answer}");
}

fn the_schema_is_what_dump_reads(backend: Backend) {
    let env = Env::new(backend);
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'"
        }
        Backend::Postgres => {
            "SELECT table_name::TEXT AS t, column_name::TEXT AS c FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx%'"
        }
    };
    let mut schema: Vec<(String, String)> = env.rt.block_on(async {
        match backend {
            Backend::Sqlite => {
                let store = edge_cloud::store::sqlite::SqliteStore::open(env.data.path()).await.expect("open");
                sqlx::query_as(sql).fetch_all(store.pool()).await.expect("schema")
            }
            Backend::Postgres => {
                let store = edge_cloud::store::postgres::PgStore::open(env.db_url.as_deref().expect("url"))
                    .await
                    .expect("open");
                sqlx::query_as(sql).fetch_all(store.pool()).await.expect("schema")
            }
        }
    });
    schema.sort();
    let mut expected: Vec<(String, String)> = edge_cloud::store::TABLES
        .iter()
        .flat_map(|(t, cs)| cs.iter().map(move |c| (t.to_string(), c.to_string())))
        .collect();
    expected.sort();
    assert_eq!(schema, expected);
}
