//! The query crate's one error type, and the one place where errors become
//! HTTP answers: every error is JSON `{"error": kind, "message": …}` with a
//! status code that fits its kind.

use std::fmt;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use datafusion::error::DataFusionError;
use hindsight_archive::ErrorKind as ArchiveErrorKind;

use crate::tables::SegmentReadError;

/// What went wrong with a query, which decides the status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The SQL or the parameters are wrong: a syntax or planning error, an
    /// unknown table or column, a failed cast.
    InvalidInput,
    /// The statement would change something (DDL, DML, COPY, SET) or read
    /// outside the archive (URL tables): only read-only queries run.
    ReadOnly,
    /// The thing asked for does not exist.
    NotFound,
    /// The query needed more memory than its cap.
    ResourcesExhausted,
    /// The query ran longer than its timeout.
    Timeout,
    /// Too many queries are running; try again later.
    Busy,
    /// A segment object is missing or corrupt.
    SegmentUnreadable,
    /// The catalog or the store is unavailable; trying again may work.
    Retryable,
    /// A bug or an unexpected state.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::ReadOnly => "read_only",
            ErrorKind::NotFound => "not_found",
            ErrorKind::ResourcesExhausted => "resources_exhausted",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Busy => "busy",
            ErrorKind::SegmentUnreadable => "segment_unreadable",
            ErrorKind::Retryable => "retryable",
            ErrorKind::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidInput | ErrorKind::ReadOnly => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::ResourcesExhausted => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Busy => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Timeout | ErrorKind::Retryable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::SegmentUnreadable | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A query error: a kind and a lowercase message that says what failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<hindsight_archive::Error> for Error {
    fn from(error: hindsight_archive::Error) -> Self {
        let kind = match error.kind() {
            ArchiveErrorKind::InvalidInput => ErrorKind::InvalidInput,
            ArchiveErrorKind::NotFound => ErrorKind::NotFound,
            ArchiveErrorKind::Retryable => ErrorKind::Retryable,
            ArchiveErrorKind::Conflict | ArchiveErrorKind::Internal => ErrorKind::Internal,
        };
        Error::new(kind, error.full_message())
    }
}

impl From<DataFusionError> for Error {
    fn from(error: DataFusionError) -> Self {
        if let Some(segment) = find_segment_error(&error) {
            if segment.store_unavailable {
                return Error::new(
                    ErrorKind::Retryable,
                    format!(
                        "cannot read segment {} because the store failed ({}): try again",
                        segment.path, segment.cause
                    ),
                );
            }
            return Error::new(
                ErrorKind::SegmentUnreadable,
                format!(
                    "segment {} is unreadable ({}): queries that do not touch it still work; \
                     restore the file from a backup or remove it from the catalog",
                    segment.path, segment.cause
                ),
            );
        }
        let kind = match error.find_root() {
            DataFusionError::ResourcesExhausted(_) => ErrorKind::ResourcesExhausted,
            DataFusionError::Internal(_) => ErrorKind::Internal,
            DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => ErrorKind::Retryable,
            DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
                Some(ours) => ours.kind,
                None => ErrorKind::InvalidInput,
            },
            // SQL, plan, schema, "not implemented", arrow (casts, division by
            // zero) and execution errors come from the query text.
            _ => ErrorKind::InvalidInput,
        };
        let message = match error.find_root() {
            DataFusionError::External(inner) if inner.downcast_ref::<Error>().is_some() => {
                inner.to_string()
            }
            _ => error.strip_backtrace(),
        };
        let message = if kind == ErrorKind::ResourcesExhausted {
            format!(
                "{message}: the query needs more memory than query.max_memory_bytes allows; \
                 narrow it (time range, topic, LIMIT) or raise the limit"
            )
        } else {
            message
        };
        if kind == ErrorKind::Internal {
            tracing::error!(error = %message, "query failed with an internal error");
        }
        Error::new(kind, message)
    }
}

impl From<Error> for DataFusionError {
    fn from(error: Error) -> Self {
        DataFusionError::External(Box::new(error))
    }
}

/// The segment read error somewhere in `error`'s chain, if a segment failed.
fn find_segment_error(error: &DataFusionError) -> Option<&SegmentReadError> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(segment) = current.downcast_ref::<SegmentReadError>() {
            return Some(segment);
        }
        cause = current.source();
    }
    None
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

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
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
        let status = match error.kind() {
            ArchiveErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ArchiveErrorKind::NotFound => StatusCode::NOT_FOUND,
            ArchiveErrorKind::Conflict => StatusCode::CONFLICT,
            ArchiveErrorKind::Retryable => StatusCode::SERVICE_UNAVAILABLE,
            ArchiveErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %error.full_message(), "request failed");
        }
        ApiError::new(status, error.kind().as_str(), error.full_message())
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status = error.kind.status();
        if status.is_server_error() {
            tracing::warn!(kind = %error.kind, error = %error.message, "query failed");
        }
        ApiError::new(status, error.kind.as_str(), error.message)
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
    fn segment_errors_are_found_through_wrappers() {
        let segment = SegmentReadError {
            path: "source=s/topic=t/x.parquet".to_owned(),
            cause: "file is too short".to_owned(),
            store_unavailable: false,
        };
        let parquet = parquet::errors::ParquetError::External(Box::new(segment));
        let wrapped = DataFusionError::Shared(std::sync::Arc::new(DataFusionError::Context(
            "reading".to_owned(),
            Box::new(DataFusionError::ParquetError(Box::new(parquet))),
        )));
        let error = Error::from(wrapped);
        assert_eq!(error.kind(), ErrorKind::SegmentUnreadable);
        assert!(
            error.message().contains("source=s/topic=t/x.parquet"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn sql_errors_are_invalid_input_and_keep_datafusion_messages() {
        let error = Error::from(DataFusionError::Plan("table 'nope' not found".to_owned()));
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert!(error.message().contains("table 'nope' not found"));
        assert_eq!(error.kind().status(), StatusCode::BAD_REQUEST);
        let error = Error::from(DataFusionError::ResourcesExhausted("pool".to_owned()));
        assert_eq!(error.kind().status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
