-- Replay ids are written by every node request and deleted a minute after the window passes them, so each B-tree
-- they touch is paid 1,667 times a second at 100,000 nodes. The table becomes keyed by the id itself (no rowid
-- tree beside the id's index), and the index by node goes: nothing reads replay ids by node (expired ids are pruned
-- for the whole fleet by expiry; a decommissioned or merged node's ids simply expire).
CREATE TABLE replays_lean (
    id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    expires_at BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO replays_lean (id, node, expires_at) SELECT id, node, expires_at FROM replays;
DROP TABLE replays;
ALTER TABLE replays_lean RENAME TO replays;
CREATE INDEX replays_expiry ON replays (expires_at);
