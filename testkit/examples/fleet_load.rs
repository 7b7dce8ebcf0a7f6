//! `fleet_load`: simulated nodes against an `edge-cloud` on loopback, for bench/fleet.sh. Every request is a real
//! node request, signed with the node's own ed25519 key exactly as `edge-agent` signs it (`fleet_wire`), so the
//! endpoint does all the work a real fleet gives it: signature, digest, replay id, database.
//!
//! `cargo run --release -p testkit --example fleet_load -- enroll --url URL --token TOKEN --nodes N`
//! enrolls nodes 0..N (keys derived from their index, so every run names the same nodes; enrolling again is
//! idempotent) and prints one JSON line of totals.
//!
//! `... fleet_load -- run --url URL --nodes N --seconds T [--interval S] [--report-percent P] [--connections C]
//! [--warmup W] [--telemetry R]` makes each of the N nodes poll its desired state every S seconds (60 by default),
//! spread evenly, with `If-None-Match`, and P % of the polls (1 by default) also post one report; with `--telemetry R`
//! each poll is followed by a telemetry batch of R records (a metrics record of 60 samples, the node's sample of the
//! minute, and R - 1 log lines of a busy service, zstd-compressed as the agent sends them); it runs for W + T seconds and prints one JSON line: counts by
//! status, the latency percentiles of the last T seconds (polls, and telemetry batches apart), and the telemetry
//! records stored a second.
//! Latency is measured from the instant a request was due, not from when it was sent, so a generator that falls
//! behind counts its own lateness against the endpoint (no coordinated omission): the figure can only be pessimistic.
//! A node that has not polled yet in this run sends the ETag its connection saw last: nodes with the same desired
//! state have the same ETag (a hash of the same body), which is the steady state of a real fleet; a node whose
//! state differs gets a 200 and keeps its own ETag from then on.
//!
//! Traffic goes to 127.0.0.1 only: any other host is refused.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use fleet_wire::node::{self, EnrollRequest, Hardware, Inventory, NodeId, Report, ReportBatch, ReportKind};
use fleet_wire::{digest, signature};
use sha2::Digest as _;

const USAGE: &str = "usage: fleet_load enroll --url URL --token TOKEN --nodes N [--connections C]
       fleet_load run --url URL --nodes N --seconds T [--interval S] [--report-percent P] [--connections C] [--warmup W] [--run-id ID] [--telemetry R]";

/// The options of both verbs.
struct Options {
    addr: SocketAddr,
    authority: String,
    token: String,
    nodes: usize,
    seconds: f64,
    interval: f64,
    report_percent: u32,
    connections: usize,
    warmup: f64,
    run_id: u64,
    /// Records in the telemetry batch each poll is followed by (0: none).
    telemetry: usize,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        authority: String::new(),
        token: String::new(),
        nodes: 0,
        seconds: 10.0,
        interval: 60.0,
        report_percent: 1,
        connections: 32,
        telemetry: 0,
        warmup: 5.0,
        run_id: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(1),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|_| format!("{flag} {v}: not a number"));
        match flag.as_str() {
            "--url" => {
                let rest = value.strip_prefix("http://").ok_or("--url must be http://127.0.0.1:PORT")?;
                let authority = rest.trim_end_matches('/');
                let addr: SocketAddr = authority.parse().map_err(|_| format!("--url {value}: not host:port"))?;
                if !addr.ip().is_loopback() {
                    return Err(format!("--url {value}: only 127.0.0.1 is allowed"));
                }
                o.addr = addr;
                o.authority = authority.to_owned();
            }
            "--token" => o.token = value.clone(),
            "--nodes" => o.nodes = num(value)? as usize,
            "--seconds" => o.seconds = num(value)?,
            "--interval" => o.interval = num(value)?,
            "--report-percent" => o.report_percent = num(value)? as u32,
            "--connections" => o.connections = (num(value)? as usize).max(1),
            "--warmup" => o.warmup = num(value)?,
            "--run-id" => o.run_id = num(value)? as u64,
            "--telemetry" => o.telemetry = num(value)? as usize,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if o.authority.is_empty() || o.nodes == 0 {
        return Err("--url and --nodes are required".into());
    }
    Ok(o)
}

