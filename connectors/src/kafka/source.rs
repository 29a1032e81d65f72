//! Kafka source (rdkafka): one consumer group, auto-commit off.
//!
//! A dedicated thread runs the `BaseConsumer` poll loop, converts records to
//! events and hands them to the pipeline through a bounded channel. When the
//! channel is full the thread stops polling, so memory stays bounded.
//!
//! On assignment every partition starts at its catalog checkpoint (the
//! catalog is the source of truth), or at `start` when it has none. On
//! revocation the pipeline is told to drop what it buffered for those
//! partitions. After each catalog commit the committed positions are also
//! committed to Kafka, so that standard lag tools work; Kafka's committed
//! offsets are never read back.

use hindsight_archive::secret::ClientProperties;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hindsight_archive::catalog::{Catalog, CheckpointAdvance};
use hindsight_archive::event::{event_id, now_micros};
use hindsight_archive::metrics::{self, PartitionLabels};
use hindsight_archive::{Bus, Error, ErrorKind, Event, Header, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message, Timestamp};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use hindsight_ingest::source::{count_consumed, BatchMark, Poll, Source};

use super::client::KafkaConnection;
use super::context::ConnectionContext;

/// Where a partition without a checkpoint starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    #[default]
    Earliest,
    Latest,
}

/// `[[sources]] type = "kafka"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    pub name: String,
    /// A `[connections.NAME]` with `bus = "kafka"`: brokers, TLS, SASL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Instead of a connection: bootstrap servers.
    #[serde(default)]
    pub brokers: Vec<String>,
    /// Topics by name.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Topics by regular expression (librdkafka syntax, without the leading `^`).
    pub topic_pattern: Option<String>,
    #[serde(default)]
    pub group_id: String,
    #[serde(default)]
    pub start: StartPosition,
    /// Payloads larger than this are archived truncated, flagged, with their size.
    #[serde(default = "hindsight_ingest::source::default_max_payload_bytes")]
    pub max_payload_bytes: usize,
    /// Overrides of the `[flush]` limits for this source.
    #[serde(default)]
    pub flush: hindsight_ingest::source::FlushOverride,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, …).
    /// Secret ones are printed redacted. With a connection, they are added
    /// to the connection's and win.
    #[serde(default)]
    pub client: ClientProperties,
    /// The named connection, filled in when the configuration is read.
    #[serde(skip)]
    pub resolved: Option<Arc<KafkaConnection>>,
}

impl KafkaSourceConfig {
    /// Problems as `path.field: message`, for the configuration report.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut problems = Vec::new();
        match (&self.connection, self.brokers.is_empty()) {
            (Some(_), false) => problems.push(format!(
                "{path}.brokers: give brokers or a connection, not both"
            )),
            (None, true) => problems.push(format!(
                "{path}.brokers: list at least one host:port, or name a [connections.NAME]"
            )),
            (None, false) => problems.extend(self.link().1.problems(path)),
            (Some(_), true) => {}
        }
        if self.topics.is_empty() && self.topic_pattern.is_none() {
            problems.push(format!("{path}.topics: list topics or set topic_pattern"));
        }
        if self.group_id.trim().is_empty() {
            problems.push(format!("{path}.group_id: must not be empty"));
        }
        if self.max_payload_bytes == 0 {
            problems.push(format!("{path}.max_payload_bytes: must be at least 1"));
        }
        problems
    }
}

impl KafkaSourceConfig {
    /// How this source connects, and how errors name it: the named
    /// connection once resolved (with the source's `client` properties on
    /// top), or the source's own brokers.
    pub fn link(&self) -> (String, KafkaConnection) {
        match (&self.connection, &self.resolved) {
            (Some(name), Some(connection)) => {
                let mut connection = connection.as_ref().clone();
                for (key, value) in self.client.iter() {
                    connection.client.insert(key.clone(), value.clone());
                }
                (format!("connection {name:?}"), connection)
            }
            _ => (
                format!("source {:?}", self.name),
                KafkaConnection::inline(self.brokers.clone(), self.client.clone()),
            ),
        }
    }
}

/// What the poll thread sends to the pipeline.
enum Delivery {
    Events(Vec<Event>),
    Revoked(Vec<(String, i32)>),
    Failed(Error),
}

