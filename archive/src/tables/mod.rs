//! The archive as Iceberg v2 tables, one per (source, topic), with no copy:
//! a table's data files are the committed segments themselves.
//!
//! A sync compares a topic's live segments (and its checkpoints, read in
//! the same transaction) with the files the table lists, and commits what
//! changed as one snapshot: new segments are appended, segments a
//! compaction, retention run or erasure retired are removed, in the same
//! snapshot as their replacements. So a reader of the table never sees a
//! pending segment, nor a retired one together with its replacement. Each
//! snapshot's summary records the checkpoints it is complete up to
//! (`hindsight.commit-metadata`).
//!
//! The Iceberg catalog is a SQL catalog in Hindsight's catalog database
//! (`iceberg_tables`, `iceberg_namespace_properties`); a commit moves the
//! table's metadata location by compare-and-set in the same transaction
//! that records its files (`table_files`) and manifests
//! (`table_manifests`). Metadata objects are written first, under new
//! names, so a crash at any instant leaves the table at its last commit
//! (plus unreferenced files). Snapshots older than `keep_snapshots` beyond
//! the newest `min_snapshots` expire, manifests are merged beyond
//! `max_manifests`, and compaction's sweep keeps a retired segment's object
//! while a kept snapshot lists it.
//!
//! Metadata is written natively (JSON, and Avro through `apache-avro`):
//! the `iceberg` crate would build a second arrow and parquet
//! (ARCHITECTURE.md says why).

pub mod catalog;
pub mod manifest;
pub mod metadata;
pub mod spec;
pub mod stats;
mod sync;

use std::time::Duration;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::error::{ErrorKind, Result};
use crate::store::ArchiveStore;

/// The bytes of the table metadata file at `location` (a URL in `store`).
pub async fn metadata_bytes(store: &ArchiveStore, location: &str) -> Result<bytes::Bytes> {
    let key = store.relative_of(location).ok_or_else(|| {
        crate::Error::internal(format!(
            "table metadata {location} is outside the archive's store"
        ))
    })?;
    store.get(&key).await
}

/// How tables are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSettings {
    /// The `catalog_name` of every table (the name engines give the catalog).
    pub catalog_name: String,
    /// Snapshots younger than this are kept, for time travel.
    pub keep_snapshots: Duration,
    /// And at least this many of the newest.
    pub min_snapshots: usize,
    /// A snapshot listing more manifests than this merges them into one per spec.
    pub max_manifests: usize,
    /// Previous metadata files kept (the metadata log).
    pub metadata_versions: usize,
}

impl Default for TableSettings {
    fn default() -> Self {
        TableSettings {
            catalog_name: "hindsight".to_owned(),
            keep_snapshots: Duration::from_secs(6 * 3600),
            min_snapshots: 1,
            max_manifests: 16,
            metadata_versions: 10,
        }
    }
}

/// How far a sync is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncProgress {
    pub tables: u64,
    pub tables_done: u64,
    /// Footers to read for the current table.
    pub files: u64,
    pub files_done: u64,
}

/// What a sync did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableReport {
    pub namespace: String,
    pub table: String,
    /// The current snapshot after the sync (`None`: no table yet).
    pub snapshot_id: Option<i64>,
    pub changed: bool,
    /// Another process holds the table's lease; it syncs it.
    pub skipped: bool,
    pub added_files: u64,
    pub removed_files: u64,
    pub total_files: u64,
    pub total_records: i64,
}

/// Keeps the tables of an archive in step with its catalog.
pub struct TableSync {
    pub store: ArchiveStore,
    pub catalog: Catalog,
    pub settings: TableSettings,
    /// The writer lease this process holds: table leases are owned by it.
    pub owner: String,
}

impl TableSync {
    pub fn new(
        store: ArchiveStore,
        catalog: Catalog,
        settings: TableSettings,
        owner: String,
    ) -> Self {
        TableSync {
            store,
            catalog,
            settings,
            owner,
        }
    }

    /// Syncs every table (or one source's): one snapshot per table that
    /// changed. A table another process changed meanwhile is retried.
    pub async fn sync(
        &self,
        source: Option<&str>,
        progress: &mut (dyn FnMut(SyncProgress) + Send),
    ) -> Result<Vec<TableReport>> {
        let started = crate::event::now_micros();
        let result = self.sync_tables(source, progress).await;
        let metrics = crate::metrics::global();
        match &result {
            Ok(reports) => {
                let snapshots = reports.iter().filter(|report| report.changed).count();
                metrics.table_snapshots.inc_by(snapshots as u64);
                if source.is_none() && reports.iter().all(|report| !report.skipped) {
                    // Everything committed by `started` is in the tables now.
                    metrics.tables_synced_at.set(started / 1_000_000);
                }
            }
            Err(_) => {
                metrics.table_sync_failures.inc();
            }
        }
        result
    }

    async fn sync_tables(
        &self,
        source: Option<&str>,
        progress: &mut (dyn FnMut(SyncProgress) + Send),
    ) -> Result<Vec<TableReport>> {
        let topics: Vec<(String, String)> = self
            .catalog
            .table_topics(&self.settings.catalog_name)
            .await?
            .into_iter()
            .filter(|(name, _)| source.is_none_or(|wanted| wanted == name))
            .collect();
        let mut state = SyncProgress {
            tables: topics.len() as u64,
            ..SyncProgress::default()
        };
        progress(state);
        let mut reports = Vec::with_capacity(topics.len());
        // One table failing (an unreadable footer) does not hold the others
        // back; the pass fails at the end, naming the first.
        let mut first_failure = None;
        for (source, topic) in &topics {
            let mut attempt = 0;
            let report = loop {
                attempt += 1;
                match self.sync_table(source, topic, &mut state, progress).await {
                    Err(error) if error.kind() == ErrorKind::Conflict && attempt < 3 => {
                        tracing::info!(source, topic, error = %error, "table changed meanwhile; syncing it again");
                    }
                    other => break other,
                }
            };
            state.tables_done += 1;
            state.files = 0;
            state.files_done = 0;
            progress(state);
            match report {
                Ok(report) => reports.push(report),
                Err(error) => {
                    tracing::warn!(source, topic, error = %error.full_message(), "cannot sync this table");
                    first_failure.get_or_insert(error);
                }
            }
        }
        match first_failure {
            Some(error) => Err(error),
            None => Ok(reports),
        }
    }
}
