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

use crate::access::AuditSlot;
use crate::error::ApiError;
use crate::AppState;
use axum::Extension;
use hindsight_archive::access::{Principal, Scope};

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
    Extension(principal): Extension<Principal>,
    audit: Option<Extension<AuditSlot>>,
    body: Result<Json<ReplayBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let audit = audit.map(|Extension(slot)| slot);
    if let Some(slot) = &audit {
        if body.dry_run {
            slot.action("replay.dry_run");
        }
        slot.detail(
            serde_json::json!({"selection": &body.selection, "target": &body.target}).to_string(),
        );
    }
    check_target(&state, &body.target)?;
    let selection = serde_json::to_value(&body.selection).unwrap_or_default();
    if !selection_in_scope(&selection, &principal.scope) {
        return Err(ApiError::forbidden(format!(
            "the selection reaches beyond what {:?} may read ({}): name its source and topics",
            principal.name,
            principal.scope.describe()
        )));
    }
    let service = state.replays.for_principal(&principal);
    // A selection reads raw events: conditions on what a redaction policy
    // masks for this role would tell, by its counts, what the values are.
    if service.engine().masks_values() {
        let content = ["contains", "json", "key", "headers"]
            .into_iter()
            .find(|field| {
                !selection[*field].is_null() && selection[*field] != serde_json::json!([])
            });
        if let Some(field) = content {
            return Err(ApiError::forbidden(format!(
                "a replay selection by {field:?} is not allowed for the {} role while a redaction \
                 policy masks values for it; select by topic, partition and time",
                principal.role
            )));
        }
    }
    let spec = ReplaySpec {
        selection: body.selection,
        target: body.target,
        options: body.options,
    };
    if body.dry_run {
        let mut report = service.dry_run(&spec).await?;
        if service.engine().masks_values() {
            // The sample is read raw from the segments: not for a masked role.
            report.sample.clear();
        }
        if let Some(slot) = &audit {
            slot.add_count(u64::try_from(report.totals.events).unwrap_or_default());
        }
        return Ok(Json(report).into_response());
    }
    let run = service.start(spec).await?;
    let id = run.id().to_owned();
    state.supervisor.spawn(run);
    let view = service.get(&id).await?;
    if let Some(slot) = &audit {
        slot.add_count(u64::try_from(view.planned).unwrap_or_default());
        slot.detail(format!(
            "replay {id}: {}",
            serde_json::json!({"selection": &view.selection, "target": &view.target})
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

/// Whether a replay's selection (as stored) stays inside `scope`: a
/// filter naming only allowed topics (and source, when the scope names
/// sources). An SQL selection, or a filter over every topic, is only
/// inside the scope of everything.
fn selection_in_scope(selection: &serde_json::Value, scope: &Scope) -> bool {
    if scope.is_everything() {
        return true;
    }
    if selection["type"] != "filter" {
        return false;
    }
    let topics: Vec<&str> = selection["topic"]
        .as_str()
        .into_iter()
        .chain(
            selection["topics"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(serde_json::Value::as_str),
        )
        .collect();
    let source = selection["source"].as_str();
    let topics_allowed = if scope.topics.is_empty() {
        true
    } else {
        !topics.is_empty() && topics.iter().all(|topic| scope.allows_topic(topic))
    };
    let source_allowed = if scope.sources.is_empty() {
        true
    } else {
        source.is_some_and(|source| scope.allows_source(source))
    };
    topics_allowed && source_allowed
}

/// A replay the principal may see, else 404 (its existence is not told).
async fn visible_replay(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<hindsight_replay::ReplayView, ApiError> {
    let view = state.replays.get(id).await?;
    if selection_in_scope(&view.selection, &principal.scope) {
        Ok(view)
    } else {
        Err(ApiError::not_found(format!("no replay {id}")))
    }
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
    Extension(principal): Extension<Principal>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    // A scoped caller's replays are found among the newest thousand.
    let fetch = if principal.scope.is_everything() {
        limit
    } else {
        1000
    };
    let mut replays = state.replays.list(fetch).await?;
    replays.retain(|view| selection_in_scope(&view.selection, &principal.scope));
    replays.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Json(replays).into_response())
}

async fn show(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(visible_replay(&state, &principal, &id).await?).into_response())
}

async fn pause(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    visible_replay(&state, &principal, &id).await?;
    Ok(Json(state.replays.request(&id, ReplayRequest::Pause).await?).into_response())
}

async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    visible_replay(&state, &principal, &id).await?;
    Ok(Json(state.replays.request(&id, ReplayRequest::Cancel).await?).into_response())
}

async fn resume(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    visible_replay(&state, &principal, &id).await?;
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
