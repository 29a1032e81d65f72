//! The HTTP API and the embedded UI.
//!
//! Routes ([`ROUTES`], described by [`crate::openapi::document`]):
//! `/healthz`, `/readyz`, `/metrics`, `/api/v1/openapi.json`,
//! `/api/v1/topics`, `/api/v1/sources`, `/api/v1/segments`, `POST /api/v1/sql`,
//! `/api/v1/events`, `/api/v1/events/{event_id}`, the replay routes
//! (`/api/v1/replays…`, in [`crate::replay::http`]), and the UI at `/`.
//!
//! Every error is JSON `{"error", "message"}`, including unknown routes, wrong
//! methods, oversized bodies and bad parameters (axum's own plain-text
//! rejections are rewritten by [`json_errors`]). With a bearer token
//! configured, the API routes and `/metrics` need it; the token is compared in
//! constant time (both sides hashed with blake3, then compared with `subtle`).
//!
//! One layer, [`refuse_foreign_requests`], stops other web sites from using
//! the API through a visitor's browser: a `Host` the server does not answer
//! to (DNS rebinding, see [`crate::allowed_hosts`]) is refused with 403, and
//! a state-changing request (any method but GET, HEAD and OPTIONS) needs a
//! `Content-Type` that a page on another origin cannot send without the
//! server's CORS consent, which this server never gives: `text/plain`, form
//! types and no content type at all are refused with 415.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use hindsight_archive::catalog::SegmentFilter;
use hindsight_archive::event::rfc3339;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::allowed_hosts::AllowedHosts;
use crate::error::{ApiError, Error};
use crate::events::{Cursor, EventSearch, DEFAULT_PAGE, MAX_PAGE};
use crate::format::{Encoder, OutputFormat};
use crate::sql::{QueryEngine, QueryOutput};

/// Every route the router serves, as (method, path). The OpenAPI document
/// describes exactly these.
pub const ROUTES: [(&str, &str); 16] = [
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/topics"),
    ("get", "/api/v1/sources"),
    ("get", "/api/v1/segments"),
    ("post", "/api/v1/sql"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/events/{event_id}"),
    ("post", "/api/v1/replays"),
    ("get", "/api/v1/replays"),
    ("get", "/api/v1/replays/{id}"),
    ("post", "/api/v1/replays/{id}/pause"),
    ("post", "/api/v1/replays/{id}/resume"),
    ("post", "/api/v1/replays/{id}/cancel"),
];

/// HTTP settings beyond the listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// When set, API routes and `/metrics` need `Authorization: Bearer <token>`.
    pub auth_token: Option<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Host names accepted in the `Host` header besides the listen address
    /// and, on loopback or every address, `localhost` (see
    /// [`crate::allowed_hosts`]); `"*"` accepts any.
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            auth_token: None,
            max_body_bytes: 1024 * 1024,
            allowed_hosts: Vec::new(),
        }
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub engine: QueryEngine,
    max_body_bytes: usize,
    /// blake3 of the configured token.
    token_hash: Option<Arc<[u8; 32]>>,
    allowed_hosts: Arc<AllowedHosts>,
}

impl AppState {
    /// The state of a server bound to loopback until [`serve`] learns the
    /// listen address.
    pub fn new(engine: QueryEngine, options: HttpOptions) -> Self {
        AppState {
            engine,
            max_body_bytes: options.max_body_bytes,
            allowed_hosts: Arc::new(AllowedHosts::new(&options.allowed_hosts)),
            token_hash: options
                .auth_token
                .filter(|token| !token.is_empty())
                .map(|token| Arc::new(*blake3::hash(token.as_bytes()).as_bytes())),
        }
    }
}

pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/topics", get(topics))
        .route("/api/v1/sources", get(sources))
        .route("/api/v1/segments", get(segments))
        .route("/api/v1/sql", post(sql))
        .route("/api/v1/events", get(search_events))
        .route("/api/v1/events/{event_id}", get(get_event))
        .merge(crate::replay::http::routes(state.engine.clone()))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/openapi.json", get(openapi))
        .merge(protected)
        .fallback(static_or_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_foreign_requests,
        ))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(count_requests))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

/// Serves until `cancel` fires, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let listen = listener.local_addr()?.ip();
    let state = AppState {
        allowed_hosts: Arc::new(state.allowed_hosts.as_ref().clone().listening_on(listen)),
        ..state
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.token_hash else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(presented) = presented else {
        return ApiError::unauthorized("this route needs an Authorization: Bearer <token> header")
            .into_response();
    };
    let presented_hash = blake3::hash(presented.as_bytes());
    if bool::from(presented_hash.as_bytes().ct_eq(expected.as_ref())) {
        next.run(request).await
    } else {
        ApiError::unauthorized("the bearer token is not valid").into_response()
    }
}

