-- The lifecycle worker's state per reservation: what was done on the homeserver, and
-- when to look again. Times are unix milliseconds (UTC).
CREATE TABLE lifecycle (
    reservation_id      TEXT PRIMARY KEY,
    next_due_at         INTEGER,          -- NULL: nothing scheduled
    locked_until        INTEGER,          -- a worker's lease
    facts_version       INTEGER NOT NULL DEFAULT 0, -- bumped by every new fact
    room_id             TEXT,             -- recorded before any other step
    opening_notice_sent INTEGER NOT NULL DEFAULT 0,
    closing_notice_sent INTEGER NOT NULL DEFAULT 0,
    archived_at         INTEGER,
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT
);
CREATE INDEX lifecycle_due ON lifecycle (next_due_at) WHERE next_due_at IS NOT NULL;

-- Everyone Foyer invited (or could not invite) to a reservation's room; never twice.
CREATE TABLE room_invites (
    reservation_id TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    invited_at     INTEGER NOT NULL,
    failure        TEXT,                  -- set when the homeserver refused for good
    PRIMARY KEY (reservation_id, user_id)
);
