//! Every read of a segment by DataFusion: errors name the segment by its
//! object key (never a filesystem path), and every fetched byte range has
//! its page checksums checked before the decoder sees it.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::error::Result as DfResult;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::future::BoxFuture;
use futures::FutureExt;
use hindsight_archive::page_checksum::verify_pages_in_range;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;

/// A segment that could not be read: the file (relative to the store root) and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot read segment {path}: {cause}")]
pub struct SegmentReadError {
    pub path: String,
    pub cause: String,
    /// The store failed (network, throttling), not the file: trying again may work.
    pub store_unavailable: bool,
}

/// DataFusion's cached Parquet reader, with every error naming its segment.
#[derive(Debug)]
pub(crate) struct NamedSegmentReaderFactory {
    pub(crate) inner: CachedParquetFileReaderFactory,
    /// Leading path parts of the store prefix (S3), stripped from names in errors.
    pub(crate) prefix_parts: usize,
}

impl ParquetFileReaderFactory for NamedSegmentReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> DfResult<Box<dyn AsyncFileReader + Send>> {
        let path: Path = partitioned_file
            .object_meta
            .location
            .parts()
            .skip(self.prefix_parts)
            .collect();
        let inner = self.inner.create_reader(
            partition_index,
            partitioned_file,
            metadata_size_hint,
            metrics,
        )?;
        Ok(Box::new(NamedSegmentReader {
            inner,
            path: path.to_string(),
            metadata: None,
        }))
    }
}

/// Names every error after its segment's object key, and checks the page
/// checksums of every fetched byte range before the decoder sees it.
struct NamedSegmentReader {
    inner: Box<dyn AsyncFileReader + Send>,
    /// The object key, relative to the store root: never a filesystem path.
    path: String,
    /// The footer, once read: it locates the pages in fetched ranges.
    metadata: Option<Arc<ParquetMetaData>>,
}

impl fmt::Debug for NamedSegmentReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedSegmentReader")
            .field("path", &self.path)
            .finish()
    }
}

impl NamedSegmentReader {
    fn name_error(path: &str, error: ParquetError) -> ParquetError {
        tracing::warn!(segment = path, error = %error, "cannot read segment");
        ParquetError::External(Box::new(SegmentReadError {
            path: path.to_owned(),
            cause: cause_without_paths(&error),
            store_unavailable: store_unavailable(&error),
        }))
    }

    /// Reads the footer when this reader has not seen it yet. DataFusion
    /// may hand the scan a footer from its metadata cache without asking
    /// this reader, and the page checksums can only be checked with it.
    ///
    /// When the footer cannot be read, the fetch itself goes ahead and fails
    /// (or, for a damaged footer, the decoder does) with the store's own
    /// error, which `name_error` turns into words without server paths; the
    /// footer error arrives already flattened to text that may hold one.
    async fn load_metadata(&mut self) {
        if self.metadata.is_none() {
            match self.inner.get_metadata(None).await {
                Ok(metadata) => self.metadata = Some(metadata),
                Err(error) => {
                    tracing::debug!(segment = self.path, error = %error, "cannot read the footer to check page checksums");
                }
            }
        }
    }

    fn verify(
        path: &str,
        metadata: Option<&ParquetMetaData>,
        range_start: u64,
        bytes: &Bytes,
    ) -> parquet::errors::Result<()> {
        let Some(metadata) = metadata else {
            return Ok(());
        };
        verify_pages_in_range(metadata, range_start, bytes).map_err(|error| {
            tracing::warn!(segment = path, error = %error.full_message(), "damaged segment");
            ParquetError::External(Box::new(SegmentReadError {
                path: path.to_owned(),
                cause: error.to_string(),
                store_unavailable: false,
            }))
        })
    }
}

/// Why a read failed, in words fit for a client: the store's own messages
/// hold the server's filesystem path (local stores), so they are replaced.
fn cause_without_paths(error: &ParquetError) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(store_error) = current.downcast_ref::<object_store::Error>() {
            return match store_error {
                object_store::Error::NotFound { .. } => {
                    "the object is missing from the store".to_owned()
                }
                _ => "the store failed to read the object (see the server log)".to_owned(),
            };
        }
        cause = current.source();
    }
    // Some readers (the cached footer reader) flatten the store's error into
    // text, server path included, before it gets here.
    let text = error.to_string();
    if text.contains("Object Store error") {
        if text.contains("not found") {
            return "the object is missing from the store".to_owned();
        }
        return "the store failed to read the object (see the server log)".to_owned();
    }
    text
}

/// Whether a read failed because the store did (anything but a missing
/// object or bad bytes).
fn store_unavailable(error: &ParquetError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(store_error) = current.downcast_ref::<object_store::Error>() {
            return !matches!(
                store_error,
                object_store::Error::NotFound { .. } | object_store::Error::InvalidPath { .. }
            );
        }
        cause = current.source();
    }
    false
}

impl AsyncFileReader for NamedSegmentReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.load_metadata().await;
            let start = range.start;
            let bytes = self
                .inner
                .get_bytes(range)
                .await
                .map_err(|error| Self::name_error(&self.path, error))?;
            Self::verify(&self.path, self.metadata.as_deref(), start, &bytes)?;
            Ok(bytes)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.load_metadata().await;
            let starts: Vec<u64> = ranges.iter().map(|range| range.start).collect();
            let fetched = self
                .inner
                .get_byte_ranges(ranges)
                .await
                .map_err(|error| Self::name_error(&self.path, error))?;
            for (start, bytes) in starts.iter().zip(&fetched) {
                Self::verify(&self.path, self.metadata.as_deref(), *start, bytes)?;
            }
            Ok(fetched)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let path = self.path.as_str();
        let slot = &mut self.metadata;
        self.inner
            .get_metadata(options)
            .map(move |result| {
                let metadata = result.map_err(|error| Self::name_error(path, error))?;
                *slot = Some(Arc::clone(&metadata));
                Ok(metadata)
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_are_told_from_missing_or_corrupt_files() {
        let failed = ParquetError::External(Box::new(object_store::Error::Generic {
            store: "S3",
            source: "connection reset".into(),
        }));
        assert!(store_unavailable(&failed));
        let missing = ParquetError::External(Box::new(object_store::Error::NotFound {
            path: "source=s/x.parquet".to_owned(),
            source: "404".into(),
        }));
        assert!(!store_unavailable(&missing));
        assert!(!store_unavailable(&ParquetError::EOF(
            "file is too short".to_owned()
        )));
    }
}
