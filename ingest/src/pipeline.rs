//! The loop that drives one source: poll, batch, write, commit, acknowledge.

use std::collections::HashMap;
use std::time::{Duration, Instant};

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
}

/// How many events to ask a source for at a time.
const POLL_EVENTS: usize = 4096;

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
    let catalog = writer.catalog();
    catalog.register_source(source.name(), source.bus()).await?;
    let mut positions: HashMap<(String, i32), Option<i64>> = catalog
        .checkpoints(source.name())
        .await?
        .into_iter()
        .map(|c| ((c.topic, c.partition), Some(c.next_position)))
        .collect();
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
            Poll::Events(events) => events.into_iter().for_each(|event| batcher.push(event)),
            Poll::Idle => {}
            Poll::Finished => finished = true,
        }
        if batcher.is_due() || (finished && !batcher.is_empty()) {
            let batch = batcher.take();
            let written = write_with_retry(writer, &batch, &positions, &cancel).await?;
            record(&mut summary, &mut positions, &written);
            source.acknowledge(&written.advanced).await?;
        }
    }
    if !batcher.is_empty() {
        let batch = batcher.take();
        let written =
            write_with_retry(writer, &batch, &positions, &CancellationToken::new()).await?;
        record(&mut summary, &mut positions, &written);
        source.acknowledge(&written.advanced).await?;
    }
    Ok(summary)
}

fn record(
    summary: &mut PipelineSummary,
    positions: &mut HashMap<(String, i32), Option<i64>>,
    written: &WriteSummary,
) {
    summary.events += written.rows;
    summary.bytes += written.bytes;
    summary.segments += written.segments;
    summary.flushes += 1;
    for advance in &written.advanced {
        positions.insert(
            (advance.topic.clone(), advance.partition),
            Some(advance.next),
        );
    }
}

async fn write_with_retry(
    writer: &ArchiveWriter,
    batch: &Batch,
    positions: &HashMap<(String, i32), Option<i64>>,
    cancel: &CancellationToken,
) -> Result<WriteSummary> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        match writer.write_batch(batch, positions).await {
            Ok(written) => {
                tracing::debug!(
                    rows = written.rows,
                    segments = written.segments,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "flushed"
                );
                return Ok(written);
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
            }
            Err(error) => return Err(error),
        }
    }
}
