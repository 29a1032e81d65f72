//! Iceberg v2 manifests and manifest lists: Avro object container files
//! whose schemas carry the spec's field ids, which readers resolve by.

use apache_avro::types::Value;
use apache_avro::{Codec, DeflateSettings, Schema, Writer};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, ErrorKind, Result};
use crate::tables::spec::{iceberg_schema, Spec};
use crate::tables::stats::{unhex, DataFile};

/// A manifest entry's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Existing = 0,
    Added = 1,
    Deleted = 2,
}

/// One entry of a manifest.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub status: Status,
    /// The snapshot that added (or, for a deleted entry, removed) the file.
    pub snapshot_id: i64,
    /// The data sequence number: the snapshot that added the file.
    pub sequence_number: i64,
    pub file: &'a DataFile,
}

/// A manifest as a manifest list names it. Kept in the catalog
/// (`table_manifests.entry`, JSON) so unchanged manifests carry over into
/// the next snapshot's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub length: i64,
    pub spec_id: i32,
    pub sequence_number: i64,
    pub min_sequence_number: i64,
    pub added_snapshot_id: i64,
    pub added_files: i32,
    pub existing_files: i32,
    pub deleted_files: i32,
    pub added_rows: i64,
    pub existing_rows: i64,
    pub deleted_rows: i64,
    /// Per partition field: (contains null, lower, upper).
    pub partitions: Vec<(bool, Option<i32>, Option<i32>)>,
}

impl ManifestFile {
    /// Files a snapshot that lists this manifest holds.
    pub fn live_files(&self) -> i64 {
        i64::from(self.added_files) + i64::from(self.existing_files)
    }
}

fn avro_error(error: apache_avro::Error) -> Error {
    Error::with_source(
        ErrorKind::Internal,
        "cannot encode an Iceberg manifest",
        error,
    )
}

fn map_type(
    name: &str,
    field_id: i32,
    key_id: i32,
    value_id: i32,
    value_type: &str,
) -> serde_json::Value {
    json!({
        "name": name,
        "type": ["null", {
            "type": "array",
            "logicalType": "map",
            "items": {
                "type": "record",
                "name": format!("k{key_id}_v{value_id}"),
                "fields": [
                    {"name": "key", "type": "int", "field-id": key_id},
                    {"name": "value", "type": value_type, "field-id": value_id},
                ],
            },
        }],
        "default": null,
        "field-id": field_id,
    })
}

fn manifest_schema(spec: Spec) -> serde_json::Value {
    json!({
        "type": "record",
        "name": "manifest_entry",
        "fields": [
            {"name": "status", "type": "int", "field-id": 0},
            {"name": "snapshot_id", "type": ["null", "long"], "default": null, "field-id": 1},
            {"name": "sequence_number", "type": ["null", "long"], "default": null, "field-id": 3},
            {"name": "file_sequence_number", "type": ["null", "long"], "default": null, "field-id": 4},
            {"name": "data_file", "field-id": 2, "type": {
                "type": "record",
                "name": "r2",
                "fields": [
                    {"name": "content", "type": "int", "field-id": 134},
                    {"name": "file_path", "type": "string", "field-id": 100},
                    {"name": "file_format", "type": "string", "field-id": 101},
                    {"name": "partition", "type": spec.avro_partition_type(), "field-id": 102},
                    {"name": "record_count", "type": "long", "field-id": 103},
                    {"name": "file_size_in_bytes", "type": "long", "field-id": 104},
                    map_type("column_sizes", 108, 117, 118, "long"),
                    map_type("value_counts", 109, 119, 120, "long"),
                    map_type("null_value_counts", 110, 121, 122, "long"),
                    map_type("lower_bounds", 125, 126, 127, "bytes"),
                    map_type("upper_bounds", 128, 129, 130, "bytes"),
                    {"name": "split_offsets", "type": ["null", {"type": "array", "items": "long", "element-id": 133}], "default": null, "field-id": 132},
                    {"name": "sort_order_id", "type": ["null", "int"], "default": null, "field-id": 140},
                ],
            }},
        ],
    })
}