/// Node `i`'s key: derived from its index, so that every run and every verb names the same nodes.
fn node_key(i: usize) -> SigningKey {
    let seed: [u8; 32] = sha2::Sha256::digest(format!("fleet_load node {i}")).into();
    SigningKey::from_bytes(&seed)
}

/// A simulated node.
struct SimNode {
    key: SigningKey,
    id: NodeId,
    etag: Option<String>,
    next_seq: u64,
    next_telemetry_seq: u64,
}

impl SimNode {
    fn new(i: usize, run_id: u64) -> SimNode {
        let key = node_key(i);
        let id = NodeId::of_key(&key.verifying_key());
        // Sequence numbers only grow across runs, as a real node's do.
        SimNode {
            key,
            id,
            etag: None,
            next_seq: run_id * 1_000_000 + 1,
            next_telemetry_seq: run_id * 1_000_000_000 + 1,
        }
    }
}

/// A response, as much of it as the generator reads.
struct Response {
    status: u16,
    etag: Option<String>,
}

/// One keep-alive HTTP/1.1 connection, reopened after any failure.
struct Conn {
    addr: SocketAddr,
    authority: String,
    stream: Option<BufReader<TcpStream>>,
    /// This connection's part of every nonce (the run and the connection), and its count of requests.
    salt: u64,
    n_sent: u64,
}

impl Conn {
    fn request(
        &mut self,
        node: &SimNode,
        method: &str,
        path: &str,
        etag: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<Response> {
        self.request_encoded(node, method, path, etag, body, None)
    }

    /// [`Conn::request`] with a `Content-Encoding` for the body.
    fn request_encoded(
        &mut self,
        node: &SimNode,
        method: &str,
        path: &str,
        etag: Option<&str>,
        body: &[u8],
        encoding: Option<&str>,
    ) -> std::io::Result<Response> {
        let digest = (!body.is_empty()).then(|| digest::content_digest(body));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(d) = &digest {
            headers.push(("content-digest", d));
        }
        let req = signature::Request {
            method,
            scheme: "http",
            authority: &self.authority,
            path,
            query: None,
            headers: &headers,
        };
        let created =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        // Unique per request, which is all a nonce must be; the agent's are random.
        self.n_sent += 1;
        let nonce = format!("{:x}-{:x}", self.salt, self.n_sent);
        let sig = signature::sign_node_request(&req, node.id.as_str(), created, &nonce, &node.key)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.authority);
        if let Some(d) = &digest {
            head.push_str(&format!("Content-Digest: {d}\r\nContent-Type: application/json\r\n"));
        }
        if let Some(e) = etag {
            head.push_str(&format!("If-None-Match: {e}\r\n"));
        }
        if let Some(e) = encoding {
            head.push_str(&format!("Content-Encoding: {e}\r\n"));
        }
        head.push_str(&format!(
            "Signature-Input: {}\r\nSignature: {}\r\nContent-Length: {}\r\n\r\n",
            sig.signature_input,
            sig.signature,
            body.len()
        ));
        let result = self.exchange(head.as_bytes(), body);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(&mut self, head: &[u8], body: &[u8]) -> std::io::Result<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.stream = Some(BufReader::new(s));
        }
        let reader = self.stream.as_mut().expect("connected above");
        let mut msg = Vec::with_capacity(head.len() + body.len());
        msg.extend_from_slice(head);
        msg.extend_from_slice(body);
        reader.get_mut().write_all(&msg)?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let (mut length, mut chunked, mut etag, mut close) = (0usize, false, None, false);
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((name, value)) = l.split_once(':') else { continue };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().map_err(|_| std::io::Error::other("bad content-length"))?,
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "etag" => etag = Some(value.to_owned()),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        if chunked {
            loop {
                line.clear();
                reader.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                let mut skip = vec![0; n + 2];
                reader.read_exact(&mut skip)?;
                if n == 0 {
                    break;
                }
            }
        } else {
            let mut skip = vec![0; length];
            reader.read_exact(&mut skip)?;
        }
        if close {
            self.stream = None;
        }
        Ok(Response { status, etag })
    }
}

