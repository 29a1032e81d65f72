//! Event search, counts and fetch: `GET /api/v1/events`,
//! `GET /api/v1/events/histogram` and `GET /api/v1/events/{event_id}`.
//!
//! Both build DataFusion queries from typed expressions (never from text) on
//! the `events` view, so they get the same catalog pruning, limits and error
//! handling as SQL. Search is newest first, `(event_time, event_id)`
//! descending, with an opaque cursor that resumes strictly after the last event
//! of a page.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::array::{Array, AsArray};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use datafusion::common::ScalarValue;
use datafusion::functions::datetime::expr_fn::date_bin;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{col, lit, Expr, SortExpr};
use futures::StreamExt;
use hindsight_archive::catalog::SegmentFilter;
use hindsight_archive::schema::{batch_to_events, event_schema};
use hindsight_archive::Event;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
#[allow(deprecated)] // see `bloom_filters_may_hold`
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::file::metadata::PageIndexPolicy;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::filter::EventFilter;
use crate::sql::QueryEngine;
use crate::tables::EventsTable;
pub use crate::view::{AmqpView, EventView, HeaderView};

/// Default and largest page sizes.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 1000;

/// A page request of `GET /api/v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventSearch {
    pub filter: EventFilter,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub event_time: i64,
    pub event_id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.event_time, self.event_id))
    }

    pub fn decode(text: &str) -> Result<Cursor> {
        let invalid = || Error::invalid_input("cursor is not one this API returned");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (time, id) = text.split_once(':').ok_or_else(invalid)?;
        if !is_event_id(id) {
            return Err(invalid());
        }
        Ok(Cursor {
            event_time: time.parse().map_err(|_| invalid())?,
            event_id: id.to_owned(),
        })
    }
}

/// Event ids are 32 lowercase hex characters.
pub fn is_event_id(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// One page of search results.
#[derive(Debug, Serialize)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Segments opened to answer.
    pub segments_scanned: usize,
}

/// One event with the number of archived copies of it (AMQP redeliveries).
#[derive(Debug, Serialize)]
pub struct EventDetail {
    #[serde(flatten)]
    pub event: EventView,
    pub copies: usize,
    /// The payload decoded (Avro, Protobuf, JSON Schema, plain JSON), with
    /// its schema id, subject and version; absent when it does not decode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoded: Option<hindsight_schemas::Decoded>,
    /// Why the payload does not decode (absent when it does, or for a tombstone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_error: Option<String>,
}

fn timestamp(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(micros),
        Some("UTC".into()),
    ))
}

/// Casts each column to the archive schema's type, so rows read back as events.
fn conform(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = event_schema();
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = batch
            .column_by_name(field.name())
            .ok_or_else(|| Error::internal(format!("query result lacks {}", field.name())))?;
        let column = if column.data_type() == field.data_type() {
            Arc::clone(column)
        } else {
            arrow::compute::cast(column, field.data_type())
                .map_err(|error| Error::internal(format!("cannot read events back: {error}")))?
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema, columns)
        .map_err(|error| Error::internal(format!("cannot read events back: {error}")))
}

fn events_of(batches: &[RecordBatch]) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    for batch in batches {
        events.extend(batch_to_events(&conform(batch)?)?);
    }
    Ok(events)
}

fn raw_columns() -> Vec<String> {
    event_schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .collect()
}

