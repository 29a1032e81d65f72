//! The archive as DataFusion tables.
//!
//! - [`EventsTable`] (`events_raw`; the `events` view adds `payload_text`):
//!   every committed event. A scan first asks the catalog for the segments
//!   that can hold matching rows (source, topic, partition and event time
//!   narrow the catalog query), then prunes that list again with DataFusion's
//!   [`PruningPredicate`] over each segment's catalog facts (offset range,
//!   time span, IN lists, OR, ...). Only the surviving files are handed to the
//!   Parquet reader, which then prunes row groups by statistics and bloom
//!   filters (`key`, `event_id`, `message_id`, `correlation_id`) and pages by
//!   the page index.
//! - [`SegmentsTable`] (`segments`): the catalog's committed segments.
//!
//! Every read of a segment goes through [`NamedSegmentReaderFactory`], so a
//! missing or corrupt file fails with a [`SegmentReadError`] that names it.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemTable;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::ExecutionPlan;
use futures::future::BoxFuture;
use futures::FutureExt;
use hindsight_archive::catalog::{Catalog, SegmentFilter, SegmentRecord};
use hindsight_archive::page_checksum::verify_pages_in_range;
use hindsight_archive::schema::event_schema;
use hindsight_archive::store::ArchiveStore;
use object_store::path::Path;
use object_store::ObjectMeta;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;

/// The URL under which the archive's object store is registered with DataFusion.
pub const ARCHIVE_STORE_URL: &str = "hindsight://archive/";

/// A segment that could not be read: the file (relative to the store root) and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot read segment {path}: {cause}")]
pub struct SegmentReadError {
    pub path: String,
    pub cause: String,
    /// The store failed (network, throttling), not the file: trying again may work.
    pub store_unavailable: bool,
}

/// How many segments the scans of one query considered and opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Segments the catalog returned for the scans' source, topic, partition and time filters.
    pub segments_from_catalog: usize,
    /// Segments left after pruning on the catalog's facts: the files handed to the Parquet reader.
    pub segments_scanned: usize,
    /// Bytes of those files.
    pub bytes_scanned: u64,
}

/// Shared by the tables of one session; read after planning.
pub type ScanCounter = Arc<Mutex<ScanStats>>;

/// Every committed event, read from the segments the catalog lists.
#[derive(Debug)]
pub struct EventsTable {
    store: ArchiveStore,
    catalog: Catalog,
    counter: ScanCounter,
    /// When set, only these segments (by id) are read.
    only_segments: Option<HashSet<String>>,
}

impl EventsTable {
    pub fn new(store: ArchiveStore, catalog: Catalog, counter: ScanCounter) -> Self {
        EventsTable {
            store,
            catalog,
            counter,
            only_segments: None,
        }
    }

    /// The events of the given committed segments only (fetch by id).
    pub fn for_segments(
        store: ArchiveStore,
        catalog: Catalog,
        counter: ScanCounter,
        segment_ids: HashSet<String>,
    ) -> Self {
        EventsTable {
            only_segments: Some(segment_ids),
            ..EventsTable::new(store, catalog, counter)
        }
    }

    fn partitioned_file(&self, record: &SegmentRecord) -> DfResult<PartitionedFile> {
        let relative = Path::parse(&record.segment.uri).map_err(|error| {
            DataFusionError::External(Box::new(SegmentReadError {
                path: record.segment.uri.clone(),
                cause: format!("the catalog holds an invalid object key: {error}"),
                store_unavailable: false,
            }))
        })?;
        let size = u64::try_from(record.segment.bytes).unwrap_or_default();
        let committed = record.committed_at.unwrap_or(record.created_at);
        let meta = ObjectMeta {
            location: self.store.full_path(&relative),
            last_modified: chrono::DateTime::from_timestamp_micros(committed).unwrap_or_default(),
            size,
            e_tag: None,
            version: None,
        };
        Ok(PartitionedFile::new_from_meta(meta))
    }
}

