//! The agent's side of bench/telemetry.sh (bench/README.md, "Telemetry"): prints one JSON line of figures.
//!
//! Usage: telemetry_bench EDGE_AGENT_BINARY N_LINES
//!
//! - **Append**: N_LINES kernel log records of a service (`app: ...`, as `edge-init` writes them) are read from a file
//!   in the kernel's record format, turned into log lines, numbered and framed into the spool and synced, by the
//!   agent's own code (`Telemetry::collect`); the baseline appends the same lines' text to a plain file with one
//!   buffered write stream and one fdatasync, the least any durable log can do. Both are timed in this process, the
//!   median of five runs each, and the ratio is the spool's rate over the baseline's.
//! - **Peak RSS**: the real `edge-agent run` binary on the same node tree, reading the same N_LINES into its spool
//!   (the endpoint unreachable, so everything stays there): its `VmHWM` once its spool holds them all.
//! - **Wire bytes**: the spooled records sent as the shipper sends them (batches of 2,000, JSON, zstd level 3):
//!   bytes on the wire per log line against the line's raw text.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// A line of a busy service: a request log with the numbers changing from line to line.
fn line(i: u64) -> String {
    format!(
        "app: {} GET /api/v1/orders/{} 200 {} bytes in {}.{:03} ms user={} till={}",
        ["info", "info", "info", "warn"][(i % 4) as usize],
        100_000 + i * 7 % 9973,
        512 + i * 37 % 4096,
        i % 50,
        i * 13 % 1000,
        i % 97,
        i % 12
    )
}

fn write_kmsg(path: &Path, n: u64) {
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("kmsg"));
    for i in 0..n {
        writeln!(f, "14,{i},{},-;{}", 1_000_000 + i * 100, line(i)).expect("write");
    }
    f.flush().expect("flush");
}

fn fake_node(node: &support::Node, n: u64) {
    let root = node.root();
    for (rel, text) in [
        ("proc/sys/kernel/random/boot_id", "6c03d8c4-d5d9-4eb9-9b66-e0831ebd5b67\n"),
        ("proc/stat", "cpu  10 0 10 80 0 0 0 0\n"),
        ("proc/loadavg", "0.42 0.30 0.10 1/100 999\n"),
        ("proc/meminfo", "MemTotal: 1000000 kB\nMemAvailable: 500000 kB\n"),
        ("proc/uptime", "123.45 100.00\n"),
    ] {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    write_kmsg(&root.join("dev/kmsg"), n);
    // Nothing to send to and nothing served: every record stays in the spool.
    let mut config = std::fs::read_to_string(&node.config).expect("config");
    config.push_str("telemetry_interval_secs = 3600\nmetrics_listen = \"\"\ntelemetry_spool_max_bytes = 1073741824\n");
    std::fs::write(&node.config, config).expect("config");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Lines a second through the agent's collector into a fresh spool.
fn spool_rate(n: u64) -> (f64, support::Node) {
    let node = support::Node::new("http://127.0.0.1:9");
    fake_node(&node, n);
    let a = support::agent(&node);
    let mut t = a.open_telemetry().expect("telemetry");
    let started = Instant::now();
    t.collect().expect("collect");
    let secs = started.elapsed().as_secs_f64();
    assert!(t.n_pending() > n, "every line spooled: {} of {n}", t.n_pending());
    (n as f64 / secs, node)
}

/// Lines a second appended as plain text and synced once.
fn plain_rate(n: u64, dir: &Path) -> f64 {
    let path = dir.join("plain.log");
    let started = Instant::now();
    let f = std::fs::File::create(&path).expect("plain");
    let mut w = std::io::BufWriter::with_capacity(64 << 10, &f);
    for i in 0..n {
        writeln!(w, "{}", line(i)).expect("write");
    }
    w.flush().expect("flush");
    drop(w);
    f.sync_data().expect("fdatasync");
    n as f64 / started.elapsed().as_secs_f64()
}

/// The real agent's peak RSS (KiB) once it has spooled `n` lines.
fn agent_rss(binary: &str, n: u64) -> u64 {
    let node = support::Node::new("http://127.0.0.1:9");
    fake_node(&node, n);
    let mut child = std::process::Command::new(binary)
        .arg("--config")
        .arg(&node.config)
        .arg("--root")
        .arg(node.root())
        .arg("run")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the agent");
    let status = format!("/proc/{}/status", child.id());
    let seg_bytes = || -> u64 {
        std::fs::read_dir(node.root().join("data/edge-agent/telemetry"))
            .map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    };
    // Done when the spool stops growing past the lines' bytes (about a hundred bytes a line).
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = 0;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = seg_bytes();
        if now > n * 100 && now == last {
            break;
        }
        assert!(Instant::now() < deadline, "the agent did not spool {n} lines in 5 minutes ({now} bytes)");
        last = now;
    }
    let hwm = std::fs::read_to_string(&status)
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok()))
        .expect("the agent's VmHWM");
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    // After SIGTERM (the log read to its end, the spool synced) every line is there, read back by a fresh open.
    let a = support::agent(&node);
    let t = a.open_telemetry().expect("telemetry");
    assert!(t.n_pending() >= n, "the agent spooled {} of {n} lines", t.n_pending());
    hwm
}

