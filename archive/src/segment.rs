//! Segment encoding: events to zstd Parquet bytes and back.
//!
//! A segment holds the events of one (source, topic, partition) within one UTC
//! hour, in offset order. Every segment has column statistics, a page index
//! (column and offset indexes) and bloom filters on the lookup columns, so that
//! readers skip row groups and pages without decoding them. Every page header
//! carries the CRC-32 of its page, and every reader built on the `parquet`
//! crate here checks it (`page_checksum.rs`), so a flipped bit fails the read
//! instead of returning a changed value.

use std::borrow::Borrow;

use bytes::Bytes;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::metadata::{KeyValue, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::page_checksum::{add_page_checksums, verify_pages_in_range};
use crate::schema::{batch_to_events, event_schema, events_to_batch, SCHEMA_VERSION};

/// Columns that get a bloom filter: point lookups by these skip row groups.
pub const BLOOM_FILTER_COLUMNS: [&str; 4] = ["event_id", "key", "message_id", "correlation_id"];

/// Rows per Arrow batch handed to the Parquet writer (not per row group).
const ARROW_BATCH_ROWS: usize = 4096;

/// How segments are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFormat {
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// zstd level, 1 to 22.
    pub zstd_level: i32,
}

impl Default for SegmentFormat {
    fn default() -> Self {
        SegmentFormat {
            row_group_rows: 64 * 1024,
            zstd_level: 3,
        }
    }
}

/// A segment ready to publish, with the facts the catalog records about it.
#[derive(Debug, Clone)]
pub struct EncodedSegment {
    pub bytes: Bytes,
    pub rows: u64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub min_event_time: i64,
    pub max_event_time: i64,
}

pub(crate) fn writer_properties(format: SegmentFormat, rows: usize) -> Result<WriterProperties> {
    let zstd = ZstdLevel::try_new(format.zstd_level)
        .map_err(|_| Error::invalid_input("zstd level must be between 1 and 22"))?;
    let schema = event_schema();
    let column_index = |name: &str| schema.index_of(name).ok().map(|index| index as i32);
    let sorting = ["partition", "offset"]
        .iter()
        .filter_map(|name| column_index(name))
        .map(|column_idx| SortingColumn {
            column_idx,
            descending: false,
            nulls_first: false,
        })
        .collect();
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_max_row_group_row_count(Some(format.row_group_rows.max(1)))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(sorting))
        .set_column_dictionary_enabled(ColumnPath::from("payload"), false)
        .set_column_dictionary_enabled(ColumnPath::from("event_id"), false)
        // Offsets rise by one and ingest times by a few microseconds: delta
        // encoding stores them in about 0.2 bytes per row instead of about
        // 2.7 each with a dictionary (scripts/bench, P4). DuckDB, pyarrow
        // and Spark read it.
        .set_column_dictionary_enabled(ColumnPath::from("offset"), false)
        .set_column_encoding(ColumnPath::from("offset"), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from("ingest_time"), false)
        .set_column_encoding(
            ColumnPath::from("ingest_time"),
            Encoding::DELTA_BINARY_PACKED,
        )
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "hindsight.schema_version".to_owned(),
            SCHEMA_VERSION.to_owned(),
        )]));
    let distinct_values = rows.clamp(1, format.row_group_rows.max(1)) as u64;
    for name in BLOOM_FILTER_COLUMNS {
        let path = ColumnPath::from(name);
        builder = builder
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), 0.01)
            .set_column_bloom_filter_max_ndv(path, distinct_values);
    }
    Ok(builder.build())
}