#[async_trait]
impl TableProvider for EventsTable {
    fn schema(&self) -> SchemaRef {
        event_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Inexact: the filters prune segments, row groups and pages, and
        // DataFusion still applies them to every row.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let filter = segment_filter(filters);
        let mut candidates = self.catalog.segments(&filter).await.map_err(|error| {
            DataFusionError::External(Box::new(crate::error::Error::from(error)))
        })?;
        if let Some(only) = &self.only_segments {
            candidates.retain(|record| only.contains(&record.segment.id));
        }
        // The bus of a segment is its source's, which the catalog records.
        let buses = if filters.iter().any(|filter| mentions_column(filter, "bus")) {
            let sources = self.catalog.sources().await.map_err(|error| {
                DataFusionError::External(Box::new(crate::error::Error::from(error)))
            })?;
            let by_name: std::collections::HashMap<String, String> = sources
                .into_iter()
                .map(|source| (source.name, source.bus.to_string()))
                .collect();
            Some(
                candidates
                    .iter()
                    .map(|record| by_name.get(&record.segment.source).cloned())
                    .collect(),
            )
        } else {
            None
        };
        let keep = prune_segments(state, &schema, filters, &candidates, buses);
        let selected: Vec<&SegmentRecord> = candidates
            .iter()
            .zip(keep)
            .filter_map(|(record, keep)| keep.then_some(record))
            .collect();
        {
            let mut stats = self
                .counter
                .lock()
                .map_err(|_| DataFusionError::Internal("scan counter is poisoned".to_owned()))?;
            stats.segments_from_catalog += candidates.len();
            stats.segments_scanned += selected.len();
            stats.bytes_scanned += selected
                .iter()
                .map(|record| u64::try_from(record.segment.bytes).unwrap_or_default())
                .sum::<u64>();
        }
        tracing::debug!(
            catalog = candidates.len(),
            scanned = selected.len(),
            "events scan planned"
        );
        if selected.is_empty() {
            let projected = match projection {
                Some(indices) => Arc::new(schema.project(indices)?),
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }

        let groups_wanted = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); groups_wanted];
        for (index, record) in selected.iter().enumerate() {
            groups[index % groups_wanted].push(self.partitioned_file(record)?);
        }
        let file_groups: Vec<FileGroup> = groups
            .into_iter()
            .filter(|group| !group.is_empty())
            .map(FileGroup::new)
            .collect();

        let parquet_options = state.table_options().parquet.clone();
        let store = state
            .runtime_env()
            .object_store(ObjectStoreUrl::parse(ARCHIVE_STORE_URL)?)?;
        let metadata_cache = state.runtime_env().cache_manager.get_file_metadata_cache();
        let reader_factory = NamedSegmentReaderFactory {
            inner: CachedParquetFileReaderFactory::new(store, metadata_cache),
            prefix_parts: self.store.full_path(&Path::default()).parts().count(),
        };
        let mut source = ParquetSource::new(Arc::clone(&schema))
            .with_table_parquet_options(parquet_options.clone())
            .with_parquet_file_reader_factory(Arc::new(reader_factory));
        if let Some(hint) = parquet_options.global.metadata_size_hint {
            source = source.with_metadata_size_hint(hint);
        }
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::parse(ARCHIVE_STORE_URL)?, Arc::new(source))
                .with_file_groups(file_groups)
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// The column a filter side names, looking through casts.
fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(column) => Some(column.name.as_str()),
        Expr::Cast(cast) => column_name(&cast.expr),
        Expr::TryCast(cast) => column_name(&cast.expr),
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        _ => None,
    }
}

fn timestamp_micros(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampMicrosecond(Some(micros), _) => Some(*micros),
        ScalarValue::TimestampMillisecond(Some(millis), _) => millis.checked_mul(1000),
        ScalarValue::TimestampSecond(Some(seconds), _) => seconds.checked_mul(1_000_000),
        _ => None,
    }
}

