//! The write path every source uses: batch events, write them as segments,
//! commit them to the catalog, and only then tell the source it may
//! acknowledge.
//!
//! [`Batcher`] groups events by (topic, partition) and says when to flush (rows,
//! bytes or age). [`ArchiveWriter::write_batch`] splits each partition's events
//! by UTC hour, encodes one segment per group off the async threads, stages
//! the segments in the catalog, publishes their objects durably, and commits
//! segments and checkpoints in one compare-and-set transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use crate::catalog::{Catalog, CheckpointAdvance, Commit, NewSegment};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{now_micros, Event};
use crate::layout::{hour_start, NamePart, SegmentLocation};
use crate::lease::WriterLease;
use crate::segment::{encode_segment, segment_checksum, SegmentFormat};
use crate::store::ArchiveStore;

/// When a batch is flushed: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            max_rows: 100_000,
            max_bytes: 64 * 1024 * 1024,
            max_age: Duration::from_secs(10),
        }
    }
}

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

/// Accumulates events until the flush policy says to write them.
#[derive(Debug)]
pub struct Batcher {
    source: String,
    policy: FlushPolicy,
    partitions: BTreeMap<(String, i32), Vec<Event>>,
    rows: usize,
    bytes: usize,
    first_event_at: Option<Instant>,
}

impl Batcher {
    pub fn new(source: impl Into<String>, policy: FlushPolicy) -> Self {
        Batcher {
            source: source.into(),
            policy,
            partitions: BTreeMap::new(),
            rows: 0,
            bytes: 0,
            first_event_at: None,
        }
    }