/// Encodes events (all of one partition and hour, in offset order; owned or
/// borrowed) as one Parquet file in memory. CPU-heavy: call it off the async
/// worker threads.
pub fn encode_segment<E: Borrow<Event>>(
    events: &[E],
    format: SegmentFormat,
) -> Result<EncodedSegment> {
    if events.is_empty() {
        return Err(Error::internal("a segment needs at least one event"));
    }
    let mut buffer = Vec::with_capacity(
        events
            .iter()
            .map(|e| e.borrow().payload_bytes().len())
            .sum::<usize>()
            / 2,
    );
    let properties = writer_properties(format, events.len())?;
    let mut writer = ArrowWriter::try_new(&mut buffer, event_schema(), Some(properties.clone()))?;
    // Small Arrow batches: the writer fills each row group from several, and
    // only one small copy of the events exists at a time.
    for chunk in events.chunks(ARROW_BATCH_ROWS.min(format.row_group_rows).max(1)) {
        writer.write(&events_to_batch(chunk)?)?;
    }
    writer.close()?;
    let bytes = add_page_checksums(Bytes::from(buffer), properties)?;
    let span = |value: fn(&Event) -> i64| {
        events
            .iter()
            .map(|event| value(event.borrow()))
            .fold((i64::MAX, i64::MIN), |(low, high), v| {
                (low.min(v), high.max(v))
            })
    };
    let (min_event_time, max_event_time) = span(|event| event.event_time);
    let (first_offset, last_offset) = span(|event| event.offset.unwrap_or_default());
    Ok(EncodedSegment {
        bytes,
        rows: events.len() as u64,
        first_offset,
        last_offset,
        min_event_time,
        max_event_time,
    })
}

impl EncodedSegment {
    /// The catalog row of this segment, to be stored at `uri` under `id`,
    /// with its checksum.
    pub fn record(
        &self,
        id: String,
        uri: String,
        source: &str,
        topic: &str,
        partition: i32,
    ) -> crate::catalog::NewSegment {
        crate::catalog::NewSegment {
            id,
            uri,
            source: source.to_owned(),
            topic: topic.to_owned(),
            partition,
            first_offset: self.first_offset,
            last_offset: self.last_offset,
            min_event_time: self.min_event_time,
            max_event_time: self.max_event_time,
            rows: self.rows as i64,
            bytes: self.bytes.len() as i64,
            checksum: Some(segment_checksum(&self.bytes)),
        }
    }
}

/// The checksum the catalog records for a segment object: `blake3:<hex>`.
pub fn segment_checksum(bytes: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(bytes).to_hex())
}

/// Decodes a whole segment back into events, after checking every page
/// checksum it carries.
pub fn decode_segment(bytes: Bytes) -> Result<Vec<Event>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?;
    verify_pages_in_range(builder.metadata(), 0, &bytes)?;
    let reader = builder.with_batch_size(8192).build()?;
    let mut events = Vec::new();
    for batch in reader {
        events.extend(batch_to_events(&batch?)?);
    }
    Ok(events)
}

