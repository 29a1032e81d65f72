-- Hindsight catalog: replay accounting.
-- Portable SQL (SQLite and PostgreSQL); one column per statement (SQLite).

-- How many events a resume would send again: those past the checkpoint
-- that the broker confirmed or may have received. Exact once a run ended
-- (failed, interrupted); an upper bound (two windows) while it runs.
ALTER TABLE replays ADD COLUMN resend_on_resume BIGINT NOT NULL DEFAULT 0;
-- Events left out because the target does not accept their size
-- (`oversized = skip`).
ALTER TABLE replays ADD COLUMN oversized_skipped BIGINT NOT NULL DEFAULT 0;
-- Unreadable segments left out (`skip_damaged`), and the rows they held.
ALTER TABLE replays ADD COLUMN damaged_segments_skipped BIGINT NOT NULL DEFAULT 0;
ALTER TABLE replays ADD COLUMN damaged_rows_skipped BIGINT NOT NULL DEFAULT 0;
-- JSON: where a resume starts, and which events and segments were skipped.
ALTER TABLE replays ADD COLUMN details TEXT;
