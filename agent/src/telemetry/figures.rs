//! The node's metrics (docs/telemetry.md, "Metric names"): one catalog of every metric the agent makes, with its
//! type and meaning, and the readers that take one sample of them all from the node's files (`/proc`, the data
//! partition, `edge-init`'s control socket, the updater's journal and boot state, the spool).
//!
//! The same samples go into the spool (shipped to the endpoint, then the TSDB) and to the local Prometheus page, so
//! a site that scrapes the node sees what the fleet's TSDB sees. Every reader stands alone: a file that cannot be
//! read leaves its metrics out of that sample, nothing else.

use std::collections::BTreeMap;
use std::path::Path;

use fleet_wire::telemetry::Sample;

use crate::paths::Paths;

/// A metric's type, as Prometheus names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A value that goes up and down.
    Gauge,
    /// A count that only goes up (from 0 at the event the help names); its name ends in `_total`.
    Counter,
}

/// One metric of the catalog: its name (with `_total` for a counter), type, labels and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The name as shipped and scraped.
    pub name: &'static str,
    /// Gauge or counter.
    pub kind: MetricType,
    /// Its labels, comma-separated (empty: none).
    pub labels: &'static str,
    /// What it measures.
    pub help: &'static str,
}

const fn gauge(name: &'static str, labels: &'static str, help: &'static str) -> Metric {
    Metric { name, kind: MetricType::Gauge, labels, help }
}

const fn counter(name: &'static str, labels: &'static str, help: &'static str) -> Metric {
    Metric { name, kind: MetricType::Counter, labels, help }
}

/// Every metric the agent makes.
pub const CATALOG: &[Metric] = &[
    gauge(
        "edge_node_cpu_busy_ratio",
        "",
        "share of CPU time not idle (nor waiting for I/O) since the last sample, 0 to 1",
    ),
    gauge("edge_node_load1", "", "the 1-minute load average"),
    gauge("edge_node_memory_total_bytes", "", "memory in all (MemTotal)"),
    gauge("edge_node_memory_available_bytes", "", "memory available to new work without swapping (MemAvailable)"),
    gauge("edge_node_data_size_bytes", "", "size of the data partition's file system"),
    gauge("edge_node_data_free_bytes", "", "bytes free on the data partition for unprivileged writers"),
    counter("edge_node_network_receive_bytes_total", "device", "bytes received by an interface since boot (not lo)"),
    counter("edge_node_network_transmit_bytes_total", "device", "bytes sent by an interface since boot (not lo)"),
    gauge("edge_node_uptime_seconds", "", "seconds since boot"),
    counter("edge_node_boots_total", "", "boots the agent has seen on this data partition"),
    gauge("edge_init_service_up", "service", "1 when edge-init has the service up, else 0"),
    counter("edge_init_service_restarts_total", "service", "times edge-init started the service again since boot"),
    gauge(
        "edge_init_service_failed",
        "service",
        "1 when the service spent its crash budget and edge-init gave up on it",
    ),
    gauge(
        "edge_init_service_crash_budget_left",
        "service",
        "crashes the service may still have within its crash window",
    ),
    gauge(
        "edge_init_watchdog_reset",
        "",
        "1 when the watchdog's driver says the last reset was its own (the node hung)",
    ),
    gauge("edge_update_phase", "phase", "1 for the updater's journal phase (idle when none)"),
    gauge(
        "edge_update_slot_info",
        "slot,state,version,booted",
        "1 per slot: its state (good, trial, bad, empty), bundle version and whether it is booted",
    ),
    gauge("edge_agent_spool_bytes", "", "bytes of the telemetry spool on the data partition"),
    gauge("edge_agent_spool_pending_records", "", "telemetry records synced and not yet acknowledged by the endpoint"),
    counter(
        "edge_agent_spool_dropped_records_total",
        "kind",
        "telemetry records not yet sent that a full spool dropped, over the node's life",
    ),
    counter(
        "edge_agent_spool_damaged_records_total",
        "",
        "synced telemetry records that did not read back from a damaged segment",
    ),
    counter("edge_agent_spool_torn_bytes_total", "", "bytes of torn or damaged spool segment tails cut off"),
    counter(
        "edge_agent_log_lines_lost_total",
        "source",
        "kernel log records overwritten before the agent read them, since the agent started",
    ),
    counter("edge_agent_telemetry_records_total", "kind", "telemetry records spooled since the agent started"),
    counter(
        "edge_agent_telemetry_sent_records_total",
        "",
        "telemetry records the endpoint acknowledged since the agent started",
    ),
];