    pub fn push(&mut self, event: Event) {
        self.rows += 1;
        self.bytes += approximate_size(&event);
        self.first_event_at.get_or_insert_with(Instant::now);
        let partition = event.partition.unwrap_or_default();
        self.partitions
            .entry((event.topic.clone(), partition))
            .or_default()
            .push(event);
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// True when a limit is reached.
    pub fn is_full(&self) -> bool {
        self.rows >= self.policy.max_rows || self.bytes >= self.policy.max_bytes
    }

    /// How long until the age limit forces a flush; `None` when empty.
    pub fn time_until_due(&self) -> Option<Duration> {
        self.first_event_at
            .map(|first| self.policy.max_age.saturating_sub(first.elapsed()))
    }

    /// True when any limit, including age, is reached.
    pub fn is_due(&self) -> bool {
        self.is_full() || self.time_until_due() == Some(Duration::ZERO)
    }

    /// Drops the buffered events of one partition (it was revoked).
    pub fn discard(&mut self, topic: &str, partition: i32) -> usize {
        let Some(events) = self.partitions.remove(&(topic.to_owned(), partition)) else {
            return 0;
        };
        self.rows -= events.len();
        self.bytes -= events.iter().map(approximate_size).sum::<usize>();
        if self.rows == 0 {
            self.first_event_at = None;
        }
        events.len()
    }

    /// Takes everything buffered, leaving the batcher empty.
    pub fn take(&mut self) -> Batch {
        self.rows = 0;
        self.bytes = 0;
        self.first_event_at = None;
        let partitions = std::mem::take(&mut self.partitions)
            .into_iter()
            .map(|((topic, partition), events)| PartitionBatch {
                topic,
                partition,
                events,
            })
            .collect();
        Batch {
            source: self.source.clone(),
            partitions,
        }
    }
}

/// The bytes an event holds in memory: the struct itself, and every heap
/// buffer with the allocator's overhead. `flush.max_bytes` bounds the sum, so
/// this must not undercount: counting payloads and keys alone let a 64 MiB
/// batch of 500-byte events hold about 3 times that (scripts/bench, P8).
pub fn approximate_size(event: &Event) -> usize {
    /// What malloc adds to each allocation, roughly (header and rounding).
    const ALLOCATION: usize = 16;
    fn buffer(length: usize) -> usize {
        if length == 0 {
            0
        } else {
            length + ALLOCATION
        }
    }
    fn text(value: &Option<String>) -> usize {
        value.as_ref().map_or(0, |v| buffer(v.len()))
    }
    let headers: usize = event
        .headers
        .iter()
        .map(|h| {
            std::mem::size_of::<crate::event::Header>()
                + buffer(h.name.len())
                + h.value.as_ref().map_or(0, |v| buffer(v.len()))
        })
        .sum::<usize>()
        + ALLOCATION;
    let amqp = &event.amqp;
    let amqp_texts = [
        &amqp.content_encoding,
        &amqp.expiration,
        &amqp.reply_to,
        &amqp.message_type,
        &amqp.app_id,
        &amqp.user_id,
        &amqp.headers_table,
        &amqp.exchange,
    ]
    .into_iter()
    .map(text)
    .sum::<usize>();
    let texts = [
        &event.routing_key,
        &event.content_type,
        &event.message_id,
        &event.correlation_id,
        &event.timestamp_type,
    ]
    .into_iter()
    .map(text)
    .sum::<usize>();
    std::mem::size_of::<Event>()
        + buffer(event.event_id.len())
        + buffer(event.source.len())
        + buffer(event.topic.len())
        + event.payload.as_ref().map_or(0, |p| buffer(p.len()))
        + event.key.as_ref().map_or(0, |k| buffer(k.len()))
        + headers
        + texts
        + amqp_texts
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
                        record: NewSegment {
                            id,
                            uri: path.to_string(),
                            source: batch.source.clone(),
                            topic: partition.topic.clone(),
                            partition: partition.partition,
                            first_offset: encoded.first_offset,
                            last_offset: encoded.last_offset,
                            min_event_time: encoded.min_event_time,
                            max_event_time: encoded.max_event_time,
                            rows: encoded.rows as i64,
                            bytes: encoded.bytes.len() as i64,
                            checksum: Some(segment_checksum(&encoded.bytes)),
                        },
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
    /// Whatever is left is found later by [`recover_abandoned`].
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

/// Removes what crashed writers left, in this order:
/// 1. releases the leases of dead writers (their process on this machine is
///    gone, or another machine's lease expired), which fences them: they can
///    no longer commit;
/// 2. removes pending segments (objects, then rows) of every released lease
///    at once, and those of no known writer staged more than `grace` ago;
///    a live writer's are left alone;
/// 3. removes local staging files of released writers at once, and those of
///    no live writer last modified more than `grace` ago.
///
/// Returns the number of pending segments removed.
pub async fn recover_abandoned(
    store: &ArchiveStore,
    catalog: &Catalog,
    source: Option<&str>,
    grace: Duration,
) -> Result<usize> {
    let released: std::collections::HashSet<String> =
        catalog.release_dead_writers().await?.into_iter().collect();
    let grace_micros = i64::try_from(grace.as_micros()).unwrap_or(i64::MAX);
    let abandoned = catalog
        .recoverable_segments(source, now_micros().saturating_sub(grace_micros))
        .await?;
    for record in &abandoned {
        let path = Path::parse(&record.segment.uri)?;
        store.delete(&path).await?;
    }
    let ids: Vec<String> = abandoned.iter().map(|r| r.segment.id.clone()).collect();
    catalog.discard_pending(&ids).await?;
    let live: std::collections::HashSet<String> =
        catalog.live_writers().await?.into_iter().collect();
    let staging_files = store.clean_staging_left_behind(grace, &released, &live)?;
    if !abandoned.is_empty() || staging_files > 0 {
        tracing::info!(
            segments = abandoned.len(),
            staging_files,
            "removed what crashed writers left"
        );
    }
    Ok(abandoned.len())
}

/// Compile-time proof that the write path can run in `tokio::spawn`.
#[allow(dead_code)]
fn write_batch_is_spawnable(writer: ArchiveWriter, batch: Batch) {
    fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
    spawnable(async move { writer.write_batch(&batch, &HashMap::new()).await });
}

#[cfg(test)]
mod tests {
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
            routing_key: None,
            partition: Some(partition),
            offset: Some(offset),
            key: None,
            headers: vec![],
            payload: Some(vec![1, 2, 3]),
            payload_size: 3,
            payload_truncated: false,
            content_type: None,
            message_id: None,
            correlation_id: None,
            timestamp_type: None,
            amqp: Default::default(),
            redelivered: None,
            event_time,
            ingest_time: event_time,
        }
    }

