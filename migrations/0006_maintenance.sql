-- Hindsight catalog: compaction, retention and erasure.
-- Portable SQL (SQLite and PostgreSQL); times are microseconds since the Unix
-- epoch (UTC); every integer is BIGINT.

-- A committed segment is live until a compaction, a retention run or an
-- erasure retires it: `retired_at` is set in the same transaction that
-- commits its replacement (if any), so a reader sees either the inputs or
-- the output, never both and never neither. Readers ask for live segments
-- only (`retired_at IS NULL`). The object of a retired segment is deleted
-- after the grace period (`object_deleted_at`); the row stays while a replay
-- planned before the retirement may still need it.
ALTER TABLE segments ADD COLUMN retired_at BIGINT;
ALTER TABLE segments ADD COLUMN retired_by TEXT;
ALTER TABLE segments ADD COLUMN object_deleted_at BIGINT;
-- 0: written by ingest; 1: written by compaction (at the cold zstd level).
ALTER TABLE segments ADD COLUMN compaction_level BIGINT NOT NULL DEFAULT 0;

CREATE INDEX segments_by_retirement ON segments (retired_at, object_deleted_at);

-- Where the rows of a retired segment live now: rows
-- [first_row, first_row + row_count) of the live segment `live_id`, in the
-- retired segment's order. Kept flat: when `live_id` is itself retired, its
-- lineage rows are moved to the new live segment in the same transaction.
-- A segment removed by retention has no lineage: its rows are gone.
CREATE TABLE segment_lineage (
    segment_id TEXT PRIMARY KEY,
    live_id TEXT NOT NULL,
    first_row BIGINT NOT NULL,
    row_count BIGINT NOT NULL
);

CREATE INDEX segment_lineage_by_live ON segment_lineage (live_id);

-- One compactor per bucket (source, topic, partition, hour or day) at a
-- time, across every process sharing the catalog.
CREATE TABLE maintenance_leases (
    bucket TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Every compaction, retention and erasure run, dry runs included. An erasure
-- records who asked, the filter and the segments, never the erased content.
CREATE TABLE maintenance_runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    dry_run BIGINT NOT NULL,
    actor TEXT,
    scope TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    status TEXT NOT NULL,
    segments_in BIGINT NOT NULL DEFAULT 0,
    segments_out BIGINT NOT NULL DEFAULT 0,
    rows_in BIGINT NOT NULL DEFAULT 0,
    rows_out BIGINT NOT NULL DEFAULT 0,
    bytes_in BIGINT NOT NULL DEFAULT 0,
    bytes_out BIGINT NOT NULL DEFAULT 0,
    details TEXT,
    error TEXT
);

CREATE INDEX maintenance_runs_by_kind ON maintenance_runs (kind, started_at);