/// (raw text bytes, wire bytes) per line for the lines `0..n`, as the shipper sends them.
fn wire_bytes(n: u64) -> (f64, f64) {
    use edge_agent::telemetry::spool::{Counters, Kind, Stored};
    let mut raw = 0usize;
    let mut wire = 0usize;
    let mut batch = Vec::new();
    let flush = |batch: &mut Vec<Stored>, wire: &mut usize| {
        let json = edge_agent::telemetry::run::batch_json(batch, &Counters::default());
        *wire += zstd::encode_all(&json[..], 3).expect("zstd").len();
        batch.clear();
    };
    for i in 0..n {
        let record = format!("14,{i},{},-;{}\n", 1_000_000 + i * 100, line(i));
        let r = edge_agent::telemetry::kmsg::parse(record.as_bytes()).expect("a record");
        let l = edge_agent::telemetry::kmsg::line(&r, 1_800_000_000_000, 0);
        raw += line(i).len() + 1;
        let payload = serde_json::to_vec(&fleet_wire::telemetry::Body::Log(l)).expect("json");
        batch.push(Stored { seq: i + 1, kind: Kind::Log, payload });
        if batch.len() == 2000 {
            flush(&mut batch, &mut wire);
        }
    }
    if !batch.is_empty() {
        flush(&mut batch, &mut wire);
    }
    (raw as f64 / n as f64, wire as f64 / n as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(binary), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok())) else {
        eprintln!("usage: telemetry_bench EDGE_AGENT_BINARY N_LINES");
        std::process::exit(2);
    };
    let mut spool = Vec::new();
    let mut plain = Vec::new();
    for _ in 0..5 {
        spool.push(spool_rate(n).0);
        let dir = tempfile::tempdir().expect("tempdir");
        plain.push(plain_rate(n, dir.path()));
    }
    let (spool, plain) = (median(spool), median(plain));
    let rss_kib = agent_rss(binary, n);
    let (raw, wire) = wire_bytes(n.min(100_000));
    println!(
        "{}",
        serde_json::json!({
            "lines": n,
            "spool_lines_per_sec": spool.round(),
            "plain_lines_per_sec": plain.round(),
            "spool_over_plain": (spool / plain * 1000.0).round() / 1000.0,
            "agent_peak_rss_kib": rss_kib,
            "raw_bytes_per_line": (raw * 10.0).round() / 10.0,
            "wire_bytes_per_line": (wire * 10.0).round() / 10.0,
            "wire_over_raw": (wire / raw * 1000.0).round() / 1000.0,
        })
    );
}
