//! The query crate's error: the shared [`ErrorKind`] of the archive crate, a
//! lowercase message that says what failed, and the cause it came from.
//! Status codes are the server's business (`hindsight_server::error`).

use datafusion::error::DataFusionError;
pub use hindsight_archive::ErrorKind;

use crate::tables::SegmentReadError;

type BoxedSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A query error: a kind, a lowercase message that says what failed, and
/// its cause.
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

    /// The message followed by every cause not already in it, `a: b: c`, for logs.
    pub fn full_message(&self) -> String {
        let mut text = self.message.clone();
        let mut cause = std::error::Error::source(self);
        while let Some(inner) = cause {
            let shown = inner.to_string();
            if !text.contains(&shown) {
                text.push_str(": ");
                text.push_str(&shown);
            }
            cause = inner.source();
        }
        text
    }
}

/// An archive error keeps its kind (a lost compare-and-set stays a
/// conflict) and its cause.
impl From<hindsight_archive::Error> for Error {
    fn from(error: hindsight_archive::Error) -> Self {
        Error {
            kind: error.kind(),
            message: error.full_message(),
            source: Some(Box::new(error)),
        }
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
        Error::with_source(kind, message, error)
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
        let error = Error::from(DataFusionError::ResourcesExhausted("pool".to_owned()));
        assert_eq!(error.kind(), ErrorKind::ResourcesExhausted);
    }
}
