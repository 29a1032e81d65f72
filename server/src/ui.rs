//! The embedded UI (the fallback route) and JSON answers for unknown
//! routes and methods.

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub(crate) async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not accept this method", uri.path()),
    )
}

pub(crate) async fn static_or_not_found(uri: Uri) -> Response {
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
