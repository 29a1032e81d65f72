//! The HTTP API and the embedded UI.
//!
//! Routes so far: `/healthz`, `/readyz`, `/api/v1/topics`, `/api/v1/sources`,
//! `/api/v1/segments`, and the UI at `/`.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hindsight_archive::catalog::{Catalog, SegmentFilter};
use hindsight_archive::event::rfc3339;
use hindsight_archive::store::ArchiveStore;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: ArchiveStore,
    pub catalog: Catalog,
}

impl AppState {
    pub fn new(store: ArchiveStore, catalog: Catalog) -> Self {
        AppState { store, catalog }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/topics", get(topics))
        .route("/api/v1/sources", get(sources))
        .route("/api/v1/segments", get(segments))
        .fallback(static_or_not_found)
        .with_state(state)
}

/// Serves until `cancel` fires, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(5), state.catalog.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(error)) => ApiError::from(error).into_response(),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "retryable",
            "the catalog did not answer within 5 s",
        )
        .into_response(),
    }
}

#[derive(Debug, Serialize)]
struct TopicView {
    source: String,
    topic: String,
    events: i64,
    bytes: i64,
    segments: i64,
    first_event_time: Option<String>,
    last_event_time: Option<String>,
    last_committed_at: Option<String>,
}

async fn topics(State(state): State<AppState>) -> Result<Json<Vec<TopicView>>, ApiError> {
    let stats = state.catalog.topic_stats().await?;
    Ok(Json(
        stats
            .into_iter()
            .map(|s| TopicView {
                first_event_time: rfc3339(s.min_event_time),
                last_event_time: rfc3339(s.max_event_time),
                last_committed_at: rfc3339(s.last_committed_at),
                source: s.source,
                topic: s.topic,
                events: s.events,
                bytes: s.bytes,
                segments: s.segments,
            })
            .collect(),
    ))
}

#[derive(Debug, Serialize)]
struct SourceView {
    name: String,
    bus: String,
    created_at: Option<String>,
}

async fn sources(State(state): State<AppState>) -> Result<Json<Vec<SourceView>>, ApiError> {
    let sources = state.catalog.sources().await?;
    Ok(Json(
        sources
            .into_iter()
            .map(|s| SourceView {
                name: s.name,
                bus: s.bus.to_string(),
                created_at: rfc3339(s.created_at),
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentQuery {
    source: Option<String>,
    topic: Option<String>,
    partition: Option<i32>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct SegmentView {
    uri: String,
    source: String,
    topic: String,
    partition: i32,
    first_offset: i64,
    last_offset: i64,
    rows: i64,
    bytes: i64,
    min_event_time: Option<String>,
    max_event_time: Option<String>,
}

async fn segments(
    State(state): State<AppState>,
    query: Result<Query<SegmentQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<SegmentView>>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(1000).min(10_000);
    let filter = SegmentFilter {
        source: query.source,
        topic: query.topic,
        partition: query.partition,
        ..SegmentFilter::default()
    };
    let records = state.catalog.segments(&filter).await?;
    Ok(Json(
        records
            .into_iter()
            .take(limit)
            .map(|record| {
                let s = record.segment;
                SegmentView {
                    min_event_time: rfc3339(s.min_event_time),
                    max_event_time: rfc3339(s.max_event_time),
                    uri: s.uri,
                    source: s.source,
                    topic: s.topic,
                    partition: s.partition,
                    first_offset: s.first_offset,
                    last_offset: s.last_offset,
                    rows: s.rows,
                    bytes: s.bytes,
                }
            })
            .collect(),
    ))
}

async fn static_or_not_found(uri: Uri) -> Response {
    let path = uri.path();
    if !path.starts_with("/api/") {
        if let Some(asset) = hindsight_web::asset(path) {
            return (
                [
                    (header::CONTENT_TYPE, asset.content_type),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                asset.body,
            )
                .into_response();
        }
    }
    ApiError::not_found(format!("no route for {path}")).into_response()
}
