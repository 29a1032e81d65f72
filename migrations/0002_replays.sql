-- Hindsight catalog, version 2: replays.
-- Portable SQL (SQLite and PostgreSQL); times are microseconds since the Unix
-- epoch (UTC); every integer is BIGINT, booleans are 0/1.

-- One row per replay (dry-runs included): the audit record and the
-- checkpoint. `owner` is the lease of the process running it: every
-- checkpoint is a compare-and-set on it, so a resumed replay fences the
-- process it took over from. `requested` is how pause, resume and cancel
-- reach a runner in another process.
CREATE TABLE replays (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT,
    status TEXT NOT NULL,
    requested TEXT NOT NULL,
    owner TEXT,
    dry_run BIGINT NOT NULL,
    selection TEXT NOT NULL,
    target TEXT NOT NULL,
    options TEXT NOT NULL,
    -- Segments committed after this instant are not part of the replay.
    snapshot_at BIGINT NOT NULL,
    -- An upper bound of the events to publish (rows of the segments in scope),
    -- or the exact number for an SQL selection.
    planned BIGINT NOT NULL,
    selected BIGINT NOT NULL,
    published BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    duplicates_skipped BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    -- Where to continue: the group of segments, and the row inside it.
    position_group BIGINT NOT NULL,
    position_row BIGINT NOT NULL,
    error TEXT
);

CREATE INDEX replays_by_time ON replays (created_at);

-- The event ids an SQL selection returned, fixed when the replay was created,
-- so that a resumed replay publishes exactly the same events.
CREATE TABLE replay_selection (
    replay_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (replay_id, event_id)
);
