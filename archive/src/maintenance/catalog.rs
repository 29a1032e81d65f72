//! The catalog side of maintenance: bucket leases, the atomic swap, retiring
//! and forgetting segments, lineage, and the record of every run.

use sqlx::Row;

use crate::catalog::{mark_committed, Bind, Catalog, NewSegment, SegmentRecord, SEGMENT_COLUMNS};
use crate::error::{Error, ErrorKind, Result};
use crate::event::now_micros;

/// Where one retired input's rows went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputPlacement {
    pub input_id: String,
    /// Empty when every row of the input was erased.
    pub output_id: String,
    /// The first row of the input's kept rows in the output.
    pub first_row: i64,
    /// Row indexes of the input that were erased, ascending (empty for a
    /// compaction).
    pub erased_rows: Vec<i64>,
    /// Rows the input held.
    pub input_rows: i64,
}

/// One atomic exchange of inputs for outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swap {
    pub run_id: String,
    /// Staged (`pending`) outputs; they become committed.
    pub outputs: Vec<String>,
    pub inputs: Vec<InputPlacement>,
}

/// A run as recorded in `maintenance_runs`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MaintenanceRun {
    pub id: String,
    /// `compaction`, `retention` or `erasure`.
    pub kind: String,
    pub dry_run: bool,
    pub actor: Option<String>,
    /// What it covered (JSON: source, topic, filter, cutoff).
    pub scope: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `succeeded`, `failed` or `aborted` (a proof failed).
    pub status: String,
    pub segments_in: i64,
    pub segments_out: i64,
    pub rows_in: i64,
    pub rows_out: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    /// JSON: the segments involved (ids and keys), never event content.
    pub details: Option<String>,
    pub error: Option<String>,
}

impl MaintenanceRun {
    pub fn start(kind: &str, dry_run: bool, actor: Option<String>, scope: String) -> Self {
        MaintenanceRun {
            id: uuid::Uuid::now_v7().simple().to_string(),
            kind: kind.to_owned(),
            dry_run,
            actor,
            scope,
            started_at: now_micros(),
            finished_at: None,
            status: "running".to_owned(),
            segments_in: 0,
            segments_out: 0,
            rows_in: 0,
            rows_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            details: None,
            error: None,
        }
    }
}

const RUN_COLUMNS: &str = "id, kind, dry_run, actor, scope, started_at, finished_at, status, \
     segments_in, segments_out, rows_in, rows_out, bytes_in, bytes_out, details, error";

/// The new range of a lineage row `(first, rows)` inside an input whose
/// rows start at `output_first` in the output, once `erased` (ascending
/// row indexes of the input) are gone.
pub(crate) fn moved_range(first: i64, rows: i64, output_first: i64, erased: &[i64]) -> (i64, i64) {
    let erased_before = erased.partition_point(|&row| row < first) as i64;
    let erased_within = erased.partition_point(|&row| row < first + rows) as i64 - erased_before;
    (output_first + first - erased_before, rows - erased_within)
}

