//! The other way to merge: copy the inputs' encoded column chunks (pages,
//! bloom filters, page indexes and page checksums as they are) into one
//! file, row group by row group, without decoding and re-encoding
//! (`SerializedRowGroupWriter::append_column`, as `parquet-concat` does).
//!
//! It is much cheaper, but the output keeps the inputs' zstd level and their
//! row groups (one or more per input, however small), so it saves files,
//! not bytes, and full scans gain less. `compaction.column_copy` chooses it;
//! inputs of another schema version are always re-encoded. The proof is the
//! same as the re-encoding merge's: a digest of (partition, offset) and
//! event id over the inputs, and again over the output after its page
//! checksums are checked.

use std::sync::Arc;

use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::bloom_filter::Sbbf;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::writer::SerializedFileWriter;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, Int64Type};

use super::merge::{InputOutcome, Merged, RowDigest};
use crate::catalog::SegmentRecord;
use crate::error::{Error, ErrorKind, Result};
use crate::page_checksum::verify_pages_in_range;
use crate::schema::SCHEMA_VERSION;
use crate::segment::{writer_properties, EncodedSegment, SegmentFormat};

fn metadata_of(uri: &str, bytes: &Bytes) -> Result<ParquetMetaData> {
    let metadata = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .parse_and_finish(bytes)
        .map_err(|error| {
            Error::new(
                ErrorKind::SegmentUnreadable,
                format!("segment {uri} is unreadable: {error}"),
            )
        })?;
    verify_pages_in_range(&metadata, 0, bytes).map_err(|error| {
        Error::new(
            ErrorKind::SegmentUnreadable,
            format!("segment {uri} is unreadable: {}", error.full_message()),
        )
    })?;
    Ok(metadata)
}

/// One column chunk's entry of a file's column or offset index.
fn page_index_entry<T: Clone>(
    index: Option<&Vec<Vec<T>>>,
    group: usize,
    column: usize,
) -> Option<T> {
    index
        .and_then(|groups| groups.get(group))
        .and_then(|columns| columns.get(column))
        .cloned()
}

/// Whether a segment was written with the current schema, so its column
/// chunks can be copied as they are.
pub fn copyable(metadata: &ParquetMetaData) -> bool {
    metadata
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .any(|kv| {
            kv.key == "hindsight.schema_version" && kv.value.as_deref() == Some(SCHEMA_VERSION)
        })
}

/// Adds every row's (event id, partition, offset) of `bytes` to `digest`,
/// reading only those three columns.
fn digest_rows(bytes: Bytes, digest: &mut RowDigest) -> Result<()> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let mask = ProjectionMask::columns(
        builder.parquet_schema(),
        ["event_id", "partition", "offset"],
    );
    let reader = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()?;
    for batch in reader {
        let batch = batch?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| Error::internal(format!("segment has no {name} column")))
        };
        let ids = arrow::compute::cast(&column("event_id")?, &arrow::datatypes::DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let partitions = column("partition")?;
        let partitions = partitions.as_primitive::<Int32Type>();
        let offsets = column("offset")?;
        let offsets = offsets.as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            digest.add_row(
                ids.value(row),
                (!partitions.is_null(row)).then(|| partitions.value(row)),
                (!offsets.is_null(row)).then(|| offsets.value(row)),
            );
        }
    }
    Ok(())
}

