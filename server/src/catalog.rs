//! Routes about the archive itself: health, metrics, the OpenAPI document,
//! topics, sources and segments.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hindsight_archive::catalog::SegmentFilter;
use hindsight_archive::event::rfc3339;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::AppState;
use axum::Extension;
use hindsight_archive::access::Principal;

pub(crate) async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            hindsight_archive::metrics::CONTENT_TYPE,
        )],
        hindsight_archive::metrics::render(),
    )
        .into_response()
}

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(5), state.engine.catalog().ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(error)) => ApiError::from(error).into_response(),
        Err(_) => ApiError::of_kind(
            hindsight_archive::ErrorKind::Retryable,
            "the catalog did not answer within 5 s".to_owned(),
        )
        .into_response(),
    }
}

pub(crate) async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    let tokens = state.authenticator.has_config_tokens()
        || state.engine.catalog().has_tokens().await.unwrap_or(true);
    Json(crate::openapi::document(tokens))
}

#[derive(Debug, Serialize)]
pub(crate) struct TopicView {
    source: String,
    topic: String,
    events: i64,
    bytes: i64,
    segments: i64,
    first_event_time: Option<String>,
    last_event_time: Option<String>,
    last_committed_at: Option<String>,
}

pub(crate) async fn topics(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<TopicView>>, ApiError> {
    let stats = state.engine.catalog().topic_stats().await?;
    Ok(Json(
        stats
            .into_iter()
            .filter(|s| principal.scope.allows(&s.source, &s.topic))
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
pub(crate) struct SourceView {
    name: String,
    bus: String,
    created_at: Option<String>,
}

pub(crate) async fn sources(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<SourceView>>, ApiError> {
    let sources = state.engine.catalog().sources().await?;
    Ok(Json(
        sources
            .into_iter()
            .filter(|s| principal.scope.allows_source(&s.name))
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
pub(crate) struct SegmentQuery {
    source: Option<String>,
    topic: Option<String>,
    partition: Option<i32>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub(crate) struct SegmentView {
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

pub(crate) async fn segments(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<SegmentQuery>, QueryRejection>,
) -> Result<Json<Vec<SegmentView>>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(1000).min(10_000);
    let filter = SegmentFilter {
        source: query.source,
        topic: query.topic,
        partition: query.partition,
        ..SegmentFilter::default()
    };
    let mut records = state.engine.catalog().segments(&filter).await?;
    hindsight_query::tables::retain_in_scope(&mut records, Some(&principal.scope));
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
