//! The loop that drives one source: poll, batch, write, commit, acknowledge.
//!
//! Exactly-once for positioned events (Kafka, stream queues) rests on the
//! catalog: before a batch is written, events below their partition's
//! checkpoint are dropped (they are archived already), and the commit moves
//! the checkpoint by compare-and-set. When the compare-and-set loses (another
//! writer got there first), the checkpoints are read again and the rest of the
//! batch is written. So neither a rebalance nor a zombie writer can archive an
//! offset twice, and nothing is acknowledged before it is committed.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hindsight_archive::catalog::Catalog;
use hindsight_archive::metrics::{self, CommitFailureLabels, Metrics};
use hindsight_archive::writer::{ArchiveWriter, Batch, WriteSummary};

use crate::batch::{Batcher, FlushPolicy};
use hindsight_archive::{ErrorKind, Result};
use tokio_util::sync::CancellationToken;

use crate::source::{BatchMark, Poll, Source};

/// Totals for one pipeline run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineSummary {
    pub events: u64,
    pub bytes: u64,
    pub segments: usize,
    pub flushes: usize,
    /// Events dropped because they were archived already (redelivered after a
    /// crash or a rebalance).
    pub already_archived: u64,
}

/// How many events to ask a source for at a time.
const POLL_EVENTS: usize = 4096;

/// How often a lost compare-and-set is retried with fresh checkpoints.
const CONFLICT_RETRIES: usize = 5;

type Checkpoints = HashMap<(String, i32), Option<i64>>;

/// A batch being written while the next one fills: at most one at a time.
type InFlight<'w> = Pin<Box<dyn Future<Output = FlushOutcome> + Send + 'w>>;

/// What a background flush hands back to the loop.
struct FlushOutcome {
    written: Result<WriteSummary>,
    /// The checkpoints, updated by the write (the flush borrows them).
    checkpoints: Checkpoints,
    mark: BatchMark,
    rows: u64,
    source: String,
    started: Instant,
}

/// Runs `source` into the archive until it finishes or `cancel` fires, then
/// flushes and commits what is buffered. Retryable write errors are retried
/// with backoff while the batch is kept; other errors end the run.
///
/// One batch is written while the next one fills, and at most one: when the
/// next batch is due before the write finishes, the source is not polled, so
/// memory stays bounded by two batches. Writes commit, and sources
/// acknowledge, in the order the batches were taken.
pub async fn run_pipeline(
    source: &mut dyn Source,
    writer: &ArchiveWriter,
    policy: FlushPolicy,
    cancel: CancellationToken,
) -> Result<PipelineSummary> {
    run_pipeline_observed(source, writer, policy, None, cancel).await
}

/// Sees every event a source hands the pipeline, before it is batched, for
/// work on the side that must never hold ingest back: the binary fetches
/// the schemas of framed payloads while their registry still has them.
/// `observe` must be quick and must not block.
pub trait EventObserver: Send + Sync {
    fn observe(&self, source: &str, event: &hindsight_archive::Event);
}