/// Runs a search: newest first, at most `search.limit` events.
pub async fn search(engine: &QueryEngine, search: &EventSearch) -> Result<EventPage> {
    let limit = search.limit.clamp(1, MAX_PAGE);
    let session = engine.session().await?;
    let context = session.context.clone();
    let mut filters = search.filter.to_exprs(&context)?;
    if let Some(cursor) = &search.cursor {
        // The plain bound lets the catalog skip newer segments; the OR breaks ties.
        filters.push(col("event_time").lt_eq(timestamp(cursor.event_time)));
        filters.push(
            col("event_time")
                .lt(timestamp(cursor.event_time))
                .or(col("event_time")
                    .eq(timestamp(cursor.event_time))
                    .and(col("event_id").lt(lit(cursor.event_id.clone())))),
        );
    }
    let mut dataframe = context.table("events").await?;
    for filter in filters {
        dataframe = dataframe.filter(filter)?;
    }
    let columns = raw_columns();
    let dataframe = dataframe
        .sort(vec![
            SortExpr::new(col("event_time"), false, false),
            SortExpr::new(col("event_id"), false, false),
        ])?
        .limit(0, Some(limit + 1))?
        .select_columns(&columns.iter().map(String::as_str).collect::<Vec<_>>())?;
    let output = session.run(dataframe).await?;
    let segments_scanned = output.stats.segments_scanned;
    let mut events = events_of(&output.collect().await?)?;
    let next_cursor = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|last| {
            Cursor {
                event_time: last.event_time,
                event_id: last.event_id.clone(),
            }
            .encode()
        })
    } else {
        None
    };
    let previews = decoded_previews(engine, &events).await;
    Ok(EventPage {
        events: events
            .into_iter()
            .zip(previews)
            .map(|(event, preview)| {
                let mut view = EventView::from(event);
                view.decoded_preview = preview;
                view
            })
            .collect(),
        next_cursor,
        segments_scanned,
    })
}

/// How long a decoded preview of a schema-framed payload may be.
const PREVIEW_CHARS: usize = 160;

/// The start of each decoded schema-framed payload (Avro, Protobuf, JSON
/// Schema, or a topic with a local schema file), for the explorer's rows:
/// `None` for other payloads, which show as text.
async fn decoded_previews(
    engine: &QueryEngine,
    events: &[hindsight_archive::Event],
) -> Vec<Option<String>> {
    let schemas = std::sync::Arc::clone(engine.schemas());
    let events: Vec<hindsight_archive::Event> = events.to_vec();
    let count = events.len();
    let previews = tokio::task::spawn_blocking(move || {
        events
            .iter()
            .map(|event| {
                let payload = event.payload.as_deref()?;
                let header = hindsight_schemas::wire::value_schema_header(&event.headers);
                let text = schemas.decoded_text(
                    Some(&event.source),
                    Some(&event.topic),
                    payload,
                    header,
                )??;
                Some(match text.char_indices().nth(PREVIEW_CHARS) {
                    Some((cut, _)) => format!("{}…", &text[..cut]),
                    None => text,
                })
            })
            .collect::<Vec<_>>()
    })
    .await;
    previews.unwrap_or_else(|_| vec![None; count])
}

/// The most buckets one histogram may have.
pub const MAX_BUCKETS: i64 = 10_000;

/// Event counts per time bucket: `(bucket start, count)` for every bucket
/// that holds an event, in time order. Buckets are `step_micros` long and
/// start at multiples of it since the epoch (`date_bin` with the epoch as
/// origin), so neighbouring requests line up.
pub async fn histogram(
    engine: &QueryEngine,
    filter: &EventFilter,
    step_micros: i64,
) -> Result<Vec<(i64, u64)>> {
    if step_micros <= 0 {
        return Err(Error::invalid_input("step_ms must be at least 1"));
    }
    if let (Some(from), Some(to)) = (filter.time_from, filter.time_to) {
        if (to - from) / step_micros > MAX_BUCKETS {
            return Err(Error::invalid_input(format!(
                "from {from} to {to} in steps of {step_micros} µs is more than {MAX_BUCKETS} \
                 buckets: take a longer step or a shorter range"
            )));
        }
    }
    let session = engine.session().await?;
    let context = session.context.clone();
    let mut dataframe = context.table("events").await?;
    for condition in filter.to_exprs(&context)? {
        dataframe = dataframe.filter(condition)?;
    }
    let stride = lit(ScalarValue::new_interval_mdn(
        0,
        0,
        step_micros.saturating_mul(1000),
    ));
    let bucket = date_bin(stride, col("event_time"), timestamp(0)).alias("bucket");
    let dataframe = dataframe
        .aggregate(vec![bucket], vec![count(lit(1)).alias("n")])?
        .sort(vec![SortExpr::new(col("bucket"), true, false)])?;
    let batches = session.run(dataframe).await?.collect().await?;
    let mut buckets = Vec::new();
    for batch in &batches {
        // date_bin may answer in another unit than event_time's: microseconds first.
        let micros =
            arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None);
        let starts = arrow::compute::cast(batch.column(0), &micros)
            .and_then(|starts| arrow::compute::cast(&starts, &arrow::datatypes::DataType::Int64))
            .map_err(|error| Error::internal(format!("cannot read the histogram: {error}")))?;
        let counts = arrow::compute::cast(batch.column(1), &arrow::datatypes::DataType::Int64)
            .map_err(|error| Error::internal(format!("cannot read the histogram: {error}")))?;
        let starts = starts.as_primitive::<arrow::datatypes::Int64Type>();
        let counts = counts.as_primitive::<arrow::datatypes::Int64Type>();
        for row in 0..batch.num_rows() {
            if starts.is_valid(row) {
                buckets.push((starts.value(row), counts.value(row).max(0) as u64));
            }
        }
    }
    Ok(buckets)
}

