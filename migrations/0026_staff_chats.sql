-- The direct chat the bot opened with a show's host or moderator (issue 30,
-- docs/moderation.md): where it confirms their room commands (`!foyer ban` …) and
-- answers their `!foyer help`, so that the audience does not see moderation at work.
-- One a user, for all their shows, made on first use and reused; a new one replaces it
-- when they left the old.
CREATE TABLE staff_chats (
    user_id     TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
