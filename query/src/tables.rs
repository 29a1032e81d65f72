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
use std::sync::{Arc, Mutex};

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemTable;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use hindsight_archive::access::Scope;
use hindsight_archive::catalog::{Catalog, SegmentRecord};
use hindsight_archive::schema::event_schema;
use hindsight_archive::store::ArchiveStore;
use object_store::path::Path;
use object_store::ObjectMeta;

pub use crate::pruning::segment_filter;
use crate::pruning::{mentions_column, prune_segments};
use crate::segment_reader::NamedSegmentReaderFactory;
pub use crate::segment_reader::SegmentReadError;
/// The URL under which the archive's object store is registered with DataFusion.
pub const ARCHIVE_STORE_URL: &str = "hindsight://archive/";

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
    /// The sources and topics the session's principal sees: segments of
    /// others are dropped from the catalog's answer, before any file opens.
    scope: Option<Arc<Scope>>,
}

impl EventsTable {
    pub fn new(store: ArchiveStore, catalog: Catalog, counter: ScanCounter) -> Self {
        EventsTable {
            store,
            catalog,
            counter,
            only_segments: None,
            scope: None,
        }
    }

    /// Only the segments of sources and topics `scope` allows.
    pub fn with_scope(self, scope: Option<Arc<Scope>>) -> Self {
        EventsTable { scope, ..self }
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
        retain_in_scope(&mut candidates, self.scope.as_deref());
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

/// Drops the segments of sources and topics `scope` does not allow. A
/// segment holds one (source, topic), so this is exact.
pub fn retain_in_scope(records: &mut Vec<SegmentRecord>, scope: Option<&Scope>) {
    if let Some(scope) = scope.filter(|scope| !scope.is_everything()) {
        records.retain(|record| scope.allows(&record.segment.source, &record.segment.topic));
    }
}

/// The catalog's committed segments, one row each.
#[derive(Debug)]
pub struct SegmentsTable {
    catalog: Catalog,
    scope: Option<Arc<Scope>>,
}

impl SegmentsTable {
    pub fn new(catalog: Catalog, scope: Option<Arc<Scope>>) -> Self {
        SegmentsTable { catalog, scope }
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
        let mut records = self
            .catalog
            .segments(&segment_filter(filters))
            .await
            .map_err(|error| {
                DataFusionError::External(Box::new(crate::error::Error::from(error)))
            })?;
        retain_in_scope(&mut records, self.scope.as_deref());
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
