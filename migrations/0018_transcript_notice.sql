-- Members were told that the chat will be saved: in the opening notice, or in a notice of
-- its own when a transcript was switched on while the room was open (issue 27, L7).
ALTER TABLE lifecycle ADD COLUMN transcript_notice_sent BIGINT NOT NULL DEFAULT 0;
-- Rooms opened before this version may have said so in their opening notice already:
-- counted as told, so that none is told twice.
UPDATE lifecycle SET transcript_notice_sent = 1 WHERE opening_notice_sent = 1;
