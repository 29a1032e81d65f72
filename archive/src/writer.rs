//! The write path every source's pipeline uses: write a batch as segments,
//! publish them, and commit them to the catalog with their checkpoints (the
//! pipeline in `hindsight-ingest` acknowledges only after that).
//!
//! The ingest crate's batcher hands over a [`Batch`]: events grouped by
//! (topic, partition). [`ArchiveWriter::write_batch`] splits each partition's events
//! by UTC hour, encodes one segment per group off the async threads, stages
//! the segments in the catalog, publishes their objects durably, and commits
//! segments and checkpoints in one compare-and-set transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use crate::catalog::{Catalog, CheckpointAdvance, Commit, NewSegment};
use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;
use crate::layout::{hour_start, NamePart, SegmentLocation};
use crate::lease::WriterLease;
use crate::segment::{encode_segment, SegmentFormat};
use crate::store::ArchiveStore;

/// The events of one (topic, partition) in one batch, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionBatch {
    pub topic: String,
    pub partition: i32,
    pub events: Vec<Event>,
}

/// A batch ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub source: String,
    pub partitions: Vec<PartitionBatch>,
}

impl Batch {
    /// The events grouped by (topic, partition), in arrival order within each.
    pub fn from_events(source: &str, events: impl IntoIterator<Item = Event>) -> Batch {
        let mut partitions: BTreeMap<(String, i32), Vec<Event>> = BTreeMap::new();
        for event in events {
            partitions
                .entry((event.topic.clone(), event.partition.unwrap_or(0)))
                .or_default()
                .push(event);
        }
        Batch::from_partitions(source, partitions)
    }

    /// A batch of events already grouped by (topic, partition).
    pub fn from_partitions(source: &str, partitions: BTreeMap<(String, i32), Vec<Event>>) -> Batch {
        Batch {
            source: source.to_owned(),
            partitions: partitions
                .into_iter()
                .map(|((topic, partition), events)| PartitionBatch {
                    topic,
                    partition,
                    events,
                })
                .collect(),
        }
    }

    pub fn rows(&self) -> usize {
        self.partitions.iter().map(|p| p.events.len()).sum()
    }

    /// The batch without events already archived (offset below their
    /// partition's checkpoint) and without repeats of an offset within the
    /// batch (a redelivery). Events without offsets are all kept.
    pub fn without_archived(&self, checkpoints: &HashMap<(String, i32), Option<i64>>) -> Batch {
        let mut fresh = self.clone();
        fresh.retain_unarchived(checkpoints);
        fresh
    }

    /// Like [`Batch::without_archived`], in place and without copying events:
    /// drops events already archived and repeated offsets, then partitions
    /// left empty. Returns how many events it dropped.
    pub fn retain_unarchived(
        &mut self,
        checkpoints: &HashMap<(String, i32), Option<i64>>,
    ) -> usize {
        let before = self.rows();
        for partition in &mut self.partitions {
            let checkpoint = checkpoints
                .get(&(partition.topic.clone(), partition.partition))
                .copied()
                .flatten();
            let mut seen = std::collections::HashSet::new();
            partition
                .events
                .retain(|event| match (event.offset, checkpoint) {
                    (Some(offset), Some(next)) => offset >= next && seen.insert(offset),
                    (Some(offset), None) => seen.insert(offset),
                    (None, _) => true,
                });
        }
        self.partitions
            .retain(|partition| !partition.events.is_empty());
        before - self.rows()
    }
}

/// What one successful write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSummary {
    pub rows: u64,
    pub bytes: u64,
    pub segments: usize,
    /// The checkpoints now in the catalog; the source may acknowledge up to them.
    pub advanced: Vec<CheckpointAdvance>,
}

