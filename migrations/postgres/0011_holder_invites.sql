-- Each holder's invite has its own outcome and backoff: `failure` is the last error of a
-- holder who could not be invited (a server that is down, a user who does not exist),
-- tried again at `retry_at` after `attempts` failures in a row. A success clears them.
-- Rows from before keep `retry_at` empty: they are tried once more after the upgrade.
ALTER TABLE room_invites ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE room_invites ADD COLUMN retry_at BIGINT;
-- Who began creating the room, and when: a room found half-created can be given up in
-- seconds when that instance is gone or the homeserver restarted since.
ALTER TABLE lifecycle ADD COLUMN create_began_by TEXT;
ALTER TABLE lifecycle ADD COLUMN create_began_at BIGINT;