/// The event with this id (the first copy, as `events_dedup` picks it), and
/// how many copies the archive holds.
pub async fn fetch(engine: &QueryEngine, event_id: &str) -> Result<Option<EventDetail>> {
    if !is_event_id(event_id) {
        return Err(Error::invalid_input(format!(
            "{event_id:?} is not an event id: ids are 32 lowercase hex characters"
        )));
    }
    let (candidates, unreadable) = segments_that_may_hold(engine, event_id).await?;
    let session = engine.session().await?;
    let columns = raw_columns();
    // Only the segments whose bloom filters may hold the id: a damaged
    // segment elsewhere in the archive plays no part.
    session.context.register_table(
        "events_for_id",
        engine.events_provider(
            EventsTable::for_segments(
                engine.store().clone(),
                engine.catalog().clone(),
                session.scan_counter(),
                candidates,
            )
            .with_scope(engine.scope().cloned()),
        )?,
    )?;
    let dataframe = session
        .context
        .table("events_for_id")
        .await?
        .filter(col("event_id").eq(lit(event_id.to_owned())))?
        .sort(vec![
            SortExpr::new(
                datafusion::functions::core::expr_fn::coalesce(vec![
                    col("redelivered"),
                    lit(false),
                ]),
                true,
                false,
            ),
            SortExpr::new(col("ingest_time"), true, false),
        ])?
        .select_columns(&columns.iter().map(String::as_str).collect::<Vec<_>>())?;
    let events = events_of(&session.run(dataframe).await?.collect().await?)?;
    if events.is_empty() && !unreadable.is_empty() {
        return Err(Error::new(
            ErrorKind::SegmentUnreadable,
            format!(
                "event {event_id} is in none of the readable segments, and {} segment(s) \
                 could not be read: {} (run hindsight verify)",
                unreadable.len(),
                unreadable.join(", ")
            ),
        ));
    }
    let copies = events.len();
    let Some(event) = events.into_iter().next() else {
        return Ok(None);
    };
    let (decoded, decode_error) = decode_event(engine, &event).await;
    Ok(Some(EventDetail {
        event: EventView::from(event),
        copies,
        decoded,
        decode_error,
    }))
}

/// Decodes an event's payload, off the async threads: a schema the store
/// does not know yet is fetched from the registry, which blocks.
async fn decode_event(
    engine: &QueryEngine,
    event: &hindsight_archive::Event,
) -> (Option<hindsight_schemas::Decoded>, Option<String>) {
    let Some(payload) = event.payload.clone() else {
        return (None, None);
    };
    let schemas = std::sync::Arc::clone(engine.schemas());
    let source = event.source.clone();
    let topic = event.topic.clone();
    let header = hindsight_schemas::wire::value_schema_header(&event.headers).map(<[u8]>::to_vec);
    let framed = payload.first() == Some(&0) || header.is_some();
    let decoded = tokio::task::spawn_blocking(move || {
        schemas.decode(Some(&source), Some(&topic), &payload, header.as_deref())
    })
    .await;
    match decoded {
        Ok(Ok(decoded)) => (Some(decoded), None),
        // A payload that names no schema and is not JSON is simply not a
        // schema-aware payload: nothing to explain.
        Ok(Err(error)) if error.kind == hindsight_schemas::DecodeErrorKind::Framing && !framed => {
            (None, None)
        }
        Ok(Err(error)) => (None, Some(error.message)),
        Err(error) => (None, Some(format!("decoding stopped: {error}"))),
    }
}