/// Decodes `count` rows of a segment from row `first` on (the rows of a
/// compacted input inside its output), after checking the page checksums.
pub fn decode_segment_rows(bytes: Bytes, first: i64, count: i64) -> Result<Vec<Event>> {
    let (Ok(first), Ok(count)) = (usize::try_from(first), usize::try_from(count)) else {
        return Err(Error::internal("a row range is negative"));
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?;
    verify_pages_in_range(builder.metadata(), 0, &bytes)?;
    let selection = RowSelection::from(vec![RowSelector::skip(first), RowSelector::select(count)]);
    let reader = builder
        .with_row_selection(selection)
        .with_batch_size(8192)
        .build()?;
    let mut events = Vec::with_capacity(count);
    for batch in reader {
        events.extend(batch_to_events(&batch?)?);
    }
    if events.len() != count {
        return Err(Error::internal(format!(
            "the segment holds {} of rows {first}..{}",
            events.len(),
            first + count
        )));
    }
    Ok(events)
}

/// Checks what a segment can prove about itself without the catalog: its
/// footer, every page checksum it carries, and that it decodes whole.
pub fn check_segment_structure(bytes: Bytes) -> Result<()> {
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&bytes)
        .map_err(|error| {
            Error::with_source(
                crate::error::ErrorKind::InvalidInput,
                "the footer cannot be read",
                error,
            )
        })?;
    verify_pages_in_range(&metadata, 0, &bytes)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .with_batch_size(8192)
        .build()?;
    for batch in reader {
        batch_to_events(&batch?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{event_id, AmqpProperties, Bus, Header};
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn arbitrary_header() -> impl Strategy<Value = Header> {
        // A few fixed names make repeats likely; any unicode name is allowed.
        let name = prop_oneof![
            Just("trace-id".to_owned()),
            Just("x".to_owned()),
            Just(String::new()),
            "\\PC{0,20}",
        ];
        let value = proptest::option::weighted(0.9, vec(any::<u8>(), 0..64));
        (name, value).prop_map(|(name, value)| Header { name, value })
    }

    /// `None` is a Kafka tombstone, which must stay apart from an empty value.
    fn arbitrary_payload() -> impl Strategy<Value = Option<Vec<u8>>> {
        proptest::option::weighted(0.85, arbitrary_value())
    }

    fn arbitrary_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => vec(any::<u8>(), 0..256),
            1 => Just(Vec::new()),
            1 => (1usize..3_000_000).prop_map(|size| (0..size).map(|i| (i * 31 % 251) as u8).collect()),
            1 => Just(vec![0xff, 0xfe, 0x00, 0xc3]),
        ]
    }

    fn arbitrary_event() -> impl Strategy<Value = Event> {
        (
            (
                "[a-z]{1,8}",
                proptest::option::of(vec(any::<u8>(), 0..40)),
                vec(arbitrary_header(), 0..12),
                arbitrary_payload(),
                proptest::option::of("\\PC{0,30}"),
                proptest::option::of("\\PC{0,30}"),
            ),
            (
                any::<bool>(),
                proptest::option::of(any::<bool>()),
                proptest::option::of(0u8..=2),
                -10_000_000_000_000_000i64..10_000_000_000_000_000i64,
                proptest::option::of("\\PC{0,200}"),
            ),
        )
            .prop_map(
                |(
                    (topic, key, headers, payload, message_id, correlation_id),
                    (amqp, redelivered, delivery_mode, event_time, headers_table),
                )| {
                    let bus = if amqp { Bus::Amqp } else { Bus::Kafka };
                    Event {
                        event_id: event_id::kafka("src", &topic, 0, 0),
                        source: "src".to_owned(),
                        bus,
                        routing_key: amqp.then(|| format!("{topic}.created")),
                        topic,
                        partition: (!amqp).then_some(3),
                        offset: (!amqp).then_some(42),
                        key,
                        headers,
                        payload_size: payload.as_ref().map_or(0, Vec::len) as i64,
                        payload,
                        payload_truncated: false,
                        content_type: Some("application/json".to_owned()),
                        message_id,
                        correlation_id,
                        timestamp_type: (!amqp).then(|| "create_time".to_owned()),
                        amqp: AmqpProperties {
                            delivery_mode,
                            headers_table,
                            ..AmqpProperties::default()
                        },
                        redelivered,
                        event_time,
                        ingest_time: 1_700_000_000_000_000,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn segments_round_trip_byte_identical(
            events in vec(arbitrary_event(), 1..40),
            row_group_rows in 1usize..16,
        ) {
            let format = SegmentFormat { row_group_rows, zstd_level: 1 };
            let encoded = encode_segment(&events, format).unwrap();
            prop_assert_eq!(encoded.rows, events.len() as u64);
            let decoded = decode_segment(encoded.bytes).unwrap();
            prop_assert_eq!(decoded, events);
        }
    }

    fn incompressible_events(count: i64, payload_bytes: usize) -> Vec<Event> {
        // A xorshift stream: zstd stores such pages as raw blocks, so without
        // a checksum a flipped bit reads back as a changed payload, silently.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..count)
            .map(|offset| {
                let payload: Vec<u8> = (0..payload_bytes)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect();
                Event {
                    event_id: event_id::kafka("s", "t", 0, offset),
                    source: "s".into(),
                    topic: "t".into(),
                    partition: Some(0),
                    offset: Some(offset),
                    payload_size: payload.len() as i64,
                    payload: Some(payload),
                    event_time: offset,
                    ingest_time: offset,
                    ..Event::default()
                }
            })
            .collect()
    }

    /// Where the bytes of the payload column's first data page start and end.
    fn payload_page_data(bytes: &Bytes) -> (usize, usize) {
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
        let builder =
            ParquetRecordBatchReaderBuilder::try_new_with_options(bytes.clone(), options).unwrap();
        let metadata = builder.metadata();
        let payload_column = metadata
            .row_group(0)
            .columns()
            .iter()
            .position(|column| column.column_path().string() == "payload")
            .unwrap();
        let page = &metadata.offset_index().unwrap()[0][payload_column].page_locations()[0];
        let start = page.offset as usize;
        let end = start + page.compressed_page_size as usize;
        let header = crate::page_checksum::parse_page_header(&bytes[start..end]).unwrap();
        (start + header.length, end)
    }

    #[test]
    fn every_page_header_carries_a_checksum() {
        let events = incompressible_events(200, 300);
        let format = SegmentFormat {
            row_group_rows: 64,
            zstd_level: 1,
        };
        let encoded = encode_segment(&events, format).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(encoded.bytes.clone()).unwrap();
        let mut pages = 0;
        for row_group in reader.metadata().row_groups() {
            for column in row_group.columns() {
                let (start, length) = column.byte_range();
                let mut position = start as usize;
                while position < (start + length) as usize {
                    let header =
                        crate::page_checksum::parse_page_header(&encoded.bytes[position..])
                            .unwrap();
                    assert!(
                        header.fields.iter().any(|(id, _, _)| *id == 4),
                        "{} has a page without crc",
                        column.column_path().string()
                    );
                    position += header.length + header.compressed_page_size;
                    pages += 1;
                }
            }
        }
        assert!(pages > 4 * 28, "{pages}");
        assert_eq!(decode_segment(encoded.bytes).unwrap(), events);
    }

    #[test]
    fn a_bit_flipped_in_a_data_page_fails_the_read() {
        let events = incompressible_events(50, 2000);
        let encoded = encode_segment(&events, SegmentFormat::default()).unwrap();
        let (data_start, data_end) = payload_page_data(&encoded.bytes);
        let mut damaged = encoded.bytes.to_vec();
        damaged[(data_start + data_end) / 2] ^= 0x10;
        let error = decode_segment(Bytes::from(damaged)).unwrap_err();
        assert!(
            error
                .full_message()
                .contains("page checksum mismatch in column payload"),
            "{}",
            error.full_message()
        );
    }

    #[test]
    fn segments_carry_bloom_filters_page_index_and_zstd() {
        let events: Vec<Event> = (0..100)
            .map(|offset| Event {
                event_id: event_id::kafka("s", "t", 0, offset),
                source: "s".into(),
                bus: Bus::Kafka,
                topic: "t".into(),
                routing_key: None,
                partition: Some(0),
                offset: Some(offset),
                key: Some(format!("key-{offset}").into_bytes()),
                headers: vec![],
                payload: Some(b"{}".to_vec()),
                payload_size: 2,
                payload_truncated: false,
                content_type: None,
                message_id: None,
                correlation_id: None,
                timestamp_type: None,
                amqp: AmqpProperties::default(),
                redelivered: None,
                event_time: offset,
                ingest_time: offset,
            })
            .collect();
        let encoded = encode_segment(&events, SegmentFormat::default()).unwrap();
        assert_eq!((encoded.first_offset, encoded.last_offset), (0, 99));
        assert_eq!((encoded.min_event_time, encoded.max_event_time), (0, 99));
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
        let builder =
            ParquetRecordBatchReaderBuilder::try_new_with_options(encoded.bytes, options).unwrap();
        let metadata = builder.metadata();
        assert!(metadata.column_index().is_some(), "page index is missing");
        let row_group = metadata.row_group(0);
        for column in row_group.columns() {
            assert!(matches!(column.compression(), Compression::ZSTD(_)));
            let name = column.column_path().string();
            let has_bloom = column.bloom_filter_offset().is_some();
            assert_eq!(
                has_bloom,
                BLOOM_FILTER_COLUMNS.contains(&name.as_str()),
                "{name}"
            );
            let delta = column
                .encodings()
                .any(|e| e == Encoding::DELTA_BINARY_PACKED);
            assert_eq!(
                delta,
                ["offset", "ingest_time"].contains(&name.as_str()),
                "{name}"
            );
        }
    }
}
