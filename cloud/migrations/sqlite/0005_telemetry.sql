-- Telemetry (docs/telemetry.md, "The endpoint's side"): each node's logs with their retention, and the durable
-- queue of metric samples waiting to be forwarded to the time-series database by Prometheus remote write.
-- SQLite: queue ids by AUTOINCREMENT (never reused, so the forwarder's "through id" never names a newer row).

-- Per node: the highest telemetry seq stored (records at or below it are resends, not stored again), the node
-- spool's loss counters as last sent (JSON), what was stored of each kind, log lines the node's sources lost
-- (the sum of their `lost`), metric records refused for going back in time, the last metric time taken, and the
-- bytes of its log lines kept now (retention by size).
CREATE TABLE node_telemetry (
    node TEXT PRIMARY KEY REFERENCES nodes (id),
    acked_seq BIGINT NOT NULL,
    counters TEXT NOT NULL,
    n_logs BIGINT NOT NULL,
    n_metrics BIGINT NOT NULL,
    n_lost_at_source BIGINT NOT NULL,
    n_metrics_refused BIGINT NOT NULL,
    last_metric_ms BIGINT NOT NULL,
    log_bytes BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A log line of a node, by its telemetry seq.
CREATE TABLE node_logs (
    node TEXT NOT NULL REFERENCES nodes (id),
    seq BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    source TEXT NOT NULL,
    level BIGINT NOT NULL,
    text TEXT NOT NULL,
    lost BIGINT NOT NULL,
    PRIMARY KEY (node, seq)
);
CREATE INDEX node_logs_received ON node_logs (received_at);

-- Metric records waiting to be forwarded, in the order they were received, with the labels the endpoint adds
-- (node, site, region: JSON) as they were when received. A row goes once the TSDB has taken it (2xx) or refused
-- it for good (4xx).
CREATE TABLE metric_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    seq BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    labels TEXT NOT NULL,
    samples TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

-- The latest value of each of a node's key metrics over the last day, for the web view's charts (the TSDB holds
-- the rest).
CREATE TABLE node_metric_points (
    node TEXT NOT NULL REFERENCES nodes (id),
    name TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (node, name, time_ms)
);

-- The forwarder (one row, id 1): which endpoint process forwards now and until when its lease holds (replicas on one
-- PostgreSQL take turns; one sends at a time, so each series reaches the TSDB in order), the queue ids of the
-- request on its way (sent again, exactly, by whoever forwards next, so a request the TSDB took before a crash is
-- never mixed with new rows), and what was forwarded and refused.
CREATE TABLE metric_forwarder (
    id BIGINT PRIMARY KEY,
    holder TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    in_flight TEXT NOT NULL,
    n_forwarded BIGINT NOT NULL,
    n_refused BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