/// Writes batches as segments and commits them.
#[derive(Debug, Clone)]
pub struct ArchiveWriter {
    store: ArchiveStore,
    catalog: Catalog,
    format: SegmentFormat,
    publish_concurrency: usize,
    /// The lease this writer stages and commits under (`crate::lease`).
    lease: Option<WriterLease>,
    /// Published segments whose commit failed in a way that left them pending
    /// (a full disk, a lost catalog connection), and whose clean-up failed
    /// too: retried before the next write, so that readers of the directory
    /// do not see them next to the segments written again.
    uncommitted: Arc<std::sync::Mutex<Vec<UncommittedSegment>>>,
}

/// A published segment whose commit failed with an unknown outcome.
#[derive(Debug, Clone)]
struct UncommittedSegment {
    id: String,
    path: Path,
    /// Its pending row is removed: it can never commit, its object may go.
    row_removed: bool,
}

struct PlannedSegment {
    record: NewSegment,
    path: Path,
    bytes: bytes::Bytes,
}

impl ArchiveWriter {
    pub fn new(store: ArchiveStore, catalog: Catalog, format: SegmentFormat) -> Self {
        ArchiveWriter {
            store,
            catalog,
            format,
            publish_concurrency: 8,
            lease: None,
            uncommitted: Arc::default(),
        }
    }

