-- Doors open at scale (contract §13, README "Big shows"): a reservation's
-- `chat.auto_join` ("local" or "off"; NULL: `rooms.auto_join`), and the doorkeeper, the
-- user of `synapse_admin.token` put in the room to join its local holders.
ALTER TABLE reservations ADD COLUMN auto_join TEXT;
ALTER TABLE lifecycle ADD COLUMN doorkeeper TEXT;
