-- Members' display names, from their member events (contract §10, issue 29): the web
-- chat shows a sender by name, never by Matrix ID, and puts names in place of the IDs
-- in bodies. NULL when the event carries none (a leave, an invite without one).
ALTER TABLE room_members ADD COLUMN display_name TEXT;
