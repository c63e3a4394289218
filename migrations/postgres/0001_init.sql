-- Foyer's schema on PostgreSQL: the same facts and lifecycle state as the SQLite
-- migrations 0001-0005, in one step. Times are unix milliseconds (UTC).

CREATE TABLE webhook_receipts (
    webhook_id     TEXT PRIMARY KEY,
    event_type     TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    received_at    BIGINT NOT NULL
);

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
    hosts               TEXT NOT NULL,
    open_before_seconds BIGINT,
    close_after_seconds BIGINT,
    updated_at          BIGINT NOT NULL
);

CREATE TABLE reservation_signals (
    reservation_id    TEXT PRIMARY KEY,
    cancelled_at      BIGINT,
    cancel_reason     TEXT,
    stream_started_at BIGINT,
    stream_ended_at   BIGINT
);

CREATE TABLE tickets (
    reservation_id TEXT NOT NULL,
    ticket_id      TEXT NOT NULL,
    user_id        TEXT,
    granted_at     BIGINT,
    revoked_at     BIGINT,
    PRIMARY KEY (reservation_id, ticket_id)
);
CREATE INDEX tickets_by_user ON tickets (reservation_id, user_id);

CREATE TABLE lifecycle (
    reservation_id       TEXT PRIMARY KEY,
    next_due_at          BIGINT,
    locked_until         BIGINT,
    locked_by            TEXT,
    facts_version        BIGINT NOT NULL DEFAULT 0,
    room_id              TEXT,
    opening_notice_sent  BIGINT NOT NULL DEFAULT 0,
    closing_notice_sent  BIGINT NOT NULL DEFAULT 0,
    archived_at          BIGINT,
    attempts             BIGINT NOT NULL DEFAULT 0,
    last_error           TEXT,
    hosts_applied        TEXT,
    topic_applied        TEXT,
    stream_url_applied   TEXT,
    live_notice_for      BIGINT,
    ended_notice_for     BIGINT,
    reminders_sent       TEXT,
    closing_warning_sent BIGINT NOT NULL DEFAULT 0,
    space_linked         TEXT
);
CREATE INDEX lifecycle_due ON lifecycle (next_due_at) WHERE next_due_at IS NOT NULL;
CREATE INDEX lifecycle_by_room ON lifecycle (room_id) WHERE room_id IS NOT NULL;

CREATE TABLE room_invites (
    reservation_id TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    invited_at     BIGINT NOT NULL,
    failure        TEXT,
    PRIMARY KEY (reservation_id, user_id)
);

CREATE TABLE room_members (
    room_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    membership TEXT NOT NULL,
    invited_by TEXT,
    event_id   TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

CREATE TABLE seen_events (
    event_id TEXT PRIMARY KEY,
    seen_at  BIGINT NOT NULL
);

CREATE TABLE spaces (
    channel_id TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    name       TEXT NOT NULL
);
