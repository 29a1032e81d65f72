//! A data file's manifest entry from its Parquet footer: sizes, value and
//! null counts, and lower and upper bounds per column, so that engines skip
//! files. Only the footer is read (two ranged reads), never the rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::path::Path;
#[allow(deprecated)]
use parquet::arrow::async_reader::{AsyncFileReader, ParquetObjectReader};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use serde::{Deserialize, Serialize};

use crate::catalog::SegmentRecord;
use crate::error::{Error, ErrorKind, Result};
use crate::store::ArchiveStore;
use crate::tables::spec::{column_id, Spec};

/// Bounds of strings and binaries are cut to this many bytes, as Iceberg's
/// default metrics mode (`truncate(16)`) does.
const BOUND_BYTES: usize = 16;

/// Columns whose bounds would only bloat manifests: nobody prunes on them.
const NO_BOUNDS: [&str; 2] = ["payload", "amqp_headers_table"];

/// One data file of a table: a committed segment, as a manifest entry
/// describes it. Kept in the catalog (`table_files.data_file`, JSON) so a
/// manifest can be rewritten without reading the old one back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Absolute URI (`file:///…`, `s3://…`).
    pub path: String,
    pub spec_id: i32,
    /// The partition tuple, in spec order.
    pub partition: Vec<Option<i32>>,
    pub record_count: i64,
    pub file_size: i64,
    pub column_sizes: BTreeMap<i32, i64>,
    pub value_counts: BTreeMap<i32, i64>,
    pub null_counts: BTreeMap<i32, i64>,
    /// Iceberg single-value serialisation, hex.
    pub lower_bounds: BTreeMap<i32, String>,
    pub upper_bounds: BTreeMap<i32, String>,
    pub split_offsets: Vec<i64>,
}

impl DataFile {
    pub fn spec(&self) -> Result<Spec> {
        Spec::from_id(self.spec_id)
    }
}

/// Reads the footer of `segment` and describes it as a data file at `uri`.
pub async fn data_file(
    store: &ArchiveStore,
    segment: &SegmentRecord,
    uri: String,
) -> Result<DataFile> {
    let relative = Path::parse(&segment.segment.uri)?;
    let size = u64::try_from(segment.segment.bytes).unwrap_or_default();
    #[allow(deprecated)]
    let mut reader = ParquetObjectReader::new(store.object_store(), store.full_path(&relative))
        .with_file_size(size);
    let metadata: Arc<ParquetMetaData> = reader.get_metadata(None).await.map_err(|error| {
        Error::with_source(
            ErrorKind::SegmentUnreadable,
            format!("cannot read the footer of segment {}", segment.segment.uri),
            error,
        )
    })?;
    describe(&metadata, uri, segment.segment.bytes)
}

/// The data file of a Parquet footer.
pub fn describe(metadata: &ParquetMetaData, path: String, file_size: i64) -> Result<DataFile> {
    let mut columns: BTreeMap<i32, ColumnSummary> = BTreeMap::new();
    let mut split_offsets = Vec::new();
    for row_group in metadata.row_groups() {
        if let Some(first) = row_group.columns().first() {
            let start = first
                .dictionary_page_offset()
                .unwrap_or_else(|| first.data_page_offset());
            split_offsets.push(start);
        }
        for chunk in row_group.columns() {
            let path = chunk.column_path();
            let Some(id) = leaf_id(
                chunk.column_descr().self_type().get_basic_info(),
                path.parts(),
            ) else {
                continue;
            };
            let summary = columns.entry(id).or_default();
            summary.bytes += chunk.compressed_size();
            // Only top-level columns: a nested leaf's values are not rows.
            if path.parts().len() == 1 {
                summary.top_level = true;
                summary.name = path.parts()[0].clone();
                summary.values += chunk.num_values();
                match chunk.statistics() {
                    Some(statistics) => summary.add(statistics),
                    None => summary.missing = true,
                }
            }
        }
    }
    split_offsets.sort_unstable();
    let record_count = metadata.file_metadata().num_rows();
    let mut file = DataFile {
        path,
        spec_id: Spec::Unpartitioned.id(),
        partition: Vec::new(),
        record_count,
        file_size,
        column_sizes: BTreeMap::new(),
        value_counts: BTreeMap::new(),
        null_counts: BTreeMap::new(),
        lower_bounds: BTreeMap::new(),
        upper_bounds: BTreeMap::new(),
        split_offsets,
    };
    let event_time = column_id("event_time")?;
    let partition_column = column_id("partition")?;
    let mut time_range = None;
    let mut partition_value = None;
    for (id, summary) in &columns {
        file.column_sizes.insert(*id, summary.bytes);
        if !summary.top_level {
            continue;
        }
        file.value_counts.insert(*id, summary.values);
        if summary.missing {
            continue;
        }
        file.null_counts.insert(*id, summary.nulls);
        if *id == event_time {
            if let (Some(Bound::Long(min)), Some(Bound::Long(max))) = (&summary.min, &summary.max) {
                time_range = Some((*min, *max));
            }
        }
        if *id == partition_column {
            partition_value = match (&summary.min, &summary.max) {
                _ if summary.nulls == summary.values => Some(None),
                (Some(Bound::Int(min)), Some(Bound::Int(max)))
                    if min == max && summary.nulls == 0 =>
                {
                    Some(Some(*min))
                }
                _ => None,
            };
        }
        if NO_BOUNDS.contains(&summary.name.as_str()) {
            continue;
        }
        if let Some(lower) = summary.min.as_ref().and_then(Bound::lower) {
            file.lower_bounds.insert(*id, hex(&lower));
        }
        if let Some(upper) = summary.max.as_ref().and_then(Bound::upper) {
            file.upper_bounds.insert(*id, hex(&upper));
        }
    }
    if let Some((min, max)) = time_range {
        let (spec, partition) = Spec::of_file(min, max, partition_value);
        file.spec_id = spec.id();
        file.partition = partition;
    }
    Ok(file)
}