/// [`run_pipeline`], showing every event to `observer` first.
pub async fn run_pipeline_observed(
    source: &mut dyn Source,
    writer: &ArchiveWriter,
    policy: FlushPolicy,
    observer: Option<Arc<dyn EventObserver>>,
    cancel: CancellationToken,
) -> Result<PipelineSummary> {
    writer
        .catalog()
        .register_source(source.name(), source.bus())
        .await?;
    let mut policy = policy;
    if let Some(cap) = source.max_batch_rows() {
        policy.max_rows = policy.max_rows.min(cap.max(1));
    }
    let labels = Metrics::source(source.name());
    let mut progress = Progress {
        batcher: Batcher::new(source.name(), policy),
        checkpoints: Checkpoints::new(),
        revoked_during_write: Vec::new(),
        summary: PipelineSummary::default(),
    };
    let mut in_flight: Option<InFlight<'_>> = None;
    let mut finished = false;

    /// What one turn of the loop saw.
    enum Step {
        Polled(Poll),
        Written(FlushOutcome),
        Cancelled,
    }

    while !cancel.is_cancelled() {
        let batcher = &progress.batcher;
        if finished && in_flight.is_none() && batcher.is_empty() {
            break;
        }
        let wait = batcher.time_until_due().unwrap_or(Duration::from_secs(1));
        let writing = in_flight.is_some();
        let write_done = async {
            match in_flight.as_mut() {
                Some(write) => write.await,
                None => std::future::pending().await,
            }
        };
        let can_poll = !finished && !batcher.is_full();
        let step = tokio::select! {
            _ = cancel.cancelled() => Step::Cancelled,
            outcome = write_done => Step::Written(outcome),
            _ = tokio::time::sleep(wait), if !batcher.is_empty() && !writing => Step::Polled(Poll::Idle),
            polled = source.poll(POLL_EVENTS), if can_poll => Step::Polled(polled?),
        };
        match step {
            Step::Cancelled => break,
            Step::Written(outcome) => {
                in_flight = None;
                progress.finish_write(source, outcome).await?;
            }
            Step::Polled(Poll::Events(events)) => {
                let batcher = &mut progress.batcher;
                if let Some(observer) = &observer {
                    let name = source.name();
                    events
                        .iter()
                        .for_each(|event| observer.observe(name, event));
                }
                events.into_iter().for_each(|event| batcher.push(event));
                metrics::global()
                    .events_buffered
                    .get_or_create(&labels)
                    .set(batcher.rows() as i64);
            }
            Step::Polled(Poll::Idle) => {}
            Step::Polled(Poll::Revoked(partitions)) => {
                for (topic, partition) in partitions {
                    let dropped = progress.batcher.discard(&topic, partition);
                    metrics::global()
                        .events_buffered
                        .get_or_create(&labels)
                        .set(progress.batcher.rows() as i64);
                    progress.checkpoints.remove(&(topic.clone(), partition));
                    if in_flight.is_some() {
                        progress
                            .revoked_during_write
                            .push((topic.clone(), partition));
                    }
                    tracing::info!(%topic, partition, dropped, "partition revoked");
                }
            }
            Step::Polled(Poll::Finished) => finished = true,
        }
        let batcher = &progress.batcher;
        let due = batcher.is_due() || (finished && !batcher.is_empty());
        if due && in_flight.is_none() {
            in_flight = Some(progress.start_write(writer, &*source, cancel.clone()));
        }
    }
    // Shutting down: finish the write in flight, then write what is buffered
    // even though `cancel` fired.
    if let Some(write) = in_flight.take() {
        progress.finish_write(source, write.await).await?;
    }
    if !progress.batcher.is_empty() {
        let outcome = progress
            .start_write(writer, &*source, CancellationToken::new())
            .await;
        progress.finish_write(source, outcome).await?;
    }
    Ok(progress.summary)
}

/// The loop's state between writes.
struct Progress {
    batcher: Batcher,
    /// The catalog checkpoints known; a write takes them and hands them back.
    checkpoints: Checkpoints,
    /// Partitions revoked while a write held the checkpoints.
    revoked_during_write: Vec<(String, i32)>,
    summary: PipelineSummary,
}