fn manifest_list_schema() -> serde_json::Value {
    json!({
        "type": "record",
        "name": "manifest_file",
        "fields": [
            {"name": "manifest_path", "type": "string", "field-id": 500},
            {"name": "manifest_length", "type": "long", "field-id": 501},
            {"name": "partition_spec_id", "type": "int", "field-id": 502},
            {"name": "content", "type": "int", "field-id": 517},
            {"name": "sequence_number", "type": "long", "field-id": 515},
            {"name": "min_sequence_number", "type": "long", "field-id": 516},
            {"name": "added_snapshot_id", "type": "long", "field-id": 503},
            {"name": "added_files_count", "type": "int", "field-id": 504},
            {"name": "existing_files_count", "type": "int", "field-id": 505},
            {"name": "deleted_files_count", "type": "int", "field-id": 506},
            {"name": "added_rows_count", "type": "long", "field-id": 512},
            {"name": "existing_rows_count", "type": "long", "field-id": 513},
            {"name": "deleted_rows_count", "type": "long", "field-id": 514},
            {"name": "partitions", "type": ["null", {"type": "array", "element-id": 508, "items": {
                "type": "record",
                "name": "r508",
                "fields": [
                    {"name": "contains_null", "type": "boolean", "field-id": 509},
                    {"name": "contains_nan", "type": ["null", "boolean"], "default": null, "field-id": 518},
                    {"name": "lower_bound", "type": ["null", "bytes"], "default": null, "field-id": 510},
                    {"name": "upper_bound", "type": ["null", "bytes"], "default": null, "field-id": 511},
                ],
            }}], "default": null, "field-id": 507},
            {"name": "key_metadata", "type": ["null", "bytes"], "default": null, "field-id": 519},
        ],
    })
}

fn parse(schema: &serde_json::Value) -> Result<Schema> {
    Schema::parse(schema).map_err(avro_error)
}

fn optional(value: Option<Value>) -> Value {
    match value {
        Some(value) => Value::Union(1, Box::new(value)),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    )
}

fn counts(map: &std::collections::BTreeMap<i32, i64>) -> Value {
    optional(Some(Value::Array(
        map.iter()
            .map(|(key, value)| {
                record(vec![
                    ("key", Value::Int(*key)),
                    ("value", Value::Long(*value)),
                ])
            })
            .collect(),
    )))
}

