-- The public archive (contract §12, docs/replay.md): a reservation's `chat.archive`
-- (archive_public 1 for "public"; public is chosen before the room opens),
-- `chat.archive_indexable` and `chat.replay_offset_ms` (NULL for none).
ALTER TABLE reservations ADD COLUMN archive_public BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN archive_indexable BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN replay_offset_ms BIGINT;
-- `DELETE /api/v1/reservations/{id}/archive`: the public archive taken down, for good.
-- Apart from `reservations`, so that no later `reservation.updated` undoes it.
CREATE TABLE archive_takedowns (
    reservation_id  TEXT PRIMARY KEY,
    taken_down_at   BIGINT NOT NULL
);
-- Members who sent `!foyer anonymous` in the room: the public archive and its replay
-- name them "a fan". The first time counts.
CREATE TABLE archive_anonymous (
    reservation_id  TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    at              BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, user_id)
);
