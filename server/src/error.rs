//! The one place where errors become HTTP answers.
//!
//! Every error is JSON `{"error": kind, "message": …}`. [`status`] maps each
//! [`ErrorKind`] to one status code, the same on every route: an archive
//! `Conflict` (a lost compare-and-set) is 409 whether it comes from the
//! catalog, a query or a replay. An internal error's message and causes go
//! to the log, with an id; the client gets the id and no internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hindsight_archive::ErrorKind;

/// The status code of an error kind, on every route.
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput | ErrorKind::ReadOnly => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::ResourcesExhausted => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Busy => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Timeout | ErrorKind::Retryable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::SegmentUnreadable | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error on its way to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    /// The answer for an error of `kind`: internal details are logged under
    /// an id and replaced by it.
    pub fn of_kind(kind: ErrorKind, message: String) -> Self {
        let status = status(kind);
        if kind == ErrorKind::Internal {
            let id = uuid::Uuid::new_v4().simple().to_string();
            tracing::error!(error_id = %id, error = %message, "request failed with an internal error");
            return ApiError::new(
                status,
                kind.as_str(),
                format!("internal error {id}: the server log has the details under this id"),
            );
        }
        if status.is_server_error() {
            tracing::warn!(kind = %kind, error = %message, "request failed");
        }
        ApiError::new(status, kind.as_str(), message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// An internal failure: logged under an id, which is all the client sees.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::of_kind(ErrorKind::Internal, message.into())
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// An error known only by its status, such as a rejection of axum's
    /// extractors (a query string, path or body that does not parse).
    pub fn from_status(status: StatusCode, message: impl Into<String>) -> Self {
        let kind = match status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "invalid_input",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::NOT_ACCEPTABLE => "not_acceptable",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::TOO_MANY_REQUESTS => "busy",
            StatusCode::SERVICE_UNAVAILABLE => "retryable",
            status if status.is_server_error() => "internal",
            _ => "invalid_input",
        };
        ApiError::new(status, kind, message)
    }
}

impl From<hindsight_archive::Error> for ApiError {
    fn from(error: hindsight_archive::Error) -> Self {
        ApiError::of_kind(error.kind(), error.full_message())
    }
}

impl From<hindsight_query::Error> for ApiError {
    fn from(error: hindsight_query::Error) -> Self {
        let message = if error.kind() == ErrorKind::Internal {
            error.full_message()
        } else {
            error.message().to_owned()
        };
        ApiError::of_kind(error.kind(), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.kind, "message": self.message });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_is_409_from_the_archive_and_from_a_query() {
        let archive = ApiError::from(hindsight_archive::Error::new(
            ErrorKind::Conflict,
            "checkpoint moved",
        ));
        let query = ApiError::from(hindsight_query::Error::from(hindsight_archive::Error::new(
            ErrorKind::Conflict,
            "checkpoint moved",
        )));
        assert_eq!(archive.status, StatusCode::CONFLICT);
        assert_eq!(query.status, StatusCode::CONFLICT);
        assert_eq!((archive.kind, query.kind), ("conflict", "conflict"));
    }

    #[test]
    fn internal_details_stay_in_the_log() {
        let error = ApiError::from(hindsight_archive::Error::new(
            ErrorKind::Internal,
            "sqlite at /var/lib/hindsight/catalog.db: disk I/O error",
        ));
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!error.message.contains("/var/lib"), "{}", error.message);
        assert!(
            error.message.starts_with("internal error "),
            "{}",
            error.message
        );
    }

    #[test]
    fn every_kind_has_one_status() {
        for (kind, expected) in [
            (ErrorKind::InvalidInput, 400),
            (ErrorKind::ReadOnly, 400),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Conflict, 409),
            (ErrorKind::ResourcesExhausted, 422),
            (ErrorKind::Busy, 429),
            (ErrorKind::Retryable, 503),
            (ErrorKind::Timeout, 503),
            (ErrorKind::SegmentUnreadable, 500),
            (ErrorKind::Internal, 500),
        ] {
            assert_eq!(status(kind).as_u16(), expected, "{kind}");
        }
    }
}
