//! The replay routes of the HTTP API:
//!
//! - `POST /api/v1/replays`: a dry-run (`"dry_run": true`, answered with the
//!   report) or a run (started in this process, answered 202 with the record);
//! - `GET /api/v1/replays` and `GET /api/v1/replays/{id}`: records and progress;
//! - `POST /api/v1/replays/{id}/pause|resume|cancel`.
//!
//! Pause and cancel go through the catalog, so they reach a replay run by
//! `hindsight replay` in another process as well. Resuming a replay that no
//! process runs (interrupted, failed) starts it here.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hindsight_archive::replays::{ReplayRequest, ReplayStatus};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::publisher::Target;
use super::selection::Selection;
use super::{ReplayOptions, ReplayService, ReplaySpec};
use crate::error::ApiError;
use crate::sql::QueryEngine;

/// The body of `POST /api/v1/replays`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    pub selection: Selection,
    pub target: Target,
    #[serde(default)]
    pub options: ReplayOptions,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    pub limit: Option<i64>,
}

/// The replay routes, with their own state; merge them behind the token check.
pub fn routes<S: Clone + Send + Sync + 'static>(engine: QueryEngine) -> Router<S> {
    Router::new()
        .route("/api/v1/replays", post(create).get(list))
        .route("/api/v1/replays/{id}", get(show))
        .route("/api/v1/replays/{id}/pause", post(pause))
        .route("/api/v1/replays/{id}/resume", post(resume))
        .route("/api/v1/replays/{id}/cancel", post(cancel))
        .with_state(ReplayService::new(engine, None))
}

/// Runs a replay in the background of this process.
fn spawn(run: super::ReplayRun) {
    let span = tracing::info_span!("replay", id = %run.id());
    tokio::spawn(
        async move {
            if let Err(error) = run.execute(CancellationToken::new(), None).await {
                tracing::error!(error = %error.message(), "replay stopped");
            }
        }
        .instrument(span),
    );
}

async fn create(
    State(service): State<ReplayService>,
    body: Result<Json<ReplayBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let spec = ReplaySpec {
        selection: body.selection,
        target: body.target,
        options: body.options,
    };
    if body.dry_run {
        let report = service.dry_run(&spec).await?;
        return Ok(Json(report).into_response());
    }
    let run = service.start(spec).await?;
    let id = run.id().to_owned();
    spawn(run);
    let view = service.get(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

async fn list(
    State(service): State<ReplayService>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(service.list(limit).await?).into_response())
}

async fn show(
    State(service): State<ReplayService>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(service.get(&id).await?).into_response())
}

async fn pause(
    State(service): State<ReplayService>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(service.request(&id, ReplayRequest::Pause).await?).into_response())
}

async fn cancel(
    State(service): State<ReplayService>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(service.request(&id, ReplayRequest::Cancel).await?).into_response())
}

async fn resume(
    State(service): State<ReplayService>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let current = service.get(&id).await?;
    match current.status {
        ReplayStatus::Interrupted | ReplayStatus::Failed => {
            let run = service.resume(&id).await?;
            spawn(run);
            Ok((StatusCode::ACCEPTED, Json(service.get(&id).await?)).into_response())
        }
        _ => Ok(Json(service.request(&id, ReplayRequest::Run).await?).into_response()),
    }
}
