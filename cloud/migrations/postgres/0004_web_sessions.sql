-- The web view's sessions (docs/cloud.md, "The web view"): an admin token given once at the login page becomes a
-- session, whose cookie holds a random secret; only its SHA-256 is kept here, with the session's CSRF token and
-- its end. A session dies with its admin token's revocation (the token is read again on every request), at its
-- end, and at logout; ended sessions are pruned at each login.
CREATE TABLE web_sessions (
    secret_hash TEXT PRIMARY KEY,
    token TEXT NOT NULL REFERENCES admin_tokens (id),
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
