-- What the room shows about the stream, so each change is applied once.
ALTER TABLE lifecycle ADD COLUMN topic_applied TEXT;
ALTER TABLE lifecycle ADD COLUMN stream_url_applied TEXT;
ALTER TABLE lifecycle ADD COLUMN live_notice_for INTEGER;      -- stream_started_at it announced
ALTER TABLE lifecycle ADD COLUMN ended_notice_for INTEGER;     -- stream_ended_at it announced
ALTER TABLE lifecycle ADD COLUMN reminders_sent TEXT;          -- JSON array of seconds before the start
ALTER TABLE lifecycle ADD COLUMN closing_warning_sent INTEGER NOT NULL DEFAULT 0;
