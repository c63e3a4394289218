-- Whom a moderation action concerns (issue 30): the member's Matrix ID and, when known,
-- the ticket or platform viewer id they came by (member_viewer_kind 'ticket' or
-- 'platform', as webchat_sessions says). All NULL for an action on the room (a mode,
-- slow mode) and for a report; a web fan refused before Foyer made them a Matrix user
-- has a viewer and no member. actor_kind may now also be 'bot' (with actor '').
ALTER TABLE moderation_record ADD COLUMN member TEXT;
ALTER TABLE moderation_record ADD COLUMN member_viewer_kind TEXT;
ALTER TABLE moderation_record ADD COLUMN member_viewer TEXT;
-- A member's actions in a reservation by time: their strikes within a window.
CREATE INDEX moderation_record_by_member ON moderation_record (reservation_id, member, at);
