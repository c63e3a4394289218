-- The moderation record (contract §11): what was done about a reservation's chat, and
-- by whom. Web fans' reports (issue 29) are its first entries; moderation (issue 30)
-- adds rules broken, redactions, timeouts, bans and mode changes. action_id is the
-- SHA-256 (hex) of what makes an action one (a report: the event and the reporter), so
-- the same action recorded twice is one row. actor_kind is 'ticket' or 'platform' (a
-- web viewer, as webchat_sessions says) or 'member' (a Matrix user); details is JSON
-- text; at is unix milliseconds.
CREATE TABLE moderation_record (
    reservation_id  TEXT NOT NULL,
    action_id       TEXT NOT NULL,
    at              BIGINT NOT NULL,
    action          TEXT NOT NULL,
    actor_kind      TEXT NOT NULL,
    actor           TEXT NOT NULL,
    event_id        TEXT,
    reason          TEXT NOT NULL DEFAULT '',
    details         TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (reservation_id, action_id)
);
CREATE INDEX moderation_record_by_time ON moderation_record (reservation_id, at);
