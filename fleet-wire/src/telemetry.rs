//! The telemetry API's bodies (docs/fleet-protocol.md, "Telemetry"): a node's logs and metric samples, numbered by
//! its spool, sent in order in compressed batches and acknowledged up to a `seq`.
//!
//! A batch's body is the JSON of [`TelemetryBatch`], compressed with zstd (`Content-Encoding: zstd`); the signature's
//! `Content-Digest` covers the compressed bytes, as they cross the wire. This crate has no compressor: the agent and
//! the endpoint each link zstd, and the bounds here say how far either may inflate a body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::node::{check_count, check_text, NodeId};
use crate::{Error, Result};

/// The largest compressed body of a batch.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// The largest batch once inflated: a body that inflates past it is refused.
pub const MAX_BATCH_RAW_BYTES: usize = 8 << 20;
/// The most records in one batch.
pub const MAX_RECORDS_PER_BATCH: usize = 4096;
/// The most samples in one metrics record.
pub const MAX_SAMPLES: usize = 512;
/// The most labels on one sample.
pub const MAX_SAMPLE_LABELS: usize = 16;
/// The longest log line, in characters.
pub const MAX_LOG_CHARS: usize = 8192;
/// The longest metric or label name, and label value, in characters.
pub const MAX_METRIC_NAME_CHARS: usize = 128;
/// Labels that the endpoint adds to every series (the node's identity and place): a node may not set them.
pub const RESERVED_LABELS: [&str; 4] = ["node", "site", "region", "__name__"];

/// `POST` here: a batch of the node's telemetry.
pub fn telemetry_path(node: &NodeId) -> String {
    format!("/v1/nodes/{node}/telemetry")
}

/// `POST /v1/nodes/{id}/telemetry`: records in the node's spool order, and what the spool has lost so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryBatch {
    /// Zero to [`MAX_RECORDS_PER_BATCH`] records, `seq` strictly increasing (gaps are records the node dropped).
    pub records: Vec<Record>,
    /// The spool's loss counters, cumulative over the node's life (each batch carries the latest).
    #[serde(default)]
    pub counters: Counters,
}

/// What a node's spool has lost, cumulative: the endpoint keeps the latest it was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counters {
    /// Records not yet sent that went with the oldest segment when the spool was full, per kind (`log`,
    /// `metrics`).
    #[serde(default)]
    pub dropped: BTreeMap<String, u64>,
    /// Synced records that did not read back from a damaged segment.
    #[serde(default)]
    pub damaged: u64,
    /// Bytes of torn or damaged segment tails cut off.
    #[serde(default)]
    pub torn_bytes: u64,
}

impl Counters {
    /// Records of kind `kind` (`log`, `metrics`) dropped.
    pub fn dropped_of(&self, kind: &str) -> u64 {
        self.dropped.get(kind).copied().unwrap_or(0)
    }
}

/// One record: its number and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The node's telemetry sequence number (its own, apart from the reports'), from 1, never given twice.
    pub seq: u64,
    /// What it holds.
    #[serde(flatten)]
    pub body: Body,
}

/// What a record holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Body {
    /// A log line.
    Log(LogLine),
    /// Metric samples taken at one time.
    Metrics(Metrics),
}

/// A log line: the kernel's, a service's (through `edge-init`), `edge-init`'s own, or the agent's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    /// When it was logged, milliseconds since the Unix epoch (the node's clock).
    pub time_ms: i64,
    /// Who logged it: `kernel`, `edge-init`, or a service's name.
    pub source: String,
    /// Its syslog level, 0 (emerg) to 7 (debug).
    pub level: u8,
    /// The line.
    pub text: String,
    /// Lines the source lost before the agent could read them (the kernel's ring wrapped), just before this one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Metric samples taken at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// When they were taken, milliseconds since the Unix epoch (the node's clock).
    pub time_ms: i64,
    /// One to [`MAX_SAMPLES`] samples.
    pub samples: Vec<Sample>,
}

/// One sample of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// The metric's name (Prometheus: `[a-zA-Z_:][a-zA-Z0-9_:]*`).
    pub name: String,
    /// Its labels (Prometheus names, not starting with `__`, none of [`RESERVED_LABELS`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Its value (finite).
    pub value: f64,
}

