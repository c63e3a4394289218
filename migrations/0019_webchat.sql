-- The chat beside the player (contract §10, issue 29). A viewer is a ticket or, for a
-- free show, the platform's viewer id: viewer_kind 'ticket' or 'platform', viewer_value
-- the id. No email or claim code is ever kept here.

-- Web sessions, a bearer valid on every instance: found by the SHA-256 (hex) of the
-- session's secret, which is never stored. An ended session is kept until it is pruned,
-- so that its bearer is told why. role: host, moderator, fan, web or bot; source: token
-- or claim_code; ended_reason: revoked, moved or banned. holder_generation is the
-- ticket's (tickets.holder_generation) when the session was made, 0 for a platform viewer.
CREATE TABLE webchat_sessions (
    session_hash    TEXT PRIMARY KEY,
    reservation_id  TEXT NOT NULL,
    viewer_kind     TEXT NOT NULL,
    viewer_value    TEXT NOT NULL,
    holder_generation BIGINT NOT NULL DEFAULT 0,
    display_name    TEXT NOT NULL,
    role            TEXT NOT NULL,
    source          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    ended_at        BIGINT,
    ended_reason    TEXT
);
CREATE INDEX webchat_sessions_by_viewer ON webchat_sessions (reservation_id, viewer_kind, viewer_value);
CREATE INDEX webchat_sessions_by_expiry ON webchat_sessions (expires_at);

-- Each reservation's room log, what the stream serves: seq counts from 1 per
-- reservation without gaps, handed out from the heads row below, which an append holds
-- locked until it commits. event_id is NULL for Foyer's own entries (a phase change);
-- an event is logged once (NULLs are distinct in a unique index on both databases).
-- payload is JSON text; origin_ts and logged_at are unix milliseconds.
CREATE TABLE webchat_log (
    reservation_id  TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    event_id        TEXT,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    origin_ts       BIGINT NOT NULL,
    logged_at       BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, seq)
);
CREATE UNIQUE INDEX webchat_log_by_event ON webchat_log (reservation_id, event_id);
-- The last seq handed out in each reservation's log; kept when the log is pruned, so
-- that a seq is never handed out twice.
CREATE TABLE webchat_log_heads (
    reservation_id  TEXT PRIMARY KEY,
    last_seq        BIGINT NOT NULL
);

-- Web fans' Matrix users, one per viewer and reservation, and for a ticket per holder:
-- holder_generation is the ticket's (tickets.holder_generation) when it was made, 0 for
-- a platform viewer, so a ticket that moved gives its new holder a user of their own.
-- display_name is cleared when the room is archived; removed is 'left' or 'kicked',
-- with removed_at, until it joins again.
CREATE TABLE webchat_users (
    reservation_id  TEXT NOT NULL,
    viewer_kind     TEXT NOT NULL,
    viewer_value    TEXT NOT NULL,
    holder_generation BIGINT NOT NULL DEFAULT 0,
    user_id         TEXT NOT NULL UNIQUE,
    display_name    TEXT,
    registered_at   BIGINT NOT NULL,
    joined_at       BIGINT,
    removed         TEXT,
    removed_at      BIGINT,
    PRIMARY KEY (reservation_id, viewer_kind, viewer_value, holder_generation)
);

-- Viewers banned from a reservation's chat (a ban of their web user in Matrix), by the
-- ban's event id.
CREATE TABLE webchat_bans (
    reservation_id  TEXT NOT NULL,
    viewer_kind     TEXT NOT NULL,
    viewer_value    TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    banned_at       BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, viewer_kind, viewer_value)
);
