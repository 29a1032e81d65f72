//! The streaming merge behind compaction and erasure, and its proof.
//!
//! Inputs are read one at a time, a batch at a time, and written to one
//! output in the order given (for one partition's segments of one bucket,
//! offset order: their offset ranges do not overlap). Memory holds one input
//! object, one batch and the output being built, whatever the size of the
//! bucket: the planner bounds each output by the target size.
//!
//! The proof: while reading, the merge sums a digest of what the output must
//! hold (every kept row); then it decodes the finished output, checking its
//! page checksums, and sums the same digest over what it does hold. The
//! digest is the row count, the count and an order-independent hash of the
//! (partition, offset) pairs, and an order-independent hash of the event ids.
//! Only equal digests let the swap happen.

use arrow::array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use crate::catalog::SegmentRecord;
use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;
use crate::page_checksum::{add_page_checksums, verify_pages_in_range};
use crate::schema::{batch_to_events, event_schema, events_to_batch};
use crate::segment::{writer_properties, EncodedSegment, SegmentFormat};

const BATCH_ROWS: usize = 8192;

/// What a set of rows is, for the proof. Two digests are equal when the rows
/// are the same set (with overwhelming probability for the hashes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowDigest {
    pub rows: u64,
    pub positioned: u64,
    /// Wrapping sum of a 128-bit hash of each (partition, offset).
    pub positions: u128,
    /// Wrapping sum of a 128-bit hash of each event id.
    pub event_ids: u128,
}

impl RowDigest {
    pub fn add(&mut self, event: &Event) {
        self.add_row(&event.event_id, event.partition, event.offset);
    }

    pub fn add_row(&mut self, event_id: &str, partition: Option<i32>, offset: Option<i64>) {
        self.rows += 1;
        if let Some(offset) = offset {
            self.positioned += 1;
            let mut position = [0u8; 12];
            position[..4].copy_from_slice(&partition.unwrap_or(0).to_le_bytes());
            position[4..].copy_from_slice(&offset.to_le_bytes());
            self.positions = self.positions.wrapping_add(hash128(&position));
        }
        self.event_ids = self.event_ids.wrapping_add(hash128(event_id.as_bytes()));
    }

    /// The event-id checksum as people see it (32 hex digits).
    pub fn checksum(&self) -> String {
        format!("{:032x}", self.event_ids)
    }
}

fn hash128(bytes: &[u8]) -> u128 {
    let hash = blake3::hash(bytes);
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash.as_bytes()[..16]);
    u128::from_le_bytes(first)
}

/// How one input fared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputOutcome {
    /// The first row of this input's kept rows in the output.
    pub first_row: i64,
    /// Rows of the input.
    pub rows: i64,
    /// Row indexes of the input left out, ascending.
    pub erased_rows: Vec<i64>,
}

/// A finished, proven output (or `None` when every row was erased).
#[derive(Debug)]
pub struct Merged {
    pub output: Option<EncodedSegment>,
    pub inputs: Vec<InputOutcome>,
    /// The digest of the kept rows, equal in inputs and output.
    pub digest: RowDigest,
    pub bytes_in: u64,
}

