//! The telemetry at work (docs/telemetry.md): three threads beside the agent's loop, sharing the spool.
//!
//! - The collector waits on the kernel log (and its timers): every record goes into the spool as it comes, the
//!   node's metrics every `metrics_interval_secs`, and the spool is synced every `telemetry_sync_ms` when something
//!   was added. On SIGTERM it reads the kernel log to its end, syncs, and ends the process, so a clean shutdown
//!   loses nothing: `edge-init` stops services in the reverse of the order it started them, so an agent listed
//!   before the services whose lines it collects stops after them.
//! - The shipper sends what is synced, in order, every `telemetry_interval_secs` (and batch after batch while a
//!   backlog lasts), and drops from the spool what the endpoint acknowledges; a failure waits out a backoff that
//!   doubles up to `backoff_cap_secs`.
//! - The exporter serves the last sample of the metrics in the Prometheus text format on `metrics_listen`.
//!
//! None of them stops the agent or the node: each failure is logged once and the thread goes on.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fleet_wire::telemetry::{Body, Metrics, Sample};

use super::figures::{MetricType, Own, Sampler, CATALOG};
use super::kmsg::{Kmsg, Position};
use super::spool::{DiskFs, Kind, Spool};
use crate::client::{Client, Contact};
use crate::config::{Config, TelemetryConfig};
use crate::error::{Error, Result};
use crate::paths::Paths;

/// The most samples in one metrics record (a sample set larger than this goes as several records).
const SAMPLES_PER_RECORD: usize = 256;

/// What the threads share.
struct Shared {
    spool: Mutex<Spool<DiskFs>>,
    /// The last sample set, for the exporter.
    latest: Mutex<Vec<Sample>>,
    /// The agent's own counters since start.
    own: Mutex<Own>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked while holding the lock left the data as it was between two whole steps: go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The telemetry, open: the spool, the collector's state and the client. [`Telemetry::spawn`] runs it on its
/// threads; tests call [`Telemetry::collect`] and [`Telemetry::ship`] themselves.
pub struct Telemetry {
    shared: Arc<Shared>,
    collector: Collector,
    client: Client,
    config: TelemetryConfig,
    backoff: (Duration, Duration),
}

/// What one call of [`Telemetry::ship`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shipped {
    /// Everything synced was sent and acknowledged (`n` records now).
    Done(u64),
    /// The endpoint was not reached or refused; the records wait.
    Failed(String),
}

impl Telemetry {
    /// Opens the spool of the node at `paths` and reads where this boot's kernel log was left.
    pub fn open(config: &Config, paths: &Paths, client: Client) -> Result<Telemetry> {
        let t = config.telemetry.clone();
        let (spool, opened) = Spool::open(DiskFs::new(&paths.telemetry), &paths.telemetry, t.limits)?;
        log::info!(
            "telemetry spool {}: {} records waiting in {} segments",
            paths.telemetry.display(),
            opened.n_pending,
            opened.n_segments
        );
        let boot_text = std::fs::read_to_string(&paths.boot_id).unwrap_or_default();
        let boot = super::kmsg::parse_boot_id(&boot_text).unwrap_or_default();
        // Where this boot's kernel log was left: the newest mark in the spool, if it is this boot's.
        let next_seq = spool_position(&spool, boot);
        let collector = Collector {
            paths: paths.clone(),
            init_socket: config.init_socket.clone(),
            update_config: config.update_config.clone(),
            boot,
            next_seq,
            kmsg: None,
            kmsg_error: None,
            sampler: Sampler::new(super::figures::count_boot(&paths.boots, boot_text.trim())),
        };
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            latest: Mutex::new(Vec::new()),
            own: Mutex::new(Own::default()),
        });
        Ok(Telemetry {
            shared,
            collector,
            client,
            config: t,
            backoff: (config.timing.backoff_base, config.timing.backoff_cap),
        })
    }

    /// Reads the kernel log to its end, takes a sample of the metrics, and syncs the spool.
    pub fn collect(&mut self) -> Result<()> {
        self.collector.open_kmsg();
        self.collector.drain(&self.shared);
        self.collector.sample(&self.shared);
        lock(&self.shared.spool).sync()?;
        Ok(())
    }

    /// Sends everything synced, batch after batch, until nothing is left or a batch fails.
    pub fn ship(&self) -> Shipped {
        ship_all(&self.shared, &self.client, &self.config)
    }

    /// Records synced and not yet acknowledged.
    pub fn n_pending(&self) -> u64 {
        lock(&self.shared.spool).n_pending()
    }

    /// What the spool has lost.
    pub fn counters(&self) -> super::spool::Counters {
        lock(&self.shared.spool).counters().clone()
    }

    /// Runs the collector, the shipper and the exporter on threads of their own, and takes over SIGTERM (the
    /// collector reads the kernel log to its end, syncs, and ends the process).
    pub fn spawn(self) -> Result<()> {
        let Telemetry { shared, collector, client, config, backoff } = self;
        let stop = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())
            .map_err(|source| Error::WriteFile { path: PathBuf::from("SIGTERM"), source })?;
        let thread = |name: &str| std::thread::Builder::new().name(name.to_owned());
        let spawn_err = |source| Error::WriteFile { path: PathBuf::from("a telemetry thread"), source };
        if let Some(addr) = config.metrics_listen {
            match TcpListener::bind(addr) {
                Ok(listener) => {
                    let shared = shared.clone();
                    thread("metrics").spawn(move || serve_metrics(listener, &shared)).map_err(spawn_err)?;
                }
                Err(e) => log::warn!("cannot serve metrics on {addr}: {e}"),
            }
        }
        let (s, c) = (shared.clone(), config.clone());
        thread("collector").spawn(move || collector.run(&s, &c, &stop)).map_err(spawn_err)?;
        thread("shipper").spawn(move || ship_loop(&shared, &client, &config, backoff)).map_err(spawn_err)?;
        Ok(())
    }
}

