-- Recurring series (docs/series.md). `definition` is the `series.upserted`
-- data as last sent (NULL while only a `series.cancelled` arrived), expanded again as
-- time passes; `generation` counts its upserts. Each occurrence is a reservation of its
-- own; `series_occurrences` says whose, with its original start (unix ms) and the
-- generation of the last upsert that produced it: an older one was taken out.
CREATE TABLE series (
    series_id       TEXT PRIMARY KEY,
    revision        BIGINT,
    definition      TEXT,
    generation      BIGINT NOT NULL,
    cancelled_at    BIGINT,
    cancel_reason   TEXT,
    updated_at      BIGINT NOT NULL
);
CREATE TABLE series_occurrences (
    reservation_id  TEXT PRIMARY KEY,
    series_id       TEXT NOT NULL,
    original_start  BIGINT NOT NULL,
    generation      BIGINT NOT NULL
);
CREATE INDEX series_occurrences_by_series ON series_occurrences (series_id, original_start);