/// Rebalance handling: start assigned partitions at their catalog checkpoint.
struct HindsightContext {
    connection: ConnectionContext,
    source: String,
    start: StartPosition,
    catalog: Catalog,
    runtime: tokio::runtime::Handle,
    deliveries: mpsc::Sender<Delivery>,
    /// Revocations seen by the callback, sent on by the poll loop only after
    /// the records it gathered before them, so that order is kept.
    revoked: std::sync::Mutex<Vec<(String, i32)>>,
}

impl ClientContext for HindsightContext {
    super::context::connection_callbacks!(|this| &this.connection);

    /// librdkafka statistics (every `statistics.interval.ms`): the lag of each
    /// assigned partition, high watermark minus the committed offset (which
    /// follows the catalog), for `/metrics`.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, partition_stats) in &stats.partitions {
                if *partition < 0 || partition_stats.consumer_lag < 0 {
                    continue;
                }
                metrics::global()
                    .consumer_lag
                    .get_or_create(&PartitionLabels {
                        source: self.source.clone(),
                        topic: topic.clone(),
                        partition: partition.to_string(),
                    })
                    .set(partition_stats.consumer_lag);
            }
        }
    }
}

impl HindsightContext {
    fn start_offsets(&self, tpl: &mut TopicPartitionList) -> Result<()> {
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        for (topic, partition) in partitions {
            let checkpoint =
                self.runtime
                    .block_on(self.catalog.checkpoint(&self.source, &topic, partition))?;
            let offset = match (checkpoint, self.start) {
                (Some(next), _) => Offset::Offset(next),
                (None, StartPosition::Earliest) => Offset::Beginning,
                (None, StartPosition::Latest) => Offset::End,
            };
            tracing::info!(source = %self.source, %topic, partition, ?offset, "partition assigned");
            tpl.set_partition_offset(&topic, partition, offset)
                .map_err(|e| {
                    Error::with_source(ErrorKind::Internal, "cannot set start offset", e)
                })?;
        }
        Ok(())
    }
}

impl ConsumerContext for HindsightContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // If the catalog cannot be read the partitions are not taken:
                // better to stall visibly than to start at a guessed offset.
                if let Err(error) = self.start_offsets(tpl) {
                    let _ = self.deliveries.blocking_send(Delivery::Failed(error));
                    return;
                }
                if let Err(error) = consumer.assign(tpl) {
                    let error =
                        Error::with_source(ErrorKind::Retryable, "cannot assign partitions", error);
                    let _ = self.deliveries.blocking_send(Delivery::Failed(error));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect::<Vec<_>>();
                tracing::info!(source = %self.source, ?revoked, "partitions revoked");
                if let Ok(mut pending) = self.revoked.lock() {
                    pending.extend(revoked);
                }
                if let Err(error) = consumer.unassign() {
                    tracing::warn!(%error, "cannot unassign partitions");
                }
            }
            other => {
                tracing::error!(source = %self.source, error = ?other, "rebalance failed");
                if let Err(error) = consumer.unassign() {
                    tracing::warn!(%error, "cannot unassign partitions");
                }
            }
        }
    }
}

type HindsightConsumer = BaseConsumer<HindsightContext>;

/// A running Kafka source.
pub struct KafkaSource {
    config: KafkaSourceConfig,
    /// `None` once stopped. Never dropped on an async worker thread: closing
    /// runs the rebalance callback, which blocks.
    consumer: Option<Arc<HindsightConsumer>>,
    deliveries: mpsc::Receiver<Delivery>,
    stop_polling: CancellationToken,
    poll_thread: Option<tokio::task::JoinHandle<()>>,
}