/// The catalog narrowing that the conjuncts of `filters` allow: equality on
/// source, topic and partition, and bounds on event_time.
pub fn segment_filter(filters: &[Expr]) -> SegmentFilter {
    let mut filter = SegmentFilter::default();
    let conjuncts = filters.iter().flat_map(|expr| split_conjunction(expr));
    for conjunct in conjuncts {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = conjunct else {
            continue;
        };
        // Normalise to `column op literal`.
        let (name, op, value) = match (column_name(left), literal(right)) {
            (Some(name), Some(value)) => (name, *op, value),
            _ => match (literal(left), column_name(right), op.swap()) {
                (Some(value), Some(name), Some(swapped)) => (name, swapped, value),
                _ => continue,
            },
        };
        match (name, op) {
            ("source", Operator::Eq) => {
                if let ScalarValue::Utf8(Some(text)) | ScalarValue::Utf8View(Some(text)) = value {
                    filter.source = Some(text.clone());
                }
            }
            ("topic", Operator::Eq) => {
                if let ScalarValue::Utf8(Some(text)) | ScalarValue::Utf8View(Some(text)) = value {
                    filter.topic = Some(text.clone());
                }
            }
            ("partition", Operator::Eq) => {
                let number = match value {
                    ScalarValue::Int32(Some(number)) => Some(*number),
                    ScalarValue::Int64(Some(number)) => i32::try_from(*number).ok(),
                    _ => None,
                };
                if number.is_some() {
                    filter.partition = number;
                }
            }
            ("event_time", _) => {
                let Some(micros) = timestamp_micros(value) else {
                    continue;
                };
                // time_from: segments whose newest event is at or after it;
                // time_to: segments whose oldest event is before it.
                let (from, to) = match op {
                    Operator::GtEq => (Some(micros), None),
                    Operator::Gt => (micros.checked_add(1), None),
                    Operator::Lt => (None, Some(micros)),
                    Operator::LtEq => (None, micros.checked_add(1)),
                    Operator::Eq => (Some(micros), micros.checked_add(1)),
                    _ => (None, None),
                };
                if let Some(from) = from {
                    filter.time_from = Some(filter.time_from.map_or(from, |old| old.max(from)));
                }
                if let Some(to) = to {
                    filter.time_to = Some(filter.time_to.map_or(to, |old| old.min(to)));
                }
            }
            _ => {}
        }
    }
    filter
}

/// Which of `segments` can hold rows matching `filters`, judged from the
/// catalog's facts alone. Anything that cannot be judged is kept.
fn prune_segments(
    state: &dyn Session,
    schema: &SchemaRef,
    filters: &[Expr],
    segments: &[SegmentRecord],
    buses: Option<Vec<Option<String>>>,
) -> Vec<bool> {
    let keep_all = vec![true; segments.len()];
    let Some(predicate) = conjunction(filters.iter().cloned()) else {
        return keep_all;
    };
    let pruned = DFSchema::try_from(Arc::clone(schema))
        .and_then(|df_schema| state.create_physical_expr(predicate, &df_schema))
        .and_then(|physical| {
            PruningPredicateBuilder::new()
                .with_file_schema(Arc::clone(schema))
                .try_build(physical)
        })
        .and_then(|pruning| pruning.prune(&SegmentStatistics { segments, buses }));
    match pruned {
        Ok(keep) if keep.len() == segments.len() => keep,
        Ok(_) => keep_all,
        Err(error) => {
            tracing::debug!(%error, "cannot prune segments on catalog facts; scanning all candidates");
            keep_all
        }
    }
}

/// Segment facts from the catalog, as DataFusion pruning statistics: one
/// container per segment. Minimums and maximums cover the non-null values of
/// a column; null counts are unknown.
struct SegmentStatistics<'a> {
    segments: &'a [SegmentRecord],
    /// Each segment's bus (from its source), when a filter needs it.
    buses: Option<Vec<Option<String>>>,
}

/// Whether `expr` reads the column `name`.
fn mentions_column(expr: &Expr, name: &str) -> bool {
    expr.column_refs().iter().any(|column| column.name == name)
}

impl SegmentStatistics<'_> {
    fn bound(&self, column: &Column, low: bool) -> Option<ArrayRef> {
        let segments = self.segments.iter().map(|record| &record.segment);
        let array: ArrayRef = match column.name.as_str() {
            "source" => Arc::new(StringArray::from_iter_values(
                segments.map(|s| s.source.as_str()),
            )),
            "topic" => Arc::new(StringArray::from_iter_values(
                segments.map(|s| s.topic.as_str()),
            )),
            "bus" => Arc::new(StringArray::from(self.buses.clone()?)),
            "partition" => Arc::new(Int32Array::from_iter_values(segments.map(|s| s.partition))),
            "offset" => Arc::new(Int64Array::from_iter_values(segments.map(|s| {
                if low {
                    s.first_offset
                } else {
                    s.last_offset
                }
            }))),
            "event_time" => Arc::new(
                TimestampMicrosecondArray::from_iter_values(segments.map(|s| {
                    if low {
                        s.min_event_time
                    } else {
                        s.max_event_time
                    }
                }))
                .with_timezone("UTC"),
            ),
            _ => return None,
        };
        Some(array)
    }
}