impl Catalog {
    /// Takes (or renews) the lease on a maintenance bucket for `ttl_micros`;
    /// false when another owner holds an unexpired one. Owners are writer
    /// leases: once recovery released a dead process's lease, its bucket
    /// leases are free at once.
    pub async fn take_bucket_lease(
        &self,
        bucket: &str,
        owner: &str,
        ttl_micros: i64,
    ) -> Result<bool> {
        let now = now_micros();
        let taken = sqlx::query(
            "INSERT INTO maintenance_leases (bucket, owner, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (bucket) DO UPDATE SET owner = excluded.owner, \
             expires_at = excluded.expires_at \
             WHERE maintenance_leases.expires_at < $4 OR maintenance_leases.owner = excluded.owner \
             OR maintenance_leases.owner IN (SELECT id FROM writers WHERE released_at IS NOT NULL)",
        )
        .bind(bucket)
        .bind(owner)
        .bind(now + ttl_micros)
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    pub async fn release_bucket_lease(&self, bucket: &str, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM maintenance_leases WHERE bucket = $1 AND owner = $2")
            .bind(bucket)
            .bind(owner)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Whether every segment of `ids` is committed and live.
    pub async fn all_live(&self, ids: &[String]) -> Result<bool> {
        for id in ids {
            let live: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM segments WHERE id = $1 AND state = 'committed' \
                 AND retired_at IS NULL",
            )
            .bind(id)
            .fetch_one(self.pool())
            .await?;
            if live != 1 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Stages compaction outputs (`pending`, level 1) under a writer lease.
    pub async fn stage_compacted(
        &self,
        writer: Option<&str>,
        segments: &[NewSegment],
    ) -> Result<()> {
        self.insert_pending(writer, segments, 1).await
    }

    /// The swap: in one transaction, retires every input (each must still
    /// be live, or nothing changes and the caller gets
    /// [`ErrorKind::Conflict`]), commits every output, records where each
    /// input's rows went, and moves older lineage that pointed at an input.
    pub async fn swap_segments(&self, swap: &Swap) -> Result<()> {
        let now = now_micros();
        let mut transaction = self.pool().begin().await?;
        for input in &swap.inputs {
            let retired = sqlx::query(
                "UPDATE segments SET retired_at = $1, retired_by = $2 \
                 WHERE id = $3 AND state = 'committed' AND retired_at IS NULL",
            )
            .bind(now)
            .bind(&swap.run_id)
            .bind(&input.input_id)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
            if retired != 1 {
                transaction.rollback().await?;
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "segment {} is no longer live: another run replaced or removed it",
                        input.input_id
                    ),
                ));
            }
        }
        for id in &swap.outputs {
            if let Err(error) = mark_committed(&mut transaction, id, now).await {
                transaction.rollback().await?;
                return Err(error);
            }
        }
        for input in &swap.inputs {
            if input.output_id.is_empty() {
                // Every row erased: nothing lives anywhere any more.
                sqlx::query("DELETE FROM segment_lineage WHERE live_id = $1")
                    .bind(&input.input_id)
                    .execute(&mut *transaction)
                    .await?;
                continue;
            }
            let older = sqlx::query(
                "SELECT segment_id, first_row, row_count FROM segment_lineage WHERE live_id = $1",
            )
            .bind(&input.input_id)
            .fetch_all(&mut *transaction)
            .await?;
            for row in older {
                let segment_id: String = row.try_get("segment_id")?;
                let (first, rows) = moved_range(
                    row.try_get("first_row")?,
                    row.try_get("row_count")?,
                    input.first_row,
                    &input.erased_rows,
                );
                sqlx::query(
                    "UPDATE segment_lineage SET live_id = $1, first_row = $2, row_count = $3 \
                     WHERE segment_id = $4",
                )
                .bind(&input.output_id)
                .bind(first)
                .bind(rows)
                .bind(segment_id)
                .execute(&mut *transaction)
                .await?;
            }
            sqlx::query(
                "INSERT INTO segment_lineage (segment_id, live_id, first_row, row_count) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&input.input_id)
            .bind(&input.output_id)
            .bind(input.first_row)
            .bind(input.input_rows - input.erased_rows.len() as i64)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Retires live segments without a replacement (retention): their rows
    /// are gone, and so is any lineage that pointed at them. Returns how
    /// many it retired; a segment no longer live is skipped.
    pub async fn retire_segments(&self, ids: &[String], run_id: &str) -> Result<u64> {
        let now = now_micros();
        let mut transaction = self.pool().begin().await?;
        let mut retired = 0;
        for id in ids {
            retired += sqlx::query(
                "UPDATE segments SET retired_at = $1, retired_by = $2 \
                 WHERE id = $3 AND state = 'committed' AND retired_at IS NULL",
            )
            .bind(now)
            .bind(run_id)
            .bind(id)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM segment_lineage WHERE live_id = $1")
                .bind(id)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(retired)
    }

    /// Retired segments whose objects are still in the store and were
    /// retired before `retired_before`; with `keep_for_tables`, not those
    /// a kept snapshot of an Iceberg table still lists.
    pub async fn retired_objects(
        &self,
        retired_before: i64,
        keep_for_tables: bool,
    ) -> Result<Vec<SegmentRecord>> {
        let listed = if keep_for_tables {
            " AND id NOT IN (SELECT segment_id FROM table_files)"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments WHERE retired_at IS NOT NULL \
             AND retired_at < $1 AND object_deleted_at IS NULL{listed} ORDER BY retired_at"
        );
        self.fetch_segments(&sql, vec![Bind::Int(retired_before)])
            .await
    }

    /// Retired segments whose objects are still in the store, any age.
    pub async fn retired_objects_waiting(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM segments WHERE retired_at IS NOT NULL AND object_deleted_at IS NULL",
        )
        .fetch_one(self.pool())
        .await?)
    }

    pub async fn mark_object_deleted(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE segments SET object_deleted_at = $1 WHERE id = $2")
            .bind(now_micros())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Removes the rows of retired segments whose objects are gone and that
    /// no replay still able to run was planned before: nothing can ask for
    /// them any more. Returns how many rows it removed.
    pub async fn forget_retired(&self) -> Result<u64> {
        let oldest_open_snapshot: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(snapshot_at) FROM replays \
             WHERE status NOT IN ('completed', 'cancelled') AND dry_run = 0",
        )
        .fetch_one(self.pool())
        .await?;
        let horizon = oldest_open_snapshot.unwrap_or(i64::MAX);
        let mut transaction = self.pool().begin().await?;
        sqlx::query(
            "DELETE FROM segment_lineage WHERE segment_id IN (SELECT id FROM segments \
             WHERE object_deleted_at IS NOT NULL AND retired_at < $1)",
        )
        .bind(horizon)
        .execute(&mut *transaction)
        .await?;
        let removed = sqlx::query(
            "DELETE FROM segments WHERE object_deleted_at IS NOT NULL AND retired_at < $1",
        )
        .bind(horizon)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        transaction.commit().await?;
        Ok(removed)
    }

    /// Records a run (a new one, or how it ended: its counts, details
    /// and status).
    pub async fn record_run(&self, run: &MaintenanceRun) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO maintenance_runs ({RUN_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (id) DO UPDATE SET finished_at = excluded.finished_at, \
             status = excluded.status, segments_in = excluded.segments_in, \
             segments_out = excluded.segments_out, rows_in = excluded.rows_in, \
             rows_out = excluded.rows_out, bytes_in = excluded.bytes_in, \
             bytes_out = excluded.bytes_out, details = excluded.details, error = excluded.error"
        ))
        .bind(&run.id)
        .bind(&run.kind)
        .bind(i64::from(run.dry_run))
        .bind(run.actor.clone())
        .bind(&run.scope)
        .bind(run.started_at)
        .bind(run.finished_at)
        .bind(&run.status)
        .bind(run.segments_in)
        .bind(run.segments_out)
        .bind(run.rows_in)
        .bind(run.rows_out)
        .bind(run.bytes_in)
        .bind(run.bytes_out)
        .bind(run.details.clone())
        .bind(run.error.clone())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The latest runs, newest first; `kind` narrows.
    pub async fn maintenance_runs(
        &self,
        kind: Option<&str>,
        limit: i64,
    ) -> Result<Vec<MaintenanceRun>> {
        let rows = match kind {
            Some(kind) => {
                sqlx::query(&format!(
                    "SELECT {RUN_COLUMNS} FROM maintenance_runs WHERE kind = $1 \
                     ORDER BY started_at DESC, id DESC LIMIT $2"
                ))
                .bind(kind)
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {RUN_COLUMNS} FROM maintenance_runs \
                     ORDER BY started_at DESC, id DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(MaintenanceRun {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    dry_run: row.try_get::<i64, _>("dry_run")? != 0,
                    actor: row.try_get("actor")?,
                    scope: row.try_get("scope")?,
                    started_at: row.try_get("started_at")?,
                    finished_at: row.try_get("finished_at")?,
                    status: row.try_get("status")?,
                    segments_in: row.try_get("segments_in")?,
                    segments_out: row.try_get("segments_out")?,
                    rows_in: row.try_get("rows_in")?,
                    rows_out: row.try_get("rows_out")?,
                    bytes_in: row.try_get("bytes_in")?,
                    bytes_out: row.try_get("bytes_out")?,
                    details: row.try_get("details")?,
                    error: row.try_get("error")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::moved_range;

    #[test]
    fn lineage_moves_past_erased_rows() {
        // Rows 10..20 of an input that starts at row 100 of the output.
        assert_eq!(moved_range(10, 10, 100, &[]), (110, 10));
        // Two erased before the range, one inside, one after.
        assert_eq!(moved_range(10, 10, 100, &[2, 5, 12, 25]), (108, 9));
        // Everything in the range erased.
        assert_eq!(moved_range(0, 2, 0, &[0, 1]), (0, 0));
    }
}