fn bounds(map: &std::collections::BTreeMap<i32, String>) -> Result<Value> {
    let items = map
        .iter()
        .map(|(key, value)| {
            Ok(record(vec![
                ("key", Value::Int(*key)),
                ("value", Value::Bytes(unhex(value)?)),
            ]))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(optional(Some(Value::Array(items))))
}

fn partition_value(spec: Spec, values: &[Option<i32>]) -> Result<Value> {
    let fields = spec.avro_partition_type();
    let names = fields["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .filter_map(|f| f["name"].as_str())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if names.len() != values.len() {
        return Err(Error::internal(
            "a data file's partition does not fit its spec",
        ));
    }
    Ok(Value::Record(
        names
            .iter()
            .zip(values)
            .map(|(name, value)| {
                let typed = value.map(|v| {
                    if name.ends_with("_day") {
                        Value::Date(v)
                    } else {
                        Value::Int(v)
                    }
                });
                ((*name).to_owned(), optional(typed))
            })
            .collect(),
    ))
}

fn entry_value(spec: Spec, entry: &Entry<'_>) -> Result<Value> {
    let file = entry.file;
    let data_file = record(vec![
        ("content", Value::Int(0)),
        ("file_path", Value::String(file.path.clone())),
        ("file_format", Value::String("PARQUET".to_owned())),
        ("partition", partition_value(spec, &file.partition)?),
        ("record_count", Value::Long(file.record_count)),
        ("file_size_in_bytes", Value::Long(file.file_size)),
        ("column_sizes", counts(&file.column_sizes)),
        ("value_counts", counts(&file.value_counts)),
        ("null_value_counts", counts(&file.null_counts)),
        ("lower_bounds", bounds(&file.lower_bounds)?),
        ("upper_bounds", bounds(&file.upper_bounds)?),
        (
            "split_offsets",
            optional(Some(Value::Array(
                file.split_offsets
                    .iter()
                    .map(|offset| Value::Long(*offset))
                    .collect(),
            ))),
        ),
        ("sort_order_id", optional(None)),
    ]);
    Ok(record(vec![
        ("status", Value::Int(entry.status as i32)),
        (
            "snapshot_id",
            optional(Some(Value::Long(entry.snapshot_id))),
        ),
        (
            "sequence_number",
            optional(Some(Value::Long(entry.sequence_number))),
        ),
        (
            "file_sequence_number",
            optional(Some(Value::Long(entry.sequence_number))),
        ),
        ("data_file", data_file),
    ]))
}

/// Encodes a manifest of one spec. `path` is where it will be stored;
/// `snapshot_id` and `sequence_number` are the new snapshot's. Returns the
/// bytes and the manifest list's entry for it.
pub fn write_manifest(
    spec: Spec,
    entries: &[Entry<'_>],
    path: String,
    snapshot_id: i64,
    sequence_number: i64,
) -> Result<(Vec<u8>, ManifestFile)> {
    let schema = parse(&manifest_schema(spec))?;
    let mut writer = Writer::with_codec(
        &schema,
        Vec::new(),
        Codec::Deflate(DeflateSettings::default()),
    );
    let metadata = [
        ("schema", serde_json::to_string(&iceberg_schema()?)?),
        ("schema-id", "0".to_owned()),
        (
            "partition-spec",
            serde_json::to_string(&spec.to_json()?["fields"])?,
        ),
        ("partition-spec-id", spec.id().to_string()),
        ("format-version", "2".to_owned()),
        ("content", "data".to_owned()),
    ];
    for (key, value) in metadata {
        writer
            .add_user_metadata(key.to_owned(), value)
            .map_err(avro_error)?;
    }
    let mut manifest = ManifestFile {
        path,
        length: 0,
        spec_id: spec.id(),
        sequence_number,
        min_sequence_number: sequence_number,
        added_snapshot_id: snapshot_id,
        added_files: 0,
        existing_files: 0,
        deleted_files: 0,
        added_rows: 0,
        existing_rows: 0,
        deleted_rows: 0,
        partitions: vec![(false, None, None); spec.width()],
    };
    for entry in entries {
        if entry.file.spec_id != spec.id() {
            return Err(Error::internal("a manifest holds the files of one spec"));
        }
        writer
            .append(entry_value(spec, entry)?)
            .map_err(avro_error)?;
        let rows = entry.file.record_count;
        match entry.status {
            Status::Added => {
                manifest.added_files += 1;
                manifest.added_rows += rows;
            }
            Status::Existing => {
                manifest.existing_files += 1;
                manifest.existing_rows += rows;
            }
            Status::Deleted => {
                manifest.deleted_files += 1;
                manifest.deleted_rows += rows;
            }
        }
        if entry.status != Status::Deleted {
            manifest.min_sequence_number = manifest.min_sequence_number.min(entry.sequence_number);
        }
        for (summary, value) in manifest.partitions.iter_mut().zip(&entry.file.partition) {
            match value {
                None => summary.0 = true,
                Some(value) => {
                    summary.1 = Some(summary.1.map_or(*value, |low: i32| low.min(*value)));
                    summary.2 = Some(summary.2.map_or(*value, |high: i32| high.max(*value)));
                }
            }
        }
    }
    let bytes = writer.into_inner().map_err(avro_error)?;
    manifest.length = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    Ok((bytes, manifest))
}

/// Encodes a snapshot's manifest list.
pub fn write_manifest_list(
    manifests: &[ManifestFile],
    snapshot_id: i64,
    parent_snapshot_id: Option<i64>,
    sequence_number: i64,
) -> Result<Vec<u8>> {
    let schema = parse(&manifest_list_schema())?;
    let mut writer = Writer::with_codec(
        &schema,
        Vec::new(),
        Codec::Deflate(DeflateSettings::default()),
    );
    let mut metadata = vec![
        ("snapshot-id", snapshot_id.to_string()),
        ("sequence-number", sequence_number.to_string()),
        ("format-version", "2".to_owned()),
    ];
    if let Some(parent) = parent_snapshot_id {
        metadata.push(("parent-snapshot-id", parent.to_string()));
    }
    for (key, value) in metadata {
        writer
            .add_user_metadata(key.to_owned(), value)
            .map_err(avro_error)?;
    }
    for manifest in manifests {
        let partitions = manifest
            .partitions
            .iter()
            .map(|(contains_null, lower, upper)| {
                let bound = |value: &Option<i32>| {
                    optional(value.map(|v| Value::Bytes(v.to_le_bytes().to_vec())))
                };
                record(vec![
                    ("contains_null", Value::Boolean(*contains_null)),
                    ("contains_nan", optional(None)),
                    ("lower_bound", bound(lower)),
                    ("upper_bound", bound(upper)),
                ])
            })
            .collect();
        writer
            .append(record(vec![
                ("manifest_path", Value::String(manifest.path.clone())),
                ("manifest_length", Value::Long(manifest.length)),
                ("partition_spec_id", Value::Int(manifest.spec_id)),
                ("content", Value::Int(0)),
                ("sequence_number", Value::Long(manifest.sequence_number)),
                (
                    "min_sequence_number",
                    Value::Long(manifest.min_sequence_number),
                ),
                ("added_snapshot_id", Value::Long(manifest.added_snapshot_id)),
                ("added_files_count", Value::Int(manifest.added_files)),
                ("existing_files_count", Value::Int(manifest.existing_files)),
                ("deleted_files_count", Value::Int(manifest.deleted_files)),
                ("added_rows_count", Value::Long(manifest.added_rows)),
                ("existing_rows_count", Value::Long(manifest.existing_rows)),
                ("deleted_rows_count", Value::Long(manifest.deleted_rows)),
                ("partitions", optional(Some(Value::Array(partitions)))),
                ("key_metadata", optional(None)),
            ]))
            .map_err(avro_error)?;
    }
    writer.into_inner().map_err(avro_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Reader;

    fn file(spec: Spec, partition: Vec<Option<i32>>) -> DataFile {
        DataFile {
            path: "file:///archive/segments/x.parquet".to_owned(),
            spec_id: spec.id(),
            partition,
            record_count: 10,
            file_size: 100,
            column_sizes: [(1, 40)].into(),
            value_counts: [(1, 10)].into(),
            null_counts: [(1, 0)].into(),
            lower_bounds: [(7, "0000000000000000".to_owned())].into(),
            upper_bounds: [(7, "0900000000000000".to_owned())].into(),
            split_offsets: vec![4],
        }
    }

    #[test]
    fn manifests_read_back_with_their_field_ids() {
        let hourly = file(Spec::Hourly, vec![Some(490_000), None]);
        let entries = [
            Entry {
                status: Status::Added,
                snapshot_id: 5,
                sequence_number: 2,
                file: &hourly,
            },
            Entry {
                status: Status::Deleted,
                snapshot_id: 5,
                sequence_number: 1,
                file: &hourly,
            },
        ];
        let (bytes, manifest) =
            write_manifest(Spec::Hourly, &entries, "m.avro".to_owned(), 5, 2).unwrap();
        assert_eq!((manifest.added_files, manifest.deleted_files), (1, 1));
        assert_eq!(manifest.min_sequence_number, 2);
        assert_eq!(
            manifest.partitions,
            vec![(false, Some(490_000), Some(490_000)), (true, None, None)]
        );
        let reader = Reader::new(&bytes[..]).unwrap();
        let header = serde_json::to_value(reader.writer_schema()).unwrap();
        assert_eq!(header["fields"][4]["field-id"], json!(2));
        let data_file = &header["fields"][4]["type"]["fields"];
        assert_eq!(data_file[6]["type"][1]["logicalType"], json!("map"));
        assert_eq!(reader.user_metadata()["format-version"], b"2".to_vec());
        assert_eq!(reader.count(), 2);

        let daily = file(Spec::Daily, vec![Some(20_416), Some(1)]);
        let entries = [Entry {
            status: Status::Existing,
            snapshot_id: 3,
            sequence_number: 1,
            file: &daily,
        }];
        write_manifest(Spec::Daily, &entries, "d.avro".to_owned(), 5, 2).unwrap();
        assert!(write_manifest(Spec::Hourly, &entries, "d.avro".to_owned(), 5, 2).is_err());
        let list = write_manifest_list(&[manifest], 5, Some(4), 2).unwrap();
        assert_eq!(Reader::new(&list[..]).unwrap().count(), 1);
    }
}