impl Progress {
    /// Takes the buffered batch, with the source's mark and the checkpoints,
    /// into a write.
    fn start_write<'w>(
        &mut self,
        writer: &'w ArchiveWriter,
        source: &dyn Source,
        cancel: CancellationToken,
    ) -> InFlight<'w> {
        start_write(
            writer,
            self.batcher.take(),
            source.mark(),
            std::mem::take(&mut self.checkpoints),
            cancel,
        )
    }

    /// After a write: the checkpoints back from it (without partitions
    /// revoked meanwhile), metrics, the checkpoints it advanced, the crash
    /// point, and the source's acknowledgement of that batch.
    async fn finish_write(&mut self, source: &mut dyn Source, outcome: FlushOutcome) -> Result<()> {
        self.checkpoints = outcome.checkpoints;
        for key in self.revoked_during_write.drain(..) {
            self.checkpoints.remove(&key);
        }
        let written = outcome.written?;
        let labels = Metrics::source(&outcome.source);
        let metrics = metrics::global();
        metrics
            .flush_seconds
            .get_or_create(&labels)
            .observe(outcome.started.elapsed().as_secs_f64());
        metrics
            .events_archived
            .get_or_create(&labels)
            .inc_by(written.rows);
        metrics
            .segments_written
            .get_or_create(&labels)
            .inc_by(written.segments as u64);
        metrics
            .bytes_written
            .get_or_create(&labels)
            .inc_by(written.bytes);
        metrics
            .events_buffered
            .get_or_create(&labels)
            .set(self.batcher.rows() as i64);
        let summary = &mut self.summary;
        summary.events += written.rows;
        summary.bytes += written.bytes;
        summary.segments += written.segments;
        summary.flushes += 1;
        summary.already_archived += outcome.rows - written.rows;
        for advance in &written.advanced {
            self.checkpoints.insert(
                (advance.topic.clone(), advance.partition),
                Some(advance.next),
            );
        }
        crash_point_after_commit(summary.flushes);
        source.acknowledge(&written.advanced, outcome.mark).await
    }
}

/// Writes and commits `batch` (retrying as [`write_exactly_once`] does); the
/// future owns the batch and the checkpoints, and hands them back.
fn start_write<'w>(
    writer: &'w ArchiveWriter,
    batch: Batch,
    mark: BatchMark,
    mut checkpoints: Checkpoints,
    cancel: CancellationToken,
) -> InFlight<'w> {
    Box::pin(async move {
        let mut batch = Arc::new(batch);
        let rows = batch.rows() as u64;
        let source = batch.source.clone();
        let started = Instant::now();
        let written = write_exactly_once(writer, &mut batch, &mut checkpoints, &cancel).await;
        FlushOutcome {
            written,
            checkpoints,
            mark,
            rows,
            source,
            started,
        }
    })
}

/// Fault injection for the crash tests: with `HINDSIGHT_CRASH_AFTER_COMMIT=N`
/// the process aborts right after its Nth commit, before acknowledging it:
/// the one window in which a broker delivers committed messages again.
fn crash_point_after_commit(flushes: usize) {
    static CRASH_AFTER: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let crash_after = CRASH_AFTER.get_or_init(|| {
        std::env::var("HINDSIGHT_CRASH_AFTER_COMMIT")
            .ok()
            .and_then(|n| n.parse().ok())
    });
    if *crash_after == Some(flushes) {
        tracing::error!(
            flushes,
            "HINDSIGHT_CRASH_AFTER_COMMIT: aborting before the acknowledgement"
        );
        std::process::abort();
    }
}

/// Reads the catalog checkpoint of every partition in `batch` not yet known.
async fn load_checkpoints(
    catalog: &Catalog,
    batch: &Batch,
    checkpoints: &mut Checkpoints,
    refresh: bool,
) -> Result<()> {
    for partition in &batch.partitions {
        let key = (partition.topic.clone(), partition.partition);
        if refresh || !checkpoints.contains_key(&key) {
            let next = catalog
                .checkpoint(&batch.source, &partition.topic, partition.partition)
                .await?;
            checkpoints.insert(key, next);
        }
    }
    Ok(())
}

/// One try: refresh checkpoints where needed, drop what is archived, write the rest.
///
/// Dropping happens in place, without copying events: checkpoints only move
/// forward, so what one try drops a later try would drop too. The encoding
/// threads of a finished try have released the batch, so `make_mut` does not
/// copy it either.
async fn attempt_write(
    writer: &ArchiveWriter,
    batch: &mut Arc<Batch>,
    checkpoints: &mut Checkpoints,
    refresh: bool,
) -> Result<WriteSummary> {
    load_checkpoints(writer.catalog(), batch, checkpoints, refresh).await?;
    Arc::make_mut(batch).retain_unarchived(checkpoints);
    if batch.partitions.is_empty() {
        return Ok(WriteSummary::default());
    }
    let started = Instant::now();
    let written = writer
        .write_shared_batch(Arc::clone(batch), checkpoints)
        .await?;
    tracing::debug!(
        rows = written.rows,
        segments = written.segments,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "flushed"
    );
    Ok(written)
}

