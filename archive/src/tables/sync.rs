//! One table's sync: diff the live segments against the table's files,
//! write the manifests, the manifest list and the metadata of one new
//! snapshot, commit it by compare-and-set, then delete what expired.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use serde_json::json;

use crate::catalog::{Checkpoint, SegmentRecord};
use crate::error::Result;
use crate::event::now_micros;
use crate::layout::{table_location, table_metadata_key};
use crate::store::ArchiveStore;
use crate::tables::catalog::{TableCommit, TableFile, TableId, TableManifest, TableState};
use crate::tables::manifest::{write_manifest, write_manifest_list, Entry, ManifestFile, Status};
use crate::tables::metadata::{Snapshot, TableMetadata};
use crate::tables::spec::Spec;
use crate::tables::stats::{data_file, DataFile};
use crate::tables::{SyncProgress, TableReport, TableSync};

/// Footers read at once.
const FOOTER_READS: usize = 8;
/// A table's lease outlives any pause between two renewals.
const LEASE_MICROS: i64 = 10 * 60 * 1_000_000;
/// Footers read between two renewals of the lease.
const LEASE_RENEWAL_FILES: usize = 500;

/// The manifests and objects of one snapshot in the making.
struct Draft {
    snapshot_id: i64,
    sequence_number: i64,
    location: String,
    /// (key, bytes) to publish before the commit.
    objects: Vec<(object_store::path::Path, bytes::Bytes)>,
    manifests: Vec<ManifestFile>,
    /// Where each still-listed file is now: segment id -> manifest path.
    placement: HashMap<String, String>,
}

impl Draft {
    /// Encodes a manifest to publish with the snapshot; returns its URI.
    fn manifest(
        &mut self,
        store: &ArchiveStore,
        spec: Spec,
        entries: &[Entry<'_>],
        counter: &mut usize,
    ) -> Result<String> {
        *counter += 1;
        let file = format!("{}-m{counter}.avro", uuid::Uuid::now_v7().simple());
        let key = table_metadata_key(&self.location, &file)?;
        let uri = store.uri_of(key.as_ref());
        let (bytes, manifest) = write_manifest(
            spec,
            entries,
            uri.clone(),
            self.snapshot_id,
            self.sequence_number,
        )?;
        self.objects.push((key, bytes.into()));
        self.manifests.push(manifest);
        Ok(uri)
    }
}

/// A sync commits new ingest first (`Appends`), then everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Appends,
    Everything,
}

fn random_snapshot_id() -> i64 {
    // Iceberg snapshot ids are positive longs.
    (uuid::Uuid::new_v4().as_u64_pair().0 >> 1) as i64
}

impl TableSync {
    pub(super) async fn sync_table(
        &self,
        source: &str,
        topic: &str,
        progress_state: &mut SyncProgress,
        progress: &mut (dyn FnMut(SyncProgress) + Send),
    ) -> Result<TableReport> {
        let table = TableId {
            catalog: self.settings.catalog_name.clone(),
            namespace: source.to_owned(),
            name: topic.to_owned(),
        };
        let mut report = TableReport {
            namespace: source.to_owned(),
            table: topic.to_owned(),
            ..TableReport::default()
        };
        let lease = format!("table/{}/{source}/{topic}", table.catalog);
        if !self
            .catalog
            .take_bucket_lease(&lease, &self.owner, LEASE_MICROS)
            .await?
        {
            report.skipped = true;
            return Ok(report);
        }
        // New ingest first, as an `append` snapshot of its own, so readers
        // that follow appends only (streaming, incremental scans) see every
        // new row; then what maintenance replaced or removed.
        let mut result = Ok(());
        for phase in [Phase::Appends, Phase::Everything] {
            let mut step = TableReport::default();
            result = self
                .sync_leased(&table, &lease, phase, &mut step, progress_state, progress)
                .await;
            if result.is_err() {
                break;
            }
            report.changed |= step.changed;
            report.added_files += step.added_files;
            report.removed_files += step.removed_files;
            report.snapshot_id = step.snapshot_id;
            report.total_files = step.total_files;
            report.total_records = step.total_records;
        }
        let released = self.catalog.release_bucket_lease(&lease, &self.owner).await;
        result?;
        released?;
        Ok(report)
    }

