-- `!foyer open` and `!foyer archive`: an admin's request to open or archive a
-- reservation's room now, kept as facts beside the stream signals.
ALTER TABLE reservation_signals ADD COLUMN admin_opened_at BIGINT;
ALTER TABLE reservation_signals ADD COLUMN admin_archived_at BIGINT;
