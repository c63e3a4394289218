-- Foyer's own events to the platform (contract §9), written in the same transaction as
-- the fact that caused them and sent from here, in seq order per reservation. seq is
-- the one thing that differs between the databases (how a key counts up).
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The webhook-id: made once, sent unchanged on every retry.
    event_id        TEXT NOT NULL UNIQUE,
    reservation_id  TEXT NOT NULL,
    type            TEXT NOT NULL,
    -- The whole body as sent: {"type", "timestamp", "data"}.
    payload         TEXT NOT NULL,
    -- For events sent once per fact (room.opened, one ticket's error...): a second
    -- write of the same fact finds it taken and adds nothing. NULL for the others.
    once_key        TEXT UNIQUE,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    -- A sender's lease, like the lifecycle's: several instances never send one row at once.
    locked_by       TEXT,
    locked_until    INTEGER,
    -- pending until sent; delivered (2xx), dropped (other 4xx), paused (410, until an
    -- admin resumes), failed (retries given up).
    state           TEXT NOT NULL DEFAULT 'pending',
    last_error      TEXT,
    finished_at     INTEGER
);
-- The sender's question: the oldest undelivered row of each reservation.
CREATE INDEX outbox_undelivered ON outbox (reservation_id, seq) WHERE state IN ('pending', 'paused');
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
