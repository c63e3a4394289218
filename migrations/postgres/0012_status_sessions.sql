-- Status-page logins that are live. A session cookie counts only while its session is
-- here, so logging out (which deletes the row) ends it on every instance and across
-- restarts. Rows past expires_at are deleted at the next login.
CREATE TABLE status_sessions (
    session_id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX status_sessions_expiry ON status_sessions (expires_at);
