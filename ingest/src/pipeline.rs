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
use std::sync::Arc;
use std::time::{Duration, Instant};

use hindsight_archive::catalog::Catalog;
use hindsight_archive::metrics::{self, CommitFailureLabels, Metrics};
use hindsight_archive::writer::{ArchiveWriter, Batch, Batcher, FlushPolicy, WriteSummary};
use hindsight_archive::{ErrorKind, Result};
use tokio_util::sync::CancellationToken;

use crate::source::{Poll, Source};

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

/// Runs `source` into the archive until it finishes or `cancel` fires, then
/// flushes and commits what is buffered. Retryable write errors are retried
/// with backoff while the batch is kept (and the source is not polled, so
/// memory stays bounded); other errors end the run.
pub async fn run_pipeline(
    source: &mut dyn Source,
    writer: &ArchiveWriter,
    policy: FlushPolicy,
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
    let mut checkpoints = Checkpoints::new();
    let mut batcher = Batcher::new(source.name(), policy);
    let mut summary = PipelineSummary::default();
    let mut finished = false;

    while !finished && !cancel.is_cancelled() {
        let wait = batcher.time_until_due().unwrap_or(Duration::from_secs(1));
        let polled = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(wait), if !batcher.is_empty() => Poll::Idle,
            polled = source.poll(POLL_EVENTS) => polled?,
        };
        match polled {
            Poll::Events(events) => {
                events.into_iter().for_each(|event| batcher.push(event));
                metrics::global()
                    .events_buffered
                    .get_or_create(&labels)
                    .set(batcher.rows() as i64);
            }
            Poll::Idle => {}
            Poll::Revoked(partitions) => {
                for (topic, partition) in partitions {
                    let dropped = batcher.discard(&topic, partition);
                    metrics::global()
                        .events_buffered
                        .get_or_create(&labels)
                        .set(batcher.rows() as i64);
                    checkpoints.remove(&(topic.clone(), partition));
                    tracing::info!(%topic, partition, dropped, "partition revoked");
                }
            }
            Poll::Finished => finished = true,
        }
        if batcher.is_due() || (finished && !batcher.is_empty()) {
            flush(
                source,
                writer,
                &mut batcher,
                &mut checkpoints,
                &mut summary,
                &cancel,
            )
            .await?;
        }
    }
    if !batcher.is_empty() {
        // Shutting down: write what is buffered even though `cancel` fired.
        let keep_trying = CancellationToken::new();
        flush(
            source,
            writer,
            &mut batcher,
            &mut checkpoints,
            &mut summary,
            &keep_trying,
        )
        .await?;
    }
    Ok(summary)
}

async fn flush(
    source: &mut dyn Source,
    writer: &ArchiveWriter,
    batcher: &mut Batcher,
    checkpoints: &mut Checkpoints,
    summary: &mut PipelineSummary,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut batch = Arc::new(batcher.take());
    let rows = batch.rows() as u64;
    let labels = Metrics::source(&batch.source);
    let started = Instant::now();
    let written = write_exactly_once(writer, &mut batch, checkpoints, cancel).await?;
    let metrics = metrics::global();
    metrics
        .flush_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
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
    metrics::global()
        .events_buffered
        .get_or_create(&labels)
        .set(batcher.rows() as i64);
    summary.events += written.rows;
    summary.bytes += written.bytes;
    summary.segments += written.segments;
    summary.flushes += 1;
    summary.already_archived += rows - written.rows;
    for advance in &written.advanced {
        checkpoints.insert(
            (advance.topic.clone(), advance.partition),
            Some(advance.next),
        );
    }
    crash_point_after_commit(summary.flushes);
    source.acknowledge(&written.advanced).await
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
    loop {
        let attempt = attempt_write(writer, batch, checkpoints, refresh).await;
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
                tracing::warn!(
                    error = %error.full_message(),
                    retry_in_ms = backoff.as_millis() as u64,
                    "archive write failed; holding the batch and retrying"
                );
                tokio::select! {
                    _ = cancel.cancelled() => return Err(error),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                // The commit may have happened before the error: re-read.
                refresh = true;
            }
            Err(error) => return Err(error),
        }
    }
}
