-- The instance holding a reservation's lease; only it renews or releases it.
ALTER TABLE lifecycle ADD COLUMN locked_by TEXT;
