//! Replays in the catalog: the audit record of every replay (dry-runs
//! included) and its checkpoint.
//!
//! A running replay holds a lease (`owner`). Every checkpoint is a
//! compare-and-set on that lease, so when `hindsight replay resume` takes a
//! replay over, the process it took over from (if it still lives) fails its
//! next checkpoint with [`ErrorKind::Conflict`] and stops. Control requests
//! (pause, resume, cancel) are written to `requested` and read back by the
//! runner at every checkpoint, so they work across processes.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind, Result};
use crate::event::now_micros;

/// Where a replay is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayStatus {
    /// A dry-run: counted, nothing published. Final.
    DryRun,
    Running,
    Paused,
    Completed,
    Failed,
    Cancelled,
    /// Stopped by a signal at a checkpoint; `resume` continues it.
    Interrupted,
}

impl ReplayStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayStatus::DryRun => "dry_run",
            ReplayStatus::Running => "running",
            ReplayStatus::Paused => "paused",
            ReplayStatus::Completed => "completed",
            ReplayStatus::Failed => "failed",
            ReplayStatus::Cancelled => "cancelled",
            ReplayStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "dry_run" => ReplayStatus::DryRun,
            "running" => ReplayStatus::Running,
            "paused" => ReplayStatus::Paused,
            "completed" => ReplayStatus::Completed,
            "failed" => ReplayStatus::Failed,
            "cancelled" => ReplayStatus::Cancelled,
            "interrupted" => ReplayStatus::Interrupted,
            other => return Err(Error::internal(format!("unknown replay status {other:?}"))),
        })
    }

    /// Completed, cancelled and dry-run replays never run again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ReplayStatus::DryRun | ReplayStatus::Completed | ReplayStatus::Cancelled
        )
    }
}

/// What the user asked a running replay to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayRequest {
    Run,
    Pause,
    Cancel,
}

impl ReplayRequest {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayRequest::Run => "run",
            ReplayRequest::Pause => "pause",
            ReplayRequest::Cancel => "cancel",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "run" => ReplayRequest::Run,
            "pause" => ReplayRequest::Pause,
            "cancel" => ReplayRequest::Cancel,
            other => return Err(Error::internal(format!("unknown replay request {other:?}"))),
        })
    }
}

/// How far a replay got. Counts are of events, `bytes` of payload bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplayProgress {
    /// Events that matched the selection so far.
    pub selected: i64,
    /// Events the target broker confirmed.
    pub published: i64,
    /// Events the broker refused or returned (unroutable).
    pub failed: i64,
    /// Later copies of an AMQP message already replayed (redeliveries).
    pub duplicates_skipped: i64,
    pub bytes: i64,
    /// The next group of segments to read, and the row inside it.
    pub position_group: i64,
    pub position_row: i64,
    /// Events a resume would send again: past the checkpoint, yet confirmed
    /// (or of unknown fate) on the target. Exact once a run has ended; while
    /// it runs (or after a crash), an upper bound: two windows.
    pub resend_on_resume: i64,
    /// Events left out because the target does not accept their size.
    pub oversized_skipped: i64,
    /// Unreadable segments left out, and the rows the catalog says they held.
    pub damaged_segments_skipped: i64,
    pub damaged_rows_skipped: i64,
}

/// The most events [`ReplayDetails::oversized`] lists; the count goes on.
pub const MAX_LISTED_OVERSIZED: usize = 1000;

/// What the counts of a replay refer to: where a resume starts, and what
/// was skipped. Kept as JSON in the `details` column.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplayDetails {
    /// The first event a resume would send (`None` when nothing is left,
    /// or before the first checkpoint: then a resume starts at the beginning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_at: Option<ResumePoint>,
    /// Events skipped for their size (the first [`MAX_LISTED_OVERSIZED`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oversized: Vec<SkippedEvent>,
    /// Unreadable segments skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged_segments: Vec<SkippedSegment>,
}

/// Where a resumed replay starts: an archived event, or the start of a
/// segment group when the event is not known.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResumePoint {
    pub source: String,
    pub topic: String,
    pub partition: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// An event a replay left out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkippedEvent {
    pub event_id: String,
    pub source: String,
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    pub destination: String,
    /// Its size as the target would receive it, what the target accepts,
    /// and who said so.
    pub size: u64,
    pub limit: u64,
    pub limit_from: String,
}

/// A segment a replay could not read and left out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkippedSegment {
    pub uri: String,
    /// Rows the catalog says it holds.
    pub rows: i64,
    pub error: String,
}

