//! What a replay publishes: a selection (the filters of `GET /api/v1/events`,
//! or an SQL query returning `event_id`s), resolved into an ordered plan of
//! segment groups and a per-event predicate.
//!
//! The order is the archive's: (source, topic, partition), then offset. Kafka
//! segments of one partition whose offset ranges overlap (a batch that
//! straddled an hour) are read together and merged by offset. RabbitMQ queue
//! segments have no offsets; they are read in the order they were written.
//! A plan only holds the segments live at the replay's snapshot, so a resumed
//! replay sees exactly the groups the first run saw. A segment compacted or
//! rewritten by an erasure since is read from where the catalog's lineage
//! says its rows live now, in the same order (minus erased rows).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use futures::StreamExt;
use hindsight_archive::catalog::{SegmentFilter, SegmentRecord};
use hindsight_archive::replays::SkippedSegment;
use hindsight_archive::segment::{decode_segment, decode_segment_rows};
use hindsight_archive::store::ArchiveStore;
use hindsight_archive::{Bus, Event};
use serde::{Deserialize, Serialize};

use hindsight_query::filter::{EventFilter, FilterSelection};
use hindsight_query::{Error, ErrorKind, QueryEngine, Result};
use hindsight_schemas::wire::value_schema_header;
use hindsight_schemas::Schemas;

/// The largest SQL selection: its event ids are kept in memory and in the catalog.
pub const MAX_SQL_SELECTION: usize = 5_000_000;

/// Which events to replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[allow(clippy::large_enum_variant)] // one per replay request: size does not matter
pub enum Selection {
    /// The filters of `GET /api/v1/events` (`hindsight_query::filter`).
    Filter(FilterSelection),
    /// A read-only SQL query whose result has an `event_id` column. When it
    /// also returns `source` and `topic`, only those topics' segments are read.
    Sql { sql: String },
}

/// Segments read and merged together: one partition's, in offset order.
#[derive(Debug, Clone)]
pub struct SegmentGroup {
    pub source: String,
    pub topic: String,
    pub partition: i32,
    pub bus: Bus,
    pub segments: Vec<SegmentRecord>,
}

impl SegmentGroup {
    pub fn rows(&self) -> i64 {
        self.segments.iter().map(|s| s.segment.rows).sum()
    }

    /// Reads every segment of the group; Kafka groups are merged by offset.
    pub async fn load(&self, store: &ArchiveStore) -> Result<Vec<Event>> {
        Ok(self.load_with(store, false).await?.events)
    }

    /// Reads the group like [`SegmentGroup::load`]; with `skip_damaged`, a
    /// segment that cannot be read is left out and listed instead of
    /// failing the whole group.
    pub async fn load_with(&self, store: &ArchiveStore, skip_damaged: bool) -> Result<LoadedGroup> {
        let mut loaded = LoadedGroup::default();
        for record in &self.segments {
            match read_segment(store, record).await {
                Ok(events) => loaded.events.extend(events),
                Err(error) if skip_damaged && error.kind() == ErrorKind::SegmentUnreadable => {
                    tracing::warn!(segment = %record.segment.uri, error = %error.message(), "skipping a damaged segment");
                    loaded.damaged.push(SkippedSegment {
                        uri: record.segment.uri.clone(),
                        rows: record.segment.rows,
                        error: error.message().to_owned(),
                    });
                }
                Err(error) => return Err(error),
            }
        }
        if self.segments.len() > 1 && self.bus == Bus::Kafka {
            // Stable: equal offsets (none in a sound archive) keep file order.
            loaded.events.sort_by_key(|event| event.offset);
        }
        Ok(loaded)
    }
}

/// The events of a segment group, and the damaged segments left out.
#[derive(Debug, Default)]
pub struct LoadedGroup {
    pub events: Vec<Event>,
    pub damaged: Vec<SkippedSegment>,
}

