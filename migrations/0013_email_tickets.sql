-- Tickets held by someone known only by email (contract §7). The email and display name
-- are personal data, kept only until the ticket is bound or the reservation archived;
-- the claim code itself is never stored, only its hash, which finds the ticket.
ALTER TABLE tickets ADD COLUMN email TEXT;
ALTER TABLE tickets ADD COLUMN display_name TEXT;
ALTER TABLE tickets ADD COLUMN claim_hash TEXT;
-- How an email ticket got its Matrix ID: lookup, direct_message, knock or correction.
ALTER TABLE tickets ADD COLUMN bound_how TEXT;
ALTER TABLE tickets ADD COLUMN bound_at BIGINT;
-- When the homeserver was last asked which user has the email bound.
ALTER TABLE tickets ADD COLUMN looked_up_at BIGINT;
CREATE INDEX tickets_by_claim ON tickets (claim_hash) WHERE claim_hash IS NOT NULL;
-- Direct chats strangers opened with the bot to claim a ticket, left once idle.
CREATE TABLE direct_chats (
    room_id        TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    last_active_at BIGINT NOT NULL
);
CREATE INDEX direct_chats_by_activity ON direct_chats (last_active_at);
-- Small facts about the deployment, such as which key the stored claim hashes were made
-- with (so that a new as_token renews them at start).
CREATE TABLE foyer_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- The email tickets to look up on the homeserver, found without reading the others.
CREATE INDEX tickets_to_look_up ON tickets (looked_up_at) WHERE user_id IS NULL AND email IS NOT NULL;
