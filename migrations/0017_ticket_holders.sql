-- Who holds a ticket now, so that a grant to another holder moves it (contract §3, §7).
-- holder_generation counts the times a ticket changed hands: its first email holder has
-- the code of (reservation, ticket), any later one a code derived over their address
-- too. holder_digest names an email holder by an HMAC of the address under the claim
-- key, kept after the address is erased, so that the same holder sent again is not a move.
ALTER TABLE tickets ADD COLUMN holder_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tickets ADD COLUMN holder_digest TEXT;
-- Orphan tickets (whose reservation never came) with an address, oldest first, for the
-- sweep that erases it after a while.
CREATE INDEX tickets_with_email ON tickets (granted_at) WHERE email IS NOT NULL;