impl KafkaSource {
    /// Connects, subscribes and starts the poll thread. Must be called inside a
    /// multi-threaded tokio runtime.
    pub fn start(config: KafkaSourceConfig, catalog: Catalog) -> Result<KafkaSource> {
        let (sender, receiver) = mpsc::channel(8);
        let (what, link) = config.link();
        let context = HindsightContext {
            connection: link.context(&what),
            source: config.name.clone(),
            start: config.start,
            catalog,
            runtime: tokio::runtime::Handle::current(),
            deliveries: sender.clone(),
            revoked: std::sync::Mutex::new(Vec::new()),
        };
        let reset = match config.start {
            StartPosition::Earliest => "earliest",
            StartPosition::Latest => "latest",
        };
        let client = link.client_config(&[
            ("group.id", config.group_id.clone()),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
            ("auto.offset.reset", reset.into()),
            ("enable.partition.eof", "false".into()),
            ("statistics.interval.ms", "5000".into()),
            ("client.id", format!("hindsight-{}", config.name)),
        ]);
        let consumer: HindsightConsumer = client.create_with_context(context).map_err(|error| {
            Error::with_source(
                ErrorKind::InvalidInput,
                format!("cannot create the kafka consumer of source {}", config.name),
                error,
            )
        })?;
        let mut subscription: Vec<String> = config.topics.clone();
        if let Some(pattern) = &config.topic_pattern {
            subscription.push(format!("^{pattern}"));
        }
        let subscription_refs: Vec<&str> = subscription.iter().map(String::as_str).collect();
        consumer.subscribe(&subscription_refs).map_err(|error| {
            Error::with_source(
                ErrorKind::InvalidInput,
                format!("cannot subscribe to {subscription:?}"),
                error,
            )
        })?;
        let consumer = Arc::new(consumer);
        let stop_polling = CancellationToken::new();
        let poll_thread = {
            let consumer = Arc::clone(&consumer);
            let stop = stop_polling.clone();
            let source = config.name.clone();
            let max_payload = config.max_payload_bytes;
            tokio::task::spawn_blocking(move || {
                poll_loop(&consumer, &source, max_payload, &sender, &stop)
            })
        };
        Ok(KafkaSource {
            config,
            consumer: Some(consumer),
            deliveries: receiver,
            stop_polling,
            poll_thread: Some(poll_thread),
        })
    }

    /// Stops the poll thread and leaves the group. Buffered deliveries are
    /// dropped (never acknowledged). Closing is bounded in time: everything
    /// durable was committed to the catalog before, so a broker that does not
    /// answer the leave cannot lose anything.
    pub async fn stop(&mut self) {
        self.stop_polling.cancel();
        self.deliveries.close();
        while self.deliveries.try_recv().is_ok() {}
        if let Some(thread) = self.poll_thread.take() {
            let _ = thread.await;
        }
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        let closing = tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            // Serve the revoke callback so the group sees us leave.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline
                && consumer
                    .assignment()
                    .is_ok_and(|assigned| assigned.count() > 0)
            {
                let _ = consumer.poll(Duration::from_millis(100));
            }
            drop(consumer);
        });
        if tokio::time::timeout(Duration::from_secs(15), closing)
            .await
            .is_err()
        {
            tracing::warn!(source = %self.config.name, "the kafka consumer did not close within 15 s");
        }
    }
}

/// How many records the poll thread gathers before sending them on.
const DELIVERY_EVENTS: usize = 2048;