/// Copies the column chunks of `inputs` (all copyable, in read order) into
/// one segment and proves it. `None` when an input is of another schema
/// version: the caller re-encodes instead.
pub fn copy_segments(
    inputs: &[SegmentRecord],
    fetch: &mut dyn FnMut(&SegmentRecord) -> Result<Bytes>,
    format: SegmentFormat,
) -> Result<Option<Merged>> {
    let total_rows: i64 = inputs.iter().map(|record| record.segment.rows).sum();
    let mut properties = writer_properties(format, usize::try_from(total_rows).unwrap_or(0))?;
    let mut writer: Option<SerializedFileWriter<Vec<u8>>> = None;
    let mut expected = RowDigest::default();
    let mut outcomes = Vec::with_capacity(inputs.len());
    let mut bytes_in = 0u64;
    let mut written = 0i64;
    let (mut times, mut offsets) = ((i64::MAX, i64::MIN), (i64::MAX, i64::MIN));
    for record in inputs {
        let bytes = fetch(record)?;
        bytes_in += bytes.len() as u64;
        let metadata = metadata_of(&record.segment.uri, &bytes)?;
        if !copyable(&metadata) {
            return Ok(None);
        }
        if writer.is_none() {
            // The inputs' own key-value metadata (the Arrow schema and the
            // schema version) describes the copied chunks exactly.
            let key_values = metadata.file_metadata().key_value_metadata().cloned();
            properties = parquet::file::properties::WriterProperties::builder()
                .set_key_value_metadata(key_values)
                .set_sorting_columns(properties.sorting_columns().cloned())
                .build();
            let schema = metadata.file_metadata().schema_descr().root_schema_ptr();
            writer = Some(SerializedFileWriter::new(
                Vec::new(),
                schema,
                Arc::new(properties.clone()),
            )?);
        }
        let Some(out) = writer.as_mut() else {
            return Err(Error::internal("no output writer"));
        };
        let rows = metadata.file_metadata().num_rows();
        if rows != record.segment.rows {
            return Err(Error::new(
                ErrorKind::SegmentUnreadable,
                format!(
                    "segment {} holds {rows} rows, the catalog says {}",
                    record.segment.uri, record.segment.rows
                ),
            ));
        }
        for (group_index, group) in metadata.row_groups().iter().enumerate() {
            let mut group_out = out.next_row_group()?;
            for (column_index, column) in group.columns().iter().enumerate() {
                let close = ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: group.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter: Sbbf::read_from_column_chunk(column, &bytes).ok().flatten(),
                    column_index: page_index_entry(
                        metadata.column_index(),
                        group_index,
                        column_index,
                    ),
                    offset_index: page_index_entry(
                        metadata.offset_index(),
                        group_index,
                        column_index,
                    ),
                };
                group_out.append_column(&bytes, close)?;
            }
            group_out.close()?;
        }
        outcomes.push(InputOutcome {
            first_row: written,
            rows,
            erased_rows: Vec::new(),
        });
        written += rows;
        digest_rows(bytes, &mut expected)?;
        let segment = &record.segment;
        times = (
            times.0.min(segment.min_event_time),
            times.1.max(segment.max_event_time),
        );
        offsets = (
            offsets.0.min(segment.first_offset),
            offsets.1.max(segment.last_offset),
        );
    }
    let Some(writer) = writer else {
        return Err(Error::internal("a merge needs at least one input"));
    };
    let output = Bytes::from(writer.into_inner()?);
    let metadata = metadata_of("being copied", &output)?;
    let mut actual = RowDigest::default();
    digest_rows(output.clone(), &mut actual)?;
    if actual != expected || metadata.file_metadata().num_rows() != written {
        return Err(Error::new(
            ErrorKind::Internal,
            format!(
                "the copied segment does not hold exactly its inputs' rows: expected {} rows \\
                 (ids {}), found {} (ids {})",
                expected.rows,
                expected.checksum(),
                actual.rows,
                actual.checksum()
            ),
        ));
    }
    Ok(Some(Merged {
        output: Some(EncodedSegment {
            bytes: output,
            rows: written as u64,
            first_offset: offsets.0,
            last_offset: offsets.1,
            min_event_time: times.0,
            max_event_time: times.1,
        }),
        inputs: outcomes,
        digest: expected,
        bytes_in,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::segment::{decode_segment, encode_segment};

    fn event(offset: i64) -> Event {
        crate::maintenance::test_event(0, offset)
    }

    fn record(index: usize, encoded: &EncodedSegment) -> SegmentRecord {
        let name = format!("s{index}");
        crate::maintenance::live_record(encoded.record(name.clone(), name, "src", "orders", 0), 0)
    }

    #[test]
    fn copied_chunks_read_back_whole_with_their_indexes_and_checksums() {
        let all: Vec<Event> = (0..300).map(event).collect();
        let encoded: Vec<EncodedSegment> = all
            .chunks(100)
            .map(|chunk| encode_segment(chunk, SegmentFormat::default()).unwrap())
            .collect();
        let records: Vec<SegmentRecord> = encoded
            .iter()
            .enumerate()
            .map(|(i, e)| record(i, e))
            .collect();
        let mut fetch = |record: &SegmentRecord| {
            let index: usize = record.segment.uri[1..].parse().unwrap();
            Ok(encoded[index].bytes.clone())
        };
        let merged = copy_segments(&records, &mut fetch, SegmentFormat::default())
            .unwrap()
            .unwrap();
        let output = merged.output.unwrap();
        assert_eq!((output.first_offset, output.last_offset), (0, 299));
        // decode_segment checks every page checksum that was copied.
        assert_eq!(decode_segment(output.bytes.clone()).unwrap(), all);
        let metadata = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&output.bytes)
            .unwrap();
        assert_eq!(metadata.num_row_groups(), 3, "one row group per input");
        let event_id = &metadata.row_group(2).columns()[0];
        assert!(Sbbf::read_from_column_chunk(event_id, &output.bytes)
            .unwrap()
            .is_some());
        let firsts: Vec<i64> = merged.inputs.iter().map(|i| i.first_row).collect();
        assert_eq!(firsts, [0, 100, 200]);
    }
}