/// Reads and decodes one segment. A segment retired since the plan was made
/// (compacted, or rewritten by an erasure) is read where its rows live now;
/// one removed by retention has no rows left.
async fn read_segment(store: &ArchiveStore, record: &SegmentRecord) -> Result<Vec<Event>> {
    if record.retired_at.is_none() {
        return read_rows(store, &record.segment.uri, None).await;
    }
    match &record.moved_to {
        Some(slice) => read_rows(store, &slice.uri, Some((slice.first_row, slice.rows))).await,
        None => Ok(Vec::new()),
    }
}

/// Decodes the segment at `uri`, or only `rows` (first row, count) of it.
async fn read_rows(
    store: &ArchiveStore,
    uri: &str,
    rows: Option<(i64, i64)>,
) -> Result<Vec<Event>> {
    let unreadable = |reason: String| {
        Error::new(
            ErrorKind::SegmentUnreadable,
            format!("segment {uri} is unreadable: {reason}"),
        )
    };
    // The catalog holds the key as the layout built it (already
    // percent-encoded): parse it, never encode it a second time.
    let path = object_store::path::Path::parse(uri)
        .map_err(|error| unreadable(format!("its object key is invalid: {error}")))?;
    let bytes = store
        .get(&path)
        .await
        .map_err(|error| unreadable(error.full_message()))?;
    tokio::task::spawn_blocking(move || match rows {
        None => decode_segment(bytes),
        Some((first, count)) => decode_segment_rows(bytes, first, count),
    })
    .await
    .map_err(|error| Error::internal(format!("segment decoding panicked: {error}")))?
    .map_err(|error| unreadable(error.full_message()))
}

/// A selection resolved against the catalog.
#[derive(Debug, Clone)]
pub struct Plan {
    pub groups: Vec<SegmentGroup>,
    /// Rows of the groups, or the exact count of an SQL selection.
    pub planned: i64,
    pub filter: Option<EventFilter>,
    /// The event ids of an SQL selection.
    pub ids: Option<HashSet<String>>,
    /// Decodes schema-framed payloads for the filter's text and `json=`
    /// conditions, as search does.
    pub schemas: Option<Arc<Schemas>>,
}

impl Plan {
    pub fn selects(&self, event: &Event) -> bool {
        if let Some(ids) = &self.ids {
            if !ids.contains(&event.event_id) {
                return false;
            }
        }
        self.filter.as_ref().is_none_or(|filter| {
            filter.matches_decoded(event, |event| {
                let schemas = self.schemas.as_ref()?;
                let payload = event.payload.as_deref()?;
                let header = value_schema_header(&event.headers);
                schemas.decoded_text(Some(&event.source), Some(&event.topic), payload, header)
            })
        })
    }

    /// The (bus, topic) pairs the plan reads, for the loop guard.
    pub fn topics(&self) -> Vec<(Bus, String)> {
        let mut topics: Vec<(Bus, String)> = Vec::new();
        for group in &self.groups {
            if !topics
                .iter()
                .any(|(bus, topic)| *bus == group.bus && *topic == group.topic)
            {
                topics.push((group.bus, group.topic.clone()));
            }
        }
        topics
    }
}

/// What an SQL selection returned.
#[derive(Debug, Clone, Default)]
pub struct SqlResult {
    pub ids: Vec<String>,
    /// The (source, topic) pairs, when the query returned both columns.
    pub topics: Option<BTreeSet<(String, String)>>,
}

fn string_values(column: &dyn Array) -> Result<Vec<Option<String>>> {
    let column = match column.data_type() {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Dictionary(_, _) => {
            arrow::compute::cast(column, &DataType::Utf8)
                .map_err(|error| Error::internal(format!("cannot read event ids: {error}")))?
        }
        other => {
            return Err(Error::invalid_input(format!(
                "the selection query returned a column of type {other}, expected text"
            )))
        }
    };
    let strings = column.as_string::<i32>();
    Ok((0..strings.len())
        .map(|i| (!strings.is_null(i)).then(|| strings.value(i).to_owned()))
        .collect())
}