async fn write_exactly_once(
    writer: &ArchiveWriter,
    batch: &mut Arc<Batch>,
    checkpoints: &mut Checkpoints,
    cancel: &CancellationToken,
) -> Result<WriteSummary> {
    let mut backoff = Duration::from_millis(100);
    let mut conflicts = 0;
    let mut refresh = false;
    let mut pause = StorageFullPause::new(&batch.source);
    loop {
        let attempt = attempt_write(writer, batch, checkpoints, refresh).await;
        match &attempt {
            Ok(_) => pause.resume(),
            Err(error) if error.is_storage_full() => pause.pause(error),
            Err(_) => {}
        }
        if let Err(error) = &attempt {
            let reason = match error.kind() {
                ErrorKind::Conflict => "conflict",
                ErrorKind::Retryable => "unavailable",
                _ => "fatal",
            };
            metrics::global()
                .commit_failures
                .get_or_create(&CommitFailureLabels {
                    source: batch.source.clone(),
                    reason: reason.to_owned(),
                })
                .inc();
        }
        match attempt {
            Ok(written) => return Ok(written),
            Err(error) if error.kind() == ErrorKind::Conflict && conflicts < CONFLICT_RETRIES => {
                conflicts += 1;
                refresh = true;
                tracing::warn!(error = %error.full_message(), "another writer committed first; re-reading checkpoints");
            }
            Err(error) if error.kind() == ErrorKind::Retryable && !cancel.is_cancelled() => {
                if !error.is_storage_full() {
                    tracing::warn!(
                        error = %error.full_message(),
                        retry_in_ms = backoff.as_millis() as u64,
                        "archive write failed; holding the batch and retrying"
                    );
                }
                tokio::select! {
                    _ = cancel.cancelled() => return Err(error),
                    _ = tokio::time::sleep(backoff) => {}
                }
                // A full disk is checked often: it resumes when space returns.
                let longest = if error.is_storage_full() {
                    STORAGE_FULL_RETRY
                } else {
                    Duration::from_secs(30)
                };
                backoff = (backoff * 2).min(longest);
                // The commit may have happened before the error: re-read.
                refresh = true;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The longest wait between two tries while the disk is full.
const STORAGE_FULL_RETRY: Duration = Duration::from_secs(2);

/// A source held because the disk (or quota) of the store or the catalog is
/// full: said once in the log and in `hindsight_storage_full`, however many
/// tries fail, and once more when a write goes through again.
struct StorageFullPause {
    labels: metrics::SourceLabels,
    since: Option<Instant>,
}

impl StorageFullPause {
    fn new(source: &str) -> Self {
        StorageFullPause {
            labels: Metrics::source(source),
            since: None,
        }
    }

    fn pause(&mut self, error: &hindsight_archive::Error) {
        if self.since.is_some() {
            tracing::debug!(error = %error.full_message(), "storage still full");
            return;
        }
        self.since = Some(Instant::now());
        tracing::warn!(
            error = %error.full_message(),
            "storage is full: pausing this source, holding the batch, and resuming when space returns"
        );
        let metrics = metrics::global();
        metrics.storage_full.get_or_create(&self.labels).set(1);
        metrics
            .storage_full_pauses
            .get_or_create(&self.labels)
            .inc();
    }

    fn resume(&mut self) {
        let Some(since) = self.since.take() else {
            return;
        };
        tracing::info!(
            paused_s = since.elapsed().as_secs(),
            "storage has space again: resumed"
        );
        metrics::global()
            .storage_full
            .get_or_create(&self.labels)
            .set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use hindsight_archive::catalog::CheckpointAdvance;
    use hindsight_archive::segment::SegmentFormat;
    use hindsight_archive::store::{ArchiveStore, StoreConfig};
    use hindsight_archive::{Bus, Event};

    /// Hands out `total` events of one partition, a few per poll, and checks
    /// each acknowledgement against the catalog at the moment it arrives.
    struct ScriptedSource {
        catalog: Catalog,
        total: i64,
        handed_out: i64,
        /// (mark position, events handed out, catalog checkpoint) per acknowledgement.
        acknowledgements: Vec<(u64, i64, i64)>,
    }

    fn event(offset: i64) -> Event {
        Event {
            event_id: format!("e{offset}"),
            source: "s".into(),
            topic: "t".into(),
            partition: Some(0),
            offset: Some(offset),
            payload: Some(offset.to_le_bytes().to_vec()),
            payload_size: 8,
            event_time: 1,
            ingest_time: 1,
            ..Event::default()
        }
    }

    #[async_trait]
    impl Source for ScriptedSource {
        fn name(&self) -> &str {
            "s"
        }

        fn bus(&self) -> Bus {
            Bus::Kafka
        }

        async fn poll(&mut self, _max_events: usize) -> Result<Poll> {
            if self.handed_out == self.total {
                return Ok(Poll::Finished);
            }
            tokio::task::yield_now().await;
            let end = (self.handed_out + 7).min(self.total);
            let events = (self.handed_out..end).map(event).collect();
            self.handed_out = end;
            Ok(Poll::Events(events))
        }

        fn mark(&self) -> BatchMark {
            BatchMark {
                session: 1,
                position: self.handed_out as u64,
            }
        }

        async fn acknowledge(
            &mut self,
            _committed: &[CheckpointAdvance],
            mark: BatchMark,
        ) -> Result<()> {
            let committed = self.catalog.checkpoint("s", "t", 0).await?.unwrap_or(0);
            self.acknowledgements
                .push((mark.position, self.handed_out, committed));
            Ok(())
        }
    }

    #[tokio::test]
    async fn acknowledgements_cover_committed_batches_only_while_the_next_one_fills() {
        let directory = tempfile::tempdir().unwrap();
        let store = ArchiveStore::open(&StoreConfig {
            url: directory.path().display().to_string(),
            ..StoreConfig::default()
        })
        .unwrap();
        let catalog = Catalog::open(&format!(
            "sqlite://{}/catalog.db",
            directory.path().display()
        ))
        .await
        .unwrap();
        let writer = ArchiveWriter::new(store, catalog.clone(), SegmentFormat::default());
        let mut source = ScriptedSource {
            catalog: catalog.clone(),
            total: 2000,
            handed_out: 0,
            acknowledgements: Vec::new(),
        };
        let policy = FlushPolicy {
            max_rows: 50,
            max_bytes: usize::MAX,
            max_age: Duration::from_secs(3600),
        };
        let summary = run_pipeline(&mut source, &writer, policy, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(summary.events, 2000);
        assert_eq!(catalog.checkpoint("s", "t", 0).await.unwrap(), Some(2000));

        let acks = &source.acknowledgements;
        assert_eq!(acks.len(), summary.flushes);
        assert_eq!(acks.last().map(|ack| ack.0), Some(2000));
        for pair in acks.windows(2) {
            assert!(pair[0].0 < pair[1].0, "acknowledged out of order: {acks:?}");
        }
        for &(position, _, committed) in acks {
            assert!(
                position as i64 <= committed,
                "acknowledged up to {position} with {committed} committed: {acks:?}"
            );
        }
        // The next batch filled while one was written: some acknowledgement
        // arrived after events beyond its mark had been handed out, and left
        // those unacknowledged.
        assert!(
            acks.iter()
                .any(|&(position, handed_out, _)| handed_out > position as i64),
            "no batch was consumed during a write: {acks:?}"
        );
    }
}