/// The catalog's entry for `name`.
pub fn metric(name: &str) -> Option<&'static Metric> {
    CATALOG.iter().find(|m| m.name == name)
}

/// The Markdown table of the catalog (docs/telemetry.md).
pub fn catalog_table() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n");
    for m in CATALOG {
        let kind = match m.kind {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
        };
        let labels = if m.labels.is_empty() { String::new() } else { format!("`{}`", m.labels) };
        out.push_str(&format!("| `{}` | {kind} | {labels} | {} |\n", m.name, m.help));
    }
    out
}

/// A sample of `name` with `labels`.
pub fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
    debug_assert!(metric(name).is_some(), "{name} is in the catalog");
    Sample {
        name: name.to_owned(),
        labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        value,
    }
}

/// The CPU's busy and total time (in ticks) as `/proc/stat`'s first line says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Ticks not idle nor waiting for I/O.
    pub busy: u64,
    /// All ticks.
    pub total: u64,
}

/// Reads the `cpu` line of `/proc/stat`.
pub fn cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some(CpuTimes { busy: total - idle, total })
}

/// The busy share between two readings (0 when no tick passed).
pub fn busy_ratio(before: CpuTimes, after: CpuTimes) -> f64 {
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    after.busy.saturating_sub(before.busy) as f64 / total as f64
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn memory(meminfo: &str) -> (Option<u64>, Option<u64>) {
    let kib = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    (kib("MemTotal"), kib("MemAvailable"))
}

/// Bytes received and sent per interface of `/proc/net/dev`, `lo` left out.
pub fn network(net_dev: &str) -> Vec<(String, u64, u64)> {
    net_dev
        .lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let v: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            (name != "lo" && v.len() >= 9).then(|| (name.to_owned(), v[0], v[8]))
        })
        .collect()
}

/// The number of boots seen, counted in `boots.json`: one more when the boot id is not the one recorded there.
/// Written atomically; a file that cannot be read starts the count over.
pub fn count_boot(path: &Path, boot_id: &str) -> u64 {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Boots {
        boot_id: String,
        n_boots: u64,
    }
    let old: Option<Boots> = std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    match old {
        Some(b) if b.boot_id == boot_id => b.n_boots,
        old => {
            let n = old.map_or(1, |b| b.n_boots + 1);
            let body = serde_json::to_vec(&Boots { boot_id: boot_id.to_owned(), n_boots: n }).expect("serializes");
            let write = || -> image_layout::Result<()> {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let mut f = image_layout::fsutil::AtomicFile::create(path)?;
                std::io::Write::write_all(f.file(), &body)
                    .map_err(|source| image_layout::Error::WriteFile { path: path.to_owned(), source })?;
                f.commit()
            };
            if let Err(e) = write() {
                log::warn!("cannot record this boot in {}: {}", path.display(), crate::error::chain(&e));
            }
            n
        }
    }
}

/// What the sampler keeps between samples.
#[derive(Debug, Default)]
pub struct Sampler {
    cpu: Option<CpuTimes>,
    /// Boots seen (counted once at start).
    pub n_boots: u64,
}

/// The agent's own figures, which the sampler adds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Own {
    /// Bytes of the spool.
    pub spool_bytes: u64,
    /// Records waiting.
    pub pending: u64,
    /// The spool's loss counters.
    pub counters: crate::telemetry::spool::Counters,
    /// Kernel log records lost since start.
    pub kmsg_lost: u64,
    /// Records spooled since start, per kind's word.
    pub spooled: BTreeMap<&'static str, u64>,
    /// Records acknowledged since start.
    pub sent: u64,
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

impl Sampler {
    /// A sampler on a node that has seen `n_boots` boots.
    pub fn new(n_boots: u64) -> Sampler {
        Sampler { cpu: None, n_boots }
    }

