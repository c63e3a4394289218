-- Calendars (docs/calendar.md): how many times the platform moved a reservation's start or
-- end, counted by the upsert that moved it; a feed's `SEQUENCE`.
ALTER TABLE reservations ADD COLUMN reschedules BIGINT NOT NULL DEFAULT 0;
-- A holder's own feed lists the reservations where they hold a ticket.
CREATE INDEX tickets_of_holder ON tickets (user_id) WHERE user_id IS NOT NULL;
