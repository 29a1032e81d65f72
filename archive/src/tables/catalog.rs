//! The catalog side of the tables: the Iceberg SQL catalog's rows
//! (`iceberg_tables`, `iceberg_namespace_properties`) and Hindsight's own
//! record of each table's files and manifests, all moved in one
//! transaction per snapshot.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::Any;
use sqlx::Row;

use crate::catalog::{
    segment_from_row, Catalog, CatalogBackend, Checkpoint, SegmentRecord, SEGMENT_COLUMNS,
};
use crate::error::{Error, Result};
use crate::tables::manifest::ManifestFile;
use crate::tables::stats::DataFile;

/// A table in the SQL catalog.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId {
    pub catalog: String,
    pub namespace: String,
    pub name: String,
}

/// A data file as the catalog records it for a table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableFile {
    pub segment_id: String,
    /// The manifest that lists it now; `None` once removed.
    pub manifest: Option<String>,
    pub snapshot_id: i64,
    pub sequence_number: i64,
    pub data_file: DataFile,
    pub removed_sequence: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableManifest {
    pub entry: ManifestFile,
    pub added_sequence: i64,
    pub dropped_sequence: Option<i64>,
}

/// What the catalog knows of a table.
#[derive(Debug, Clone, Default)]
pub struct TableState {
    pub metadata_location: Option<String>,
    pub files: Vec<TableFile>,
    pub manifests: Vec<TableManifest>,
}

/// One snapshot's change, committed by compare-and-set on the metadata
/// location.
#[derive(Debug, Clone, Default)]
pub struct TableCommit {
    pub expected_location: Option<String>,
    pub new_location: String,
    pub sequence_number: i64,
    /// New data files (segments that must still be live).
    pub added: Vec<TableFile>,
    /// Files now listed by another manifest: (segment id, manifest).
    pub moved: Vec<(String, String)>,
    /// Files this snapshot removed.
    pub removed: Vec<String>,
    pub manifests_added: Vec<ManifestFile>,
    pub manifests_dropped: Vec<String>,
    /// Rows of files removed, and manifests dropped, at or before this
    /// sequence number are forgotten: no snapshot kept lists them.
    pub forget_through: i64,
}

/// The condition on a table's rows; its three columns are `$1` to `$3`.
const TABLE_IS: &str = "catalog_name = $1 AND table_namespace = $2 AND table_name = $3";

/// `sql` with the table's catalog, namespace and name bound to `$1` to `$3`.
fn of_table<'q>(sql: &'q str, table: &'q TableId) -> Query<'q, Any, AnyArguments<'q>> {
    sqlx::query(sql)
        .bind(&table.catalog)
        .bind(&table.namespace)
        .bind(&table.name)
}

fn table_file_from_row(row: &AnyRow) -> Result<TableFile> {
    let data_file: String = row.try_get("data_file")?;
    Ok(TableFile {
        segment_id: row.try_get("segment_id")?,
        manifest: row.try_get("manifest")?,
        snapshot_id: row.try_get("snapshot_id")?,
        sequence_number: row.try_get("sequence_number")?,
        data_file: serde_json::from_str(&data_file)?,
        removed_sequence: row.try_get("removed_sequence")?,
    })
}

