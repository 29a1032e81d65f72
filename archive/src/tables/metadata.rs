//! Iceberg v2 table metadata (`vN-….metadata.json`), as Hindsight writes
//! and reads it back. Only Hindsight commits to its tables, so only what
//! Hindsight writes needs to round-trip.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::Result;
use crate::tables::spec::{iceberg_schema, last_column_id, name_mapping, Spec, LAST_PARTITION_ID};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TableMetadata {
    pub format_version: i32,
    pub table_uuid: String,
    pub location: String,
    pub last_sequence_number: i64,
    pub last_updated_ms: i64,
    pub last_column_id: i32,
    pub current_schema_id: i32,
    pub schemas: Vec<Value>,
    pub default_spec_id: i32,
    pub partition_specs: Vec<Value>,
    pub last_partition_id: i32,
    pub default_sort_order_id: i32,
    pub sort_orders: Vec<Value>,
    pub properties: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_snapshot_id: Option<i64>,
    #[serde(default)]
    pub snapshots: Vec<Snapshot>,
    #[serde(default)]
    pub snapshot_log: Vec<SnapshotLogEntry>,
    #[serde(default)]
    pub metadata_log: Vec<MetadataLogEntry>,
    #[serde(default)]
    pub refs: BTreeMap<String, SnapshotRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Snapshot {
    pub snapshot_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_snapshot_id: Option<i64>,
    pub sequence_number: i64,
    pub timestamp_ms: i64,
    pub manifest_list: String,
    pub summary: BTreeMap<String, String>,
    pub schema_id: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotLogEntry {
    pub timestamp_ms: i64,
    pub snapshot_id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MetadataLogEntry {
    pub timestamp_ms: i64,
    pub metadata_file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotRef {
    pub snapshot_id: i64,
    #[serde(rename = "type")]
    pub kind: String,
}

impl TableMetadata {
    /// A table with no snapshot yet, at `location`.
    pub fn new(location: String, source: &str, topic: &str, now_ms: i64) -> Result<TableMetadata> {
        let mut properties = BTreeMap::from([
            ("schema.name-mapping.default".to_owned(), name_mapping()?),
            ("write.format.default".to_owned(), "parquet".to_owned()),
            (
                "write.parquet.compression-codec".to_owned(),
                "zstd".to_owned(),
            ),
            ("hindsight.source".to_owned(), source.to_owned()),
            ("hindsight.topic".to_owned(), topic.to_owned()),
        ]);
        properties.insert(
            "comment".to_owned(),
            format!("Hindsight archive of {topic} from source {source}; written by Hindsight only"),
        );
        Ok(TableMetadata {
            format_version: 2,
            table_uuid: uuid::Uuid::new_v4().to_string(),
            location,
            last_sequence_number: 0,
            last_updated_ms: now_ms,
            last_column_id: last_column_id(),
            current_schema_id: 0,
            schemas: vec![iceberg_schema()?],
            default_spec_id: Spec::DEFAULT.id(),
            partition_specs: Spec::ALL
                .into_iter()
                .map(Spec::to_json)
                .collect::<Result<_>>()?,
            last_partition_id: LAST_PARTITION_ID,
            default_sort_order_id: 0,
            sort_orders: vec![json!({"order-id": 0, "fields": []})],
            properties,
            current_snapshot_id: None,
            snapshots: Vec::new(),
            snapshot_log: Vec::new(),
            metadata_log: Vec::new(),
            refs: BTreeMap::new(),
        })
    }

    pub fn current_snapshot(&self) -> Option<&Snapshot> {
        let id = self.current_snapshot_id?;
        self.snapshots
            .iter()
            .find(|snapshot| snapshot.snapshot_id == id)
    }

    /// Makes `snapshot` current (the `main` branch).
    pub fn add_snapshot(&mut self, snapshot: Snapshot) {
        self.last_sequence_number = snapshot.sequence_number;
        self.last_updated_ms = snapshot.timestamp_ms;
        self.current_snapshot_id = Some(snapshot.snapshot_id);
        self.refs.insert(
            "main".to_owned(),
            SnapshotRef {
                snapshot_id: snapshot.snapshot_id,
                kind: "branch".to_owned(),
            },
        );
        self.snapshot_log.push(SnapshotLogEntry {
            timestamp_ms: snapshot.timestamp_ms,
            snapshot_id: snapshot.snapshot_id,
        });
        self.snapshots.push(snapshot);
    }

    /// Drops the snapshots older than `keep_after_ms` beyond the newest
    /// `keep_at_least` (never the current one). Returns the dropped ones.
    pub fn expire_snapshots(&mut self, keep_after_ms: i64, keep_at_least: usize) -> Vec<Snapshot> {
        let current = self.current_snapshot_id;
        let newest_first: Vec<i64> = {
            let mut ordered: Vec<&Snapshot> = self.snapshots.iter().collect();
            ordered.sort_by_key(|snapshot| std::cmp::Reverse(snapshot.sequence_number));
            ordered
                .iter()
                .map(|snapshot| snapshot.snapshot_id)
                .collect()
        };
        let keep = |snapshot: &Snapshot| {
            Some(snapshot.snapshot_id) == current
                || snapshot.timestamp_ms >= keep_after_ms
                || newest_first
                    .iter()
                    .take(keep_at_least)
                    .any(|id| *id == snapshot.snapshot_id)
        };
        let (kept, expired): (Vec<Snapshot>, Vec<Snapshot>) = self
            .snapshots
            .drain(..)
            .partition(|snapshot| keep(snapshot));
        self.snapshots = kept;
        let live: Vec<i64> = self.snapshots.iter().map(|s| s.snapshot_id).collect();
        self.snapshot_log
            .retain(|entry| live.contains(&entry.snapshot_id));
        expired
    }

    /// The sequence number of the oldest snapshot kept.
    pub fn oldest_sequence_number(&self) -> Option<i64> {
        self.snapshots.iter().map(|s| s.sequence_number).min()
    }

    /// Records `previous` in the metadata log, keeping the newest
    /// `keep` entries; returns the files that fell off the log.
    pub fn log_previous(
        &mut self,
        previous: String,
        timestamp_ms: i64,
        keep: usize,
    ) -> Vec<String> {
        self.metadata_log.push(MetadataLogEntry {
            timestamp_ms,
            metadata_file: previous,
        });
        let excess = self.metadata_log.len().saturating_sub(keep);
        self.metadata_log
            .drain(..excess)
            .map(|entry| entry.metadata_file)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: i64, sequence_number: i64, timestamp_ms: i64) -> Snapshot {
        Snapshot {
            snapshot_id: id,
            parent_snapshot_id: None,
            sequence_number,
            timestamp_ms,
            manifest_list: format!("snap-{id}.avro"),
            summary: BTreeMap::from([("operation".to_owned(), "append".to_owned())]),
            schema_id: 0,
        }
    }

    #[test]
    fn expiry_keeps_the_current_the_recent_and_the_newest_few() {
        let mut metadata = TableMetadata::new("file:///t".to_owned(), "s", "t", 0).unwrap();
        for sequence in 1..=6 {
            metadata.add_snapshot(snapshot(100 + sequence, sequence, sequence * 1000));
        }
        let expired = metadata.expire_snapshots(5000, 2);
        let expired: Vec<i64> = expired.iter().map(|s| s.snapshot_id).collect();
        assert_eq!(expired, vec![101, 102, 103, 104]);
        assert_eq!(metadata.oldest_sequence_number(), Some(5));
        assert_eq!(metadata.snapshot_log.len(), 2);
        let expired = metadata.expire_snapshots(i64::MAX, 0);
        assert_eq!(expired.len(), 1);
        assert_eq!(metadata.current_snapshot().unwrap().snapshot_id, 106);
        // It reads back as it was written.
        let text = serde_json::to_string(&metadata).unwrap();
        assert!(text.contains("\"format-version\":2"));
        assert_eq!(
            serde_json::from_str::<TableMetadata>(&text).unwrap(),
            metadata
        );
    }

    #[test]
    fn the_metadata_log_keeps_the_newest_entries() {
        let mut metadata = TableMetadata::new("file:///t".to_owned(), "s", "t", 0).unwrap();
        assert!(metadata.log_previous("v1".to_owned(), 1, 2).is_empty());
        assert!(metadata.log_previous("v2".to_owned(), 2, 2).is_empty());
        assert_eq!(
            metadata.log_previous("v3".to_owned(), 3, 2),
            vec!["v1".to_owned()]
        );
    }
}