/// The `Host` check and the cross-site check (module docs).
async fn refuse_foreign_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let header_host = request.headers().get(header::HOST);
    let target_host = request
        .uri()
        .authority()
        .map(|authority| authority.as_str());
    if header_host.is_none() && target_host.is_none() {
        return ApiError::bad_request("the request has no Host header").into_response();
    }
    let header_host = header_host.map(|value| String::from_utf8_lossy(value.as_bytes()));
    for host in header_host.as_deref().into_iter().chain(target_host) {
        if !state.allowed_hosts.allows(host) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                format!(
                    "this server does not answer to the host {host:?}: add its name to \
                     http.allowed_hosts (requests for other names are refused against DNS rebinding)"
                ),
            )
            .into_response();
        }
    }
    let safe_method = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    let cross_site_sendable = matches!(
        media_type(request.headers()).as_deref(),
        None | Some("text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data")
    );
    if !safe_method && cross_site_sendable {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "{} {} needs Content-Type: application/json (or application/sql for SQL text): \
                 requests without one, or with text/plain or a form type, are refused because \
                 any web page can send those from a visitor's browser",
                request.method(),
                request.uri().path()
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// The media type of `Content-Type`, lowercase and without parameters;
/// `None` when there is none (or it is not text).
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    (!essence.is_empty()).then(|| essence.to_ascii_lowercase())
}

/// Rewrites error responses that are not JSON (the plain-text rejections of
/// axum's extractors: a query string, path or body that does not parse) as
/// the JSON `{"error", "message"}` of every other error.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = media_type(response.headers()).as_deref() == Some("application/json");
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_lowercase()
    } else {
        text
    };
    ApiError::from_status(status, message).into_response()
}

async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    hindsight_archive::metrics::global()
        .http_requests
        .get_or_create(&hindsight_archive::metrics::RouteLabels {
            route,
            status: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            hindsight_archive::metrics::CONTENT_TYPE,
        )],
        hindsight_archive::metrics::render(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(5), state.engine.catalog().ping()).await {
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

async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(crate::openapi::document(state.token_hash.is_some()))
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
    let stats = state.engine.catalog().topic_stats().await?;
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
    let sources = state.engine.catalog().sources().await?;
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
    let records = state.engine.catalog().segments(&filter).await?;
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

/// Query parameters as (name, value) pairs; refuses names outside `allowed`
/// and values that are not UTF-8.
fn query_pairs(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut pairs = Vec::new();
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        if name.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
            return Err(ApiError::bad_request(
                "query parameters must be percent-encoded UTF-8",
            ));
        }
        if !allowed.contains(&name.as_ref()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {name:?}: expected one of {}",
                allowed.join(", ")
            )));
        }
        pairs.push((name.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

/// The single value of `name`, refusing repeats.
fn single(pairs: &[(String, String)], name: &str) -> Result<Option<String>, ApiError> {
    let mut values = pairs.iter().filter(|(key, _)| key == name);
    let first = values.next().map(|(_, value)| value.clone());
    if values.next().is_some() {
        return Err(ApiError::bad_request(format!(
            "query parameter {name:?} is given more than once"
        )));
    }
    Ok(first)
}

fn parse_number<T: std::str::FromStr>(
    name: &str,
    value: Option<String>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|text| {
            text.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter {name:?}: {text:?} is not a valid number"
                ))
            })
        })
        .transpose()
}

fn parse_time(name: &str, value: Option<String>) -> Result<Option<i64>, ApiError> {
    value
        .map(|text| {
            chrono::DateTime::parse_from_rfc3339(&text)
                .map(|time| time.timestamp_micros())
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "query parameter {name:?}: {text:?} is not an RFC 3339 time like 2026-01-31T12:00:00Z"
                    ))
                })
        })
        .transpose()
}

fn pair_list(pairs: &[(String, String)], name: &str) -> Result<Vec<(String, String)>, ApiError> {
    pairs
        .iter()
        .filter(|(key, _)| key == name)
        .map(|(_, value)| {
            value
                .split_once('=')
                .filter(|(left, _)| !left.is_empty())
                .map(|(left, right)| (left.to_owned(), right.to_owned()))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "query parameter {name:?}: {value:?} must look like name=value"
                    ))
                })
        })
        .collect()
}

const SEARCH_PARAMETERS: [&str; 11] = [
    "source",
    "topic",
    "partition",
    "from",
    "to",
    "key",
    "header",
    "contains",
    "json",
    "limit",
    "cursor",
];