    async fn open(directory: &std::path::Path) -> (ArchiveStore, Catalog) {
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

    #[test]
    fn approximate_size_counts_the_struct_and_its_buffers() {
        let mut large = event("t", 0, 0, 0);
        large.payload = Some(vec![b'x'; 500]);
        let size = approximate_size(&large);
        assert!(size >= 500 + std::mem::size_of::<Event>(), "{size}");
        assert_eq!(size - approximate_size(&event("t", 0, 0, 0)), 500 - 3);
    }

    #[test]
    fn batcher_flushes_on_rows_bytes_and_age() {
        let policy = FlushPolicy {
            max_rows: 3,
            max_bytes: usize::MAX,
            max_age: Duration::from_secs(3600),
        };
        let mut batcher = Batcher::new("s", policy);
        assert_eq!(batcher.time_until_due(), None);
        for offset in 0..3 {
            assert!(!batcher.is_due());
            batcher.push(event("t", (offset % 2) as i32, offset, 0));
        }
        assert!(batcher.is_due());
        let batch = batcher.take();
        assert_eq!(batch.rows(), 3);
        assert_eq!(batch.partitions.len(), 2);
        assert!(batcher.is_empty());

        let mut by_bytes = Batcher::new(
            "s",
            FlushPolicy {
                max_bytes: 10,
                ..policy
            },
        );
        by_bytes.push(event("t", 0, 0, 0));
        assert!(by_bytes.is_full());

        let mut by_age = Batcher::new(
            "s",
            FlushPolicy {
                max_age: Duration::ZERO,
                ..policy
            },
        );
        by_age.push(event("t", 0, 0, 0));
        assert!(by_age.is_due());
    }

    #[tokio::test]
    async fn a_batch_is_split_by_hour_and_committed_with_its_checkpoints() {
        let directory = tempfile::tempdir().unwrap();
        let (store, catalog) = open(directory.path()).await;
        let writer = ArchiveWriter::new(store.clone(), catalog.clone(), SegmentFormat::default());
        let hour = 3_600_000_000;
        let mut batcher = Batcher::new("s", FlushPolicy::default());
        for offset in 0..10 {
            // Offsets 0-4 in one hour, 5-9 in the next.
            batcher.push(event("orders", 0, offset, offset / 5 * hour + 1));
        }
        batcher.push(event("payments", 1, 7, 0));
        let batch = batcher.take();
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

    #[tokio::test]
    async fn recovery_removes_what_a_crash_between_publish_and_commit_left() {
        let directory = tempfile::tempdir().unwrap();
        let (store, catalog) = open(directory.path()).await;
        // What a writer does before it dies: stage, publish, no commit.
        let path = Path::parse("source=s/topic=t/date=2026-01-01/hour=00/0-0-0-x.parquet").unwrap();
        catalog
            .stage_segments(&[NewSegment {
                id: "x".into(),
                uri: path.to_string(),
                source: "s".into(),
                topic: "t".into(),
                partition: 0,
                first_offset: 0,
                last_offset: 0,
                min_event_time: 0,
                max_event_time: 0,
                rows: 1,
                bytes: 5,
                checksum: None,
            }])
            .await
            .unwrap();
        store
            .publish(&path, bytes::Bytes::from_static(b"whole"))
            .await
            .unwrap();
        std::fs::write(directory.path().join(".staging/left.tmp"), b"par").unwrap();

        // Within the grace period, another writer may still be working: untouched.
        let removed = recover_abandoned(&store, &catalog, None, Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(removed, 0);
        assert_eq!(store.list(None).await.unwrap(), vec![path.clone()]);

        let removed = recover_abandoned(&store, &catalog, Some("s"), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(removed, 1);
        assert!(store.list(None).await.unwrap().is_empty());
        assert!(catalog
            .abandoned_segments(None, i64::MAX)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            std::fs::read_dir(directory.path().join(".staging"))
                .unwrap()
                .count(),
            0
        );
        assert!(catalog
            .segments(&SegmentFilter::default())
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn recovery_removes_a_released_writers_segments_at_once_and_leaves_a_live_writers() {
        let directory = tempfile::tempdir().unwrap();
        let (store, catalog) = open(directory.path()).await;
        let live = WriterLease::acquire(&catalog).await.unwrap();
        let dead = WriterLease::acquire(&catalog).await.unwrap();
        let stage = |lease: &WriterLease, name: &str| {
            let (catalog, store, writer) = (catalog.clone(), store.clone(), lease.id());
            let name = name.to_owned();
            async move {
                let path = Path::parse(format!(
                    "source=s/topic=t/date=2026-01-01/hour=00/0-0-0-{name}.parquet"
                ))
                .unwrap();
                let segment = NewSegment {
                    id: name.clone(),
                    uri: path.to_string(),
                    source: "s".into(),
                    topic: "t".into(),
                    partition: 0,
                    first_offset: 0,
                    last_offset: 0,
                    min_event_time: 0,
                    max_event_time: 0,
                    rows: 1,
                    bytes: 5,
                    checksum: None,
                };
                catalog
                    .stage_segments_as(Some(&writer), &[segment])
                    .await
                    .unwrap();
                store
                    .publish_for(Some(&writer), &path, bytes::Bytes::from_static(b"whole"))
                    .await
                    .unwrap();
                path
            }
        };
        let live_path = stage(&live, "live").await;
        let dead_path = stage(&dead, "dead").await;
        let dead_staging = directory
            .path()
            .join(format!(".staging/{}-left.tmp", dead.id()));
        let live_staging = directory
            .path()
            .join(format!(".staging/{}-filling.tmp", live.id()));
        std::fs::write(&dead_staging, b"par").unwrap();
        std::fs::write(&live_staging, b"par").unwrap();

        // The dead writer's lease is released: its leftovers go at once,
        // with the default grace; even grace 0 leaves the live writer's alone.
        dead.release().await.unwrap();
        let removed = recover_abandoned(&store, &catalog, None, Duration::from_secs(900))
            .await
            .unwrap();
        assert_eq!(removed, 1);
        assert_eq!(
            recover_abandoned(&store, &catalog, None, Duration::ZERO)
                .await
                .unwrap(),
            0
        );
        assert_eq!(store.list(None).await.unwrap(), vec![live_path.clone()]);
        assert!(!dead_staging.exists());
        let pending = catalog.abandoned_segments(None, i64::MAX).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].segment.id, "live");
        assert!(!store.list(None).await.unwrap().contains(&dead_path));

        // A released writer can no longer commit what it staged.
        let late = stage(&dead, "late").await;
        let refused = catalog
            .commit(&Commit {
                segment_ids: vec!["late".into()],
                checkpoints: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Conflict);
        recover_abandoned(&store, &catalog, None, Duration::from_secs(900))
            .await
            .unwrap();
        assert!(!store.list(None).await.unwrap().contains(&late));

        // The live writer commits as usual.
        catalog
            .commit(&Commit {
                segment_ids: vec!["live".into()],
                checkpoints: vec![],
            })
            .await
            .unwrap();
        assert!(live_staging.exists());
    }
}