/// Runs the SQL of a selection and collects its event ids.
pub async fn run_sql_selection(engine: &QueryEngine, sql: &str) -> Result<SqlResult> {
    let mut output = engine.sql(sql).await?;
    let schema = output.schema.clone();
    let id_index = schema.index_of("event_id").map_err(|_| {
        Error::invalid_input(
            "the selection query must return an event_id column, e.g. SELECT event_id FROM events WHERE …",
        )
    })?;
    let source_index = schema.index_of("source").ok();
    let topic_index = schema.index_of("topic").ok();
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    let mut topics = BTreeSet::new();
    while let Some(batch) = output.stream.next().await {
        let batch = batch?;
        let batch_ids = string_values(batch.column(id_index).as_ref())?;
        let pairs = match (source_index, topic_index) {
            (Some(s), Some(t)) => Some((
                string_values(batch.column(s).as_ref())?,
                string_values(batch.column(t).as_ref())?,
            )),
            _ => None,
        };
        for (row, id) in batch_ids.into_iter().enumerate() {
            let Some(id) = id else { continue };
            if let Some((sources, topic_values)) = &pairs {
                if let (Some(source), Some(topic)) = (&sources[row], &topic_values[row]) {
                    topics.insert((source.clone(), topic.clone()));
                }
            }
            if seen.insert(id.clone()) {
                ids.push(id);
            }
            if ids.len() > MAX_SQL_SELECTION {
                return Err(Error::invalid_input(format!(
                    "the selection query returned more than {MAX_SQL_SELECTION} events: \
                     narrow it, or select with filters, which have no limit"
                )));
            }
        }
    }
    Ok(SqlResult {
        ids,
        topics: (source_index.is_some() && topic_index.is_some()).then_some(topics),
    })
}