async fn search_events(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref(), &SEARCH_PARAMETERS)?;
    let limit = parse_number::<usize>("limit", single(&pairs, "limit")?)?.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "query parameter \"limit\" must be between 1 and {MAX_PAGE}"
        )));
    }
    let search = EventSearch {
        source: single(&pairs, "source")?,
        topic: single(&pairs, "topic")?,
        partition: parse_number("partition", single(&pairs, "partition")?)?,
        time_from: parse_time("from", single(&pairs, "from")?)?,
        time_to: parse_time("to", single(&pairs, "to")?)?,
        key: single(&pairs, "key")?,
        headers: pair_list(&pairs, "header")?,
        contains: single(&pairs, "contains")?,
        json_fields: pair_list(&pairs, "json")?,
        limit,
        cursor: single(&pairs, "cursor")?
            .map(|text| Cursor::decode(&text))
            .transpose()?,
    };
    let page = crate::events::search(&state.engine, &search).await?;
    Ok(Json(page).into_response())
}

async fn get_event(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(event_id) = path.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    match crate::events::fetch(&state.engine, &event_id).await? {
        Some(detail) => Ok(Json(detail).into_response()),
        None => Err(ApiError::not_found(format!(
            "no event {event_id} in the archive"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

async fn sql(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_input"
        };
        ApiError::new(status, kind, rejection.body_text())
    })?;
    let pairs = query_pairs(raw.as_deref(), &["format"])?;
    let format =
        match single(&pairs, "format")? {
            Some(name) => match name.parse::<OutputFormat>()? {
                OutputFormat::Table => return Err(ApiError::bad_request(
                    "format table is for the command line: use ndjson, json, csv, arrow or parquet",
                )),
                other => other,
            },
            None => {
                let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
                OutputFormat::from_accept(accept).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_ACCEPTABLE,
                        "not_acceptable",
                        "Accept must allow application/x-ndjson, application/json, text/csv, \
                     application/vnd.apache.arrow.stream or application/vnd.apache.parquet",
                    )
                })?
            }
        };
    // No content type and text/plain never get here: `refuse_foreign_requests`.
    let text = match media_type(&headers).as_deref() {
        Some("application/json") => {
            let request: SqlRequest = serde_json::from_slice(&body).map_err(|error| {
                ApiError::bad_request(format!("the body must be {{\"sql\": \"…\"}}: {error}"))
            })?;
            request.sql
        }
        Some("application/sql" | "text/sql") => String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::bad_request("the SQL text is not valid UTF-8"))?,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "Content-Type {} is not one /api/v1/sql takes: send the SQL as \
                     application/sql, or as application/json {{\"sql\": \"…\"}}",
                    other.unwrap_or("(none)")
                ),
            ))
        }
    };
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("the SQL statement is empty"));
    }
    let output = state.engine.sql(&text).await?;
    stream_output(output, format).await
}

/// Streams a started query. An error before the first batch is a JSON
/// error with its status; an error later cuts the body short (the client
/// sees an incomplete chunked response).
async fn stream_output(output: QueryOutput, format: OutputFormat) -> Result<Response, ApiError> {
    let QueryOutput {
        schema,
        mut stream,
        stats,
    } = output;
    let first = match stream.next().await {
        Some(Ok(batch)) => Some(batch),
        Some(Err(error)) => return Err(Error::from(error).into()),
        None => None,
    };
    let mut encoder = Encoder::new(format, &schema)?;
    let head = match &first {
        Some(batch) => encoder.batch(batch)?,
        None => Vec::new(),
    };
    let rest = futures::stream::unfold(Some((stream, encoder, schema)), |state| async move {
        let (mut stream, mut encoder, schema) = state?;
        match stream.next().await {
            Some(Ok(batch)) => {
                let bytes = encoder.batch(&batch).map_err(std::io::Error::other);
                Some((bytes.map(Bytes::from), Some((stream, encoder, schema))))
            }
            Some(Err(error)) => {
                let error = Error::from(error);
                tracing::warn!(kind = %error.kind(), error = %error, "query failed while streaming");
                Some((Err(std::io::Error::other(error)), None))
            }
            None => {
                let bytes = encoder.finish(&schema).map_err(std::io::Error::other);
                Some((bytes.map(Bytes::from), None))
            }
        }
    });
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) })
        .chain(rest)
        .filter(|chunk| futures::future::ready(!matches!(chunk, Ok(bytes) if bytes.is_empty())));
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(
        "x-hindsight-segments-scanned",
        HeaderValue::from(stats.segments_scanned),
    );
    headers.insert(
        "x-hindsight-segments-from-catalog",
        HeaderValue::from(stats.segments_from_catalog),
    );
    Ok(response)
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not accept this method", uri.path()),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_exactly_the_routes() {
        let document = crate::openapi::document(true);
        let mut documented: Vec<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(|method| (method.clone(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        documented.sort();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
    }
}
