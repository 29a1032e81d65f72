-- Hindsight catalog: writer leases.
-- Portable SQL (SQLite and PostgreSQL); times are microseconds since the Unix
-- epoch (UTC); every integer is BIGINT.

-- One row per writing process (`hindsight archive`, `hindsight demo`). The
-- writer renews `expires_at` while it runs (and with every commit) and sets
-- `released_at` when it exits cleanly. A lease is dead when it is released;
-- when `machine` is this machine and the process (`pid`, started at
-- `process_start` clock ticks after boot) is gone; or, for a lease of
-- another machine, when it expired.
-- Recovery releases a dead lease first: a commit renews its writer's lease
-- in the same transaction and fails once it is released, so the pending
-- segments of a released writer can be removed at once.
CREATE TABLE writers (
    id TEXT PRIMARY KEY,
    machine TEXT,
    pid BIGINT,
    process_start BIGINT,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    released_at BIGINT
);

-- The writer that staged a segment; NULL for segments staged before leases.
ALTER TABLE segments ADD COLUMN writer_id TEXT;
