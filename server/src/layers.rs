//! Layers every request passes: the `Host` and cross-site checks, JSON
//! errors for axum's own rejections, and request counters.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::AppState;

/// The `Host` check and the cross-site check (module docs).
pub(crate) async fn refuse_foreign_requests(
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
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    (!essence.is_empty()).then(|| essence.to_ascii_lowercase())
}

/// Rewrites error responses that are not JSON (the plain-text rejections of
/// axum's extractors: a query string, path or body that does not parse) as
/// the JSON `{"error", "message"}` of every other error.
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
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

pub(crate) async fn count_requests(request: Request, next: Next) -> Response {
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
