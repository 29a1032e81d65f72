//! The one error type of the archive crate.
//!
//! Every error carries an [`ErrorKind`] that drives behaviour: callers retry
//! [`ErrorKind::Retryable`], report [`ErrorKind::InvalidInput`] to the user,
//! and so on. The HTTP layer maps kinds to status codes in one place.

use std::fmt;

/// What a caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A dependency (object store, catalog) is unavailable; trying again may work.
    Retryable,
    /// The input (configuration, name, request, file contents) is wrong.
    InvalidInput,
    /// The thing asked for does not exist.
    NotFound,
    /// A compare-and-set lost: someone else moved the state first.
    Conflict,
    /// A bug or an unexpected state.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Retryable => "retryable",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type BoxedSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An archive error: a kind, a lowercase message naming what failed, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<BoxedSource>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<BoxedSource>,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(source.into()),
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

    /// The message followed by every cause, `a: b: c`, for logs and API answers.
    pub fn full_message(&self) -> String {
        let mut text = self.message.clone();
        let mut cause = std::error::Error::source(self);
        while let Some(inner) = cause {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            cause = inner.source();
        }
        text
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        let kind = match &error {
            sqlx::Error::RowNotFound => ErrorKind::NotFound,
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => ErrorKind::Retryable,
            sqlx::Error::Database(db) if db.is_unique_violation() => ErrorKind::Conflict,
            // SQLite's "database is locked" is a busy writer: retry.
            sqlx::Error::Database(db) if db.message().contains("locked") => ErrorKind::Retryable,
            _ => ErrorKind::Internal,
        };
        Error::with_source(kind, "catalog operation failed", error)
    }
}

impl From<object_store::Error> for Error {
    fn from(error: object_store::Error) -> Self {
        let kind = match &error {
            object_store::Error::NotFound { .. } => ErrorKind::NotFound,
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => ErrorKind::Conflict,
            object_store::Error::InvalidPath { .. } => ErrorKind::InvalidInput,
            _ => ErrorKind::Retryable,
        };
        Error::with_source(kind, "object store operation failed", error)
    }
}

impl From<parquet::errors::ParquetError> for Error {
    fn from(error: parquet::errors::ParquetError) -> Self {
        Error::with_source(
            ErrorKind::InvalidInput,
            "parquet encoding or decoding failed",
            error,
        )
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(error: arrow::error::ArrowError) -> Self {
        Error::with_source(ErrorKind::Internal, "arrow operation failed", error)
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        let kind = match error.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Retryable,
        };
        Error::with_source(kind, "filesystem operation failed", error)
    }
}