/// The kernel log position the spool's newest mark holds, if it is boot `boot`'s; else the ring's start.
fn spool_position(spool: &Spool<DiskFs>, boot: [u8; 16]) -> u64 {
    spool.mark().and_then(|m| Position::from_mark(&m.bytes)).filter(|p| p.boot == boot).map_or(0, |p| p.next_seq)
}

/// The wall clock in milliseconds since the epoch.
fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

struct Collector {
    paths: Paths,
    init_socket: PathBuf,
    update_config: PathBuf,
    boot: [u8; 16],
    next_seq: u64,
    kmsg: Option<Kmsg>,
    kmsg_error: Option<String>,
    sampler: Sampler,
}

impl Collector {
    fn open_kmsg(&mut self) {
        if self.kmsg.is_some() {
            return;
        }
        match Kmsg::open(&self.paths.kmsg) {
            Ok(k) => self.kmsg = Some(k),
            Err(e) => {
                let message = format!("cannot read the kernel log {}: {e}", self.paths.kmsg.display());
                if self.kmsg_error.as_deref() != Some(message.as_str()) {
                    log::warn!("{message}");
                    self.kmsg_error = Some(message);
                }
            }
        }
    }

    fn run(mut self, shared: &Shared, config: &TelemetryConfig, stop: &AtomicBool) {
        let mut next_sample = Instant::now();
        let mut next_sync = Instant::now() + config.sync;
        let mut dirty = false;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            self.open_kmsg();
            let added = self.drain(shared);
            dirty |= added;
            let now = Instant::now();
            if now >= next_sample {
                self.sample(shared);
                dirty = true;
                next_sample = now + config.metrics_interval;
            }
            if stopping || (dirty && Instant::now() >= next_sync) {
                let synced = lock(&shared.spool).sync();
                match synced {
                    Ok(_) => dirty = false,
                    Err(e) => log::error!("telemetry spool: {}", crate::error::chain(&e)),
                }
                next_sync = Instant::now() + config.sync;
            }
            if stopping {
                log::info!("SIGTERM: the kernel log is read and the telemetry spool synced; exiting");
                std::process::exit(0);
            }
            let until = if dirty { next_sample.min(next_sync) } else { next_sample };
            let wait = until.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
            // The device wakes the wait when a record comes; a file (a test's) is always readable, so a wait
            // that found nothing new sleeps its time out.
            let readable = match self.kmsg.as_ref() {
                Some(k) => crate::sys::wait_readable(k.file(), i32::try_from(wait.as_millis()).unwrap_or(1000))
                    .unwrap_or(false),
                None => false,
            };
            if !readable || !added {
                std::thread::sleep(wait);
            }
        }
    }

    /// Spools every kernel log record there is; whether any was added.
    fn drain(&mut self, shared: &Shared) -> bool {
        let Some(k) = self.kmsg.as_mut() else { return false };
        // The wall-clock time of the boot, as of now: a clock set after boot (NTP on a node without a real-time
        // clock) dates the lines read from then on by the corrected clock.
        let boot_ms = now_ms() - crate::sys::monotonic_ms();
        let mut added = false;
        loop {
            let record = match k.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => return added,
                Err(e) => {
                    log::warn!("kernel log: {e}");
                    return added;
                }
            };
            let Some(lost) = super::kmsg::take(&mut self.next_seq, record.seq) else { continue };
            if lost > 0 {
                lock(&shared.own).kmsg_lost += lost;
            }
            let line = super::kmsg::line(&record, boot_ms, lost);
            let payload = serde_json::to_vec(&Body::Log(line)).expect("a log line serializes");
            let mark = Position { boot: self.boot, next_seq: self.next_seq }.to_mark();
            let mut spool = lock(&shared.spool);
            match spool.append(Kind::Log, &payload, Some(&mark)) {
                Ok(_) => {
                    *lock(&shared.own).spooled.entry(Kind::Log.word()).or_default() += 1;
                    added = true;
                }
                Err(e) => {
                    // The record is not lost: the log is read again from the spool's last mark.
                    log::error!("telemetry spool: {}", crate::error::chain(&e));
                    self.next_seq = spool_position(&spool, self.boot);
                    self.kmsg = None;
                    return added;
                }
            }
        }
    }

    /// Takes one sample of the node's metrics, spools it and hands it to the exporter.
    fn sample(&mut self, shared: &Shared) {
        let init =
            platform::ctl::ask(&self.init_socket, &platform::ctl::Request::StatusJson).ok().and_then(
                |reply| match reply {
                    platform::ctl::Reply::Ok { body } => serde_json::from_str::<platform::ctl::Status>(&body).ok(),
                    _ => None,
                },
            );
        let update = updater::config::Config::load(&self.update_config)
            .ok()
            .map(|u| crate::inventory::slots(&u, &BTreeMap::new()));
        let own = {
            let spool = lock(&shared.spool);
            let mut own = lock(&shared.own).clone();
            own.spool_bytes = spool.bytes();
            own.pending = spool.n_pending();
            own.counters = spool.counters().clone();
            own
        };
        let samples = self.sampler.sample(&self.paths, init.as_ref(), update.as_ref(), &own);
        let time_ms = now_ms();
        for chunk in samples.chunks(SAMPLES_PER_RECORD) {
            let body = Body::Metrics(Metrics { time_ms, samples: chunk.to_vec() });
            let payload = serde_json::to_vec(&body).expect("samples serialize");
            let appended = lock(&shared.spool).append(Kind::Metrics, &payload, None);
            match appended {
                Ok(_) => *lock(&shared.own).spooled.entry(Kind::Metrics.word()).or_default() += 1,
                Err(e) => log::error!("telemetry spool: {}", crate::error::chain(&e)),
            }
        }
        *lock(&shared.latest) = samples;
    }
}

