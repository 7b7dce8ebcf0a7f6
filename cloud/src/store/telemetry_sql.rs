//! The telemetry's SQL (docs/telemetry.md, "The endpoint's side"), written once and instantiated per backend by
//! `telemetry_impl!` beside `store_impl!`, whose helpers it uses.
//!
//! A batch is one transaction: the node's row locked, its replay id recorded, the records past its acknowledged
//! `seq` stored (log lines in `node_logs`, metric records in the remote-write queue `metric_queue`), and the new
//! acknowledged `seq` with the counters in `node_telemetry`. So a resend stores nothing twice, and a batch is held
//! whole or not at all. Rows go in with one statement per table whatever their number: the batch's rows are passed
//! as one JSON array and unpacked by the database (`json_each` in SQLite, `json_array_elements` in PostgreSQL), so
//! each statement has one text that is parsed and planned once per connection.

use std::collections::BTreeMap;

use fleet_wire::telemetry::{Body, TelemetryBatch};

/// How long and how much of each node's logs the endpoint keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRetention {
    /// Log lines received longer ago than this go (pruned every minute).
    pub max_age_secs: u64,
    /// Past this many bytes of a node's lines (text and source, and 32 a line), its oldest go, down to nine
    /// tenths of it.
    pub max_bytes_per_node: u64,
}

impl Default for LogRetention {
    fn default() -> LogRetention {
        LogRetention { max_age_secs: 14 * 24 * 3600, max_bytes_per_node: 64 << 20 }
    }
}

/// The bytes a log line counts for in retention by size.
pub fn line_bytes(source: &str, text: &str) -> u64 {
    (source.chars().count() + text.chars().count() + 32) as u64
}

/// What the web view charts: these metrics' samples (without labels, or summed over them) are kept a day per node.
pub const CHART_METRICS: [&str; 6] = [
    "edge_node_cpu_busy_ratio",
    "edge_node_load1",
    "edge_node_memory_available_bytes",
    "edge_node_data_free_bytes",
    "edge_node_network_receive_bytes_total",
    "edge_node_network_transmit_bytes_total",
];

/// How long chart points are kept.
pub const CHART_KEEP_MS: i64 = 24 * 3600 * 1000;

/// What a batch adds, split by table, after the records the endpoint already holds are passed over.
#[derive(Debug, Default)]
pub(crate) struct Split {
    /// `[seq, time_ms, source, level, text, lost]` per line.
    pub logs: Vec<serde_json::Value>,
    /// `[seq, time_ms, samples as JSON text]` per metrics record.
    pub metrics: Vec<serde_json::Value>,
    /// `[name, time_ms, value]` per chart point.
    pub points: Vec<serde_json::Value>,
    pub n_logs: u64,
    pub n_metrics: u64,
    pub n_refused: u64,
    pub n_duplicates: u64,
    pub lost_at_source: u64,
    pub log_bytes: u64,
    pub last_metric_ms: i64,
    pub acked: u64,
}

/// Splits `batch` for a node whose acknowledged `seq` is `acked` and last metric time `last_metric_ms`: records at
/// or below `acked` are resends; a metrics record from before the node's last one is refused (a TSDB takes each
/// series in time order only), counted, and acknowledged like the rest. One time may have several records (a large
/// sample set goes in parts, each series in one of them).
pub(crate) fn split(batch: &TelemetryBatch, acked: u64, last_metric_ms: i64) -> Split {
    let mut s = Split { acked, last_metric_ms, ..Split::default() };
    for r in &batch.records {
        if r.seq <= acked {
            s.n_duplicates += 1;
            continue;
        }
        s.acked = r.seq;
        match &r.body {
            Body::Log(l) => {
                s.logs.push(serde_json::json!([r.seq, l.time_ms, l.source, l.level, l.text, l.lost]));
                s.n_logs += 1;
                s.lost_at_source += l.lost;
                s.log_bytes += line_bytes(&l.source, &l.text);
            }
            Body::Metrics(m) => {
                if m.time_ms < s.last_metric_ms {
                    s.n_refused += 1;
                    continue;
                }
                s.last_metric_ms = m.time_ms;
                let samples = serde_json::to_string(&m.samples).expect("samples serialize");
                s.metrics.push(serde_json::json!([r.seq, m.time_ms, samples]));
                s.n_metrics += 1;
                let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
                for sample in m.samples.iter().filter(|x| CHART_METRICS.contains(&x.name.as_str())) {
                    *sums.entry(sample.name.as_str()).or_default() += sample.value;
                }
                for (name, value) in sums {
                    s.points.push(serde_json::json!([name, m.time_ms, value]));
                }
            }
        }
    }
    s
}

