-- The room name Foyer last set, so a new title renames the room. Left empty for rooms
-- that exist already: each gets its name set once, which renames the rooms whose title
-- changed while they were open and is no event at all in the others (Synapse does not
-- persist a state event equal to the current one from the same sender).
ALTER TABLE lifecycle ADD COLUMN name_applied TEXT;
