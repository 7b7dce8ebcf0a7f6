-- Replay ids are written by every node request and deleted once the window passes them; nothing reads them by
-- node (expired ids are pruned for the whole fleet by expiry; a decommissioned or merged node's ids simply
-- expire), so the index by node, paid on every insert and delete, goes.
DROP INDEX replays_node;
