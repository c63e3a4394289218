-- migrations/sqlite/0001_init.sql on PostgreSQL: BIGINT where SQLite says INTEGER
-- (PostgreSQL's INTEGER is 32 bits, too small for unix milliseconds).
-- Facts from webhooks. Times are unix milliseconds (UTC).

-- One row per accepted webhook-id: deduplication, and a trail of what came in.
CREATE TABLE webhook_receipts (
    webhook_id     TEXT PRIMARY KEY,
    event_type     TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    outcome        TEXT NOT NULL,        -- accepted | stale
    received_at    BIGINT NOT NULL
);

-- The reservation as last described by reservation.created/updated.
CREATE TABLE reservations (
    reservation_id      TEXT PRIMARY KEY,
    revision            BIGINT,
    title               TEXT NOT NULL,
    description         TEXT,
    starts_at           BIGINT NOT NULL,
    ends_at             BIGINT NOT NULL,
    stream_url          TEXT,
    channel_id          TEXT,
    channel_name        TEXT,
    hosts               TEXT NOT NULL,   -- JSON array of Matrix user IDs
    open_before_seconds BIGINT,
    close_after_seconds BIGINT,
    updated_at          BIGINT NOT NULL
);

-- Facts that may arrive before their reservation: cancellation and stream signals.
CREATE TABLE reservation_signals (
    reservation_id    TEXT PRIMARY KEY,
    cancelled_at      BIGINT,
    cancel_reason     TEXT,
    stream_started_at BIGINT,           -- the latest stream.started
    stream_ended_at   BIGINT            -- the latest stream.ended
);

-- Tickets, kept even before their reservation arrives. A revoked ticket stays revoked:
-- a late grant of the same ticket_id (reordered delivery) does not revive it.
CREATE TABLE tickets (
    reservation_id TEXT NOT NULL,
    ticket_id      TEXT NOT NULL,
    user_id        TEXT,                 -- NULL when the revocation came first
    granted_at     BIGINT,
    revoked_at     BIGINT,
    PRIMARY KEY (reservation_id, ticket_id)
);
CREATE INDEX tickets_by_user ON tickets (reservation_id, user_id);