/// The labels the endpoint adds to every series of a node: its id, its site and its `region` label (an admin's
/// wins over the node's own), as JSON.
pub(crate) fn series_labels(
    node: &str,
    site: Option<&str>,
    node_labels: &BTreeMap<String, String>,
    admin_labels: &BTreeMap<String, String>,
) -> String {
    let mut labels = BTreeMap::new();
    labels.insert("node", node.to_owned());
    if let Some(site) = site.filter(|s| !s.is_empty()) {
        labels.insert("site", site.to_owned());
    }
    if let Some(region) = admin_labels.get("region").or(node_labels.get("region")) {
        labels.insert("region", region.clone());
    }
    serde_json::to_string(&labels).expect("labels serialize")
}

/// What a batch did: the node's acknowledgement, and the log lines and metric records stored now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// The reply to the node.
    pub ack: fleet_wire::telemetry::TelemetryAck,
    /// Log lines stored.
    pub n_logs: u64,
    /// Metric records stored (queued when forwarding is on).
    pub n_metrics: u64,
}

/// A metric record waiting in the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedMetrics {
    /// Its place in the queue.
    pub id: i64,
    /// The node.
    pub node: String,
    /// When the samples were taken (ms since the epoch).
    pub time_ms: i64,
    /// The labels the endpoint adds (node, site, region).
    pub labels: BTreeMap<String, String>,
    /// The samples.
    pub samples: Vec<fleet_wire::telemetry::Sample>,
}