/// Merges `inputs` (fetched one at a time by `fetch`) into one segment at
/// `format`, leaving out the events `erase` selects, and proves the result.
/// CPU-heavy and blocking: run it on its own thread.
pub fn merge_segments(
    inputs: &[SegmentRecord],
    fetch: &mut dyn FnMut(&SegmentRecord) -> Result<Bytes>,
    format: SegmentFormat,
    erase: Option<&(dyn Fn(&Event) -> bool + Sync)>,
) -> Result<Merged> {
    let total_rows: i64 = inputs.iter().map(|record| record.segment.rows).sum();
    let properties = writer_properties(format, usize::try_from(total_rows).unwrap_or(usize::MAX))?;
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, event_schema(), Some(properties.clone()))?;
    let mut expected = RowDigest::default();
    let mut outcomes = Vec::with_capacity(inputs.len());
    let mut bytes_in = 0u64;
    let mut written = 0i64;
    for record in inputs {
        let bytes = fetch(record)?;
        bytes_in += bytes.len() as u64;
        let mut outcome = InputOutcome {
            first_row: written,
            ..InputOutcome::default()
        };
        for batch in read_batches(&record.segment.uri, bytes)? {
            let mut events = batch_to_events(&batch?)?;
            let first_index = outcome.rows;
            outcome.rows += events.len() as i64;
            if let Some(erase) = erase {
                let mut index = first_index;
                events.retain(|event| {
                    let keep = !erase(event);
                    if !keep {
                        outcome.erased_rows.push(index);
                    }
                    index += 1;
                    keep
                });
            }
            if events.is_empty() {
                continue;
            }
            for event in &events {
                expected.add(event);
            }
            written += events.len() as i64;
            writer.write(&events_to_batch(&events)?)?;
        }
        if outcome.rows != record.segment.rows {
            return Err(Error::new(
                ErrorKind::SegmentUnreadable,
                format!(
                    "segment {} holds {} rows, the catalog says {}",
                    record.segment.uri, outcome.rows, record.segment.rows
                ),
            ));
        }
        outcomes.push(outcome);
    }
    if written == 0 {
        // Every row was erased: there is no output, only retired inputs.
        return Ok(Merged {
            output: None,
            inputs: outcomes,
            digest: expected,
            bytes_in,
        });
    }
    writer.close()?;
    let bytes = add_page_checksums(Bytes::from(buffer), properties)?;
    let (output, actual) = prove(bytes)?;
    if actual != expected {
        return Err(Error::new(
            ErrorKind::Internal,
            format!(
                "the merged segment does not hold exactly its inputs' rows: expected {} rows \
                 ({} positioned, ids {}), found {} ({} positioned, ids {})",
                expected.rows,
                expected.positioned,
                expected.checksum(),
                actual.rows,
                actual.positioned,
                actual.checksum()
            ),
        ));
    }
    Ok(Merged {
        output: Some(output),
        inputs: outcomes,
        digest: expected,
        bytes_in,
    })
}

/// The batches of one input, its page checksums checked first.
pub(crate) fn read_batches(
    uri: &str,
    bytes: Bytes,
) -> Result<impl Iterator<Item = std::result::Result<RecordBatch, arrow::error::ArrowError>>> {
    let unreadable = |error: Error| {
        Error::new(
            ErrorKind::SegmentUnreadable,
            format!("segment {uri} is unreadable: {}", error.full_message()),
        )
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
        .map_err(|error| unreadable(error.into()))?;
    verify_pages_in_range(builder.metadata(), 0, &bytes).map_err(unreadable)?;
    builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|error| unreadable(error.into()))
}

