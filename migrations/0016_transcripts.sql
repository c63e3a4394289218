-- Transcripts (contract §9). A reservation's own choice, chat.transcript: 1, 0, or NULL
-- for rooms.transcript to decide.
ALTER TABLE reservations ADD COLUMN transcript BIGINT;
-- The room's transcript failing: since when (its first failure), and its last error. The
-- archive waits rooms.transcript_wait from the first failure, then goes on without it.
ALTER TABLE lifecycle ADD COLUMN transcript_failed_at BIGINT;
ALTER TABLE lifecycle ADD COLUMN transcript_error TEXT;
-- A transcript made: its lines are served only once this row exists (a transcript cut
-- short by a failure is made again from the start), and both go after
-- rooms.transcript_retention, counted from made_at.
CREATE TABLE transcripts (
    reservation_id  TEXT PRIMARY KEY,
    room_id         TEXT NOT NULL,
    messages        BIGINT NOT NULL,
    made_at         BIGINT NOT NULL
);
CREATE INDEX transcripts_by_made_at ON transcripts (made_at);
-- One message each, in the room's order (seq, from 0). body is the latest edit's; a
-- redacted message has no line. notice: 1 when Foyer's bot sent it.
CREATE TABLE transcript_lines (
    reservation_id  TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    event_id        TEXT NOT NULL,
    sender          TEXT NOT NULL,
    display_name    TEXT,
    sent_at         BIGINT NOT NULL,
    body            TEXT NOT NULL,
    notice          BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, seq)
);
-- An edit finds the line it replaces by its event id.
CREATE UNIQUE INDEX transcript_lines_by_event ON transcript_lines (reservation_id, event_id);
