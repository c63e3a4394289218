-- A reservation's stream key (contract §8): only its SHA-256 is kept, which the publish
-- hook of a streaming server looks the reservation up by. Keys are unique among active
-- reservations only (an archived one's key may be reused), which an index cannot say,
-- so the store checks it when a reservation is written; this index makes both fast.
ALTER TABLE reservations ADD COLUMN stream_key_hash TEXT;
CREATE INDEX reservations_by_stream_key ON reservations (stream_key_hash) WHERE stream_key_hash IS NOT NULL;
-- An Owncast webhook names a channel: its reservations around now, found without reading
-- the others.
CREATE INDEX reservations_by_channel ON reservations (channel_id, starts_at) WHERE channel_id IS NOT NULL;