/// The ids of the committed segments whose `event_id` bloom filters may hold
/// `event_id`, and the object keys of those whose footer or filter could not
/// be read. Footers and filters are read concurrently, a few at a time.
async fn segments_that_may_hold(
    engine: &QueryEngine,
    event_id: &str,
) -> Result<(HashSet<String>, Vec<String>)> {
    const CONCURRENT_PROBES: usize = 16;
    let mut records = engine.catalog().segments(&SegmentFilter::default()).await?;
    crate::tables::retain_in_scope(&mut records, engine.scope().map(AsRef::as_ref));
    let object_store = engine.store().object_store();
    let probes = records.into_iter().map(|record| {
        let object_store = Arc::clone(&object_store);
        let location =
            Path::parse(&record.segment.uri).map(|relative| engine.store().full_path(&relative));
        async move {
            let may_hold = match location {
                Ok(location) => {
                    let size = u64::try_from(record.segment.bytes).unwrap_or_default();
                    #[allow(deprecated)]
                    let reader =
                        ParquetObjectReader::new(object_store, location).with_file_size(size);
                    bloom_filters_may_hold(reader, event_id)
                        .await
                        .map_err(|error| error.to_string())
                }
                Err(error) => Err(error.to_string()),
            };
            (record.segment, may_hold)
        }
    });
    let probed: Vec<_> = futures::stream::iter(probes)
        .buffer_unordered(CONCURRENT_PROBES)
        .collect()
        .await;
    let mut candidates = HashSet::new();
    let mut unreadable = Vec::new();
    for (segment, may_hold) in probed {
        match may_hold {
            Ok(true) => {
                candidates.insert(segment.id);
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(segment = %segment.uri, %error, "cannot read a segment's bloom filters");
                unreadable.push(segment.uri);
            }
        }
    }
    unreadable.sort();
    Ok((candidates, unreadable))
}

/// Whether any row group's `event_id` bloom filter may hold `event_id` (a
/// row group without one may). `ParquetObjectReader` is deprecated in parquet
/// 59 in favour of a hand-written `AsyncFileReader`; it still works, and
/// replacing it is left for a later change.
#[allow(deprecated)]
async fn bloom_filters_may_hold(
    reader: ParquetObjectReader,
    event_id: &str,
) -> parquet::errors::Result<bool> {
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Skip);
    let mut builder = ParquetRecordBatchStreamBuilder::new_with_options(reader, options).await?;
    let Some(column) = builder
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|column| column.path().string() == "event_id")
    else {
        return Ok(true);
    };
    for row_group in 0..builder.metadata().num_row_groups() {
        match builder
            .get_row_group_column_bloom_filter(row_group, column)
            .await?
        {
            Some(filter) if !filter.check(event_id) => {}
            _ => return Ok(true),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            event_time: 1_700_000_000_123_456,
            event_id: "0123456789abcdef0123456789abcdef".to_owned(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        for garbage in [
            "",
            "%%%",
            "bm90IGEgY3Vyc29y",
            &URL_SAFE_NO_PAD.encode("12:nothex"),
        ] {
            assert!(Cursor::decode(garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn json_paths_split_on_dots() {
        use crate::filter::{parse_json_condition, PathPart};
        let condition = parse_json_condition("a.0.b=x").unwrap();
        assert_eq!(
            condition.path,
            [
                PathPart::Member("a".into()),
                PathPart::Index(0),
                PathPart::Member("b".into())
            ]
        );
        assert!(parse_json_condition("a..b=x").is_err());
        assert!(parse_json_condition("=x").is_err());
    }
}