/// Resolves a selection into a plan over the segments committed by `snapshot_at`.
/// `sql_ids` is the fixed result of an SQL selection.
pub async fn plan(
    engine: &QueryEngine,
    selection: &Selection,
    snapshot_at: i64,
    sql: Option<&SqlResult>,
) -> Result<Plan> {
    let catalog = engine.catalog();
    let buses: HashMap<String, Bus> = catalog
        .sources()
        .await?
        .into_iter()
        .map(|source| (source.name, source.bus))
        .collect();
    let (segment_filters, filter, ids) = match selection {
        Selection::Filter(filters) => {
            let compiled = filters.compile()?;
            (compiled.segment_filters(), Some(compiled), None)
        }
        Selection::Sql { .. } => {
            let result = sql.ok_or_else(|| Error::internal("sql selection without its result"))?;
            let segment_filters = match &result.topics {
                Some(topics) => topics
                    .iter()
                    .map(|(source, topic)| SegmentFilter {
                        source: Some(source.clone()),
                        topic: Some(topic.clone()),
                        ..Default::default()
                    })
                    .collect(),
                None => vec![SegmentFilter::default()],
            };
            let ids: HashSet<String> = result.ids.iter().cloned().collect();
            (segment_filters, None, Some(ids))
        }
    };
    let mut by_partition: BTreeMap<(String, String, i32), Vec<SegmentRecord>> = BTreeMap::new();
    for segment_filter in &segment_filters {
        for record in catalog.segments_as_of(segment_filter, snapshot_at).await? {
            // A scoped engine (a principal's) plans only what it may read.
            if engine
                .scope()
                .is_some_and(|scope| !scope.allows(&record.segment.source, &record.segment.topic))
            {
                continue;
            }
            by_partition
                .entry((
                    record.segment.source.clone(),
                    record.segment.topic.clone(),
                    record.segment.partition,
                ))
                .or_default()
                .push(record);
        }
    }
    let mut groups = Vec::new();
    for ((source, topic, partition), mut segments) in by_partition {
        let bus = buses.get(&source).copied().unwrap_or(Bus::Kafka);
        // Offsets; then, for RabbitMQ queue segments (no offsets), commit
        // order, and within one commit (one batch split by hour) the hour.
        let order = |record: &SegmentRecord| {
            (
                record.segment.first_offset,
                record.committed_at,
                record.segment.min_event_time,
                record.segment.id.clone(),
            )
        };
        segments.sort_by_key(order);
        segments.dedup_by(|a, b| a.segment.id == b.segment.id);
        let mut current: Vec<SegmentRecord> = Vec::new();
        let mut current_last = i64::MIN;
        for record in segments {
            let overlaps = bus == Bus::Kafka && record.segment.first_offset <= current_last;
            if !current.is_empty() && !overlaps {
                groups.push(SegmentGroup {
                    source: source.clone(),
                    topic: topic.clone(),
                    partition,
                    bus,
                    segments: std::mem::take(&mut current),
                });
                current_last = i64::MIN;
            }
            current_last = current_last.max(record.segment.last_offset);
            current.push(record);
        }
        if !current.is_empty() {
            groups.push(SegmentGroup {
                source: source.clone(),
                topic: topic.clone(),
                partition,
                bus,
                segments: current,
            });
        }
    }
    let planned = match &ids {
        Some(ids) => ids.len() as i64,
        None => groups.iter().map(SegmentGroup::rows).sum(),
    };
    Ok(Plan {
        groups,
        planned,
        filter,
        ids,
        schemas: Some(Arc::clone(engine.schemas())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hindsight_archive::Header;

    fn event(payload: &str) -> Event {
        Event {
            event_id: "0".repeat(32),
            source: "s".to_owned(),
            bus: Bus::Kafka,
            topic: "t".to_owned(),
            routing_key: None,
            partition: Some(1),
            offset: Some(5),
            key: Some(b"k1".to_vec()),
            headers: vec![Header::new("type", "a"), Header::new("type", "b")],
            payload: Some(payload.as_bytes().to_vec()),
            payload_size: payload.len() as i64,
            payload_truncated: false,
            content_type: None,
            message_id: None,
            correlation_id: None,
            timestamp_type: None,
            amqp: Default::default(),
            redelivered: None,
            event_time: 1_700_000_000_000_000,
            ingest_time: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn filters_match_like_the_events_api() {
        let sample = event(r#"{"customer":{"id":7,"country":"NL"},"items":["x","y"]}"#);
        let matches = |selection: FilterSelection| selection.compile().unwrap().matches(&sample);
        assert!(matches(FilterSelection::default()));
        assert!(matches(FilterSelection {
            headers: vec!["type=b".to_owned()],
            json: vec![
                "customer.country=NL".to_owned(),
                "customer.id=7".to_owned(),
                "items.1=y".to_owned()
            ],
            key: Some("k1".to_owned()),
            contains: Some("country".to_owned()),
            partition: Some(1),
            from: Some("2023-11-14T00:00:00Z".to_owned()),
            to: Some("2023-11-15T00:00:00Z".to_owned()),
            ..Default::default()
        }));
        assert!(!matches(FilterSelection {
            headers: vec!["type=c".to_owned()],
            ..Default::default()
        }));
        assert!(!matches(FilterSelection {
            json: vec!["customer.country=DE".to_owned()],
            ..Default::default()
        }));
        assert!(!matches(FilterSelection {
            key: Some("k2".to_owned()),
            ..Default::default()
        }));
        assert!(!matches(FilterSelection {
            to: Some("2023-11-14T22:13:20Z".to_owned()),
            ..Default::default()
        }));
        assert!(FilterSelection {
            from: Some("yesterday".to_owned()),
            ..Default::default()
        }
        .compile()
        .is_err());
        assert!(FilterSelection {
            headers: vec!["novalue".to_owned()],
            ..Default::default()
        }
        .compile()
        .is_err());
    }
}