    async fn sync_leased(
        &self,
        table: &TableId,
        lease: &str,
        phase: Phase,
        report: &mut TableReport,
        progress_state: &mut SyncProgress,
        progress: &mut (dyn FnMut(SyncProgress) + Send),
    ) -> Result<()> {
        let state = self.catalog.table_state(table).await?;
        let (live, checkpoints) = self
            .catalog
            .live_segments_with_checkpoints(&table.namespace, &table.name)
            .await?;
        let previous = match &state.metadata_location {
            Some(location) => Some(self.read_metadata(location).await?),
            None => None,
        };
        let current: HashMap<&str, &TableFile> = state
            .files
            .iter()
            .filter(|file| file.removed_sequence.is_none())
            .map(|file| (file.segment_id.as_str(), file))
            .collect();
        let live_ids: HashSet<&str> = live.iter().map(|s| s.segment.id.as_str()).collect();
        let added: Vec<&SegmentRecord> = live
            .iter()
            .filter(|segment| !current.contains_key(segment.segment.id.as_str()))
            // Ingest's segments only, in the append phase: maintenance's
            // outputs go with the inputs they replace.
            .filter(|segment| phase == Phase::Everything || segment.compaction_level == 0)
            .collect();
        let removed: Vec<&TableFile> = state
            .files
            .iter()
            .filter(|file| file.removed_sequence.is_none())
            .filter(|file| !live_ids.contains(file.segment_id.as_str()))
            .filter(|_| phase == Phase::Everything)
            .collect();
        report.snapshot_id = previous.as_ref().and_then(|m| m.current_snapshot_id);
        report.total_files = current.len() as u64;
        report.total_records = current.values().map(|f| f.data_file.record_count).sum();
        if added.is_empty() && removed.is_empty() {
            // No table yet means nothing live (every live segment is new).
            return match previous {
                Some(metadata) if phase == Phase::Everything => {
                    self.expire_only(table, &state, metadata, report).await
                }
                _ => Ok(()),
            };
        }

        // Footers of the new files, a few at a time.
        progress_state.files = added.len() as u64;
        progress_state.files_done = 0;
        progress(*progress_state);
        let mut new_files: Vec<(String, DataFile)> = Vec::with_capacity(added.len());
        // Owned inputs: the reads borrow nothing, so the future stays `Send`
        // for any caller.
        let store = self.store.clone();
        let owned: Vec<SegmentRecord> = added.iter().map(|segment| (*segment).clone()).collect();
        let mut reads = futures::stream::iter(owned)
            .map(move |segment| {
                let store = store.clone();
                async move {
                    let uri = store.uri_of(&segment.segment.uri);
                    let file = data_file(&store, &segment, uri).await?;
                    Ok::<_, crate::Error>((segment.segment.id, file))
                }
            })
            .buffered(FOOTER_READS);
        while let Some(read) = reads.try_next().await? {
            new_files.push(read);
            progress_state.files_done += 1;
            progress(*progress_state);
            // A first sync of a large archive reads many footers: renew.
            if new_files.len().is_multiple_of(LEASE_RENEWAL_FILES)
                && !self
                    .catalog
                    .take_bucket_lease(lease, &self.owner, LEASE_MICROS)
                    .await?
            {
                return Err(crate::Error::conflict(format!(
                    "lost the lease on table {}.{}",
                    table.namespace, table.name
                )));
            }
        }
        drop(reads);

        // Never before the last update: another host's clock may be ahead.
        let previous_updated_ms = previous.as_ref().map_or(0, |m| m.last_updated_ms);
        let now_ms = (now_micros() / 1000).max(previous_updated_ms);
        let location_key = table_location(&table.namespace, &table.name)?;
        let mut metadata = match previous {
            Some(metadata) => metadata,
            None => TableMetadata::new(
                self.store.uri_of(&location_key),
                &table.namespace,
                &table.name,
                now_ms,
            )?,
        };
        let parent_snapshot_id = metadata.current_snapshot_id;
        let mut draft = Draft {
            snapshot_id: random_snapshot_id(),
            sequence_number: metadata.last_sequence_number + 1,
            location: location_key.clone(),
            objects: Vec::new(),
            manifests: Vec::new(),
            placement: HashMap::new(),
        };
        let removed_ids: HashSet<&str> = removed.iter().map(|f| f.segment_id.as_str()).collect();
        let listed: Vec<&TableManifest> = state
            .manifests
            .iter()
            .filter(|manifest| manifest.dropped_sequence.is_none())
            .collect();
        // Rewritten: the manifests of removed files, and those still holding
        // an earlier snapshot's deleted entries (a deleted entry belongs to
        // the snapshot that deleted the file only).
        let touched: HashSet<&str> = removed
            .iter()
            .filter_map(|f| f.manifest.as_deref())
            .chain(
                listed
                    .iter()
                    .filter(|m| m.entry.deleted_files > 0)
                    .map(|m| m.entry.path.as_str()),
            )
            .collect();
        // Manifests that keep no file and record no change of this snapshot
        // are dropped; untouched ones carry over as they are.
        let carried: Vec<&TableManifest> = listed
            .iter()
            .copied()
            .filter(|m| !touched.contains(m.entry.path.as_str()) && m.entry.live_files() > 0)
            .collect();
        let mut counter = 0;
        let new_manifests_needed = touched.len() + new_files.len().min(Spec::ALL.len());
        let merge = carried.len() + new_manifests_needed > self.settings.max_manifests;
        let segment_of: HashMap<&str, &str> = current
            .values()
            .map(|f| (f.data_file.path.as_str(), f.segment_id.as_str()))
            .chain(
                new_files
                    .iter()
                    .map(|(id, f)| (f.path.as_str(), id.as_str())),
            )
            .collect();
        let snapshot_id = draft.snapshot_id;
        // Each group of entries becomes one manifest per spec.
        let mut groups: Vec<BTreeMap<Spec, Vec<Entry<'_>>>> = Vec::new();
        let mut kept_manifests: Vec<ManifestFile> = Vec::new();
        let mut fresh: BTreeMap<Spec, Vec<Entry<'_>>> = BTreeMap::new();
        if merge {
            // Every file still listed, and every one removed now, of a spec
            // in one manifest.
            for file in current.values() {
                fresh
                    .entry(file.data_file.spec()?)
                    .or_default()
                    .push(entry_of(file, &removed_ids, snapshot_id));
            }
        } else {
            kept_manifests.extend(carried.iter().map(|m| m.entry.clone()));
            for path in &touched {
                let mut group: BTreeMap<Spec, Vec<Entry<'_>>> = BTreeMap::new();
                for file in current
                    .values()
                    .filter(|f| f.manifest.as_deref() == Some(*path))
                {
                    group
                        .entry(file.data_file.spec()?)
                        .or_default()
                        .push(entry_of(file, &removed_ids, snapshot_id));
                }
                groups.push(group);
            }
        }
        for (_, file) in &new_files {
            fresh.entry(file.spec()?).or_default().push(Entry {
                status: Status::Added,
                snapshot_id,
                sequence_number: draft.sequence_number,
                file,
            });
        }
        groups.push(fresh);
        for group in groups {
            for (spec, entries) in group {
                let path = draft.manifest(&self.store, spec, &entries, &mut counter)?;
                for entry in entries.iter().filter(|e| e.status != Status::Deleted) {
                    if let Some(segment) = segment_of.get(entry.file.path.as_str()) {
                        draft.placement.insert((*segment).to_owned(), path.clone());
                    }
                }
            }
        }
        let mut listed_now = kept_manifests;
        listed_now.extend(draft.manifests.iter().cloned());

        // The snapshot.
        let added_records: i64 = new_files.iter().map(|(_, f)| f.record_count).sum();
        let deleted_records: i64 = removed.iter().map(|f| f.data_file.record_count).sum();
        let total_records = report.total_records + added_records - deleted_records;
        let total_files = current.len() + new_files.len() - removed.len();
        let total_size: i64 = current
            .values()
            .filter(|f| !removed_ids.contains(f.segment_id.as_str()))
            .map(|f| f.data_file.file_size)
            .chain(new_files.iter().map(|(_, f)| f.file_size))
            .sum();
        let operation = match (new_files.is_empty(), removed.is_empty()) {
            (false, true) => "append",
            (true, _) => "delete",
            (false, false) if added_records == deleted_records => "replace",
            (false, false) => "overwrite",
        };
        let summary = BTreeMap::from([
            ("operation".to_owned(), operation.to_owned()),
            ("added-data-files".to_owned(), new_files.len().to_string()),
            ("deleted-data-files".to_owned(), removed.len().to_string()),
            ("added-records".to_owned(), added_records.to_string()),
            ("deleted-records".to_owned(), deleted_records.to_string()),
            (
                "added-files-size".to_owned(),
                new_files
                    .iter()
                    .map(|(_, f)| f.file_size)
                    .sum::<i64>()
                    .to_string(),
            ),
            (
                "removed-files-size".to_owned(),
                removed
                    .iter()
                    .map(|f| f.data_file.file_size)
                    .sum::<i64>()
                    .to_string(),
            ),
            ("total-records".to_owned(), total_records.to_string()),
            ("total-data-files".to_owned(), total_files.to_string()),
            ("total-files-size".to_owned(), total_size.to_string()),
            ("total-delete-files".to_owned(), "0".to_owned()),
            ("total-position-deletes".to_owned(), "0".to_owned()),
            ("total-equality-deletes".to_owned(), "0".to_owned()),
            (
                "hindsight.commit-metadata".to_owned(),
                commit_metadata(&table.namespace, &table.name, &checkpoints),
            ),
        ]);
        let list_file = format!(
            "snap-{}-1-{}.avro",
            draft.snapshot_id,
            uuid::Uuid::now_v7().simple()
        );
        let list_key = table_metadata_key(&location_key, &list_file)?;
        let list_bytes = write_manifest_list(
            &listed_now,
            draft.snapshot_id,
            parent_snapshot_id,
            draft.sequence_number,
        )?;
        draft.objects.push((list_key.clone(), list_bytes.into()));
        metadata.add_snapshot(Snapshot {
            snapshot_id: draft.snapshot_id,
            parent_snapshot_id,
            sequence_number: draft.sequence_number,
            timestamp_ms: now_ms,
            manifest_list: self.store.uri_of(list_key.as_ref()),
            summary,
            schema_id: 0,
        });
        let keep_after_ms =
            now_ms - i64::try_from(self.settings.keep_snapshots.as_millis()).unwrap_or(i64::MAX);
        let expired = metadata.expire_snapshots(keep_after_ms, self.settings.min_snapshots);
        let forget_through = metadata
            .oldest_sequence_number()
            .unwrap_or(draft.sequence_number);
        let metadata_file = format!(
            "{:05}-{}.metadata.json",
            draft.sequence_number,
            uuid::Uuid::now_v7().simple()
        );
        let metadata_key = table_metadata_key(&location_key, &metadata_file)?;
        let new_location = self.store.uri_of(metadata_key.as_ref());
        let fallen_off = match &state.metadata_location {
            Some(previous) => metadata.log_previous(
                previous.clone(),
                previous_updated_ms,
                self.settings.metadata_versions,
            ),
            None => Vec::new(),
        };
        draft
            .objects
            .push((metadata_key, serde_json::to_vec(&metadata)?.into()));

        // Manifests in the old list but not the new one.
        let listed_paths: HashSet<&str> = listed_now.iter().map(|m| m.path.as_str()).collect();
        let manifests_dropped: Vec<String> = listed
            .iter()
            .filter(|m| !listed_paths.contains(m.entry.path.as_str()))
            .map(|m| m.entry.path.clone())
            .collect();
        let new_by_id: HashMap<&str, &DataFile> = new_files
            .iter()
            .map(|(id, file)| (id.as_str(), file))
            .collect();
        let mut moved = Vec::new();
        let mut added_rows = Vec::new();
        for (segment_id, manifest) in &draft.placement {
            if let Some(file) = new_by_id.get(segment_id.as_str()) {
                added_rows.push(TableFile {
                    segment_id: segment_id.clone(),
                    manifest: Some(manifest.clone()),
                    snapshot_id: draft.snapshot_id,
                    sequence_number: draft.sequence_number,
                    data_file: (*file).clone(),
                    removed_sequence: None,
                });
            } else {
                moved.push((segment_id.clone(), manifest.clone()));
            }
        }
        let commit = TableCommit {
            expected_location: state.metadata_location.clone(),
            new_location,
            sequence_number: draft.sequence_number,
            added: added_rows,
            moved,
            removed: removed.iter().map(|f| f.segment_id.clone()).collect(),
            manifests_added: draft.manifests.clone(),
            manifests_dropped,
            forget_through,
        };
        for (key, bytes) in draft.objects {
            self.store.publish(&key, bytes).await?;
        }
        self.catalog.commit_table(table, &commit).await?;

        self.delete_obsolete(
            &state,
            &expired,
            fallen_off,
            &commit.manifests_dropped,
            draft.sequence_number,
            forget_through,
        )
        .await;
        report.snapshot_id = Some(draft.snapshot_id);
        report.changed = true;
        report.added_files = new_files.len() as u64;
        report.removed_files = removed.len() as u64;
        report.total_files = total_files as u64;
        report.total_records = total_records;
        Ok(())
    }

