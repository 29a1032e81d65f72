//! The replay routes of the HTTP API:
//!
//! - `POST /api/v1/replays`: a dry-run (`"dry_run": true`, answered with the
//!   report) or a run (started in this process, answered 202 with the record);
//! - `GET /api/v1/replays` and `GET /api/v1/replays/{id}`: records and progress;
//! - `POST /api/v1/replays/{id}/pause|resume|cancel`.
//!
//! Pause and cancel go through the catalog, so they reach a replay run by
//! `hindsight replay` in another process as well. Resuming a replay that no
//! process runs (interrupted, failed) starts it here, under the
//! [`Supervisor`](crate::Supervisor). Credentials are never stored with a
//! replay: resuming one whose target had some takes the target again, in
//! the body (`{"target": …}`).

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hindsight_archive::replays::{ReplayRequest, ReplayStatus};
use hindsight_replay::{ReplayOptions, ReplaySpec, Selection, Target};
use serde::Deserialize;

use crate::error::ApiError;
use crate::AppState;

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

/// The body of `POST /api/v1/replays/{id}/resume`, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeBody {
    /// The replay's target again, with its credentials.
    pub target: Option<Target>,
    /// Take a `running` or `paused` replay over that no process runs any
    /// more (its server was killed): start it here from its checkpoint. A
    /// process that still runs it is fenced off at its next checkpoint.
    #[serde(default)]
    pub take_over: bool,
}

/// The replay routes; merge them behind the token check.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/replays", post(create).get(list))
        .route("/api/v1/replays/{id}", get(show))
        .route("/api/v1/replays/{id}/pause", post(pause))
        .route("/api/v1/replays/{id}/resume", post(resume))
        .route("/api/v1/replays/{id}/cancel", post(cancel))
}

async fn create(
    State(state): State<AppState>,
    body: Result<Json<ReplayBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    check_target(&state, &body.target)?;
    let spec = ReplaySpec {
        selection: body.selection,
        target: body.target,
        options: body.options,
    };
    let service = &state.replays;
    if body.dry_run {
        let report = service.dry_run(&spec).await?;
        return Ok(Json(report).into_response());
    }
    let run = service.start(spec).await?;
    let id = run.id().to_owned();
    state.supervisor.spawn(run);
    let view = service.get(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

/// A target given over HTTP names a configured connection, carries no
/// credentials, and is an address only when the server allows ad-hoc
/// targets: an API caller cannot make the server connect anywhere it likes.
fn check_target(state: &AppState, target: &Target) -> Result<(), ApiError> {
    if let Some(problem) = target.addressing_problem() {
        return Err(ApiError::bad_request(problem));
    }
    if target.carries_credentials() {
        return Err(ApiError::bad_request(
            "the API never takes credentials (a URL password, secret client properties): \
             configure a [connections.NAME] on the server and give \"connection\": \"NAME\"",
        ));
    }
    if let Some(name) = target.connection() {
        let connections = state.replays.connector().connections();
        match connections
            .iter()
            .find(|connection| connection.name == name)
        {
            None => {
                let known: Vec<&str> = connections.iter().map(|c| c.name.as_str()).collect();
                return Err(ApiError::bad_request(format!(
                    "no connection named {name:?}; configured: {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            }
            Some(connection) if connection.bus != target.bus() => {
                return Err(ApiError::bad_request(format!(
                    "connection {name:?} is a {} connection, not {}",
                    connection.bus,
                    target.bus()
                )));
            }
            Some(_) => {}
        }
    }
    if target.is_adhoc() && !state.allow_adhoc_targets() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "replay targets must name a configured connection (\"connection\": \"NAME\", see \
             GET /api/v1/connections); this server does not allow ad-hoc addresses \
             (replay.allow_adhoc_targets = false)",
        ));
    }
    Ok(())
}

/// `GET /api/v1/connections`: what the replay wizard offers as targets.
pub async fn connections(State(state): State<AppState>) -> Response {
    Json(serde_json::json!({
        "connections": state.replays.connector().connections(),
        "allow_adhoc_targets": state.allow_adhoc_targets(),
    }))
    .into_response()
}

async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(state.replays.list(limit).await?).into_response())
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(state.replays.get(&id).await?).into_response())
}

async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.replays.request(&id, ReplayRequest::Pause).await?).into_response())
}

async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.replays.request(&id, ReplayRequest::Cancel).await?).into_response())
}

async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: ResumeBody = if body.iter().all(u8::is_ascii_whitespace) {
        ResumeBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            ApiError::bad_request(format!(
                "the body must be empty or {{\"target\": …}}: {error}"
            ))
        })?
    };
    if let Some(target) = &body.target {
        check_target(&state, target)?;
    }
    let service = &state.replays;
    let current = service.get(&id).await?;
    let orphan = body.take_over
        && matches!(current.status, ReplayStatus::Running | ReplayStatus::Paused)
        && !state.supervisor.runs(&id);
    match current.status {
        _ if orphan => {
            let run = service.resume(&id, body.target.as_ref()).await?;
            state.supervisor.spawn(run);
            Ok((StatusCode::ACCEPTED, Json(service.get(&id).await?)).into_response())
        }
        ReplayStatus::Interrupted | ReplayStatus::Failed => {
            let run = service.resume(&id, body.target.as_ref()).await?;
            state.supervisor.spawn(run);
            Ok((StatusCode::ACCEPTED, Json(service.get(&id).await?)).into_response())
        }
        _ => Ok(Json(service.request(&id, ReplayRequest::Run).await?).into_response()),
    }
}
