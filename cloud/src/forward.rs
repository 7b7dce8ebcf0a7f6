//! The forwarder (docs/telemetry.md, "Remote write"): a task that takes the oldest metric records from the durable
//! queue in the endpoint's database and sends them to the TSDB by Prometheus remote write, one request at a time.
//!
//! - A request's queue ids are recorded before it is sent, and its records leave the queue only once the TSDB has
//!   answered 2xx (taken) or 4xx other than 429 (refused for good: sending it again would be refused again; logged
//!   and counted). A 5xx, a 429, a timeout or no answer sends the same request again after a backoff that doubles
//!   up to [`BACKOFF_CAP`], for as long as the TSDB is down: nothing is lost, however long.
//! - An endpoint that stops in the middle of a request (crash, restart) leaves its ids recorded: the next forwarder
//!   sends exactly those records again before any other, so a request the TSDB took is repeated whole (a TSDB takes
//!   a sample it holds already as a no-op; VictoriaMetrics with `-dedup.minScrapeInterval`) and is never mixed with
//!   newer records, which it would then refuse with it.
//! - Replicas on one PostgreSQL take turns through a lease in the database ([`LEASE_SECS`]): one forwards at a
//!   time, so each node's series reach the TSDB in time order.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::metrics::CloudMetrics;
use crate::remote_write;
use crate::store::Store;

/// How long a forwarder's lease lasts without being renewed.
pub const LEASE_SECS: i64 = 30;
/// The longest wait between two tries of a failed request.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Where and how metrics are forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWrite {
    /// The TSDB's remote-write URL (`http://host:port/api/v1/write`).
    pub url: String,
    /// The most queue rows (metric records) in one request.
    pub batch_rows: u32,
    /// One request's deadline.
    pub timeout: Duration,
    /// How long an idle forwarder waits before it looks at the queue again.
    pub idle: Duration,
}

impl RemoteWrite {
    /// `url` with the defaults: 500 rows a request, 30 s, a look at the queue every second.
    pub fn new(url: &str) -> RemoteWrite {
        RemoteWrite {
            url: url.to_owned(),
            batch_rows: 500,
            timeout: Duration::from_secs(30),
            idle: Duration::from_secs(1),
        }
    }
}

/// How a request ended.
enum Answer {
    Taken,
    Refused(u16, String),
    Failed(String),
}

/// Sends one request body; blocking (run on the blocking pool).
fn post(agent: &ureq::Agent, url: &str, body: Vec<u8>) -> Answer {
    let request = ureq::http::Request::builder()
        .method("POST")
        .uri(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("User-Agent", concat!("edge-cloud/", env!("CARGO_PKG_VERSION")))
        .body(body);
    let request = match request {
        Ok(r) => r,
        Err(e) => return Answer::Refused(0, e.to_string()),
    };
    match agent.run(request) {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let text = r.body_mut().with_config().limit(4096).read_to_string().unwrap_or_default();
            match status {
                200..=299 => Answer::Taken,
                429 => Answer::Failed(format!("429 {}", text.trim())),
                400..=499 => Answer::Refused(status, text.trim().to_owned()),
                _ => Answer::Failed(format!("{status} {}", text.trim())),
            }
        }
        Err(e) => Answer::Failed(e.to_string()),
    }
}

/// Runs the forwarder forever as `holder` (this process's name for the lease).
pub async fn run(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: RemoteWrite,
    holder: String,
    metrics: Arc<CloudMetrics>,
) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(config.timeout))
            .build(),
    );
    let mut backoff = Duration::ZERO;
    let mut last_error: Option<String> = None;
    loop {
        if !backoff.is_zero() {
            tokio::time::sleep(backoff).await;
        }
        let now = i64::try_from(clock.now()).unwrap_or(i64::MAX);
        let in_flight = match store.forwarder_claim(&holder, now, LEASE_SECS).await {
            Ok(Some(ids)) => ids,
            Ok(None) => {
                tokio::time::sleep(Duration::from_secs(LEASE_SECS as u64 / 2)).await;
                continue;
            }
            Err(e) => {
                log::warn!("forwarder: {}", crate::error::chain(&e));
                backoff = next_backoff(backoff);
                continue;
            }
        };
        let rows = if in_flight.is_empty() {
            store.queued_metrics(config.batch_rows).await
        } else {
            store.queued_metrics_by_id(&in_flight).await
        };
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                log::warn!("forwarder: {}", crate::error::chain(&e));
                backoff = next_backoff(backoff);
                continue;
            }
        };
        if rows.is_empty() {
            if !in_flight.is_empty() {
                // The records of the request on its way are gone (their node was decommissioned).
                let _ = store.forwarder_done(&holder, &in_flight, false, now).await;
            }
            backoff = Duration::ZERO;
            tokio::time::sleep(config.idle).await;
            continue;
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        if in_flight.is_empty() {
            match store.forwarder_begin(&holder, &ids, now).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    log::warn!("forwarder: {}", crate::error::chain(&e));
                    backoff = next_backoff(backoff);
                    continue;
                }
            }
        }
        let built = remote_write::build(&rows);
        let body = remote_write::body(&built.series);
        let (a, url) = (agent.clone(), config.url.clone());
        let answer = tokio::task::spawn_blocking(move || post(&a, &url, body))
            .await
            .unwrap_or_else(|e| Answer::Failed(format!("the request's task failed: {e}")));
        let now = i64::try_from(clock.now()).unwrap_or(i64::MAX);
        match answer {
            Answer::Taken => {
                if let Err(e) = store.forwarder_done(&holder, &ids, false, now).await {
                    log::warn!("forwarder: {}", crate::error::chain(&e));
                    backoff = next_backoff(backoff);
                    continue;
                }
                if last_error.take().is_some() {
                    log::info!("forwarder: the TSDB at {} takes requests again", config.url);
                }
                metrics.forwarded(rows.len() as u64, built.n_samples as u64, built.n_skipped as u64);
                backoff = Duration::ZERO;
            }
            Answer::Refused(status, text) => {
                log::error!(
                    "forwarder: the TSDB at {} refused {} records for good ({status} {text}); they are dropped",
                    config.url,
                    rows.len()
                );
                if let Err(e) = store.forwarder_done(&holder, &ids, true, now).await {
                    log::warn!("forwarder: {}", crate::error::chain(&e));
                    backoff = next_backoff(backoff);
                    continue;
                }
                metrics.refused(rows.len() as u64);
                backoff = Duration::ZERO;
            }
            Answer::Failed(why) => {
                let message = format!("the TSDB at {} does not take requests ({why})", config.url);
                if last_error.as_deref() != Some(message.as_str()) {
                    log::warn!("forwarder: {message}; the records wait in the queue");
                    last_error = Some(message);
                }
                metrics.remote_write_failed();
                backoff = next_backoff(backoff);
            }
        }
    }
}

/// The next backoff: 1 s, then doubling up to [`BACKOFF_CAP`].
fn next_backoff(b: Duration) -> Duration {
    if b.is_zero() {
        Duration::from_secs(1)
    } else {
        (b * 2).min(BACKOFF_CAP)
    }
}

/// The lease holder's name of a replica listening on `listen`: the host's name and the address, the same across a
/// restart of the replica (which so takes its lease back at once) and different between replicas.
pub fn holder_name(listen: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}/{listen}", host.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let mut b = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..8 {
            b = next_backoff(b);
            seen.push(b.as_secs());
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
