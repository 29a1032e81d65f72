//! `GET /api/v1/maintenance`: the compaction and retention policy in force,
//! the latest compaction, retention and erasure runs, and how many retired
//! objects wait for their grace period to end.

use axum::extract::State;
use axum::Json;
use hindsight_archive::event::rfc3339;
use hindsight_archive::maintenance::MaintenanceRun;
use serde::Serialize;

use crate::error::ApiError;
use crate::AppState;

/// The policy of the process serving, as its configuration says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MaintenancePolicy {
    /// Whether `hindsight archive` compacts in the background.
    pub compaction_enabled: bool,
    pub interval_seconds: u64,
    pub target_bytes: u64,
    pub zstd_level: i32,
    /// Retired objects stay this long (directory readers see them until then).
    pub grace_seconds: u64,
    pub retention: Vec<RetentionView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionView {
    pub source: String,
    /// `None`: every topic of the source without its own rule.
    pub topic: Option<String>,
    pub keep_seconds: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct RunView {
    id: String,
    kind: String,
    dry_run: bool,
    actor: Option<String>,
    scope: serde_json::Value,
    started_at: Option<String>,
    finished_at: Option<String>,
    status: String,
    segments_in: i64,
    segments_out: i64,
    rows_in: i64,
    rows_out: i64,
    bytes_in: i64,
    bytes_out: i64,
    error: Option<String>,
}

impl From<MaintenanceRun> for RunView {
    fn from(run: MaintenanceRun) -> Self {
        RunView {
            scope: serde_json::from_str(&run.scope).unwrap_or(serde_json::Value::Null),
            started_at: rfc3339(run.started_at),
            finished_at: run.finished_at.and_then(rfc3339),
            id: run.id,
            kind: run.kind,
            dry_run: run.dry_run,
            actor: run.actor,
            status: run.status,
            segments_in: run.segments_in,
            segments_out: run.segments_out,
            rows_in: run.rows_in,
            rows_out: run.rows_out,
            bytes_in: run.bytes_in,
            bytes_out: run.bytes_out,
            error: run.error,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct MaintenanceView {
    policy: MaintenancePolicy,
    /// The latest runs of every kind, newest first.
    runs: Vec<RunView>,
    retired_objects_waiting: i64,
}

pub(crate) async fn maintenance(
    State(state): State<AppState>,
) -> Result<Json<MaintenanceView>, ApiError> {
    let catalog = state.engine.catalog();
    let runs = catalog.maintenance_runs(None, 20).await?;
    Ok(Json(MaintenanceView {
        policy: state.maintenance.as_ref().clone(),
        runs: runs.into_iter().map(RunView::from).collect(),
        retired_objects_waiting: catalog.retired_objects_waiting().await?,
    }))
}
