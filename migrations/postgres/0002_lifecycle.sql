-- migrations/sqlite/0002_lifecycle.sql on PostgreSQL: BIGINT where SQLite says INTEGER
-- (PostgreSQL's INTEGER is 32 bits, too small for unix milliseconds).
-- The lifecycle worker's state per reservation: what was done on the homeserver, and
-- when to look again. Times are unix milliseconds (UTC).
CREATE TABLE lifecycle (
    reservation_id      TEXT PRIMARY KEY,
    next_due_at         BIGINT,          -- NULL: nothing scheduled
    locked_until        BIGINT,          -- a worker's lease
    facts_version       BIGINT NOT NULL DEFAULT 0, -- bumped by every new fact
    room_id             TEXT,             -- recorded before any other step
    opening_notice_sent BIGINT NOT NULL DEFAULT 0,
    closing_notice_sent BIGINT NOT NULL DEFAULT 0,
    archived_at         BIGINT,
    attempts            BIGINT NOT NULL DEFAULT 0,
    last_error          TEXT
);
CREATE INDEX lifecycle_due ON lifecycle (next_due_at) WHERE next_due_at IS NOT NULL;

-- Everyone Foyer invited (or could not invite) to a reservation's room; never twice.
CREATE TABLE room_invites (
    reservation_id TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    invited_at     BIGINT NOT NULL,
    failure        TEXT,                  -- set when the homeserver refused for good
    PRIMARY KEY (reservation_id, user_id)
);