/// A new replay, as it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReplay {
    pub id: String,
    pub dry_run: bool,
    /// JSON documents, kept as given for the audit.
    pub selection: String,
    pub target: String,
    pub options: String,
    pub snapshot_at: i64,
    pub planned: i64,
    /// The lease of the process that will run it (`None` for a dry-run).
    pub owner: Option<String>,
}

/// A replay as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplayRecord {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub status: ReplayStatus,
    pub requested: ReplayRequest,
    #[serde(skip)]
    pub owner: Option<String>,
    pub dry_run: bool,
    pub selection: String,
    pub target: String,
    pub options: String,
    pub snapshot_at: i64,
    pub planned: i64,
    pub progress: ReplayProgress,
    pub details: ReplayDetails,
    pub error: Option<String>,
}

const REPLAY_COLUMNS: &str = "id, created_at, updated_at, finished_at, status, requested, owner, \
     dry_run, selection, target, options, snapshot_at, planned, selected, published, failed, \
     duplicates_skipped, bytes, position_group, position_row, error, resend_on_resume, \
     oversized_skipped, damaged_segments_skipped, damaged_rows_skipped, details";

/// Rows per multi-row INSERT of selected event ids.
const SELECTION_CHUNK: usize = 400;

impl Catalog {
    /// Records a new replay, `running` (or `dry_run`, final, for a dry-run).
    pub async fn create_replay(&self, replay: &NewReplay) -> Result<()> {
        let now = now_micros();
        let status = if replay.dry_run {
            ReplayStatus::DryRun
        } else {
            ReplayStatus::Running
        };
        sqlx::query(
            "INSERT INTO replays (id, created_at, updated_at, finished_at, status, requested, \
             owner, dry_run, selection, target, options, snapshot_at, planned, selected, \
             published, failed, duplicates_skipped, bytes, position_group, position_row, error) \
             VALUES ($1, $2, $3, NULL, $4, 'run', $5, $6, $7, $8, $9, $10, $11, 0, 0, 0, 0, 0, 0, 0, NULL)",
        )
        .bind(&replay.id)
        .bind(now)
        .bind(now)
        .bind(status.as_str())
        .bind(replay.owner.clone())
        .bind(i64::from(replay.dry_run))
        .bind(&replay.selection)
        .bind(&replay.target)
        .bind(&replay.options)
        .bind(replay.snapshot_at)
        .bind(replay.planned)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Fixes the event ids of an SQL selection, in one transaction.
    pub async fn store_replay_selection(
        &self,
        replay_id: &str,
        event_ids: &[String],
    ) -> Result<()> {
        let mut transaction = self.pool().begin().await?;
        for chunk in event_ids.chunks(SELECTION_CHUNK) {
            let mut sql =
                String::from("INSERT INTO replay_selection (replay_id, event_id) VALUES ");
            for index in 0..chunk.len() {
                if index > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("($1, ${})", index + 2));
            }
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut query = sqlx::query(&sql).bind(replay_id);
            for event_id in chunk {
                query = query.bind(event_id);
            }
            query.execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// The event ids fixed for a replay's SQL selection.
    pub async fn replay_selection(&self, replay_id: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT event_id FROM replay_selection WHERE replay_id = $1")
                .bind(replay_id)
                .fetch_all(self.pool())
                .await?,
        )
    }

    pub async fn replay(&self, id: &str) -> Result<Option<ReplayRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {REPLAY_COLUMNS} FROM replays WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(replay_from_row).transpose()
    }

