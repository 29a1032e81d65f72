//! Sources: where events come from.
//!
//! # The contract
//!
//! A source hands out events, each with its position: (topic, partition,
//! offset) for a Kafka record or a stream-queue message. It never acknowledges
//! on its own. The pipeline batches the events, writes them as segments,
//! makes those segments durable in the object store and commits them, with
//! their checkpoints, in one catalog transaction. Only then does the pipeline
//! call [`Source::acknowledge`] with the checkpoints that are now in the
//! catalog, and only then may the source acknowledge to its broker (a Kafka
//! offset commit, or a RabbitMQ `basic.ack` with `multiple`).
//!
//! The pipeline writes one batch while it fills the next, so "everything
//! handed out so far" is more than a commit covers. When the pipeline takes a
//! batch it asks the source for a [`BatchMark`] (where the source stands: for
//! RabbitMQ, the channel and the last delivery tag handed out), and it gives
//! that mark back with the commit: an acknowledgement covers the batch, never
//! the events handed out after it. Commits, and so acknowledgements, happen
//! in the order the batches were taken.
//!
//! So a crash at any instant loses nothing that was acknowledged: an event is
//! either in a committed segment, or still unacknowledged at the broker and
//! delivered again. The catalog, not the broker, is the source of truth for
//! where a partition resumes: a writer whose checkpoint is stale (after a
//! rebalance, or a zombie) is refused by the compare-and-set commit.
//!
//! The bus sources live in `hindsight-connectors` (one module per bus, each
//! a cargo feature); this crate has the contract and the demo source.
//!
//! A source is built from its configuration ([`SourceConfig::open`]), so the
//! binary iterates over configured sources without knowing their bus.

pub mod demo;

use async_trait::async_trait;
use hindsight_archive::catalog::{Catalog, CheckpointAdvance};
use hindsight_archive::{Bus, Event, Result};

use crate::batch::FlushPolicy;

/// A source's configuration: enough to open it and to say what it archives.
#[async_trait]
pub trait SourceConfig: Send + Sync {
    /// The configured source name.
    fn name(&self) -> &str;

    fn bus(&self) -> Bus;

    /// The source's own `[flush]` limits over `defaults`.
    fn flush_policy(&self, defaults: FlushPolicy) -> FlushPolicy;

    /// The topics (Kafka) or exchanges (RabbitMQ) it archives by name, and a
    /// topic pattern if it has one, for replay's loop guard.
    fn archived_names(&self) -> (Vec<String>, Option<String>);

    /// Connects and returns the running source. A misconfigured connection
    /// fails here, at start-up, with an error naming the source and host.
    async fn open(&self, catalog: Catalog, policy: FlushPolicy) -> Result<Box<dyn Source>>;
}

/// Where a source stood when the pipeline took a batch: what acknowledging
/// that batch may cover. Opaque to the pipeline, which hands it back to
/// [`Source::acknowledge`] after the batch is committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchMark {
    /// Which broker session the position belongs to (positions such as
    /// AMQP delivery tags start again on a new channel).
    pub session: u64,
    /// The last position handed out before the batch was taken; 0 for none.
    pub position: u64,
}

/// What [`Source::poll`] returned.
#[derive(Debug)]
pub enum Poll {
    /// Events, in delivery order.
    Events(Vec<Event>),
    /// Nothing right now; poll again.
    Idle,
    /// These (topic, partition)s were taken away (a rebalance): drop what is
    /// buffered for them and forget their checkpoints. Their new owner resumes
    /// from the catalog.
    Revoked(Vec<(String, i32)>),
    /// A finite source has nothing more, ever.
    Finished,
}

#[async_trait]
pub trait Source: Send {
    /// The configured source name.
    fn name(&self) -> &str;

    fn bus(&self) -> Bus;

    /// The most rows one batch may hold, when the source needs a cap (a
    /// RabbitMQ prefetch: a batch larger than the messages in flight could
    /// never fill).
    fn max_batch_rows(&self) -> Option<usize> {
        None
    }

    /// Up to `max_events` events. Waits briefly for the first one, then returns.
    async fn poll(&mut self, max_events: usize) -> Result<Poll>;

    /// Where the source stands now. The pipeline takes a mark when it takes a
    /// batch, and passes it to [`Source::acknowledge`] once that batch is
    /// committed. Sources whose acknowledgement follows the checkpoints
    /// alone (Kafka) keep the default.
    fn mark(&self) -> BatchMark {
        BatchMark::default()
    }

    /// Called after a catalog commit with the checkpoints it advanced and the
    /// mark taken with the batch: the source may now acknowledge everything
    /// up to them to its broker, and nothing after.
    async fn acknowledge(&mut self, committed: &[CheckpointAdvance], mark: BatchMark)
        -> Result<()>;

    /// Stops the source and closes its connection (after the pipeline's
    /// last commit and acknowledgement). Never fails: what is not
    /// acknowledged is delivered again.
    async fn close(&mut self) {}
}

/// The default `max_payload_bytes` of every bus source: 16 MiB.
pub fn default_max_payload_bytes() -> usize {
    16 * 1024 * 1024
}

/// Counts events and payload bytes received, for `/metrics`.
pub fn count_consumed(source: &str, events: &[hindsight_archive::Event]) {
    let labels = hindsight_archive::metrics::Metrics::source(source);
    let metrics = hindsight_archive::metrics::global();
    metrics
        .events_consumed
        .get_or_create(&labels)
        .inc_by(events.len() as u64);
    let bytes: i64 = events.iter().map(|e| e.payload_size).sum();
    metrics
        .bytes_consumed
        .get_or_create(&labels)
        .inc_by(bytes.max(0) as u64);
    let truncated = events.iter().filter(|e| e.payload_truncated).count();
    if truncated > 0 {
        metrics
            .payloads_truncated
            .get_or_create(&labels)
            .inc_by(truncated as u64);
    }
}

/// Per-source overrides of the `[flush]` limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlushOverride {
    pub max_rows: Option<usize>,
    pub max_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<std::time::Duration>,
}

impl FlushOverride {
    /// `defaults` with the limits this override sets.
    pub fn apply(&self, defaults: FlushPolicy) -> FlushPolicy {
        FlushPolicy {
            max_rows: self.max_rows.unwrap_or(defaults.max_rows),
            max_bytes: self.max_bytes.unwrap_or(defaults.max_bytes),
            max_age: self.max_age.unwrap_or(defaults.max_age),
        }
    }
}
