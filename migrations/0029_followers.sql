-- An audience that comes back (docs/followers.md): a channel's followers,
-- members of its space and of its announcements room; what was announced there, once
-- each; who may join a reservation's room (`chat.access`); and when a reservation first
-- arrived (a reminder whose time had passed by then is skipped).
CREATE TABLE followers (
    channel_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    added_at    BIGINT NOT NULL,
    -- Invited to the space and the announcements room.
    invited_at  BIGINT,
    -- `follower.removed`: kicked from both, then forgotten.
    removed_at  BIGINT,
    PRIMARY KEY (channel_id, user_id)
);
ALTER TABLE spaces ADD COLUMN announcements_room_id TEXT;
CREATE TABLE announcements (
    reservation_id TEXT NOT NULL,
    announcement   TEXT NOT NULL,
    posted_at      BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, announcement)
);
ALTER TABLE reservations ADD COLUMN access TEXT NOT NULL DEFAULT 'tickets';
ALTER TABLE reservations ADD COLUMN first_seen_at BIGINT;
ALTER TABLE lifecycle ADD COLUMN access_applied TEXT;
