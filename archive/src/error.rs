//! The one error type of the archive crate.
//!
//! Every error carries an [`ErrorKind`] that drives behaviour: callers retry
//! [`ErrorKind::Retryable`], report [`ErrorKind::InvalidInput`] to the user,
//! and so on. [`ErrorKind`] is the one error kind of every crate: the query,
//! replay and ingest crates use it too, and the HTTP server maps kinds to
//! status codes in one place (`hindsight_server::error`).

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
    /// A bug or an unexpected state. Its details go to the log, never to a
    /// client.
    Internal,
    /// The request would change something where only reading is allowed
    /// (SQL DDL, DML, COPY, SET, URL tables).
    ReadOnly,
    /// The work needed more memory than its cap.
    ResourcesExhausted,
    /// The work ran longer than its deadline.
    Timeout,
    /// Too much is running; try again later.
    Busy,
    /// A segment object is missing or corrupt.
    SegmentUnreadable,
}

/// `error` and its causes on one line, `: `-separated, each said once
/// (libraries often repeat their source in their own message).
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Retryable => "retryable",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Internal => "internal",
            ErrorKind::ReadOnly => "read_only",
            ErrorKind::ResourcesExhausted => "resources_exhausted",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Busy => "busy",
            ErrorKind::SegmentUnreadable => "segment_unreadable",
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

    pub fn conflict(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Conflict, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when the cause is a full disk or an exhausted quota (ENOSPC,
    /// EDQUOT, SQLite's `SQLITE_FULL`, PostgreSQL's `disk_full`): such an
    /// error is [`ErrorKind::Retryable`], and it clears when space returns.
    pub fn is_storage_full(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(inner) = cause {
            if let Some(io) = inner.downcast_ref::<std::io::Error>() {
                if io_error_is_storage_full(io) {
                    return true;
                }
            }
            if let Some(sqlx::Error::Database(database)) = inner.downcast_ref::<sqlx::Error>() {
                if database_error_is_storage_full(database.as_ref()) {
                    return true;
                }
            }
            cause = inner.source();
        }
        false
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
            // A full disk (SQLite `SQLITE_FULL`, PostgreSQL `disk_full`) or
            // an I/O error (SQLite `SQLITE_IOERR`, e.g. an fsync on a full
            // disk): the write did not happen, and may once space returns.
            sqlx::Error::Database(db)
                if database_error_is_storage_full(db.as_ref())
                    || sqlite_primary_code(db.as_ref()) == Some(SQLITE_IOERR) =>
            {
                ErrorKind::Retryable
            }
            // SQLite's "database is locked" is a busy writer: retry.
            sqlx::Error::Database(db) if db.message().contains("locked") => ErrorKind::Retryable,
            _ => ErrorKind::Internal,
        };
        Error::with_source(kind, "catalog operation failed", error)
    }
}

/// SQLite's primary result codes (the low byte of an extended code).
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;
/// PostgreSQL's SQLSTATE for a full disk.
const POSTGRES_DISK_FULL: &str = "53100";

fn sqlite_primary_code(error: &dyn sqlx::error::DatabaseError) -> Option<i64> {
    error.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    let code: i64 = error.code()?.parse().ok()?;
    Some(code & 0xff)
}

fn database_error_is_storage_full(error: &dyn sqlx::error::DatabaseError) -> bool {
    sqlite_primary_code(error) == Some(SQLITE_FULL)
        || error.code().as_deref() == Some(POSTGRES_DISK_FULL)
}

fn io_error_is_storage_full(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
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

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::with_source(ErrorKind::Internal, "cannot encode or decode JSON", error)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_space_and_exhausted_quota_are_retryable_and_storage_full() {
        for code in [28, 122] {
            // ENOSPC, EDQUOT
            let error = Error::from(std::io::Error::from_raw_os_error(code));
            assert_eq!(error.kind(), ErrorKind::Retryable, "errno {code}");
            assert!(error.is_storage_full(), "errno {code}");
        }
        let denied = Error::from(std::io::Error::from_raw_os_error(13)); // EACCES
        assert!(!denied.is_storage_full());
    }

    #[tokio::test]
    async fn a_full_sqlite_database_is_retryable_and_storage_full() {
        use sqlx::Connection;
        let mut connection = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::raw_sql("CREATE TABLE filler (bytes BLOB); PRAGMA max_page_count = 4")
            .execute(&mut connection)
            .await
            .unwrap();
        let full = sqlx::query("INSERT INTO filler VALUES (zeroblob(1000000))")
            .execute(&mut connection)
            .await
            .unwrap_err();
        assert!(full.to_string().contains("full"), "{full}");
        let error = Error::from(full);
        assert_eq!(error.kind(), ErrorKind::Retryable);
        assert!(error.is_storage_full());

        let syntax = sqlx::query("SELEKT 1")
            .execute(&mut connection)
            .await
            .unwrap_err();
        let error = Error::from(syntax);
        assert_eq!(error.kind(), ErrorKind::Internal);
        assert!(!error.is_storage_full());
    }
}