/// The field id of a leaf column: the Parquet field id when the segment
/// carries one, else the id of the column of that name (the name mapping).
fn leaf_id(info: &parquet::schema::types::BasicTypeInfo, path: &[String]) -> Option<i32> {
    if info.has_id() {
        return Some(info.id());
    }
    let name = path.first()?;
    match path {
        [_] => column_id(name).ok(),
        // headers.list.item.{name,value}
        [first, .., last] if first == "headers" => match last.as_str() {
            "name" => Some(crate::schema::HEADER_NAME_ID),
            "value" => Some(crate::schema::HEADER_VALUE_ID),
            _ => None,
        },
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Bound {
    Boolean(bool),
    Int(i32),
    Long(i64),
    Bytes(Vec<u8>),
}

impl Bound {
    fn lower(&self) -> Option<Vec<u8>> {
        Some(match self {
            Bound::Boolean(value) => vec![u8::from(*value)],
            Bound::Int(value) => value.to_le_bytes().to_vec(),
            Bound::Long(value) => value.to_le_bytes().to_vec(),
            Bound::Bytes(bytes) => truncate_lower(bytes),
        })
    }

    fn upper(&self) -> Option<Vec<u8>> {
        match self {
            Bound::Bytes(bytes) => truncate_upper(bytes),
            other => other.lower(),
        }
    }
}

#[derive(Debug, Default)]
struct ColumnSummary {
    name: String,
    top_level: bool,
    bytes: i64,
    values: i64,
    nulls: i64,
    min: Option<Bound>,
    max: Option<Bound>,
    /// A row group had no statistics (or no null count): no bound or
    /// count can be trusted.
    missing: bool,
}

impl ColumnSummary {
    fn add(&mut self, statistics: &Statistics) {
        let Some(nulls) = statistics.null_count_opt() else {
            self.missing = true;
            return;
        };
        self.nulls += i64::try_from(nulls).unwrap_or(i64::MAX);
        let (min, max) = match statistics {
            Statistics::Boolean(s) => (
                s.min_opt().map(|v| Bound::Boolean(*v)),
                s.max_opt().map(|v| Bound::Boolean(*v)),
            ),
            Statistics::Int32(s) => (
                s.min_opt().map(|v| Bound::Int(*v)),
                s.max_opt().map(|v| Bound::Int(*v)),
            ),
            Statistics::Int64(s) => (
                s.min_opt().map(|v| Bound::Long(*v)),
                s.max_opt().map(|v| Bound::Long(*v)),
            ),
            Statistics::ByteArray(s) => (
                s.min_opt().map(|v| Bound::Bytes(v.data().to_vec())),
                s.max_opt().map(|v| Bound::Bytes(v.data().to_vec())),
            ),
            _ => (None, None),
        };
        // A row group of nulls only has no min or max; it bounds nothing.
        if let Some(min) = min {
            self.min = Some(match self.min.take() {
                Some(current) if less(&current, &min) => current,
                _ => min,
            });
        }
        if let Some(max) = max {
            self.max = Some(match self.max.take() {
                Some(current) if less(&max, &current) => current,
                _ => max,
            });
        }
    }
}

/// Iceberg's order: signed numbers, unsigned bytes (UTF-8 bytes sort as
/// code points do).
fn less(left: &Bound, right: &Bound) -> bool {
    match (left, right) {
        (Bound::Boolean(l), Bound::Boolean(r)) => l < r,
        (Bound::Int(l), Bound::Int(r)) => l < r,
        (Bound::Long(l), Bound::Long(r)) => l < r,
        (Bound::Bytes(l), Bound::Bytes(r)) => l < r,
        _ => false,
    }
}

/// A prefix is a lower bound; for UTF-8 it ends on a character boundary.
fn truncate_lower(bytes: &[u8]) -> Vec<u8> {
    if bytes.len() <= BOUND_BYTES {
        return bytes.to_vec();
    }
    let mut end = BOUND_BYTES;
    if std::str::from_utf8(bytes).is_ok() {
        while end > 0 && (bytes[end] & 0b1100_0000) == 0b1000_0000 {
            end -= 1;
        }
    }
    bytes[..end].to_vec()
}

/// The shortest value above every value with this prefix: the truncated
/// prefix with its last character (or byte) incremented; none when every
/// position is already the largest.
fn truncate_upper(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() <= BOUND_BYTES {
        return Some(bytes.to_vec());
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let mut prefix: Vec<char> = Vec::new();
        let mut length = 0;
        for character in text.chars() {
            if length + character.len_utf8() > BOUND_BYTES {
                break;
            }
            length += character.len_utf8();
            prefix.push(character);
        }
        while let Some(last) = prefix.pop() {
            let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
            if let Some(next) = next {
                prefix.push(next);
                return Some(prefix.into_iter().collect::<String>().into_bytes());
            }
        }
        return None;
    }
    let mut prefix = bytes[..BOUND_BYTES].to_vec();
    while let Some(last) = prefix.pop() {
        if last < u8::MAX {
            prefix.push(last + 1);
            return Some(prefix);
        }
    }
    None
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub fn unhex(text: &str) -> Result<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|at| {
            text.get(at..at + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| Error::internal("a stored bound is not hex"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::segment::{encode_segment, SegmentFormat};

    fn event(offset: i64) -> Event {
        crate::maintenance::test_event(3, offset)
    }

    #[test]
    fn truncated_bounds_still_bound() {
        let long = "abcdefghijklmnopqrstuvwxyz";
        assert_eq!(truncate_lower(long.as_bytes()), b"abcdefghijklmnop");
        assert_eq!(
            truncate_upper(long.as_bytes()).unwrap(),
            b"abcdefghijklmnoq"
        );
        // A multi-byte character is never cut in half.
        let accented = "ééééééééé"; // 18 bytes
        assert_eq!(truncate_lower(accented.as_bytes()), "éééééééé".as_bytes());
        assert_eq!(
            String::from_utf8(truncate_upper(accented.as_bytes()).unwrap()).unwrap(),
            "éééééééê"
        );
        assert_eq!(truncate_upper(&[0xff; 20]), None);
        assert_eq!(
            truncate_upper(&[
                1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 9
            ])
            .unwrap(),
            vec![2]
        );
        assert_eq!(unhex(&hex(&[0, 7, 255])).unwrap(), vec![0, 7, 255]);
    }

    #[test]
    fn a_segment_footer_becomes_a_data_file() {
        let events: Vec<Event> = (0..100).map(event).collect();
        let bytes = encode_segment(&events, SegmentFormat::default())
            .unwrap()
            .bytes;
        let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .unwrap();
        // Every column, nested ones included, carries its field id.
        let schema = metadata.file_metadata().schema_descr();
        let ids: Vec<i32> = (0..schema.num_columns())
            .map(|index| schema.column(index).self_type().get_basic_info().id())
            .collect();
        assert_eq!(ids.len(), 31);
        assert_eq!(ids[0], column_id("event_id").unwrap());
        assert!(ids.contains(&crate::schema::HEADER_VALUE_ID));
        let file = describe(
            &metadata,
            "file:///x.parquet".to_owned(),
            bytes.len() as i64,
        )
        .unwrap();
        assert_eq!(file.record_count, 100);
        assert_eq!(file.spec_id, Spec::Hourly.id());
        assert_eq!(file.partition, vec![Some(0), Some(3)]);
        let offset = column_id("offset").unwrap();
        assert_eq!(file.value_counts[&offset], 100);
        assert_eq!(file.null_counts[&offset], 0);
        assert_eq!(
            unhex(&file.lower_bounds[&offset]).unwrap(),
            0i64.to_le_bytes()
        );
        assert_eq!(
            unhex(&file.upper_bounds[&offset]).unwrap(),
            99i64.to_le_bytes()
        );
        assert!(!file
            .lower_bounds
            .contains_key(&column_id("payload").unwrap()));
        assert!(file
            .column_sizes
            .contains_key(&crate::schema::HEADER_NAME_ID));
    }
}
