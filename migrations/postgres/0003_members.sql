-- migrations/sqlite/0003_members.sql on PostgreSQL: BIGINT where SQLite says INTEGER
-- (PostgreSQL's INTEGER is 32 bits, too small for unix milliseconds).
-- Membership facts from homeserver transactions, for rooms Foyer manages.
CREATE TABLE room_members (
    room_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    membership TEXT NOT NULL,            -- invite | join | leave | ban | knock
    invited_by TEXT,                     -- sender of the latest invite
    event_id   TEXT,                     -- NULL when Foyer recorded its own action
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- Homeserver events already applied: transactions may be retried or renumbered.
CREATE TABLE seen_events (
    event_id TEXT PRIMARY KEY,
    seen_at  BIGINT NOT NULL
);

-- The hosts currently at power 50 in the room (JSON array), to apply host changes.
ALTER TABLE lifecycle ADD COLUMN hosts_applied TEXT;
CREATE INDEX lifecycle_by_room ON lifecycle (room_id) WHERE room_id IS NOT NULL;