    /// A commit with no new snapshot: snapshots past `keep_snapshots`
    /// expire even on a table nothing changes, so the objects they alone
    /// list (segments compaction or an erasure retired) are freed.
    async fn expire_only(
        &self,
        table: &TableId,
        state: &TableState,
        mut metadata: TableMetadata,
        report: &mut TableReport,
    ) -> Result<()> {
        let Some(previous) = state.metadata_location.clone() else {
            return Ok(());
        };
        let previous_updated_ms = metadata.last_updated_ms;
        let now_ms = (now_micros() / 1000).max(previous_updated_ms);
        let keep_after_ms =
            now_ms - i64::try_from(self.settings.keep_snapshots.as_millis()).unwrap_or(i64::MAX);
        let expired = metadata.expire_snapshots(keep_after_ms, self.settings.min_snapshots);
        if expired.is_empty() {
            return Ok(());
        }
        metadata.last_updated_ms = now_ms;
        let forget_through = metadata
            .oldest_sequence_number()
            .unwrap_or(metadata.last_sequence_number);
        let fallen_off = metadata.log_previous(
            previous,
            previous_updated_ms,
            self.settings.metadata_versions,
        );
        let location_key = table_location(&table.namespace, &table.name)?;
        let metadata_file = format!(
            "{:05}-{}.metadata.json",
            metadata.last_sequence_number,
            uuid::Uuid::now_v7().simple()
        );
        let metadata_key = table_metadata_key(&location_key, &metadata_file)?;
        self.store
            .publish(&metadata_key, serde_json::to_vec(&metadata)?.into())
            .await?;
        let commit = TableCommit {
            expected_location: state.metadata_location.clone(),
            new_location: self.store.uri_of(metadata_key.as_ref()),
            sequence_number: metadata.last_sequence_number,
            forget_through,
            ..TableCommit::default()
        };
        self.catalog.commit_table(table, &commit).await?;
        self.delete_obsolete(state, &expired, fallen_off, &[], 0, forget_through)
            .await;
        tracing::debug!(namespace = %table.namespace, table = %table.name, expired = expired.len(), "expired table snapshots");
        report.snapshot_id = metadata.current_snapshot_id;
        Ok(())
    }

