-- The room name Foyer last set, so a new title renames the room. Rooms that exist
-- already were named after their reservation's current title.
ALTER TABLE lifecycle ADD COLUMN name_applied TEXT;
UPDATE lifecycle SET name_applied = (
    SELECT r.title FROM reservations r WHERE r.reservation_id = lifecycle.reservation_id
) WHERE room_id IS NOT NULL;
