-- Rollouts (docs/rollouts.md): sites with their time zone and maintenance windows, deployments (a bundle for the
-- nodes a selector matches, in waves under a policy), each node's place in its deployment, and the per-site count
-- of nodes updating that the per-site limit is checked against.

-- A site: its IANA time zone and its windows (a JSON list of their canonical texts; empty: any time).
CREATE TABLE sites (
    name TEXT PRIMARY KEY,
    time_zone TEXT NOT NULL,
    windows TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A deployment. Its row is the lock every decision about it takes (PostgreSQL: FOR UPDATE), and it holds the
-- counters those decisions read: nodes in it, begun (ever told to start), in flight (updating now), committed,
-- failed, and failed in the current wave.
CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    bundle TEXT NOT NULL REFERENCES bundles (manifest_hash),
    selector TEXT NOT NULL,
    policy TEXT NOT NULL,
    state TEXT NOT NULL,
    pause_reason TEXT,
    pause_detail TEXT,
    paused_at BIGINT,
    wave BIGINT NOT NULL,
    n_members BIGINT NOT NULL,
    n_begun BIGINT NOT NULL,
    n_in_flight BIGINT NOT NULL,
    n_committed BIGINT NOT NULL,
    n_failed BIGINT NOT NULL,
    wave_failed BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A node in a deployment: waiting, updating, committed, failed, or left (taken by a newer deployment, pinned, or
-- no longer matching before it began). A node is in at most one deployment that it has not left.
CREATE TABLE deployment_nodes (
    deployment TEXT NOT NULL REFERENCES deployments (id),
    node TEXT NOT NULL REFERENCES nodes (id),
    state TEXT NOT NULL,
    wave BIGINT,
    site TEXT,
    joined_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    result TEXT,
    PRIMARY KEY (deployment, node)
);
CREATE UNIQUE INDEX deployment_nodes_current ON deployment_nodes (node) WHERE state <> 'left';
CREATE INDEX deployment_nodes_state ON deployment_nodes (deployment, state);

-- Nodes of a deployment updating now, by the site they had when they started.
CREATE TABLE deployment_sites (
    deployment TEXT NOT NULL REFERENCES deployments (id),
    site TEXT NOT NULL,
    in_flight BIGINT NOT NULL,
    PRIMARY KEY (deployment, site)
);

-- The bundle a deployment last brought the node (set when it commits there): what it should run once that
-- deployment is over, whatever its group says.
ALTER TABLE nodes ADD COLUMN baseline TEXT REFERENCES bundles (manifest_hash);
