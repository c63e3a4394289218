-- One Matrix space per channel, created on first use.
CREATE TABLE spaces (
    channel_id TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    name       TEXT NOT NULL
);
-- The space this reservation's room is listed in, if any.
ALTER TABLE lifecycle ADD COLUMN space_linked TEXT;