/// Decodes a finished output whole (page checksums included) and returns it
/// with its catalog facts and the digest of what it holds. Offsets must
/// rise within the output.
fn prove(bytes: Bytes) -> Result<(EncodedSegment, RowDigest)> {
    let mut digest = RowDigest::default();
    let mut times = (i64::MAX, i64::MIN);
    let mut offsets = (i64::MAX, i64::MIN);
    let mut previous_offset: Option<i64> = None;
    for batch in read_batches("being merged", bytes.clone())? {
        for event in batch_to_events(&batch?)? {
            digest.add(&event);
            times = (times.0.min(event.event_time), times.1.max(event.event_time));
            let offset = event.offset.unwrap_or_default();
            offsets = (offsets.0.min(offset), offsets.1.max(offset));
            if let Some(offset) = event.offset {
                if previous_offset.is_some_and(|previous| previous >= offset) {
                    return Err(Error::internal(format!(
                        "the merged segment is not in offset order at offset {offset}"
                    )));
                }
                previous_offset = Some(offset);
            }
        }
    }
    Ok((
        EncodedSegment {
            bytes,
            rows: digest.rows,
            first_offset: offsets.0,
            last_offset: offsets.1,
            min_event_time: times.0,
            max_event_time: times.1,
        },
        digest,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::NewSegment;
    use crate::event::{event_id, Bus, Event};
    use crate::segment::{decode_segment, encode_segment};

    fn event(offset: i64, key: &str) -> Event {
        Event {
            event_id: event_id::kafka("src", "orders", 1, offset),
            source: "src".to_owned(),
            bus: Bus::Kafka,
            topic: "orders".to_owned(),
            partition: Some(1),
            offset: Some(offset),
            key: Some(key.as_bytes().to_vec()),
            payload: Some(format!("{{\"n\":{offset}}}").into_bytes()),
            payload_size: 8,
            event_time: 1_000_000 + offset,
            ingest_time: 2_000_000 + offset,
            ..Event::default()
        }
    }

    fn record(uri: &str, rows: i64) -> SegmentRecord {
        crate::maintenance::live_record(
            NewSegment {
                id: uri.to_owned(),
                uri: uri.to_owned(),
                source: "src".to_owned(),
                topic: "orders".to_owned(),
                partition: 1,
                first_offset: 0,
                last_offset: 0,
                min_event_time: 0,
                max_event_time: 0,
                rows,
                bytes: 0,
                checksum: None,
            },
            0,
        )
    }

    fn inputs() -> (Vec<SegmentRecord>, Vec<Bytes>, Vec<Event>) {
        let all: Vec<Event> = (0..30)
            .map(|offset| event(offset, if offset % 3 == 0 { "alice" } else { "bob" }))
            .collect();
        let format = SegmentFormat::default();
        let bytes: Vec<Bytes> = all
            .chunks(10)
            .map(|chunk| encode_segment(chunk, format).unwrap().bytes)
            .collect();
        let records = (0..3).map(|i| record(&format!("s{i}"), 10)).collect();
        (records, bytes, all)
    }

    #[test]
    fn merging_keeps_every_row_in_order_and_proves_it() {
        let (records, bytes, all) = inputs();
        let mut fetch = |record: &SegmentRecord| {
            let index: usize = record.segment.uri[1..].parse().unwrap();
            Ok(bytes[index].clone())
        };
        let format = SegmentFormat {
            zstd_level: 9,
            ..SegmentFormat::default()
        };
        let merged = merge_segments(&records, &mut fetch, format, None).unwrap();
        let output = merged.output.unwrap();
        assert_eq!(decode_segment(output.bytes).unwrap(), all);
        assert_eq!((output.first_offset, output.last_offset), (0, 29));
        let firsts: Vec<i64> = merged.inputs.iter().map(|i| i.first_row).collect();
        assert_eq!(firsts, [0, 10, 20]);
        assert_eq!(merged.digest.rows, 30);
    }

    #[test]
    fn erasing_leaves_out_the_selected_rows_and_says_which() {
        let (records, bytes, all) = inputs();
        let mut fetch = |record: &SegmentRecord| {
            let index: usize = record.segment.uri[1..].parse().unwrap();
            Ok(bytes[index].clone())
        };
        let alice = |event: &Event| event.key.as_deref() == Some(b"alice".as_slice());
        let merged =
            merge_segments(&records, &mut fetch, SegmentFormat::default(), Some(&alice)).unwrap();
        let kept: Vec<Event> = all.into_iter().filter(|e| !alice(e)).collect();
        assert_eq!(decode_segment(merged.output.unwrap().bytes).unwrap(), kept);
        assert_eq!(merged.inputs[0].erased_rows, [0, 3, 6, 9]);
        assert_eq!(merged.inputs[1].first_row, 6);
        assert_eq!(merged.inputs[1].erased_rows, [2, 5, 8]);
    }

    #[test]
    fn a_catalog_row_count_that_disagrees_aborts() {
        let (mut records, bytes, _) = inputs();
        records[1].segment.rows = 11;
        let mut fetch = |record: &SegmentRecord| {
            let index: usize = record.segment.uri[1..].parse().unwrap();
            Ok(bytes[index].clone())
        };
        let error =
            merge_segments(&records, &mut fetch, SegmentFormat::default(), None).unwrap_err();
        assert!(error.message().contains("the catalog says 11"), "{error}");
    }

    #[test]
    fn digests_differ_when_one_row_differs() {
        let mut first = RowDigest::default();
        let mut second = RowDigest::default();
        for offset in 0..100 {
            first.add(&event(offset, "k"));
            second.add(&event(if offset == 50 { 150 } else { offset }, "k"));
        }
        assert_ne!(first, second);
        let mut reversed = RowDigest::default();
        for offset in (0..100).rev() {
            reversed.add(&event(offset, "k"));
        }
        assert_eq!(first, reversed);
    }
}
