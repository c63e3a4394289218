-- Enforcing a show's rules (issue 30, docs/moderation.md).
--
-- Timeouts: `sender` is as in chat_posts (`member:<user id>` for a Matrix member,
-- `<viewer kind>:<value>` for a web fan); `user_id` the Matrix user whose power level
-- drops while it lasts (NULL for a web fan, who is refused at the gateway instead);
-- `since` and `until` unix milliseconds. One row a member: a new timeout replaces the
-- last. Rows past their end stay a day (strikes before a timeout do not count again
-- after it), then go.
CREATE TABLE chat_timeouts (
    reservation_id  TEXT NOT NULL,
    sender          TEXT NOT NULL,
    user_id         TEXT,
    since           BIGINT NOT NULL,
    until           BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, sender)
);

-- Matrix members' messages that broke a rule, queued in the homeserver transaction that
-- brought them (before its 200) and dropped once the bot has redacted them. `reason`
-- names the rule, as the redaction says it.
CREATE TABLE chat_redactions (
    event_id        TEXT PRIMARY KEY,
    reservation_id  TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    rule            TEXT NOT NULL,
    reason          TEXT NOT NULL,
    member          TEXT NOT NULL,
    queued_at       BIGINT NOT NULL
);
CREATE INDEX chat_redactions_by_room ON chat_redactions (room_id, queued_at);

-- What the room's hosts and moderators set by command (`!foyer slow`, `!foyer mode`): a
-- rules object over the reservation's own `chat.rules`, which it was set over
-- (`rules_set_over`, the reservations row's chat_rules then). A reservation.updated that
-- changes chat.rules is the platform's newer word: the set rules are then ignored.
ALTER TABLE lifecycle ADD COLUMN rules_set TEXT;
ALTER TABLE lifecycle ADD COLUMN rules_set_over TEXT;
-- The mode and the timed-out members the room's power levels were last made to hold:
-- JSON {"mode": ..., "silenced": [user ids]}; NULL for a room as created (open, none).
ALTER TABLE lifecycle ADD COLUMN speech_applied TEXT;