fn poll_loop(
    consumer: &HindsightConsumer,
    source: &str,
    max_payload: usize,
    sender: &mpsc::Sender<Delivery>,
    stop: &CancellationToken,
) {
    let mut pending = Vec::with_capacity(DELIVERY_EVENTS);
    while !stop.is_cancelled() {
        let polled = consumer.poll(Duration::from_millis(100));
        // A rebalance ran inside `poll`: what was gathered before it goes
        // first, then the revocation, then anything fetched after it.
        let revoked = consumer
            .context()
            .revoked
            .lock()
            .map(|mut revoked| std::mem::take(&mut *revoked))
            .unwrap_or_default();
        if !revoked.is_empty() {
            let before = std::mem::replace(&mut pending, Vec::with_capacity(DELIVERY_EVENTS));
            let sent = (before.is_empty()
                || sender.blocking_send(Delivery::Events(before)).is_ok())
                && sender.blocking_send(Delivery::Revoked(revoked)).is_ok();
            if !sent {
                return;
            }
        }
        match polled {
            Some(Ok(message)) => {
                pending.push(to_event(source, &message, max_payload));
                if pending.len() < DELIVERY_EVENTS {
                    continue;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(error)) => {
                // Transport errors are retried by librdkafka itself.
                tracing::warn!(%source, %error, "kafka consumer error");
            }
            None => {}
        }
        if !pending.is_empty() {
            let events = std::mem::replace(&mut pending, Vec::with_capacity(DELIVERY_EVENTS));
            if sender.blocking_send(Delivery::Events(events)).is_err() {
                return;
            }
        }
    }
}

/// Names of headers that carry the message and correlation ids, by convention.
const MESSAGE_ID_HEADERS: [&str; 3] = ["message-id", "message_id", "messageId"];
const CORRELATION_ID_HEADERS: [&str; 4] = [
    "correlation-id",
    "correlation_id",
    "correlationId",
    "x-correlation-id",
];

fn header_text(headers: &[Header], names: &[&str]) -> Option<String> {
    headers
        .iter()
        .find(|h| names.iter().any(|n| h.name.eq_ignore_ascii_case(n)))
        .and_then(|h| h.value.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

fn to_event(source: &str, message: &BorrowedMessage<'_>, max_payload: usize) -> Event {
    let ingest_time = now_micros();
    let headers: Vec<Header> = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| Header {
                    name: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    let (event_time, timestamp_type) = match message.timestamp() {
        Timestamp::CreateTime(ms) => (ms.saturating_mul(1000), Some("create_time")),
        Timestamp::LogAppendTime(ms) => (ms.saturating_mul(1000), Some("log_append_time")),
        Timestamp::NotAvailable => (ingest_time, None),
    };
    // A null value is a tombstone: archived as NULL, never as empty bytes.
    let raw = message.payload();
    let size = raw.map_or(0, <[u8]>::len);
    let truncated = size > max_payload;
    let payload = raw.map(|raw| raw[..size.min(max_payload)].to_vec());
    Event {
        event_id: event_id::kafka(
            source,
            message.topic(),
            message.partition(),
            message.offset(),
        ),
        source: source.to_owned(),
        bus: Bus::Kafka,
        topic: message.topic().to_owned(),
        routing_key: None,
        partition: Some(message.partition()),
        offset: Some(message.offset()),
        key: message.key().map(<[u8]>::to_vec),
        content_type: header_text(&headers, &["content-type"]),
        message_id: header_text(&headers, &MESSAGE_ID_HEADERS),
        correlation_id: header_text(&headers, &CORRELATION_ID_HEADERS),
        headers,
        payload_size: size as i64,
        payload,
        payload_truncated: truncated,
        timestamp_type: timestamp_type.map(str::to_owned),
        amqp: Default::default(),
        redelivered: None,
        event_time,
        ingest_time,
    }
}

#[async_trait]
impl Source for KafkaSource {
    async fn close(&mut self) {
        self.stop().await;
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn bus(&self) -> Bus {
        Bus::Kafka
    }

    async fn poll(&mut self, _max_events: usize) -> Result<Poll> {
        let delivery =
            tokio::time::timeout(Duration::from_millis(500), self.deliveries.recv()).await;
        match delivery {
            Err(_) => Ok(Poll::Idle),
            Ok(None) => Err(Error::new(
                ErrorKind::Internal,
                "the kafka poll thread stopped",
            )),
            Ok(Some(Delivery::Events(events))) => {
                count_consumed(&self.config.name, &events);
                Ok(Poll::Events(events))
            }
            Ok(Some(Delivery::Revoked(partitions))) => Ok(Poll::Revoked(partitions)),
            Ok(Some(Delivery::Failed(error))) => Err(error),
        }
    }

    async fn acknowledge(
        &mut self,
        committed: &[CheckpointAdvance],
        _mark: BatchMark,
    ) -> Result<()> {
        if committed.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for advance in committed {
            if let Err(error) = tpl.add_partition_offset(
                &advance.topic,
                advance.partition,
                Offset::Offset(advance.next),
            ) {
                tracing::warn!(%error, "cannot build the kafka offset commit");
            }
        }
        // Informational (lag tools): the catalog already holds the truth, so a
        // failed commit (for example after a rebalance) is only logged.
        if let Some(consumer) = &self.consumer {
            if let Err(error) = consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(%error, "kafka offset commit failed");
            }
        }
        Ok(())
    }
}
