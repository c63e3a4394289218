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