    /// The newest replays first.
    pub async fn replays(&self, limit: i64) -> Result<Vec<ReplayRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {REPLAY_COLUMNS} FROM replays ORDER BY created_at DESC, id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(replay_from_row).collect()
    }

    /// Takes a replay over with a new lease, from the lease the caller read
    /// (`expected_owner`). Refuses final replays; [`ErrorKind::Conflict`] when
    /// someone else took it over in between.
    pub async fn claim_replay(
        &self,
        id: &str,
        expected_owner: Option<&str>,
        new_owner: &str,
    ) -> Result<()> {
        let changed = sqlx::query(
            "UPDATE replays SET owner = $1, status = 'running', requested = 'run', error = NULL, \
             finished_at = NULL, updated_at = $2 \
             WHERE id = $3 AND status IN ('running', 'paused', 'failed', 'interrupted') \
             AND (owner = $4 OR (owner IS NULL AND $5 = 1))",
        )
        .bind(new_owner)
        .bind(now_micros())
        .bind(id)
        .bind(expected_owner.unwrap_or_default())
        .bind(i64::from(expected_owner.is_none()))
        .execute(self.pool())
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("replay {id} was taken over or finished in the meantime"),
            ));
        }
        Ok(())
    }

    /// Records progress (and a status) under the caller's lease, and returns
    /// what the user requested since. [`ErrorKind::Conflict`] when the lease
    /// was taken over: the caller must stop publishing.
    pub async fn checkpoint_replay(
        &self,
        id: &str,
        owner: &str,
        status: ReplayStatus,
        progress: &ReplayProgress,
        details: &ReplayDetails,
        error: Option<&str>,
    ) -> Result<ReplayRequest> {
        let now = now_micros();
        let finished_at = matches!(
            status,
            ReplayStatus::Completed
                | ReplayStatus::Failed
                | ReplayStatus::Cancelled
                | ReplayStatus::Interrupted
        )
        .then_some(now);
        let changed = sqlx::query(
            "UPDATE replays SET status = $1, selected = $2, published = $3, failed = $4, \
             duplicates_skipped = $5, bytes = $6, position_group = $7, position_row = $8, \
             error = $9, updated_at = $10, finished_at = $11, resend_on_resume = $12, \
             oversized_skipped = $13, damaged_segments_skipped = $14, damaged_rows_skipped = $15, \
             details = $16 WHERE id = $17 AND owner = $18",
        )
        .bind(status.as_str())
        .bind(progress.selected)
        .bind(progress.published)
        .bind(progress.failed)
        .bind(progress.duplicates_skipped)
        .bind(progress.bytes)
        .bind(progress.position_group)
        .bind(progress.position_row)
        .bind(error.map(str::to_owned))
        .bind(now)
        .bind(finished_at)
        .bind(progress.resend_on_resume)
        .bind(progress.oversized_skipped)
        .bind(progress.damaged_segments_skipped)
        .bind(progress.damaged_rows_skipped)
        .bind(details_json(details)?)
        .bind(id)
        .bind(owner)
        .execute(self.pool())
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("replay {id} was taken over by another process: this one stops"),
            ));
        }
        let requested: String = sqlx::query_scalar("SELECT requested FROM replays WHERE id = $1")
            .bind(id)
            .fetch_one(self.pool())
            .await?;
        ReplayRequest::parse(&requested)
    }

    /// Records the counts of a dry-run (and the events too large for the target).
    pub async fn finish_dry_run(
        &self,
        id: &str,
        progress: &ReplayProgress,
        details: &ReplayDetails,
    ) -> Result<()> {
        let now = now_micros();
        sqlx::query(
            "UPDATE replays SET selected = $1, bytes = $2, updated_at = $3, finished_at = $4, \
             duplicates_skipped = $5, oversized_skipped = $6, details = $7 \
             WHERE id = $8 AND status = 'dry_run'",
        )
        .bind(progress.selected)
        .bind(progress.bytes)
        .bind(now)
        .bind(now)
        .bind(progress.duplicates_skipped)
        .bind(progress.oversized_skipped)
        .bind(details_json(details)?)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Asks a replay to pause, run on, or cancel. A replay nobody runs
    /// (interrupted, failed, or its process died) is cancelled at once.
    /// Returns the record after the change.
    pub async fn request_replay(&self, id: &str, request: ReplayRequest) -> Result<ReplayRecord> {
        let Some(record) = self.replay(id).await? else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no replay {id}: list them with hindsight replay list"),
            ));
        };
        if record.status.is_final() {
            return Err(Error::invalid_input(format!(
                "replay {id} is {}: it cannot be paused, resumed or cancelled",
                record.status.as_str()
            )));
        }
        let now = now_micros();
        if request == ReplayRequest::Cancel
            && matches!(
                record.status,
                ReplayStatus::Interrupted | ReplayStatus::Failed
            )
        {
            sqlx::query(
                "UPDATE replays SET requested = 'cancel', status = 'cancelled', updated_at = $1, \
                 finished_at = $2 WHERE id = $3",
            )
            .bind(now)
            .bind(now)
            .bind(id)
            .execute(self.pool())
            .await?;
        } else {
            sqlx::query("UPDATE replays SET requested = $1, updated_at = $2 WHERE id = $3")
                .bind(request.as_str())
                .bind(now)
                .bind(id)
                .execute(self.pool())
                .await?;
        }
        self.replay(id)
            .await?
            .ok_or_else(|| Error::internal(format!("replay {id} disappeared")))
    }
}

fn details_json(details: &ReplayDetails) -> Result<Option<String>> {
    if *details == ReplayDetails::default() {
        return Ok(None);
    }
    serde_json::to_string(details)
        .map(Some)
        .map_err(|error| Error::internal(format!("cannot encode replay details: {error}")))
}

