-- The worker's sleep (`next_due_at` in the store): the earliest time any reservation
-- needs a look, a leased row counting from its lease's end. Without this index the MIN
-- reads every scheduled row of `lifecycle_due`, after every round of the worker.
CREATE INDEX lifecycle_next_wake
    ON lifecycle ((CASE WHEN locked_until > next_due_at THEN locked_until ELSE next_due_at END))
    WHERE next_due_at IS NOT NULL;
