-- Hindsight catalog, version 1.
-- Portable SQL: the same file runs on SQLite and PostgreSQL.
-- Times are microseconds since the Unix epoch (UTC); every integer is BIGINT.

CREATE TABLE sources (
    name TEXT PRIMARY KEY,
    bus TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- One row per Parquet object. A row is 'pending' from just before its object
-- is published until the commit that also advances its checkpoints; only
-- 'committed' rows are visible to queries. Pending rows left by a crash are
-- found by age and removed together with their objects.
CREATE TABLE segments (
    id TEXT PRIMARY KEY,
    uri TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id BIGINT NOT NULL,
    first_offset BIGINT NOT NULL,
    last_offset BIGINT NOT NULL,
    min_event_time BIGINT NOT NULL,
    max_event_time BIGINT NOT NULL,
    row_count BIGINT NOT NULL,
    byte_size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    committed_at BIGINT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'committed'))
);

CREATE INDEX segments_by_time ON segments (source, topic, min_event_time, max_event_time);
CREATE INDEX segments_by_state ON segments (state, created_at);

-- (source, topic, partition) -> the next position to archive. Advanced only by
-- compare-and-set, in the same transaction that commits the segments.
CREATE TABLE checkpoints (
    source TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id BIGINT NOT NULL,
    next_position BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (source, topic, partition_id)
);
