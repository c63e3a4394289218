-- A show's chat rules and moderators (issue 30): chat_rules is the reservation's
-- `chat.rules` as JSON text (checked, only the fields it gives; NULL for none), which
-- override the config's `rooms.rules`; moderators a JSON array of Matrix user IDs.
ALTER TABLE reservations ADD COLUMN chat_rules TEXT;
ALTER TABLE reservations ADD COLUMN moderators TEXT NOT NULL DEFAULT '[]';

-- What each sender posted of late, for slow mode and duplicates: sender is
-- `<viewer kind>:<value>` for a web fan, `member:<user id>` for a Matrix member; post is
-- the page's txn_id or the event id, so that a retry of one post is not a second one;
-- digest the SHA-256 (hex) of the body as duplicates compare it; at unix milliseconds.
-- Pruned once older than the longest window.
CREATE TABLE chat_posts (
    reservation_id  TEXT NOT NULL,
    sender          TEXT NOT NULL,
    post            TEXT NOT NULL,
    at              BIGINT NOT NULL,
    digest          TEXT NOT NULL,
    PRIMARY KEY (reservation_id, sender, post)
);
CREATE INDEX chat_posts_by_time ON chat_posts (reservation_id, sender, at);
