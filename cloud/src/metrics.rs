//! The endpoint's own metrics (docs/telemetry.md, "The endpoint's metrics"), served on `/metrics` in the
//! Prometheus text format by `prometheus-client`: counters kept in memory since the process started (telemetry taken,
//! remote write's requests and samples), and gauges read from the database at each scrape (the queue's length, the
//! forwarded and refused totals, the nodes by status).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A label set of one label, `kind`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `log` or `metrics` (records), `ok`, `refused`, `failed` (requests), a node status.
    pub kind: String,
}

/// The counters and the gauges' registry.
#[derive(Debug)]
pub struct CloudMetrics {
    registry: Registry,
    batches: Counter,
    records: Family<KindLabel, Counter>,
    duplicates: Counter,
    requests: Family<KindLabel, Counter>,
    samples: Counter,
    skipped: Counter,
    rows_refused: Counter,
    queue: Gauge,
    forwarded_total: Gauge,
    refused_total: Gauge,
    nodes: Family<KindLabel, Gauge>,
}

impl Default for CloudMetrics {
    fn default() -> CloudMetrics {
        CloudMetrics::new()
    }
}

impl CloudMetrics {
    /// Every metric, registered.
    pub fn new() -> CloudMetrics {
        let mut registry = Registry::default();
        let m = CloudMetrics {
            batches: Counter::default(),
            records: Family::default(),
            duplicates: Counter::default(),
            requests: Family::default(),
            samples: Counter::default(),
            skipped: Counter::default(),
            rows_refused: Counter::default(),
            queue: Gauge::default(),
            forwarded_total: Gauge::default(),
            refused_total: Gauge::default(),
            nodes: Family::default(),
            registry: Registry::default(),
        };
        registry.register("edge_cloud_telemetry_batches", "telemetry batches taken since start", m.batches.clone());
        registry.register(
            "edge_cloud_telemetry_records",
            "telemetry records stored since start, by kind (log, metrics)",
            m.records.clone(),
        );
        registry.register(
            "edge_cloud_telemetry_duplicates",
            "telemetry records sent again and not stored again, since start",
            m.duplicates.clone(),
        );
        registry.register(
            "edge_cloud_remote_write_requests",
            "remote-write requests since start, by kind (ok, refused, failed)",
            m.requests.clone(),
        );
        registry.register("edge_cloud_remote_write_samples", "samples the TSDB took since start", m.samples.clone());
        registry.register(
            "edge_cloud_remote_write_skipped_samples",
            "samples left out of a request for not being after the one before in their series, since start",
            m.skipped.clone(),
        );
        registry.register(
            "edge_cloud_remote_write_refused_records",
            "metric records the TSDB refused for good (4xx) and that were dropped, since start",
            m.rows_refused.clone(),
        );
        registry.register("edge_cloud_metric_queue_records", "metric records waiting to be forwarded", m.queue.clone());
        registry.register(
            "edge_cloud_metric_records_forwarded",
            "metric records ever forwarded to the TSDB (in the database)",
            m.forwarded_total.clone(),
        );
        registry.register(
            "edge_cloud_metric_records_refused",
            "metric records ever refused by the TSDB (in the database)",
            m.refused_total.clone(),
        );
        registry.register("edge_cloud_nodes", "nodes by status", m.nodes.clone());
        CloudMetrics { registry, ..m }
    }

    /// A telemetry batch was stored.
    pub fn telemetry(&self, n_logs: u64, n_metrics: u64, duplicates: u64) {
        self.batches.inc();
        self.records.get_or_create(&KindLabel { kind: "log".into() }).inc_by(n_logs);
        self.records.get_or_create(&KindLabel { kind: "metrics".into() }).inc_by(n_metrics);
        self.duplicates.inc_by(duplicates);
    }

    /// A remote-write request was taken.
    pub fn forwarded(&self, _rows: u64, samples: u64, skipped: u64) {
        self.requests.get_or_create(&KindLabel { kind: "ok".into() }).inc();
        self.samples.inc_by(samples);
        self.skipped.inc_by(skipped);
    }

    /// A remote-write request was refused for good.
    pub fn refused(&self, rows: u64) {
        self.requests.get_or_create(&KindLabel { kind: "refused".into() }).inc();
        self.rows_refused.inc_by(rows);
    }

    /// A remote-write request failed (it is sent again).
    pub fn remote_write_failed(&self) {
        self.requests.get_or_create(&KindLabel { kind: "failed".into() }).inc();
    }

    /// Remote-write requests since start: taken, refused, failed.
    pub fn remote_write_counts(&self) -> (u64, u64, u64) {
        let n = |k: &str| self.requests.get_or_create(&KindLabel { kind: k.into() }).get();
        (n("ok"), n("refused"), n("failed"))
    }

    /// The page, with the gauges set from what the database says now.
    pub async fn render(&self, store: &dyn crate::store::Store) -> crate::error::Result<String> {
        let queue = store.metric_queue_len().await?;
        let (forwarded, refused) = store.forwarder_counts().await?;
        let counts = store.node_counts().await?;
        let gauge = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        gauge(&self.queue, queue);
        gauge(&self.forwarded_total, forwarded);
        gauge(&self.refused_total, refused);
        for (status, n) in &counts.by_status {
            gauge(&self.nodes.get_or_create(&KindLabel { kind: status.clone() }), *n);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        Ok(out)
    }
}
