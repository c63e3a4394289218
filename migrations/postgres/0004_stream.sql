-- migrations/sqlite/0004_stream.sql on PostgreSQL: BIGINT where SQLite says INTEGER
-- (PostgreSQL's INTEGER is 32 bits, too small for unix milliseconds).
-- What the room shows about the stream, so each change is applied once.
ALTER TABLE lifecycle ADD COLUMN topic_applied TEXT;
ALTER TABLE lifecycle ADD COLUMN stream_url_applied TEXT;
ALTER TABLE lifecycle ADD COLUMN live_notice_for BIGINT;      -- stream_started_at it announced
ALTER TABLE lifecycle ADD COLUMN ended_notice_for BIGINT;     -- stream_ended_at it announced
ALTER TABLE lifecycle ADD COLUMN reminders_sent TEXT;          -- JSON array of seconds before the start
ALTER TABLE lifecycle ADD COLUMN closing_warning_sent BIGINT NOT NULL DEFAULT 0;
