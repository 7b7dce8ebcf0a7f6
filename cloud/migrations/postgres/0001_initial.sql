-- The fleet endpoint's schema (docs/cloud.md, "The database"). Times are seconds since the Unix epoch (BIGINT),
-- JSON documents are TEXT, booleans are 0 or 1, so that one set of queries serves SQLite and PostgreSQL.
-- PostgreSQL: audit ids by an identity column.

-- Admin tokens: the SHA-256 of the secret, never the secret; role viewer, operator or admin.
CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT
);

-- Enrollment tokens: policy pending or accept, the admin labels its nodes get, an expiry and a limit of uses.
CREATE TABLE enrollment_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    policy TEXT NOT NULL,
    labels TEXT NOT NULL,
    expires_at BIGINT,
    max_uses BIGINT,
    uses BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT
);

-- Bundles: in the endpoint's store (stored = 1, DIR/bundles/<manifest_hash>.bundle) or at external URLs (a JSON
-- list), with what their verified manifest says.
CREATE TABLE bundles (
    manifest_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    security_version BIGINT NOT NULL,
    compatible TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    stored BIGINT NOT NULL,
    urls TEXT NOT NULL,
    manifest TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);

-- Groups: explicit membership (nodes.grp), one desired bundle each. Label selectors and waves are deployments of
-- their own (a later table), which target nodes over these columns and the inventory.
CREATE TABLE groups (
    name TEXT PRIMARY KEY,
    bundle TEXT REFERENCES bundles (manifest_hash),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Nodes: identity, status, labels (the node's and an admin's, kept apart), group, inventory, and the current state
-- folded from its reports.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    hostname TEXT NOT NULL,
    site TEXT,
    node_labels TEXT NOT NULL,
    admin_labels TEXT NOT NULL,
    grp TEXT REFERENCES groups (name),
    inventory TEXT NOT NULL,
    booted_slot TEXT,
    booted_version TEXT,
    phase TEXT,
    last_seq BIGINT NOT NULL DEFAULT 0,
    last_report_kind TEXT,
    last_report_at BIGINT,
    last_seen BIGINT,
    enrolled_at BIGINT NOT NULL,
    enrollment_token TEXT REFERENCES enrollment_tokens (id),
    merged_into TEXT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX nodes_status ON nodes (status);
CREATE INDEX nodes_grp ON nodes (grp);
CREATE INDEX nodes_site ON nodes (site);

-- A bundle for one node over its group's (and, later, the pin that keeps a node out of deployments).
CREATE TABLE node_pins (
    node TEXT PRIMARY KEY REFERENCES nodes (id),
    bundle TEXT NOT NULL REFERENCES bundles (manifest_hash),
    pinned_at BIGINT NOT NULL,
    pinned_by TEXT NOT NULL
);

-- Reports: stored once per (node, seq); the body is the report as the node sent it.
CREATE TABLE reports (
    node TEXT NOT NULL,
    seq BIGINT NOT NULL,
    time TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (node, seq)
);
CREATE INDEX reports_received ON reports (received_at);

-- Replay ids of verified node requests, kept until the signature window has passed them.
CREATE TABLE replays (
    id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX replays_expiry ON replays (expires_at);
-- Each write prunes its own node's expired ids.
CREATE INDEX replays_node ON replays (node, expires_at);

-- Remote actions: queued until the node reports action-done or action-refused for the id.
CREATE TABLE actions (
    id TEXT PRIMARY KEY,
    node TEXT NOT NULL REFERENCES nodes (id),
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    finished_at BIGINT,
    result TEXT
);
CREATE INDEX actions_node ON actions (node, state);

-- What a diagnostics action collected.
CREATE TABLE diagnostics (
    action TEXT PRIMARY KEY REFERENCES actions (id),
    node TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    body TEXT NOT NULL
);

-- Every admin change: who (the admin token), what, when, on what, and the change as JSON.
CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    change TEXT NOT NULL
);