    /// One sample of every metric the node's files give, edge-init's status and the updater's view when given, and
    /// the agent's own.
    pub fn sample(
        &mut self,
        paths: &Paths,
        init: Option<&platform::ctl::Status>,
        update: Option<&(Vec<fleet_wire::node::SlotInventory>, Option<String>)>,
        own: &Own,
    ) -> Vec<Sample> {
        let mut out = Vec::new();
        if let Some(now) = read(&paths.proc_stat).as_deref().and_then(cpu_times) {
            let ratio = self.cpu.map_or(0.0, |before| busy_ratio(before, now));
            self.cpu = Some(now);
            out.push(sample("edge_node_cpu_busy_ratio", &[], ratio));
        }
        if let Some(load) = read(&paths.loadavg).and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok()) {
            out.push(sample("edge_node_load1", &[], load));
        }
        if let Some(meminfo) = read(&paths.meminfo) {
            let (total, available) = memory(&meminfo);
            if let Some(t) = total {
                out.push(sample("edge_node_memory_total_bytes", &[], t as f64));
            }
            if let Some(a) = available {
                out.push(sample("edge_node_memory_available_bytes", &[], a as f64));
            }
        }
        if let Ok((size, free)) = crate::sys::fs_size_free(&paths.data_mount) {
            out.push(sample("edge_node_data_size_bytes", &[], size as f64));
            out.push(sample("edge_node_data_free_bytes", &[], free as f64));
        }
        for (dev, rx, tx) in read(&paths.net_dev).as_deref().map(network).unwrap_or_default() {
            out.push(sample("edge_node_network_receive_bytes_total", &[("device", &dev)], rx as f64));
            out.push(sample("edge_node_network_transmit_bytes_total", &[("device", &dev)], tx as f64));
        }
        if let Some(up) = read(&paths.uptime).and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok()) {
            out.push(sample("edge_node_uptime_seconds", &[], up));
        }
        if self.n_boots > 0 {
            out.push(sample("edge_node_boots_total", &[], self.n_boots as f64));
        }
        for s in init.map(|i| i.services.as_slice()).unwrap_or_default() {
            let name = crate::inventory::name(&s.name);
            let up = f64::from(u8::from(s.state == platform::ctl::ServiceState::Up));
            let failed = f64::from(u8::from(s.state == platform::ctl::ServiceState::Failed));
            out.push(sample("edge_init_service_up", &[("service", &name)], up));
            out.push(sample("edge_init_service_restarts_total", &[("service", &name)], f64::from(s.n_restarts)));
            out.push(sample("edge_init_service_failed", &[("service", &name)], failed));
            let left = f64::from(s.crash_budget_left);
            out.push(sample("edge_init_service_crash_budget_left", &[("service", &name)], left));
        }
        if let Some(i) = init {
            out.push(sample("edge_init_watchdog_reset", &[], f64::from(u8::from(i.watchdog_reset))));
        }
        if let Some((slots, phase)) = update {
            out.push(sample("edge_update_phase", &[("phase", phase.as_deref().unwrap_or("idle"))], 1.0));
            for s in slots {
                let version = s.bundle.as_ref().map_or("", |b| b.version.as_str());
                let booted = if s.booted { "true" } else { "false" };
                let labels =
                    [("slot", s.slot.as_str()), ("state", s.state.as_str()), ("version", version), ("booted", booted)];
                out.push(sample("edge_update_slot_info", &labels, 1.0));
            }
        }
        out.push(sample("edge_agent_spool_bytes", &[], own.spool_bytes as f64));
        out.push(sample("edge_agent_spool_pending_records", &[], own.pending as f64));
        for kind in crate::telemetry::spool::Kind::ALL {
            let w = kind.word();
            out.push(sample(
                "edge_agent_spool_dropped_records_total",
                &[("kind", w)],
                own.counters.dropped_of(w) as f64,
            ));
            let spooled = own.spooled.get(w).copied().unwrap_or(0);
            out.push(sample("edge_agent_telemetry_records_total", &[("kind", w)], spooled as f64));
        }
        out.push(sample("edge_agent_spool_damaged_records_total", &[], own.counters.damaged as f64));
        out.push(sample("edge_agent_spool_torn_bytes_total", &[], own.counters.torn_bytes as f64));
        out.push(sample("edge_agent_log_lines_lost_total", &[("source", "kernel")], own.kmsg_lost as f64));
        out.push(sample("edge_agent_telemetry_sent_records_total", &[], own.sent as f64));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(cpu_times(stat), Some(CpuTimes { busy: 150, total: 1000 }));
        let later = CpuTimes { busy: 250, total: 1400 };
        assert_eq!(busy_ratio(CpuTimes { busy: 150, total: 1000 }, later), 0.25);
        assert_eq!(busy_ratio(later, later), 0.0);
        let meminfo = "MemTotal:        2000 kB\nMemFree:          100 kB\nMemAvailable:     1500 kB\n";
        assert_eq!(memory(meminfo), (Some(2_048_000), Some(1_536_000)));
        let net = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 1000 5 0 0 0 0 0 0 2000 7 0 0 0 0 0 0\n";
        assert_eq!(network(net), vec![("eth0".to_owned(), 1000, 2000)]);
    }

    #[test]
    fn every_name_is_a_prometheus_name_and_counters_end_in_total() {
        for m in CATALOG {
            assert!(fleet_wire::telemetry::is_metric_name(m.name), "{}", m.name);
            assert_eq!(m.kind == MetricType::Counter, m.name.ends_with("_total"), "{}", m.name);
            for l in m.labels.split(',').filter(|l| !l.is_empty()) {
                assert!(
                    fleet_wire::telemetry::is_label_name(l) && !fleet_wire::telemetry::RESERVED_LABELS.contains(&l)
                );
            }
        }
    }

    #[test]
    fn boots_are_counted_once_each() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("boots.json");
        assert_eq!(count_boot(&path, "a"), 1);
        assert_eq!(count_boot(&path, "a"), 1);
        assert_eq!(count_boot(&path, "b"), 2);
        std::fs::write(&path, "garbage").expect("write");
        assert_eq!(count_boot(&path, "c"), 1);
    }

    #[test]
    fn a_sample_reads_a_fake_node() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = Paths::under(dir.path());
        for (p, text) in [
            (&paths.proc_stat, "cpu  10 0 10 80 0 0 0 0\n"),
            (&paths.loadavg, "0.42 0.30 0.10 1/100 999\n"),
            (&paths.meminfo, "MemTotal: 1000 kB\nMemAvailable: 500 kB\n"),
            (&paths.uptime, "123.45 100.00\n"),
        ] {
            std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        std::fs::create_dir_all(&paths.data_mount).expect("data");
        let mut sampler = Sampler::new(3);
        let init = platform::ctl::Status {
            schema: platform::ctl::STATUS_SCHEMA.into(),
            services: vec![platform::ctl::ServiceStatus {
                name: "app".into(),
                state: platform::ctl::ServiceState::Up,
                pid: Some(7),
                exit_code: None,
                signal: None,
                reason: None,
                n_restarts: 2,
                crash_budget_left: 3,
                status: String::new(),
            }],
            data: String::new(),
            watchdog: String::new(),
            watchdog_reset: true,
            health: "ok".into(),
        };
        let s = sampler.sample(&paths, Some(&init), None, &Own::default());
        let get = |n: &str| s.iter().find(|x| x.name == n).map(|x| x.value);
        assert_eq!(get("edge_node_load1"), Some(0.42));
        assert_eq!(get("edge_node_memory_available_bytes"), Some(512_000.0));
        assert_eq!(get("edge_node_uptime_seconds"), Some(123.45));
        assert_eq!(get("edge_node_boots_total"), Some(3.0));
        assert_eq!(get("edge_init_service_up"), Some(1.0));
        assert_eq!(get("edge_init_service_restarts_total"), Some(2.0));
        assert_eq!(get("edge_init_service_crash_budget_left"), Some(3.0));
        assert_eq!(get("edge_init_watchdog_reset"), Some(1.0));
        assert!(get("edge_node_data_size_bytes").is_some_and(|v| v > 0.0));
        for x in &s {
            x.check().expect("every sample passes the protocol's check");
        }
    }
}