/// Implements `Telemetry` for a backend: `$store` as `store_impl!` made it, `$lock` the row lock (`FOR UPDATE` or
/// nothing), `$insert_logs`, `$insert_queue` and `$insert_points` the statements that unpack a JSON array of rows,
/// `$contains` the substring test of `grep`, `$ids_of_1` a subquery of the ids in the JSON array `$1`.
macro_rules! telemetry_impl {
    (
        $store:ident,
        $conn:ty,
        $lock:literal,
        $insert_logs:literal,
        $insert_queue:literal,
        $insert_points:literal,
        $contains:literal,
        $ids_of_1:literal
    ) => {
        use fleet_wire::telemetry::{LogEntry, LogPage, TelemetryAck, TelemetryBatch, TelemetryStatus};
        use $crate::store::telemetry_sql::{
            series_labels, split, LogRetention, QueuedMetrics, CHART_KEEP_MS,
        };
        use $crate::store::{LogQuery, Telemetry};

        fn queued_row(row: &Row) -> Result<QueuedMetrics> {
            let r = || db("read a queued metric record");
            Ok(QueuedMetrics {
                id: row.try_get("id").map_err(r())?,
                node: row.try_get("node").map_err(r())?,
                time_ms: row.try_get("time_ms").map_err(r())?,
                labels: from_json("queued labels", &row.try_get::<String, _>("labels").map_err(r())?)?,
                samples: from_json("queued samples", &row.try_get::<String, _>("samples").map_err(r())?)?,
            })
        }

        impl Telemetry for $store {
            fn record_telemetry<'a>(
                &'a self,
                node: &'a str,
                replay: &'a Replay,
                batch: &'a TelemetryBatch,
                retention: LogRetention,
                queue: bool,
                now: i64,
            ) -> StoreFuture<'a, $crate::store::telemetry_sql::Taken> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let row = lock_active_node(&mut tx, node).await?;
                    insert_replay(&mut tx, node, replay, now).await?;
                    let have = sqlx::query("SELECT acked_seq, last_metric_ms, log_bytes FROM node_telemetry WHERE node = $1")
                        .bind(node)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db("read a node's telemetry"))?;
                    let (acked, last_ms, bytes) = match &have {
                        Some(r) => (
                            r.try_get::<i64, _>("acked_seq").map_err(db("read a node's telemetry"))?,
                            r.try_get::<i64, _>("last_metric_ms").map_err(db("read a node's telemetry"))?,
                            r.try_get::<i64, _>("log_bytes").map_err(db("read a node's telemetry"))?,
                        ),
                        None => (0, i64::MIN, 0),
                    };
                    let s = split(batch, u64::try_from(acked).unwrap_or(0), last_ms);
                    if !s.logs.is_empty() {
                        sqlx::query($insert_logs)
                            .bind(node)
                            .bind(now)
                            .bind(serde_json::Value::Array(s.logs.clone()).to_string())
                            .execute(&mut *tx)
                            .await
                            .map_err(db("store log lines"))?;
                    }
                    if queue && !s.metrics.is_empty() {
                        let labels = series_labels(node, row.site.as_deref(), &row.node_labels, &row.admin_labels);
                        sqlx::query($insert_queue)
                            .bind(node)
                            .bind(labels)
                            .bind(now)
                            .bind(serde_json::Value::Array(s.metrics.clone()).to_string())
                            .execute(&mut *tx)
                            .await
                            .map_err(db("queue metric records"))?;
                    }
                    if !s.points.is_empty() {
                        sqlx::query($insert_points)
                            .bind(node)
                            .bind(serde_json::Value::Array(s.points.clone()).to_string())
                            .execute(&mut *tx)
                            .await
                            .map_err(db("store chart points"))?;
                    }
                    let to_i = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                    let mut log_bytes = bytes.saturating_add(to_i(s.log_bytes));
                    if u64::try_from(log_bytes).unwrap_or(0) > retention.max_bytes_per_node {
                        // The oldest lines go, down to nine tenths of the bound, so that the next batches do not
                        // prune again at once.
                        let keep = to_i(retention.max_bytes_per_node / 10 * 9);
                        sqlx::query(
                            "DELETE FROM node_logs WHERE node = $1 AND seq <= (SELECT seq FROM \
                             (SELECT seq, SUM(LENGTH(source) + LENGTH(text) + 32) OVER (ORDER BY seq DESC) AS total \
                             FROM node_logs WHERE node = $1) t WHERE total > $2 ORDER BY seq DESC LIMIT 1)",
                        )
                        .bind(node)
                        .bind(keep)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("prune a node's logs"))?;
                        log_bytes = sqlx::query_scalar::<_, Option<i64>>(
                            "SELECT CAST(SUM(LENGTH(source) + LENGTH(text) + 32) AS BIGINT) FROM node_logs WHERE node = $1",
                        )
                        .bind(node)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db("measure a node's logs"))?
                        .unwrap_or(0);
                    }
                    sqlx::query(
                        "INSERT INTO node_telemetry (node, acked_seq, counters, n_logs, n_metrics, n_lost_at_source, \
                         n_metrics_refused, last_metric_ms, log_bytes, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                         ON CONFLICT (node) DO UPDATE SET acked_seq = $2, counters = $3, \
                         n_logs = node_telemetry.n_logs + $4, n_metrics = node_telemetry.n_metrics + $5, \
                         n_lost_at_source = node_telemetry.n_lost_at_source + $6, \
                         n_metrics_refused = node_telemetry.n_metrics_refused + $7, last_metric_ms = $8, \
                         log_bytes = $9, updated_at = $10",
                    )
                    .bind(node)
                    .bind(to_i(s.acked))
                    .bind(to_json(&batch.counters))
                    .bind(to_i(s.n_logs))
                    .bind(to_i(s.n_metrics))
                    .bind(to_i(s.lost_at_source))
                    .bind(to_i(s.n_refused))
                    .bind(s.last_metric_ms)
                    .bind(log_bytes)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("record a node's telemetry"))?;
                    sqlx::query("UPDATE nodes SET last_seen = $2 WHERE id = $1")
                        .bind(node)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("record a node's request"))?;
                    tx.commit().await.map_err(db("commit telemetry"))?;
                    let n_new = u32::try_from(s.n_logs + s.n_metrics + s.n_refused).unwrap_or(u32::MAX);
                    let ack = TelemetryAck {
                        stored: n_new,
                        duplicates: u32::try_from(s.n_duplicates).unwrap_or(u32::MAX),
                        acked_seq: s.acked,
                    };
                    Ok($crate::store::telemetry_sql::Taken { ack, n_logs: s.n_logs, n_metrics: s.n_metrics })
                })
            }

            fn node_logs<'a>(&'a self, node: &'a str, query: &'a LogQuery) -> StoreFuture<'a, LogPage> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    require_node(&mut conn, node).await?;
                    let after = i64::try_from(query.after).unwrap_or(i64::MAX);
                    let grep = query.grep.clone().unwrap_or_default();
                    // Without `after`, the newest `limit` lines (then shown oldest first); with it, the next ones.
                    let sql = if query.after == 0 && query.tail {
                        concat!(
                            "SELECT * FROM (SELECT seq, time_ms, source, level, text, lost FROM node_logs \
                             WHERE node = $1 AND seq > $2 AND time_ms >= $3 AND ($4 = '' OR ",
                            $contains,
                            ") ORDER BY seq DESC LIMIT $5) t ORDER BY seq"
                        )
                    } else {
                        concat!(
                            "SELECT seq, time_ms, source, level, text, lost FROM node_logs \
                             WHERE node = $1 AND seq > $2 AND time_ms >= $3 AND ($4 = '' OR ",
                            $contains,
                            ") ORDER BY seq LIMIT $5"
                        )
                    };
                    let rows = sqlx::query(sql)
                        .bind(node)
                        .bind(after)
                        .bind(query.since_ms.unwrap_or(i64::MIN))
                        .bind(&grep)
                        .bind(i64::from(query.limit))
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(db("read a node's logs"))?;
                    let r = || db("read a log line");
                    let mut lines = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let time_ms: i64 = row.try_get("time_ms").map_err(r())?;
                        lines.push(LogEntry {
                            seq: u64::try_from(row.try_get::<i64, _>("seq").map_err(r())?).unwrap_or(0),
                            time: $crate::clock::rfc3339_ms(time_ms),
                            source: row.try_get("source").map_err(r())?,
                            level: u8::try_from(row.try_get::<i64, _>("level").map_err(r())?).unwrap_or(7),
                            text: row.try_get("text").map_err(r())?,
                            lost: u64::try_from(row.try_get::<i64, _>("lost").map_err(r())?).unwrap_or(0),
                        });
                    }
                    let next_after = lines.last().map_or(query.after, |l| l.seq);
                    Ok(LogPage { lines, next_after })
                })
            }

            fn telemetry_status<'a>(&'a self, node: &'a str) -> StoreFuture<'a, TelemetryStatus> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    let row = sqlx::query("SELECT * FROM node_telemetry WHERE node = $1")
                        .bind(node)
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(db("read a node's telemetry"))?;
                    let Some(row) = row else { return Ok(TelemetryStatus::default()) };
                    let r = || db("read a node's telemetry");
                    let n = |c: &str| -> Result<u64> { Ok(u64::try_from(row.try_get::<i64, _>(c).map_err(r())?).unwrap_or(0)) };
                    Ok(TelemetryStatus {
                        acked_seq: n("acked_seq")?,
                        n_logs: n("n_logs")?,
                        n_metrics: n("n_metrics")?,
                        n_lost_at_source: n("n_lost_at_source")?,
                        n_metrics_refused: n("n_metrics_refused")?,
                        counters: from_json("telemetry counters", &row.try_get::<String, _>("counters").map_err(r())?)?,
                        log_bytes: n("log_bytes")?,
                        updated_at: Some(rfc3339(row.try_get::<i64, _>("updated_at").map_err(r())?)),
                    })
                })
            }

            fn chart_points<'a>(&'a self, node: &'a str, since_ms: i64) -> StoreFuture<'a, Vec<(String, i64, f64)>> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    let rows = sqlx::query(
                        "SELECT name, time_ms, value FROM node_metric_points WHERE node = $1 AND time_ms >= $2 \
                         ORDER BY name, time_ms",
                    )
                    .bind(node)
                    .bind(since_ms)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db("read a node's chart points"))?;
                    let r = || db("read a chart point");
                    rows.iter()
                        .map(|row| {
                            Ok((
                                row.try_get::<String, _>("name").map_err(r())?,
                                row.try_get::<i64, _>("time_ms").map_err(r())?,
                                row.try_get::<f64, _>("value").map_err(r())?,
                            ))
                        })
                        .collect()
                })
            }

            fn queued_metrics(&self, limit: u32) -> StoreFuture<'_, Vec<QueuedMetrics>> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    let rows = sqlx::query(
                        "SELECT id, node, time_ms, labels, samples FROM metric_queue ORDER BY id LIMIT $1",
                    )
                    .bind(i64::from(limit))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db("read the metric queue"))?;
                    rows.iter().map(queued_row).collect()
                })
            }

            fn queued_metrics_by_id<'a>(&'a self, ids: &'a [i64]) -> StoreFuture<'a, Vec<QueuedMetrics>> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    let rows = sqlx::query(concat!(
                        "SELECT id, node, time_ms, labels, samples FROM metric_queue WHERE id IN (",
                        $ids_of_1,
                        ") ORDER BY id"
                    ))
                    .bind(serde_json::to_string(ids).expect("ids serialize"))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db("read the metric queue"))?;
                    rows.iter().map(queued_row).collect()
                })
            }

            fn forwarder_claim<'a>(
                &'a self,
                holder: &'a str,
                now: i64,
                lease_secs: i64,
            ) -> StoreFuture<'a, Option<Vec<i64>>> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let row = sqlx::query(concat!("SELECT holder, lease_until, in_flight FROM metric_forwarder WHERE id = 1", $lock))
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db("read the forwarder"))?;
                    let in_flight = match &row {
                        Some(r) => {
                            let r_err = || db("read the forwarder");
                            let other: String = r.try_get("holder").map_err(r_err())?;
                            let until: i64 = r.try_get("lease_until").map_err(r_err())?;
                            if other != holder && until > now {
                                return Ok(None);
                            }
                            from_json::<Vec<i64>>("forwarder in flight", &r.try_get::<String, _>("in_flight").map_err(r_err())?)?
                        }
                        None => Vec::new(),
                    };
                    sqlx::query(
                        "INSERT INTO metric_forwarder (id, holder, lease_until, in_flight, n_forwarded, n_refused, updated_at) \
                         VALUES (1, $1, $2, '[]', 0, 0, $3) \
                         ON CONFLICT (id) DO UPDATE SET holder = $1, lease_until = $2, updated_at = $3",
                    )
                    .bind(holder)
                    .bind(now.saturating_add(lease_secs))
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("take the forwarder's lease"))?;
                    tx.commit().await.map_err(db("commit the forwarder's lease"))?;
                    Ok(Some(in_flight))
                })
            }

            fn forwarder_begin<'a>(&'a self, holder: &'a str, ids: &'a [i64], now: i64) -> StoreFuture<'a, bool> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let done = sqlx::query(
                        "UPDATE metric_forwarder SET in_flight = $2, updated_at = $3 WHERE id = 1 AND holder = $1",
                    )
                    .bind(holder)
                    .bind(serde_json::to_string(ids).expect("ids serialize"))
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("record a request on its way"))?;
                    tx.commit().await.map_err(db("commit a request on its way"))?;
                    Ok(done.rows_affected() == 1)
                })
            }

            fn forwarder_done<'a>(
                &'a self,
                holder: &'a str,
                ids: &'a [i64],
                refused: bool,
                now: i64,
            ) -> StoreFuture<'a, ()> {
                Box::pin(async move {
                    let mut tx = self.write().await?;
                    let gone = sqlx::query(concat!("DELETE FROM metric_queue WHERE id IN (", $ids_of_1, ")"))
                        .bind(serde_json::to_string(ids).expect("ids serialize"))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("remove forwarded metric records"))?;
                    let n = i64::try_from(gone.rows_affected()).unwrap_or(i64::MAX);
                    let (forwarded, refused_n) = if refused { (0, n) } else { (n, 0) };
                    sqlx::query(
                        "UPDATE metric_forwarder SET in_flight = '[]', n_forwarded = n_forwarded + $2, \
                         n_refused = n_refused + $3, updated_at = $4 WHERE id = 1 AND holder = $1",
                    )
                    .bind(holder)
                    .bind(forwarded)
                    .bind(refused_n)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("count forwarded metric records"))?;
                    tx.commit().await.map_err(db("commit forwarded metric records"))?;
                    Ok(())
                })
            }

            fn forwarder_counts(&self) -> StoreFuture<'_, (u64, u64)> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    let row = sqlx::query("SELECT n_forwarded, n_refused FROM metric_forwarder WHERE id = 1")
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(db("read the forwarder"))?;
                    let Some(row) = row else { return Ok((0, 0)) };
                    let n = |c: &str| -> Result<u64> {
                        Ok(u64::try_from(row.try_get::<i64, _>(c).map_err(db("read the forwarder"))?).unwrap_or(0))
                    };
                    Ok((n("n_forwarded")?, n("n_refused")?))
                })
            }

            fn metric_queue_len(&self) -> StoreFuture<'_, u64> {
                Box::pin(async move {
                    let mut conn = self.read().await?;
                    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM metric_queue")
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(db("count the metric queue"))?;
                    Ok(u64::try_from(n).unwrap_or(0))
                })
            }

            fn prune_telemetry(&self, retention: LogRetention, now: i64) -> StoreFuture<'_, u64> {
                Box::pin(async move {
                    let cutoff = now.saturating_sub(i64::try_from(retention.max_age_secs).unwrap_or(i64::MAX));
                    let mut gone = 0;
                    loop {
                        let mut tx = self.write().await?;
                        // In slices, so that a large prune never holds the writers' turn for long.
                        let done = sqlx::query(
                            "DELETE FROM node_logs WHERE (node, seq) IN \
                             (SELECT node, seq FROM node_logs WHERE received_at < $1 LIMIT $2)",
                        )
                        .bind(cutoff)
                        .bind($crate::store::sql::PRUNE_BATCH)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("prune old log lines"))?;
                        tx.commit().await.map_err(db("commit a prune of log lines"))?;
                        gone += done.rows_affected();
                        if done.rows_affected() < $crate::store::sql::PRUNE_BATCH as u64 {
                            break;
                        }
                    }
                    if gone > 0 {
                        let mut tx = self.write().await?;
                        sqlx::query(
                            "UPDATE node_telemetry SET log_bytes = COALESCE((SELECT CAST(SUM(LENGTH(source) + \
                             LENGTH(text) + 32) AS BIGINT) FROM node_logs WHERE node_logs.node = node_telemetry.node), 0)",
                        )
                        .execute(&mut *tx)
                        .await
                        .map_err(db("measure the nodes' logs"))?;
                        tx.commit().await.map_err(db("commit a prune of log lines"))?;
                    }
                    let mut tx = self.write().await?;
                    sqlx::query("DELETE FROM node_metric_points WHERE time_ms < $1")
                        .bind(now.saturating_mul(1000).saturating_sub(CHART_KEEP_MS))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("prune chart points"))?;
                    tx.commit().await.map_err(db("commit a prune of chart points"))?;
                    Ok(gone)
                })
            }
        }
    };
}