/// The reply to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryAck {
    /// Records stored now.
    pub stored: u32,
    /// Records the endpoint already had (a resend), not stored again.
    pub duplicates: u32,
    /// The highest `seq` the endpoint holds for this node: every record up to it may go from the spool.
    pub acked_seq: u64,
}

/// `GET /v1/admin/nodes/{id}/logs`: a node's log lines, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPage {
    /// The lines, by `seq`.
    pub lines: Vec<LogEntry>,
    /// The `seq` to ask after (`after=`) for the lines that come next: the last one's, or the one asked after.
    pub next_after: u64,
}

/// One stored log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// The node's telemetry `seq`.
    pub seq: u64,
    /// When it was logged (the node's clock), RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Who logged it.
    pub source: String,
    /// Its syslog level, 0 to 7.
    pub level: u8,
    /// The line.
    pub text: String,
    /// Lines the source lost just before it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost: u64,
}

/// A node's telemetry as the endpoint holds it (`edge-cloud nodes show`, the web view).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryStatus {
    /// The highest `seq` stored.
    pub acked_seq: u64,
    /// Log lines stored, ever.
    pub n_logs: u64,
    /// Metric records stored (and queued for the TSDB), ever.
    pub n_metrics: u64,
    /// Log lines the node's sources lost before the agent read them.
    pub n_lost_at_source: u64,
    /// Metric records refused for a time before the node's last one.
    pub n_metrics_refused: u64,
    /// The node spool's loss counters, as last sent.
    pub counters: Counters,
    /// Bytes of the node's log lines kept now.
    pub log_bytes: u64,
    /// When the last batch came, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl TelemetryBatch {
    /// Refuses an oversized batch, a sequence that does not strictly increase, and bad records.
    pub fn check(&self) -> Result<()> {
        check_count("records", self.records.len(), MAX_RECORDS_PER_BATCH)?;
        let mut last = 0;
        for r in &self.records {
            if r.seq <= last {
                return Err(Error::BadField { field: "records.seq", expected: "strictly increasing from 1" });
            }
            last = r.seq;
            r.body.check()?;
        }
        check_count("counters.dropped", self.counters.dropped.len(), 8)?;
        Ok(())
    }
}

impl Body {
    /// Refuses a bad level, text, name, label or value.
    pub fn check(&self) -> Result<()> {
        match self {
            Body::Log(l) => {
                if l.level > 7 {
                    return Err(Error::BadField { field: "level", expected: "a syslog level, 0 to 7" });
                }
                check_text("source", &l.source, MAX_METRIC_NAME_CHARS)?;
                check_text("text", &l.text, MAX_LOG_CHARS)
            }
            Body::Metrics(m) => {
                if m.samples.is_empty() {
                    return Err(Error::BadField { field: "samples", expected: "at least one sample" });
                }
                check_count("samples", m.samples.len(), MAX_SAMPLES)?;
                m.samples.iter().try_for_each(Sample::check)
            }
        }
    }
}

impl Sample {
    /// Refuses a name or label that is not a Prometheus name, a reserved label, and a value that is not finite.
    pub fn check(&self) -> Result<()> {
        if !is_metric_name(&self.name) {
            return Err(Error::BadField { field: "samples.name", expected: "a metric name, [a-zA-Z_:][a-zA-Z0-9_:]*" });
        }
        check_count("samples.labels", self.labels.len(), MAX_SAMPLE_LABELS)?;
        for (k, v) in &self.labels {
            if !is_label_name(k) || k.starts_with("__") || RESERVED_LABELS.contains(&k.as_str()) {
                return Err(Error::BadField {
                    field: "samples.labels",
                    expected: "label names [a-zA-Z_][a-zA-Z0-9_]*, not __*, node, site or region",
                });
            }
            check_text("samples.labels", v, MAX_METRIC_NAME_CHARS)?;
        }
        if !self.value.is_finite() {
            return Err(Error::BadField { field: "samples.value", expected: "a finite number" });
        }
        Ok(())
    }
}