    /// Stages, publishes and commits under `lease`: what this writer leaves
    /// behind when it dies is removed at once by the next recovery.
    pub fn with_lease(mut self, lease: WriterLease) -> Self {
        self.lease = Some(lease);
        self
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn store(&self) -> &ArchiveStore {
        &self.store
    }

    /// Writes and commits one batch.
    ///
    /// `expected` holds the checkpoint the writer believes each (topic,
    /// partition) is at (`None`: none yet). Partitions whose events all carry
    /// offsets get their checkpoint moved to one past the last offset; the
    /// commit fails with [`ErrorKind::Conflict`] when the catalog disagrees.
    /// On any error nothing is visible, and the batch may be written again.
    pub async fn write_batch(
        &self,
        batch: &Batch,
        expected: &HashMap<(String, i32), Option<i64>>,
    ) -> Result<WriteSummary> {
        self.write_shared_batch(Arc::new(batch.clone()), expected)
            .await
    }

    /// [`ArchiveWriter::write_batch`] without copying the events: the
    /// encoding threads share the batch. The pipeline uses this one.
    pub async fn write_shared_batch(
        &self,
        batch: Arc<Batch>,
        expected: &HashMap<(String, i32), Option<i64>>,
    ) -> Result<WriteSummary> {
        let mut advances = Vec::new();
        for partition in &batch.partitions {
            // The highest offset, or `None` when any event has none.
            let last = partition
                .events
                .iter()
                .try_fold(i64::MIN, |high, event| event.offset.map(|o| high.max(o)));
            let Some(last) = last.filter(|_| !partition.events.is_empty()) else {
                continue;
            };
            let key = (partition.topic.clone(), partition.partition);
            advances.push(CheckpointAdvance {
                source: batch.source.clone(),
                topic: partition.topic.clone(),
                partition: partition.partition,
                expected: expected.get(&key).copied().flatten(),
                next: last + 1,
            });
        }

        self.clean_up_uncommitted().await;
        let planned = self.encode(&batch).await?;
        let records: Vec<NewSegment> = planned.iter().map(|p| p.record.clone()).collect();
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let writer = self.lease.as_ref().map(WriterLease::id);
        self.catalog
            .stage_segments_as(writer.as_deref(), &records)
            .await?;

        // Owned arguments: a closure over `&PlannedSegment` makes the future
        // lose `Send` for `tokio::spawn` (higher-ranked lifetime inference).
        let uploads: Vec<(Path, bytes::Bytes)> = planned
            .iter()
            .map(|s| (s.path.clone(), s.bytes.clone()))
            .collect();
        let published = futures::stream::iter(uploads)
            .map(|(path, bytes)| {
                let store = self.store.clone();
                let writer = writer.clone();
                async move { store.publish_for(writer.as_deref(), &path, bytes).await }
            })
            .buffer_unordered(self.publish_concurrency)
            .try_collect::<Vec<()>>()
            .await;
        if let Err(error) = published {
            self.abandon(&planned).await;
            return Err(error);
        }

        crash_point_after_publish();

        let commit = Commit {
            segment_ids: ids,
            checkpoints: advances.clone(),
        };
        if let Err(error) = self.catalog.commit(&commit).await {
            if error.kind() == ErrorKind::Conflict {
                self.abandon(&planned).await;
                if let Some(lease) = &self.lease {
                    // When recovery released the lease, the retry needs a new one.
                    lease.renew().await?;
                }
            } else {
                // The outcome is unknown (the commit may have gone through):
                // remove what is still pending, which can then never commit.
                // The checkpoint compare-and-set decides the retry.
                let published = planned
                    .iter()
                    .map(|p| UncommittedSegment {
                        id: p.record.id.clone(),
                        path: p.path.clone(),
                        row_removed: false,
                    })
                    .collect();
                self.remember_uncommitted(published);
                self.clean_up_uncommitted().await;
            }
            return Err(error);
        }
        Ok(WriteSummary {
            rows: records.iter().map(|r| r.rows as u64).sum(),
            bytes: records.iter().map(|r| r.bytes as u64).sum(),
            segments: records.len(),
            advanced: advances,
        })
    }

    /// Splits by (partition, hour) and encodes the segments on blocking
    /// threads, as many at a time as there are cores: more would only hold
    /// more encoding buffers at once. The events are read in place.
    async fn encode(&self, batch: &Arc<Batch>) -> Result<Vec<PlannedSegment>> {
        let source = NamePart::encode("source", &batch.source)?;
        let mut groups = Vec::new();
        for (index, partition) in batch.partitions.iter().enumerate() {
            let topic = NamePart::encode("topic", &partition.topic)?;
            let Some(first) = partition.events.first() else {
                continue;
            };
            let first_hour = hour_start(first.event_time);
            if partition
                .events
                .iter()
                .all(|event| hour_start(event.event_time) == first_hour)
            {
                // The usual case: the whole partition is one segment.
                groups.push((topic, index, first_hour, None));
                continue;
            }
            let mut by_hour: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
            for (position, event) in partition.events.iter().enumerate() {
                by_hour
                    .entry(hour_start(event.event_time))
                    .or_default()
                    .push(position);
            }
            for (hour, positions) in by_hour {
                groups.push((topic.clone(), index, hour, Some(positions)));
            }
        }
        let format = self.format;
        let parallelism = std::thread::available_parallelism().map_or(2, usize::from);
        let encodes = groups
            .into_iter()
            .map(|(topic_part, index, hour, positions)| {
                let source_part = source.clone();
                let batch = Arc::clone(batch);
                tokio::task::spawn_blocking(move || -> Result<PlannedSegment> {
                    let partition = &batch.partitions[index];
                    let encoded = match positions {
                        None => encode_segment(&partition.events, format)?,
                        Some(positions) => {
                            let events: Vec<&Event> =
                                positions.iter().map(|&p| &partition.events[p]).collect();
                            encode_segment(&events, format)?
                        }
                    };
                    let location = SegmentLocation {
                        source: source_part,
                        topic: topic_part,
                        partition: partition.partition,
                        first_offset: encoded.first_offset,
                        last_offset: encoded.last_offset,
                        hour_micros: hour,
                    };
                    let id = uuid::Uuid::now_v7().simple().to_string();
                    let path = location.object_path(&id)?;
                    Ok(PlannedSegment {
                        record: encoded.record(
                            id,
                            path.to_string(),
                            &batch.source,
                            &partition.topic,
                            partition.partition,
                        ),
                        path,
                        bytes: encoded.bytes,
                    })
                })
            });
        let joined: Vec<_> = futures::stream::iter(encodes)
            .buffered(parallelism)
            .collect()
            .await;
        let mut planned = Vec::with_capacity(joined.len());
        for segment in joined {
            let segment = segment.map_err(|error| {
                Error::with_source(ErrorKind::Internal, "segment encoding task failed", error)
            })??;
            planned.push(segment);
        }
        Ok(planned)
    }

    fn remember_uncommitted(&self, segments: Vec<UncommittedSegment>) {
        // A poisoned lock still holds a valid list (it is only ever extended or taken whole).
        self.uncommitted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(segments);
    }

    /// Best effort: for the segments whose commit failed with an unknown
    /// outcome, removes the rows still pending (they can then never commit),
    /// then their objects. A row found committed keeps its object. Whatever
    /// fails (the disk is still full) is kept for the next write.
    async fn clean_up_uncommitted(&self) {
        let mut segments = std::mem::take(
            &mut *self
                .uncommitted
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if segments.is_empty() {
            return;
        }
        let ids: Vec<String> = segments
            .iter()
            .filter(|s| !s.row_removed)
            .map(|s| s.id.clone())
            .collect();
        match self.catalog.discard_if_pending(&ids).await {
            Ok(discarded) => segments.retain_mut(|segment| {
                if !segment.row_removed && discarded.contains(&segment.id) {
                    segment.row_removed = true;
                }
                // A row not discarded was committed after all: it stays.
                segment.row_removed
            }),
            Err(error) => {
                tracing::debug!(error = %error.full_message(), "cannot discard uncommitted segments yet");
                self.remember_uncommitted(segments);
                return;
            }
        }
        let mut left = Vec::new();
        for segment in segments {
            if let Err(error) = self.store.delete(&segment.path).await {
                tracing::debug!(path = %segment.path, error = %error.full_message(), "cannot delete an uncommitted segment yet");
                left.push(segment);
            }
        }
        self.remember_uncommitted(left);
    }

    /// Best effort: removes published objects and pending rows of a failed write.
    /// Whatever is left is found later by
    /// [`recover_abandoned`](crate::recovery::recover_abandoned).
    async fn abandon(&self, planned: &[PlannedSegment]) {
        for segment in planned {
            if let Err(error) = self.store.delete(&segment.path).await {
                tracing::warn!(uri = %segment.record.uri, error = %error.full_message(), "cannot delete abandoned segment");
            }
        }
        let ids: Vec<String> = planned.iter().map(|p| p.record.id.clone()).collect();
        if let Err(error) = self.catalog.discard_pending(&ids).await {
            if error.is_storage_full() {
                // The pipeline reports the full disk once; the rows are harmless
                // (their objects are gone) and recovery removes them.
                tracing::debug!(error = %error.full_message(), "cannot discard pending segments");
            } else {
                tracing::warn!(error = %error.full_message(), "cannot discard pending segments");
            }
        }
    }
}

/// Fault injection for the crash tests: with `HINDSIGHT_CRASH_AFTER_PUBLISH=N`
/// the process kills itself (SIGKILL) right after its Nth batch is published,
/// before the commit: complete files under their final names, rows pending.
fn crash_point_after_publish() {
    static CRASH_AFTER: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    static PUBLISHED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let crash_after = CRASH_AFTER.get_or_init(|| {
        std::env::var("HINDSIGHT_CRASH_AFTER_PUBLISH")
            .ok()
            .and_then(|n| n.parse().ok())
    });
    let Some(crash_after) = *crash_after else {
        return;
    };
    let published = PUBLISHED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    if published == crash_after {
        tracing::error!(
            published,
            "HINDSIGHT_CRASH_AFTER_PUBLISH: killing this process before the commit"
        );
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
        std::process::abort();
    }
}

/// Compile-time proof that the write path can run in `tokio::spawn`.
#[allow(dead_code)]
fn write_batch_is_spawnable(writer: ArchiveWriter, batch: Batch) {
    fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
    spawnable(async move { writer.write_batch(&batch, &HashMap::new()).await });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalog::SegmentFilter;
    use crate::event::{event_id, Bus};
    use crate::store::StoreConfig;

    #[test]
    fn events_that_carry_the_replay_header_are_tagged_with_its_id() {
        use arrow::array::{Array, AsArray};
        let mut replayed = event("t", 0, 0, 0);
        replayed.headers = vec![
            crate::Header::new("other", "x"),
            crate::Header::new(crate::event::REPLAY_ID_HEADER, "r-42"),
        ];
        let plain = event("t", 0, 1, 0);
        assert_eq!(replayed.replay_id(), Some("r-42"));
        assert_eq!(plain.replay_id(), None);
        let batch = crate::schema::events_to_batch(&[replayed, plain]).unwrap();
        let column = batch
            .column_by_name("replay_id")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(column.value(0), "r-42");
        assert!(column.is_null(1));
    }

    fn event(topic: &str, partition: i32, offset: i64, event_time: i64) -> Event {
        Event {
            event_id: event_id::kafka("s", topic, partition, offset),
            source: "s".into(),
            bus: Bus::Kafka,
            topic: topic.into(),
            partition: Some(partition),
            offset: Some(offset),
            payload: Some(vec![1, 2, 3]),
            payload_size: 3,
            event_time,
            ingest_time: event_time,
            ..Event::default()
        }
    }

    /// A local store and a SQLite catalog in `directory`.
    pub(crate) async fn open(directory: &std::path::Path) -> (ArchiveStore, Catalog) {
        let store = ArchiveStore::open(&StoreConfig {
            url: directory.display().to_string(),
            ..StoreConfig::default()
        })
        .unwrap();
        let catalog = Catalog::open(&format!("sqlite://{}/catalog.db", directory.display()))
            .await
            .unwrap();
        (store, catalog)
    }

    #[tokio::test]
    async fn a_batch_is_split_by_hour_and_committed_with_its_checkpoints() {
        let directory = tempfile::tempdir().unwrap();
        let (store, catalog) = open(directory.path()).await;
        let writer = ArchiveWriter::new(store.clone(), catalog.clone(), SegmentFormat::default());
        let hour = 3_600_000_000;
        // Offsets 0-4 in one hour, 5-9 in the next.
        let mut events: Vec<Event> = (0..10)
            .map(|offset| event("orders", 0, offset, offset / 5 * hour + 1))
            .collect();
        events.push(event("payments", 1, 7, 0));
        let batch = Batch::from_events("s", events);
        let written = writer.write_batch(&batch, &HashMap::new()).await.unwrap();
        assert_eq!((written.rows, written.segments), (11, 3));
        assert_eq!(
            catalog.checkpoint("s", "orders", 0).await.unwrap(),
            Some(10)
        );
        assert_eq!(
            catalog.checkpoint("s", "payments", 1).await.unwrap(),
            Some(8)
        );
        let segments = catalog.segments(&SegmentFilter::default()).await.unwrap();
        let spans: Vec<_> = segments
            .iter()
            .map(|r| {
                (
                    r.segment.topic.as_str(),
                    r.segment.first_offset,
                    r.segment.last_offset,
                )
            })
            .collect();
        assert_eq!(
            spans,
            [("orders", 0, 4), ("orders", 5, 9), ("payments", 7, 7)]
        );
        assert_eq!(store.list(None).await.unwrap().len(), 3);

        // A redelivered offset inside one batch is written once.
        let mut repeated = batch.clone();
        repeated.partitions[0].events.push(event("orders", 0, 3, 1));
        let fresh = repeated.without_archived(&HashMap::new());
        assert_eq!(fresh.rows(), batch.rows());
        let after_commit = HashMap::from([(("orders".to_owned(), 0), Some(10))]);
        assert_eq!(repeated.without_archived(&after_commit).partitions.len(), 1);

        // The same batch again, from a writer that missed the commit: refused, nothing left behind.
        let error = writer
            .write_batch(&batch, &HashMap::new())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Conflict);
        assert_eq!(store.list(None).await.unwrap().len(), 3);
        assert!(catalog
            .abandoned_segments(None, i64::MAX)
            .await
            .unwrap()
            .is_empty());
    }
}