/// A batch's JSON from spooled records: each record's payload (a `Body`'s JSON object) with its `seq` put first.
pub fn batch_json(records: &[super::spool::Stored], counters: &super::spool::Counters) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.payload.len() + 24).sum::<usize>() + 128);
    out.extend_from_slice(b"{\"records\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(format!("{{\"seq\":{},", r.seq).as_bytes());
        // Every payload is a JSON object that the collector wrote: `{` and at least one member.
        out.extend_from_slice(&r.payload[1..]);
    }
    out.extend_from_slice(b"],\"counters\":");
    out.extend_from_slice(&serde_json::to_vec(counters).expect("counters serialize"));
    out.push(b'}');
    out
}

/// Sends everything synced, batch after batch, until nothing is left or a batch fails.
fn ship_all(shared: &Shared, client: &Client, t: &TelemetryConfig) -> Shipped {
    let mut sent = 0;
    loop {
        let (records, counters) = {
            let mut spool = lock(&shared.spool);
            let acked = spool.acked();
            match spool.read(acked, t.limits.batch_records as usize, t.batch_bytes) {
                Ok(r) => (r, spool.counters().clone()),
                Err(e) => return Shipped::Failed(format!("telemetry spool: {}", crate::error::chain(&e))),
            }
        };
        let Some(last) = records.last().map(|r| r.seq) else { return Shipped::Done(sent) };
        let json = batch_json(&records, &counters);
        let body = zstd::encode_all(&json[..], 3).expect("compressing in memory cannot fail");
        let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
        match client.post_telemetry(&body, now) {
            Contact::Ok(ack) => {
                let acked = lock(&shared.spool).ack(ack.acked_seq);
                if let Err(e) = acked {
                    return Shipped::Failed(format!("telemetry spool: {}", crate::error::chain(&e)));
                }
                sent += records.len() as u64;
                lock(&shared.own).sent += records.len() as u64;
                log::debug!("telemetry: {} records sent, acknowledged to seq {}", records.len(), ack.acked_seq);
                if ack.acked_seq < last {
                    return Shipped::Failed(format!("the endpoint acknowledged seq {} of {last}", ack.acked_seq));
                }
            }
            Contact::Rejected(s) => return Shipped::Failed(format!("the endpoint refuses this node ({s})")),
            Contact::Refused(s, e) => {
                return Shipped::Failed(format!("the endpoint refused a batch ({s} {})", e.unwrap_or_default()))
            }
            Contact::Down(e) => return Shipped::Failed(crate::error::chain(&e)),
        }
    }
}