    /// Deletes what no kept snapshot refers to any more: the manifest lists
    /// of expired snapshots, metadata files off the log, and manifests
    /// dropped at or before `forget_through` (`dropped_now` count as dropped
    /// at `sequence_number`). A crash before this leaves those files behind,
    /// unreferenced and harmless.
    async fn delete_obsolete(
        &self,
        state: &TableState,
        expired: &[Snapshot],
        fallen_off: Vec<String>,
        dropped_now: &[String],
        sequence_number: i64,
        forget_through: i64,
    ) {
        let mut obsolete: Vec<String> = expired
            .iter()
            .map(|snapshot| snapshot.manifest_list.clone())
            .chain(fallen_off)
            .collect();
        obsolete.extend(
            state
                .manifests
                .iter()
                .filter(|m| {
                    let dropped = m.dropped_sequence.or_else(|| {
                        dropped_now
                            .contains(&m.entry.path)
                            .then_some(sequence_number)
                    });
                    dropped.is_some_and(|sequence| sequence <= forget_through)
                })
                .map(|m| m.entry.path.clone()),
        );
        for uri in obsolete {
            if let Some(key) = self.store.relative_of(&uri) {
                if let Err(error) = self.store.delete(&key).await {
                    tracing::warn!(error = %error.full_message(), uri, "cannot delete an expired table metadata file");
                }
            }
        }
    }

