-- Every stream start and end reported (issue 31, docs/replay.md), by the platform's
-- `stream.started`/`stream.ended` or a streaming server's hook, kept as reported: the
-- recording's segments are computed from them (`model::replay`). `edge` is 'start' or
-- 'end', `at` unix milliseconds; the same edge at the same instant is one.
CREATE TABLE stream_edges (
    reservation_id  TEXT NOT NULL,
    edge            TEXT NOT NULL,
    at              BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, edge, at)
);