fn inventory(i: usize) -> Inventory {
    Inventory {
        hostname: format!("load-{i}"),
        site: Some(format!("site-{}", i % 1000)),
        hardware: Hardware { cpu_count: 4, memory_bytes: 8 << 30, ..Hardware::default() },
        kernel: "6.1.0".into(),
        arch: "x86_64".into(),
        agent_version: "fleet_load".into(),
        ..Inventory::default()
    }
}

/// Enrolls nodes `0..n`, `connections` at a time; prints the totals.
fn enroll(o: &Options) -> ExitCode {
    let started = Instant::now();
    let counts = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..o.connections)
            .map(|c| {
                scope.spawn(move || {
                    let mut conn = Conn {
                        addr: o.addr,
                        authority: o.authority.clone(),
                        stream: None,
                        salt: o.run_id << 16 | c as u64,
                        n_sent: 0,
                    };
                    let mut counts = std::collections::BTreeMap::<String, u64>::new();
                    for i in (c..o.nodes).step_by(o.connections) {
                        let node = SimNode::new(i, 0);
                        let body = EnrollRequest {
                            token: o.token.clone(),
                            public_key: node::encode_public_key(&node.key.verifying_key()),
                            inventory: inventory(i),
                        };
                        let body = serde_json::to_vec(&body).expect("serialize an enrollment");
                        let key = match conn.request(&node, "POST", node::ENROLL_PATH, None, &body) {
                            Ok(r) => r.status.to_string(),
                            Err(e) => format!("error: {}", e.kind()),
                        };
                        *counts.entry(key).or_default() += 1;
                    }
                    counts
                })
            })
            .collect();
        let mut all = std::collections::BTreeMap::<String, u64>::new();
        for w in workers {
            for (k, v) in w.join().expect("an enroll worker panicked") {
                *all.entry(k).or_default() += v;
            }
        }
        all
    });
    let secs = started.elapsed().as_secs_f64();
    let ok = counts.iter().filter(|(k, _)| k.as_str() == "200" || k.as_str() == "201").map(|(_, v)| v).sum::<u64>();
    println!(
        "{}",
        serde_json::json!({"verb": "enroll", "nodes": o.nodes, "seconds": secs, "per_second": o.nodes as f64 / secs, "status": counts})
    );
    if ok == o.nodes as u64 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What one connection's worker measured.
#[derive(Default)]
struct Tally {
    /// Microseconds from due to answered, measured requests only.
    latency_us: Vec<u64>,
    status: std::collections::BTreeMap<String, u64>,
    polls: u64,
    reports: u64,
    behind_us: u64,
    /// Microseconds from due to answered of telemetry batches, measured ones only.
    telemetry_us: Vec<u64>,
    batches: u64,
    /// Records of batches answered 200 in the measured seconds.
    records_stored: u64,
    /// Bytes of the batches' bodies, and their records' raw bytes.
    wire_bytes: u64,
}