/// The shipper's loop: a ship every interval, a failure waits out a backoff that doubles up to its cap; each
/// failure logged once while it lasts.
fn ship_loop(shared: &Shared, client: &Client, t: &TelemetryConfig, (base, cap): (Duration, Duration)) {
    let mut failures = 0u32;
    let mut last_error: Option<String> = None;
    loop {
        let wait = if failures == 0 { t.interval } else { base.saturating_mul(1 << failures.min(16)).min(cap) };
        std::thread::sleep(wait);
        match ship_all(shared, client, t) {
            Shipped::Done(_) => {
                if last_error.take().is_some() {
                    log::info!("telemetry: the endpoint takes batches again");
                }
                failures = 0;
            }
            Shipped::Failed(message) => {
                if last_error.as_deref() != Some(message.as_str()) {
                    log::warn!("telemetry: {message}; the records wait in the spool");
                    last_error = Some(message);
                }
                failures = failures.saturating_add(1);
            }
        }
    }
}

/// The exporter: answers every request on `listener` with the last sample in the Prometheus text format.
fn serve_metrics(listener: TcpListener, shared: &Shared) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(match stream.try_clone() {
            Ok(s) => s,
            Err(_) => continue,
        });
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            continue;
        }
        // The headers, read and passed over.
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("");
        let response = if request_line.starts_with("GET ") && (path == "/metrics" || path == "/") {
            let text = render(&lock(&shared.latest));
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            )
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
        };
        let _ = stream.write_all(response.as_bytes());
    }
}

/// A sample set in the OpenMetrics text format, by `prometheus-client`: one family per catalog entry present.
pub fn render(samples: &[Sample]) -> String {
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;

    #[derive(Debug)]
    struct Latest(Vec<Sample>);

    impl Collector for Latest {
        fn encode(&self, mut encoder: DescriptorEncoder) -> std::result::Result<(), std::fmt::Error> {
            for m in CATALOG {
                let of_it: Vec<&Sample> = self.0.iter().filter(|s| s.name == m.name).collect();
                if of_it.is_empty() {
                    continue;
                }
                let (name, kind) = match m.kind {
                    MetricType::Gauge => (m.name, prometheus_client::metrics::MetricType::Gauge),
                    // The encoder writes a counter's samples with `_total` after its name.
                    MetricType::Counter => {
                        (m.name.trim_end_matches("_total"), prometheus_client::metrics::MetricType::Counter)
                    }
                };
                let mut family = encoder.encode_descriptor(name, m.help, None, kind)?;
                for s in of_it {
                    let labels: Vec<(String, String)> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    let metric = family.encode_family(&labels)?;
                    match m.kind {
                        MetricType::Gauge => ConstGauge::new(s.value).encode(metric)?,
                        MetricType::Counter => ConstCounter::new(s.value).encode(metric)?,
                    }
                }
            }
            Ok(())
        }
    }

    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Latest(samples.to_vec())));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::figures::sample;
    use crate::telemetry::spool::{Counters, Stored};

    #[test]
    fn the_page_has_every_family_with_help_type_and_labels() {
        let text = render(&[
            sample("edge_node_load1", &[], 0.5),
            sample("edge_node_network_receive_bytes_total", &[("device", "eth0")], 1234.0),
            sample("edge_init_service_up", &[("service", "app")], 1.0),
            sample("edge_init_service_up", &[("service", "db")], 0.0),
        ]);
        assert!(text.contains("# TYPE edge_node_load1 gauge\n"), "{text}");
        assert!(text.contains("edge_node_load1 0.5\n"), "{text}");
        assert!(text.contains("# TYPE edge_node_network_receive_bytes counter\n"), "{text}");
        assert!(text.contains("edge_node_network_receive_bytes_total{device=\"eth0\"} 1234.0\n"), "{text}");
        assert!(text.contains("edge_init_service_up{service=\"db\"} 0.0\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_batch_is_the_records_with_their_seq_and_the_counters() {
        let line = Body::Log(fleet_wire::telemetry::LogLine {
            time_ms: 5,
            source: "app".into(),
            level: 6,
            text: "hi \"there\"".into(),
            lost: 0,
        });
        let records = vec![
            Stored { seq: 7, kind: Kind::Log, payload: serde_json::to_vec(&line).expect("json") },
            Stored { seq: 9, kind: Kind::Log, payload: serde_json::to_vec(&line).expect("json") },
        ];
        let counters = Counters { dropped: [("log".to_owned(), 2)].into(), damaged: 1, torn_bytes: 3 };
        let json = batch_json(&records, &counters);
        let batch: fleet_wire::telemetry::TelemetryBatch = serde_json::from_slice(&json).expect("a batch");
        batch.check().expect("valid");
        assert_eq!(batch.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![7, 9]);
        assert_eq!(batch.records[0].body, line);
        assert_eq!((batch.counters.damaged, batch.counters.dropped.get("log")), (1, Some(&2)));
    }
}