fn replay_from_row(row: &AnyRow) -> Result<ReplayRecord> {
    let details = match row.try_get::<Option<String>, _>("details")? {
        Some(text) => serde_json::from_str(&text).map_err(|error| {
            Error::internal(format!("the details of a replay are unreadable: {error}"))
        })?,
        None => ReplayDetails::default(),
    };
    Ok(ReplayRecord {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
        status: ReplayStatus::parse(&row.try_get::<String, _>("status")?)?,
        requested: ReplayRequest::parse(&row.try_get::<String, _>("requested")?)?,
        owner: row.try_get("owner")?,
        dry_run: row.try_get::<i64, _>("dry_run")? != 0,
        selection: row.try_get("selection")?,
        target: row.try_get("target")?,
        options: row.try_get("options")?,
        snapshot_at: row.try_get("snapshot_at")?,
        planned: row.try_get("planned")?,
        progress: ReplayProgress {
            selected: row.try_get("selected")?,
            published: row.try_get("published")?,
            failed: row.try_get("failed")?,
            duplicates_skipped: row.try_get("duplicates_skipped")?,
            bytes: row.try_get("bytes")?,
            position_group: row.try_get("position_group")?,
            position_row: row.try_get("position_row")?,
            resend_on_resume: row.try_get("resend_on_resume")?,
            oversized_skipped: row.try_get("oversized_skipped")?,
            damaged_segments_skipped: row.try_get("damaged_segments_skipped")?,
            damaged_rows_skipped: row.try_get("damaged_rows_skipped")?,
        },
        details,
        error: row.try_get("error")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_replay(id: &str, owner: &str) -> NewReplay {
        NewReplay {
            id: id.to_owned(),
            dry_run: false,
            selection: "{}".to_owned(),
            target: "{}".to_owned(),
            options: "{}".to_owned(),
            snapshot_at: 1,
            planned: 10,
            owner: Some(owner.to_owned()),
        }
    }

    #[tokio::test]
    async fn a_claimed_replay_fences_its_previous_owner() {
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/catalog.db", directory.path().display());
        let catalog = Catalog::open(&url).await.unwrap();
        catalog.create_replay(&new_replay("r1", "a")).await.unwrap();
        let progress = ReplayProgress {
            selected: 3,
            published: 3,
            position_group: 0,
            position_row: 3,
            resend_on_resume: 2,
            damaged_segments_skipped: 1,
            damaged_rows_skipped: 40,
            ..Default::default()
        };
        let details = ReplayDetails {
            resume_at: Some(ResumePoint {
                source: "s".to_owned(),
                topic: "_orders".to_owned(),
                partition: 0,
                offset: Some(3),
                event_id: None,
            }),
            oversized: Vec::new(),
            damaged_segments: vec![SkippedSegment {
                uri: "source=s/x.parquet".to_owned(),
                rows: 40,
                error: "truncated".to_owned(),
            }],
        };
        let request = catalog
            .checkpoint_replay("r1", "a", ReplayStatus::Running, &progress, &details, None)
            .await
            .unwrap();
        assert_eq!(request, ReplayRequest::Run);
        catalog.claim_replay("r1", Some("a"), "b").await.unwrap();
        let fenced = catalog
            .checkpoint_replay("r1", "a", ReplayStatus::Running, &progress, &details, None)
            .await
            .unwrap_err();
        assert_eq!(fenced.kind(), ErrorKind::Conflict);
        // A second claim from the stale lease loses too.
        let lost = catalog
            .claim_replay("r1", Some("a"), "c")
            .await
            .unwrap_err();
        assert_eq!(lost.kind(), ErrorKind::Conflict);
        catalog
            .request_replay("r1", ReplayRequest::Pause)
            .await
            .unwrap();
        let request = catalog
            .checkpoint_replay("r1", "b", ReplayStatus::Running, &progress, &details, None)
            .await
            .unwrap();
        assert_eq!(request, ReplayRequest::Pause);
        let record = catalog.replay("r1").await.unwrap().unwrap();
        assert_eq!(record.progress, progress);
        assert_eq!(record.details, details);
        assert_eq!(record.owner.as_deref(), Some("b"));
        catalog
            .checkpoint_replay(
                "r1",
                "b",
                ReplayStatus::Completed,
                &progress,
                &details,
                None,
            )
            .await
            .unwrap();
        let refused = catalog
            .claim_replay("r1", Some("b"), "d")
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Conflict);
    }

    #[tokio::test]
    async fn selections_round_trip_in_chunks() {
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/catalog.db", directory.path().display());
        let catalog = Catalog::open(&url).await.unwrap();
        let ids: Vec<String> = (0..1000).map(|n| format!("{n:032x}")).collect();
        catalog.store_replay_selection("r", &ids).await.unwrap();
        let mut back = catalog.replay_selection("r").await.unwrap();
        back.sort();
        assert_eq!(back, ids);
    }
}