impl Catalog {
    /// The (source, topic) pairs that have live segments or a table.
    pub async fn table_topics(&self, catalog_name: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT DISTINCT source, topic FROM segments WHERE state = 'committed' \
             AND retired_at IS NULL \
             UNION SELECT table_namespace AS source, table_name AS topic FROM table_files \
             WHERE catalog_name = $1 ORDER BY 1, 2",
        )
        .bind(catalog_name)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// The tables of the SQL catalog `catalog_name` that have a metadata
    /// file, with its location, by namespace and name.
    pub async fn iceberg_tables(&self, catalog_name: &str) -> Result<Vec<(TableId, String)>> {
        let rows = sqlx::query(
            "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables \
             WHERE catalog_name = $1 AND metadata_location IS NOT NULL ORDER BY 1, 2",
        )
        .bind(catalog_name)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let table = TableId {
                    catalog: catalog_name.to_owned(),
                    namespace: row.try_get(0)?,
                    name: row.try_get(1)?,
                };
                Ok((table, row.try_get(2)?))
            })
            .collect()
    }

    /// The live segments of (source, topic) and its checkpoints, read in
    /// one transaction, so the checkpoints describe exactly those segments.
    pub async fn live_segments_with_checkpoints(
        &self,
        source: &str,
        topic: &str,
    ) -> Result<(Vec<SegmentRecord>, Vec<Checkpoint>)> {
        let mut transaction = self.pool().begin().await?;
        if self.backend() == CatalogBackend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *transaction)
                .await?;
        }
        let segments = sqlx::query(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments WHERE state = 'committed' \
             AND retired_at IS NULL AND source = $1 AND topic = $2 \
             ORDER BY partition_id, first_offset"
        ))
        .bind(source)
        .bind(topic)
        .fetch_all(&mut *transaction)
        .await?
        .iter()
        .map(segment_from_row)
        .collect::<Result<Vec<_>>>()?;
        let checkpoints = sqlx::query(
            "SELECT partition_id, next_position, updated_at FROM checkpoints \
             WHERE source = $1 AND topic = $2 ORDER BY partition_id",
        )
        .bind(source)
        .bind(topic)
        .fetch_all(&mut *transaction)
        .await?
        .iter()
        .map(|row| {
            let partition: i64 = row.try_get("partition_id")?;
            Ok(Checkpoint {
                source: source.to_owned(),
                topic: topic.to_owned(),
                partition: i32::try_from(partition)
                    .map_err(|_| Error::internal("a checkpoint's partition is out of range"))?,
                next_position: row.try_get("next_position")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        transaction.commit().await?;
        Ok((segments, checkpoints))
    }

    pub async fn table_state(&self, table: &TableId) -> Result<TableState> {
        let metadata_location: Option<Option<String>> = sqlx::query_scalar(
            "SELECT metadata_location FROM iceberg_tables \
             WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3",
        )
        .bind(&table.catalog)
        .bind(&table.namespace)
        .bind(&table.name)
        .fetch_optional(self.pool())
        .await?;
        let files = of_table(
            &format!(
                "SELECT segment_id, manifest, snapshot_id, sequence_number, data_file, \
                 removed_sequence FROM table_files WHERE {TABLE_IS} ORDER BY segment_id"
            ),
            table,
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(table_file_from_row)
        .collect::<Result<Vec<_>>>()?;
        let manifests = of_table(
            &format!(
                "SELECT entry, added_sequence, dropped_sequence FROM table_manifests \
                 WHERE {TABLE_IS} ORDER BY path"
            ),
            table,
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|row| {
            let entry: String = row.try_get("entry")?;
            Ok(TableManifest {
                entry: serde_json::from_str(&entry)?,
                added_sequence: row.try_get("added_sequence")?,
                dropped_sequence: row.try_get("dropped_sequence")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(TableState {
            metadata_location: metadata_location.flatten(),
            files,
            manifests,
        })
    }

    /// Commits one snapshot of `table`: moves its metadata location from
    /// `expected_location` by compare-and-set and records its files and
    /// manifests, in one transaction. A Conflict when another process
    /// moved the table, or an added segment is no longer live (a
    /// compaction retired it since it was read); nothing changes then.
    pub async fn commit_table(&self, table: &TableId, commit: &TableCommit) -> Result<()> {
        let mut transaction = self.pool().begin().await?;
        let moved = match &commit.expected_location {
            Some(expected) => sqlx::query(
                "UPDATE iceberg_tables SET metadata_location = $1, previous_metadata_location = $2 \
                 WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5 \
                 AND metadata_location = $2",
            )
            .bind(&commit.new_location)
            .bind(expected)
            .bind(&table.catalog)
            .bind(&table.namespace)
            .bind(&table.name)
            .execute(&mut *transaction)
            .await?
            .rows_affected(),
            None => {
                sqlx::query(
                    "INSERT INTO iceberg_namespace_properties \
                     (catalog_name, namespace, property_key, property_value) \
                     VALUES ($1, $2, 'exists', 'true') ON CONFLICT DO NOTHING",
                )
                .bind(&table.catalog)
                .bind(&table.namespace)
                .execute(&mut *transaction)
                .await?;
                sqlx::query(
                    "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, \
                     metadata_location, previous_metadata_location, iceberg_type) \
                     VALUES ($1, $2, $3, $4, NULL, 'TABLE') ON CONFLICT DO NOTHING",
                )
                .bind(&table.catalog)
                .bind(&table.namespace)
                .bind(&table.name)
                .bind(&commit.new_location)
                .execute(&mut *transaction)
                .await?
                .rows_affected()
            }
        };
        if moved != 1 {
            return Err(Error::conflict(format!(
                "table {}.{} was changed by another process",
                table.namespace, table.name
            )));
        }
        for file in &commit.added {
            let live: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM segments WHERE id = $1 AND state = 'committed' \
                 AND retired_at IS NULL",
            )
            .bind(&file.segment_id)
            .fetch_one(&mut *transaction)
            .await?;
            if live != 1 {
                return Err(Error::conflict(format!(
                    "segment {} was retired while table {}.{} was synced",
                    file.segment_id, table.namespace, table.name
                )));
            }
            of_table(
                "INSERT INTO table_files (catalog_name, table_namespace, table_name, segment_id, \
                 manifest, snapshot_id, sequence_number, data_file, removed_sequence) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
                table,
            )
            .bind(&file.segment_id)
            .bind(&file.manifest)
            .bind(file.snapshot_id)
            .bind(file.sequence_number)
            .bind(serde_json::to_string(&file.data_file)?)
            .execute(&mut *transaction)
            .await?;
        }
        for (segment_id, manifest) in &commit.moved {
            of_table(
                &format!(
                    "UPDATE table_files SET manifest = $4 WHERE {TABLE_IS} AND segment_id = $5"
                ),
                table,
            )
            .bind(manifest)
            .bind(segment_id)
            .execute(&mut *transaction)
            .await?;
        }
        for segment_id in &commit.removed {
            of_table(
                &format!(
                    "UPDATE table_files SET manifest = NULL, removed_sequence = $4 \
                     WHERE {TABLE_IS} AND segment_id = $5"
                ),
                table,
            )
            .bind(commit.sequence_number)
            .bind(segment_id)
            .execute(&mut *transaction)
            .await?;
        }
        for manifest in &commit.manifests_added {
            of_table(
                "INSERT INTO table_manifests (catalog_name, table_namespace, table_name, path, \
                 entry, added_sequence, dropped_sequence) VALUES ($1, $2, $3, $4, $5, $6, NULL)",
                table,
            )
            .bind(&manifest.path)
            .bind(serde_json::to_string(manifest)?)
            .bind(commit.sequence_number)
            .execute(&mut *transaction)
            .await?;
        }
        for path in &commit.manifests_dropped {
            of_table(
                &format!("UPDATE table_manifests SET dropped_sequence = $4 WHERE {TABLE_IS} AND path = $5"),
                table,
            )
            .bind(commit.sequence_number)
            .bind(path)
            .execute(&mut *transaction)
            .await?;
        }
        for forget in [
            format!("DELETE FROM table_files WHERE {TABLE_IS} AND removed_sequence <= $4"),
            format!("DELETE FROM table_manifests WHERE {TABLE_IS} AND dropped_sequence <= $4"),
        ] {
            of_table(&forget, table)
                .bind(commit.forget_through)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }
}