/// Whether `name` is a Prometheus metric name, at most [`MAX_METRIC_NAME_CHARS`] long.
pub fn is_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_METRIC_NAME_CHARS
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// Whether `name` is a Prometheus label name, at most [`MAX_METRIC_NAME_CHARS`] long.
pub fn is_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_METRIC_NAME_CHARS
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(seq: u64, text: &str) -> Record {
        Record {
            seq,
            body: Body::Log(LogLine { time_ms: 1, source: "app".into(), level: 6, text: text.into(), lost: 0 }),
        }
    }

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            value,
        }
    }

    fn check(records: Vec<Record>, want: std::result::Result<(), &'static str>) {
        let batch = TelemetryBatch { records, counters: Counters::default() };
        match (batch.check(), want) {
            (Ok(()), Ok(())) => {}
            (Err(Error::BadField { field, .. }), Err(f)) => assert_eq!(field, f),
            (Err(Error::TooMany { field, .. }), Err(f)) => assert_eq!(field, f),
            (Err(Error::FieldTooLong { field, .. }), Err(f)) => assert_eq!(field, f),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    fn metrics(seq: u64, samples: Vec<Sample>) -> Record {
        Record { seq, body: Body::Metrics(Metrics { time_ms: 5, samples }) }
    }

    #[test]
    fn batches_are_checked() {
        check(vec![], Ok(()));
        check(vec![log(1, "a"), log(5, "b")], Ok(()));
        check(vec![log(2, "a"), log(2, "b")], Err("records.seq"));
        check(vec![log(0, "a")], Err("records.seq"));
        check(vec![log(1, "a\u{1b}[31m")], Err("text"));
        check(vec![log(1, &"x".repeat(MAX_LOG_CHARS + 1))], Err("text"));
        check(vec![metrics(1, vec![sample("node_load1", &[], 0.5)])], Ok(()));
        check(vec![metrics(1, vec![])], Err("samples"));
        check(vec![metrics(1, vec![sample("1bad", &[], 0.5)])], Err("samples.name"));
        check(vec![metrics(1, vec![sample("up", &[("node", "n-other")], 1.0)])], Err("samples.labels"));
        check(vec![metrics(1, vec![sample("up", &[("__name__", "x")], 1.0)])], Err("samples.labels"));
        check(vec![metrics(1, vec![sample("up", &[("device", "sda")], f64::NAN)])], Err("samples.value"));
        check(vec![metrics(1, vec![sample("up", &[("device", "sda")], 1.0)])], Ok(()));
    }

    #[test]
    fn a_record_is_flat_json_with_its_kind() {
        let text = serde_json::to_string(&log(3, "hi")).expect("json");
        assert_eq!(text, r#"{"seq":3,"kind":"log","time_ms":1,"source":"app","level":6,"text":"hi"}"#);
        let back: Record = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, log(3, "hi"));
        let m = metrics(4, vec![sample("node_load1", &[("cpu", "0")], 0.25)]);
        let text = serde_json::to_string(&m).expect("json");
        assert_eq!(
            text,
            r#"{"seq":4,"kind":"metrics","time_ms":5,"samples":[{"name":"node_load1","labels":{"cpu":"0"},"value":0.25}]}"#
        );
        assert!(serde_json::from_str::<Record>(r#"{"seq":1,"kind":"trace"}"#).is_err());
    }

    /// A value is read as the nearest double, so what the endpoint reads, writes out and reads again is the value the
    /// node sent, to the last bit (a case the telemetry_batch fuzz target found with a faster, inexact parse).
    #[test]
    fn values_read_back_to_the_last_bit() {
        for text in ["21e300", "0.1", "1e-300", "2.2250738585072014e-308", "1.7976931348623157e308", "918233"] {
            let json = format!(r#"{{"seq":1,"kind":"metrics","time_ms":5,"samples":[{{"name":"x","value":{text}}}]}}"#);
            let read: Record = serde_json::from_str(&json).expect("parse");
            let again: Record = serde_json::from_str(&serde_json::to_string(&read).expect("json")).expect("parse");
            let value = |r: &Record| match &r.body {
                Body::Metrics(m) => m.samples[0].value,
                Body::Log(_) => unreachable!("a metrics record"),
            };
            assert_eq!(value(&read).to_bits(), value(&again).to_bits(), "{text}");
            assert_eq!(value(&read), text.parse::<f64>().expect("a float"), "{text}: read as Rust reads it");
        }
    }
}