pub(crate) use telemetry_impl;

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_wire::telemetry::{Counters, LogLine, Metrics, Record, Sample};

    fn log(seq: u64, text: &str, lost: u64) -> Record {
        Record {
            seq,
            body: Body::Log(LogLine { time_ms: 10, source: "app".into(), level: 6, text: text.into(), lost }),
        }
    }

    fn metrics(seq: u64, time_ms: i64) -> Record {
        let samples = vec![
            Sample { name: "edge_node_load1".into(), labels: BTreeMap::new(), value: 0.5 },
            Sample {
                name: "edge_node_network_receive_bytes_total".into(),
                labels: [("device".to_owned(), "eth0".to_owned())].into(),
                value: 100.0,
            },
            Sample {
                name: "edge_node_network_receive_bytes_total".into(),
                labels: [("device".to_owned(), "eth1".to_owned())].into(),
                value: 20.0,
            },
            Sample { name: "other".into(), labels: BTreeMap::new(), value: 1.0 },
        ];
        Record { seq, body: Body::Metrics(Metrics { time_ms, samples }) }
    }

    #[test]
    fn a_batch_splits_past_what_is_held_and_refuses_metrics_back_in_time() {
        let batch = TelemetryBatch {
            records: vec![
                log(4, "old", 0),
                log(6, "a", 3),
                metrics(7, 1000),
                metrics(8, 1000),
                metrics(9, 999),
                log(11, "b", 0),
            ],
            counters: Counters::default(),
        };
        let s = split(&batch, 5, 500);
        assert_eq!(
            (s.n_duplicates, s.n_logs, s.n_metrics, s.n_refused, s.lost_at_source, s.acked),
            (1, 2, 2, 1, 3, 11)
        );
        assert_eq!(s.last_metric_ms, 1000);
        assert_eq!(s.log_bytes, line_bytes("app", "a") + line_bytes("app", "b"));
        assert_eq!(
            s.points,
            vec![
                serde_json::json!(["edge_node_load1", 1000, 0.5]),
                serde_json::json!(["edge_node_network_receive_bytes_total", 1000, 120.0]),
                serde_json::json!(["edge_node_load1", 1000, 0.5]),
                serde_json::json!(["edge_node_network_receive_bytes_total", 1000, 120.0]),
            ]
        );
        let again = split(&batch, 11, 1000);
        assert_eq!((again.n_duplicates, again.n_logs, again.acked), (6, 0, 11));
    }

    #[test]
    fn series_labels_name_the_node_its_site_and_region() {
        let node_labels: BTreeMap<String, String> = [("region".into(), "north".into())].into();
        let admin: BTreeMap<String, String> = [("region".into(), "emea".into())].into();
        assert_eq!(
            series_labels("n-1", Some("s1"), &node_labels, &admin),
            r#"{"node":"n-1","region":"emea","site":"s1"}"#
        );
        assert_eq!(series_labels("n-1", None, &node_labels, &BTreeMap::new()), r#"{"node":"n-1","region":"north"}"#);
        assert_eq!(series_labels("n-1", Some(""), &BTreeMap::new(), &BTreeMap::new()), r#"{"node":"n-1"}"#);
    }
}