    async fn read_metadata(&self, location: &str) -> Result<TableMetadata> {
        let bytes = super::metadata_bytes(&self.store, location).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

/// A listed file's entry in a rewritten manifest: deleted when this
/// snapshot removes it, else existing (with the snapshot that added it).
fn entry_of<'a>(file: &'a TableFile, removed: &HashSet<&str>, snapshot_id: i64) -> Entry<'a> {
    if removed.contains(file.segment_id.as_str()) {
        Entry {
            status: Status::Deleted,
            snapshot_id,
            sequence_number: file.sequence_number,
            file: &file.data_file,
        }
    } else {
        Entry {
            status: Status::Existing,
            snapshot_id: file.snapshot_id,
            sequence_number: file.sequence_number,
            file: &file.data_file,
        }
    }
}

/// `hindsight.commit-metadata`: the positions the snapshot is complete up
/// to, as Redpanda's `redpanda.commit-metadata` records offsets.
fn commit_metadata(source: &str, topic: &str, checkpoints: &[Checkpoint]) -> String {
    json!({
        "source": source,
        "topic": topic,
        "checkpoints": checkpoints
            .iter()
            .map(|c| json!({"partition": c.partition, "next": c.next_position}))
            .collect::<Vec<_>>(),
    })
    .to_string()
}