impl PruningStatistics for SegmentStatistics<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, true)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, false)
    }

    fn num_containers(&self) -> usize {
        self.segments.len()
    }

    fn null_counts(&self, _column: &Column) -> Option<ArrayRef> {
        None
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        None
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// DataFusion's cached Parquet reader, with every error naming its segment.
#[derive(Debug)]
struct NamedSegmentReaderFactory {
    inner: CachedParquetFileReaderFactory,
    /// Leading path parts of the store prefix (S3), stripped from names in errors.
    prefix_parts: usize,
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

/// The catalog's committed segments, one row each.
#[derive(Debug)]
pub struct SegmentsTable {
    catalog: Catalog,
}

impl SegmentsTable {
    pub fn new(catalog: Catalog) -> Self {
        SegmentsTable { catalog }
    }

    pub fn table_schema() -> SchemaRef {
        let timestamp = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        Arc::new(Schema::new(vec![
            Field::new("segment_id", DataType::Utf8, false),
            Field::new("uri", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("topic", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("first_offset", DataType::Int64, false),
            Field::new("last_offset", DataType::Int64, false),
            Field::new("min_event_time", timestamp.clone(), false),
            Field::new("max_event_time", timestamp.clone(), false),
            Field::new("rows", DataType::Int64, false),
            Field::new("bytes", DataType::Int64, false),
            Field::new("created_at", timestamp.clone(), false),
            Field::new("committed_at", timestamp, true),
        ]))
    }

    fn batch(records: &[SegmentRecord]) -> DfResult<RecordBatch> {
        let segments = || records.iter().map(|record| &record.segment);
        let times = |values: Vec<Option<i64>>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(segments().map(|s| &s.id))),
            Arc::new(StringArray::from_iter_values(segments().map(|s| &s.uri))),
            Arc::new(StringArray::from_iter_values(segments().map(|s| &s.source))),
            Arc::new(StringArray::from_iter_values(segments().map(|s| &s.topic))),
            Arc::new(Int32Array::from_iter_values(
                segments().map(|s| s.partition),
            )),
            Arc::new(Int64Array::from_iter_values(
                segments().map(|s| s.first_offset),
            )),
            Arc::new(Int64Array::from_iter_values(
                segments().map(|s| s.last_offset),
            )),
            times(segments().map(|s| Some(s.min_event_time)).collect()),
            times(segments().map(|s| Some(s.max_event_time)).collect()),
            Arc::new(Int64Array::from_iter_values(segments().map(|s| s.rows))),
            Arc::new(Int64Array::from_iter_values(segments().map(|s| s.bytes))),
            times(records.iter().map(|r| Some(r.created_at)).collect()),
            times(records.iter().map(|r| r.committed_at).collect()),
        ];
        Ok(RecordBatch::try_new(Self::table_schema(), columns)?)
    }
}

#[async_trait]
impl TableProvider for SegmentsTable {
    fn schema(&self) -> SchemaRef {
        Self::table_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let records = self
            .catalog
            .segments(&segment_filter(filters))
            .await
            .map_err(|error| {
                DataFusionError::External(Box::new(crate::error::Error::from(error)))
            })?;
        let table = MemTable::try_new(self.schema(), vec![vec![Self::batch(&records)?]])?;
        table.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // The catalog narrows by the filters DataFusion then re-applies.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

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

    #[test]
    fn segment_filters_come_from_simple_conjuncts() {
        let micros = 1_700_000_000_000_000i64;
        let time = |value: i64| {
            lit(ScalarValue::TimestampMicrosecond(
                Some(value),
                Some("UTC".into()),
            ))
        };
        let filters = vec![
            col("source")
                .eq(lit("demo"))
                .and(lit("orders").eq(col("topic"))),
            col("partition").eq(lit(2i32)),
            col("event_time").gt_eq(time(micros)),
            col("event_time").lt(time(micros + 3_600_000_000)),
            col("offset").gt(lit(5i64)),
        ];
        let filter = segment_filter(&filters);
        assert_eq!(filter.source.as_deref(), Some("demo"));
        assert_eq!(filter.topic.as_deref(), Some("orders"));
        assert_eq!(filter.partition, Some(2));
        assert_eq!(filter.time_from, Some(micros));
        assert_eq!(filter.time_to, Some(micros + 3_600_000_000));

        // OR is not a conjunct: it narrows nothing here (pruning handles it).
        let filter = segment_filter(&[col("topic").eq(lit("a")).or(col("topic").eq(lit("b")))]);
        assert_eq!(filter, SegmentFilter::default());
        // `event_time <= t` keeps segments starting at t.
        let filter = segment_filter(&[time(micros).gt_eq(col("event_time"))]);
        assert_eq!(filter.time_to, Some(micros + 1));
    }
}