/// A telemetry batch of `n` records from `first_seq`, as the agent sends it: JSON, zstd-compressed; and the bytes of
/// its records' payloads before compression.
fn telemetry_batch(first_seq: u64, n: usize) -> Vec<u8> {
    use fleet_wire::telemetry::{Body, Counters, LogLine, Metrics, Record, Sample, TelemetryBatch};
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let records = (0..n as u64)
        .map(|k| {
            let seq = first_seq + k;
            // A node samples its metrics once a minute (the agent's default) and sends a batch a minute: the
            // batch's first record is that sample, the rest are log lines.
            let body = if k == 0 {
                let samples = (0..60)
                    .map(|s| Sample {
                        name: "edge_node_network_receive_bytes_total".into(),
                        labels: [("device".to_owned(), format!("eth{s}"))].into(),
                        value: (seq * 1000 + s) as f64,
                    })
                    .collect();
                Body::Metrics(Metrics { time_ms: now_ms + k as i64, samples })
            } else {
                Body::Log(LogLine {
                    time_ms: now_ms + k as i64,
                    source: "app".into(),
                    level: 6,
                    text: format!(
                        "GET /api/v1/orders/{} 200 {} bytes in {}.{:03} ms",
                        100_000 + seq % 9973,
                        512 + seq % 4096,
                        seq % 50,
                        seq % 1000
                    ),
                    lost: 0,
                })
            };
            Record { seq, body }
        })
        .collect();
    let json =
        serde_json::to_vec(&TelemetryBatch { records, counters: Counters::default() }).expect("serialize a batch");
    zstd::encode_all(&json[..], 3).expect("zstd in memory")
}

