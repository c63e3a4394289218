-- Admin commands and an admin's invites of the bot, kept from the homeserver's
-- transaction until they are handled, so a crash in between loses none.
CREATE TABLE admin_inbox (
    seq         BIGSERIAL PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    event       TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