/// Polls for warmup + seconds, as described at the top.
fn run(o: &Options) -> ExitCode {
    let begin = Instant::now() + Duration::from_millis(500);
    let measure_from = begin + Duration::from_secs_f64(o.warmup);
    let end = measure_from + Duration::from_secs_f64(o.seconds);
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..o.connections)
            .map(|c| {
                scope.spawn(move || {
                    let mut nodes: Vec<(f64, SimNode)> = (c..o.nodes)
                        .step_by(o.connections)
                        .map(|i| (i as f64 * o.interval / o.nodes as f64, SimNode::new(i, o.run_id)))
                        .collect();
                    let mut conn = Conn {
                        addr: o.addr,
                        authority: o.authority.clone(),
                        stream: None,
                        salt: o.run_id << 16 | c as u64,
                        n_sent: 0,
                    };
                    let mut tally = Tally::default();
                    let mut last_etag: Option<String> = None;
                    'rounds: for round in 0u64.. {
                        for (offset, node) in nodes.iter_mut() {
                            let due = begin + Duration::from_secs_f64(round as f64 * o.interval + *offset);
                            if due >= end {
                                break 'rounds;
                            }
                            let now = Instant::now();
                            if due > now {
                                std::thread::sleep(due - now);
                            } else {
                                tally.behind_us = tally.behind_us.max((now - due).as_micros() as u64);
                            }
                            let etag = node.etag.clone().or_else(|| last_etag.clone());
                            let desired = node::desired_path(&node.id);
                            let mut outcome = conn.request(node, "GET", &desired, etag.as_deref(), &[]);
                            tally.polls += 1;
                            if let Ok(r) = &outcome {
                                if r.status == 200 {
                                    node.etag = r.etag.clone();
                                    last_etag = r.etag.clone();
                                }
                            }
                            // P % of polls, spread by a hash of the node and the round, also report one event.
                            let h = sha2::Sha256::digest(format!("{}/{round}", node.id));
                            if outcome.is_ok()
                                && u32::from(h[0]) * 256 + u32::from(h[1]) < o.report_percent * 65536 / 100
                            {
                                let report = Report {
                                    seq: node.next_seq,
                                    time: now_rfc3339(),
                                    kind: ReportKind::Booted,
                                    message: "fleet_load".into(),
                                    reason: None,
                                    exit_code: None,
                                    version: Some("1.0.0".into()),
                                    slot: Some("A".into()),
                                    phase: None,
                                    progress: None,
                                    action: None,
                                };
                                node.next_seq += 1;
                                let body = serde_json::to_vec(&ReportBatch { reports: vec![report] })
                                    .expect("serialize a batch");
                                outcome = conn.request(node, "POST", &node::reports_path(&node.id), None, &body);
                                tally.reports += 1;
                            }
                            let key = match &outcome {
                                Ok(r) => r.status.to_string(),
                                Err(e) => format!("error: {}", e.kind()),
                            };
                            *tally.status.entry(key).or_default() += 1;
                            if due >= measure_from {
                                tally.latency_us.push(due.elapsed().as_micros() as u64);
                            }
                            if o.telemetry > 0 {
                                let body = telemetry_batch(node.next_telemetry_seq, o.telemetry);
                                let sent = Instant::now();
                                let path = fleet_wire::telemetry::telemetry_path(&node.id);
                                let r = conn.request_encoded(node, "POST", &path, None, &body, Some("zstd"));
                                tally.batches += 1;
                                let key = match &r {
                                    Ok(r) => format!("telemetry {}", r.status),
                                    Err(e) => format!("telemetry error: {}", e.kind()),
                                };
                                *tally.status.entry(key).or_default() += 1;
                                if r.as_ref().is_ok_and(|r| r.status == 200) {
                                    node.next_telemetry_seq += o.telemetry as u64;
                                    if due >= measure_from {
                                        tally.records_stored += o.telemetry as u64;
                                        tally.wire_bytes += body.len() as u64;
                                    }
                                }
                                if due >= measure_from {
                                    tally.telemetry_us.push(sent.elapsed().as_micros() as u64);
                                }
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a poll worker panicked")).collect()
    });
    let mut latency: Vec<u64> = tallies.iter().flat_map(|t| t.latency_us.iter().copied()).collect();
    latency.sort_unstable();
    let mut tel_latency: Vec<u64> = tallies.iter().flat_map(|t| t.telemetry_us.iter().copied()).collect();
    tel_latency.sort_unstable();
    let pct_of = |v: &Vec<u64>, p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        let idx = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[idx] as f64 / 1000.0
    };
    let pct = |p: f64| pct_of(&latency, p);
    let records_stored: u64 = tallies.iter().map(|t| t.records_stored).sum();
    let mut status = std::collections::BTreeMap::<String, u64>::new();
    for t in &tallies {
        for (k, v) in &t.status {
            *status.entry(k.clone()).or_default() += v;
        }
    }
    let ok = status
        .iter()
        .filter(|(k, _)| ["200", "304", "telemetry 200"].contains(&k.as_str()))
        .map(|(_, v)| v)
        .sum::<u64>();
    let total = status.values().sum::<u64>();
    println!(
        "{}",
        serde_json::json!({
            "verb": "run",
            "nodes": o.nodes,
            "interval_secs": o.interval,
            "polls_per_second": o.nodes as f64 / o.interval,
            "polls": tallies.iter().map(|t| t.polls).sum::<u64>(),
            "reports": tallies.iter().map(|t| t.reports).sum::<u64>(),
            "measured": latency.len(),
            "status": status,
            "ok": ok,
            "total": total,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "p999_ms": pct(0.999),
            "max_ms": pct(1.0),
            "generator_behind_max_ms": tallies.iter().map(|t| t.behind_us).max().unwrap_or(0) as f64 / 1000.0,
            "telemetry_batches": tallies.iter().map(|t| t.batches).sum::<u64>(),
            "telemetry_records_stored": records_stored,
            "telemetry_records_per_second": records_stored as f64 / o.seconds,
            "telemetry_wire_bytes_per_record": tallies.iter().map(|t| t.wire_bytes).sum::<u64>() as f64 / records_stored.max(1) as f64,
            "telemetry_p50_ms": pct_of(&tel_latency, 0.50),
            "telemetry_p99_ms": pct_of(&tel_latency, 0.99),
        })
    );
    if ok == total {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (verb, rest) = match args.split_first() {
        Some((v, rest)) => (v.as_str(), rest),
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let options = match parse(rest) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fleet_load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match verb {
        "enroll" if !options.token.is_empty() => enroll(&options),
        "run" => run(&options),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
