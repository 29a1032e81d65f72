//! RabbitMQ source (lapin, AMQP 0-9-1), in three modes:
//!
//! - `archive_queue`: declare a durable queue, bind it to exchanges with
//!   binding keys (topic `#`, fanout, headers arguments) and consume it. Every
//!   message on those exchanges is archived; existing consumers see nothing.
//! - `queue`: consume a queue that already exists.
//! - `stream`: consume a stream queue (`x-queue-type=stream`) by offset,
//!   starting at the catalog checkpoint: exactly-once, like Kafka. With
//!   `bindings`, the stream is declared and bound first.
//!
//! Acknowledgements: manual, `multiple=true`, sent only when the pipeline
//! reports a catalog commit ([`Source::acknowledge`]), up to the last
//! delivery tag handed out before that batch was taken ([`Source::mark`]):
//! the pipeline fills the next batch while one is written, and those
//! messages stay unacknowledged. The prefetch bounds how many messages are in
//! flight, and the pipeline never batches more rows than half of it
//! ([`Source::max_batch_rows`]), so one batch can be written while the next
//! one fills.
//!
//! When the channel or connection is lost, the broker requeues everything
//! unacknowledged. The source tells the pipeline to drop what it buffered
//! ([`Poll::Revoked`]), reconnects with backoff and carries on. A message
//! written but not acknowledged before a loss is delivered again and archived
//! twice, with the same `event_id` and `redelivered = true`: the
//! `events_dedup` view hides such copies.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use hindsight_archive::catalog::{Catalog, CheckpointAdvance};
use hindsight_archive::event::{event_id, now_micros, AmqpProperties};
use hindsight_archive::metrics::{self, Metrics};
use hindsight_archive::{Bus, Error, ErrorKind, Event, Header, Result};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use serde::{Deserialize, Serialize};

use hindsight_archive::SecretUrl;
use hindsight_ingest::source::{count_consumed, BatchMark, Poll, Source};

use super::convert::{encode_lapin_table, value_json};

/// How the source reaches its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmqpMode {
    /// Declare a durable queue bound to `bindings`, and consume it.
    #[default]
    ArchiveQueue,
    /// Consume an existing queue.
    Queue,
    /// Consume a stream queue by offset, from the catalog checkpoint.
    Stream,
}

/// Where a stream without a checkpoint starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamStart {
    /// The oldest message the stream still holds.
    #[default]
    First,
    /// The last chunk written.
    Last,
    /// Only messages published from now on.
    Next,
}

/// One binding of the archive queue (or stream) to an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpBinding {
    pub exchange: String,
    /// `#` archives everything on a topic exchange; fanout exchanges ignore it.
    #[serde(default = "default_binding_key")]
    pub routing_key: String,
    /// Binding arguments, for headers exchanges (`x-match = "any"`, …).
    #[serde(default)]
    pub arguments: BTreeMap<String, String>,
}

fn default_binding_key() -> String {
    "#".to_owned()
}

/// The type of a queue Hindsight declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
}

/// `[[sources]] type = "amqp"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSourceConfig {
    pub name: String,
    /// `amqp://user:password@host:port/vhost` (`%2f` is the default vhost);
    /// printed without the password.
    #[serde(default)]
    pub url: SecretUrl,
    #[serde(default)]
    pub mode: AmqpMode,
    /// The queue (or stream) to consume, declared in `archive_queue` mode.
    #[serde(default)]
    pub queue: String,
    /// The type of the archive queue Hindsight declares.
    #[serde(default)]
    pub queue_type: QueueType,
    #[serde(default)]
    pub bindings: Vec<AmqpBinding>,
    /// Messages in flight (unacknowledged). 0: twice the flush row limit,
    /// capped at 65535 (the AMQP maximum). Batches hold at most half of it,
    /// so one batch is written while the next one fills.
    #[serde(default)]
    pub prefetch: u16,
    #[serde(default)]
    pub stream_start: StreamStart,
    /// Payloads larger than this are archived truncated, flagged, with their size.
    #[serde(default = "hindsight_ingest::source::default_max_payload_bytes")]
    pub max_payload_bytes: usize,
    /// Overrides of the `[flush]` limits for this source.
    #[serde(default)]
    pub flush: hindsight_ingest::source::FlushOverride,
    /// The broker's `consumer_timeout` (RabbitMQ's default is 30 minutes). The
    /// flush age must stay well below it, or the broker closes the channel.
    #[serde(default = "default_consumer_timeout", with = "humantime_serde")]
    pub consumer_timeout: Duration,
}

fn default_consumer_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}

impl AmqpSourceConfig {
    /// Problems as `path.field: message`, for the configuration report.
    /// `flush_age` is the effective flush age limit for this source.
    pub fn problems(&self, path: &str, flush_age: Duration) -> Vec<String> {
        let mut problems = Vec::new();
        let url = self.url.expose();
        if url.starts_with("amqps://") {
            problems.push(format!(
                "{path}.url: amqps:// (TLS) is not supported by this build; use amqp:// through a TLS tunnel"
            ));
        } else if !url.starts_with("amqp://") {
            problems.push(format!("{path}.url: must start with amqp://"));
        }
        if self.queue.trim().is_empty() {
            problems.push(format!("{path}.queue: must name the queue to consume"));
        }
        match self.mode {
            AmqpMode::ArchiveQueue if self.bindings.is_empty() => problems.push(format!(
                "{path}.bindings: archive_queue mode needs at least one binding to an exchange"
            )),
            AmqpMode::Queue if !self.bindings.is_empty() => problems.push(format!(
                "{path}.bindings: queue mode consumes an existing queue; use mode = \"archive_queue\" to bind"
            )),
            _ => {}
        }
        for (index, binding) in self.bindings.iter().enumerate() {
            if binding.exchange.is_empty() {
                problems.push(format!(
                    "{path}.bindings[{index}].exchange: the default exchange cannot be bound"
                ));
            }
        }
        if self.max_payload_bytes == 0 {
            problems.push(format!("{path}.max_payload_bytes: must be at least 1"));
        }
        if flush_age * 2 > self.consumer_timeout {
            problems.push(format!(
                "{path}.consumer_timeout: the flush age ({}) must be below half the broker's consumer timeout ({})",
                humantime::format_duration(flush_age),
                humantime::format_duration(self.consumer_timeout)
            ));
        }
        problems
    }

    /// The prefetch for a flush row limit of `max_rows`: room for the batch
    /// being written and the one filling.
    pub fn effective_prefetch(&self, max_rows: usize) -> u16 {
        match self.prefetch {
            0 => u16::try_from(max_rows.max(1).saturating_mul(2)).unwrap_or(u16::MAX),
            prefetch => prefetch,
        }
    }
}

/// An open channel with its consumer.
struct Session {
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
    consumer_tag: String,
}

pub struct AmqpSource {
    config: AmqpSourceConfig,
    catalog: Catalog,
    prefetch: u16,
    session: Option<Session>,
    /// Counts the sessions opened: a [`BatchMark`] from an earlier channel
    /// acknowledges nothing (its messages were requeued).
    session_number: u64,
    /// The highest delivery tag handed to the pipeline on the current channel.
    last_handed_out: Option<u64>,
    /// The highest delivery tag acknowledged on the current channel.
    last_acked: Option<u64>,
    /// (topic, partition)s handed out since the last acknowledgement: what the
    /// pipeline must drop when the channel is lost.
    unacked_keys: BTreeSet<(String, i32)>,
    reconnect_at: Instant,
    backoff: Duration,
    labels: metrics::SourceLabels,
}

impl AmqpSource {
    /// Connects, declares and binds what the mode needs, and starts consuming.
    pub async fn start(
        config: AmqpSourceConfig,
        catalog: Catalog,
        max_rows: usize,
    ) -> Result<Self> {
        let prefetch = config.effective_prefetch(max_rows);
        let labels = Metrics::source(&config.name);
        let mut source = AmqpSource {
            config,
            catalog,
            prefetch,
            session: None,
            session_number: 0,
            last_handed_out: None,
            last_acked: None,
            unacked_keys: BTreeSet::new(),
            reconnect_at: Instant::now(),
            backoff: Duration::from_millis(200),
            labels,
        };
        // The first connection must work: a wrong URL or a missing queue is a
        // configuration error, reported at once.
        source.session = Some(source.open_session().await?);
        source.session_number += 1;
        Ok(source)
    }

    async fn open_session(&self) -> Result<Session> {
        let config = &self.config;
        let connection =
            super::client::connect(&config.url, &format!("hindsight source {}", config.name))
                .await
                .map_err(|error| {
                    Error::new(
                        error.kind(),
                        format!("source {}: {}", config.name, error.full_message()),
                    )
                })?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| amqp_error("cannot open an AMQP channel", e))?;
        self.declare(&channel).await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| amqp_error("cannot set the prefetch (basic.qos)", e))?;
        let mut arguments = FieldTable::default();
        if config.mode == AmqpMode::Stream {
            arguments.insert("x-stream-offset".into(), self.stream_start().await?);
        }
        let consumer_tag = format!("hindsight-{}-{}", config.name, uuid_suffix());
        let consumer = channel
            .basic_consume(
                config.queue.as_str().into(),
                consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                arguments,
            )
            .await
            .map_err(|e| amqp_error(format!("cannot consume queue {}", config.queue), e))?;
        tracing::info!(
            source = %config.name,
            queue = %config.queue,
            mode = ?config.mode,
            prefetch = self.prefetch,
            "consuming"
        );
        Ok(Session {
            connection,
            channel,
            consumer,
            consumer_tag,
        })
    }

    async fn declare(&self, channel: &Channel) -> Result<()> {
        let config = &self.config;
        let queue: ShortString = config.queue.as_str().into();
        let declare_own = match config.mode {
            AmqpMode::ArchiveQueue => true,
            AmqpMode::Stream => !config.bindings.is_empty(),
            AmqpMode::Queue => false,
        };
        if declare_own {
            let mut arguments = FieldTable::default();
            let queue_type = match (config.mode, config.queue_type) {
                (AmqpMode::Stream, _) => "stream",
                (_, QueueType::Quorum) => "quorum",
                (_, QueueType::Classic) => "classic",
            };
            arguments.insert("x-queue-type".into(), long_string(queue_type));
            let options = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(queue.clone(), options, arguments)
                .await
                .map_err(|e| {
                    amqp_error(
                        format!("cannot declare the archive queue {} (does it exist with other arguments?)", config.queue),
                        e,
                    )
                })?;
            for binding in &config.bindings {
                let mut arguments = FieldTable::default();
                for (name, value) in &binding.arguments {
                    arguments.insert(name.as_str().into(), long_string(value));
                }
                channel
                    .queue_bind(
                        queue.clone(),
                        binding.exchange.as_str().into(),
                        binding.routing_key.as_str().into(),
                        QueueBindOptions::default(),
                        arguments,
                    )
                    .await
                    .map_err(|e| {
                        amqp_error(
                            format!(
                                "cannot bind queue {} to exchange {} (does the exchange exist?)",
                                config.queue, binding.exchange
                            ),
                            e,
                        )
                    })?;
            }
        } else {
            let options = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(queue, options, FieldTable::default())
                .await
                .map_err(|e| amqp_error(format!("queue {} does not exist", config.queue), e))?;
        }
        Ok(())
    }

    /// `x-stream-offset`: the catalog checkpoint, or `stream_start`.
    async fn stream_start(&self) -> Result<AMQPValue> {
        let checkpoint = self
            .catalog
            .checkpoint(&self.config.name, &self.config.queue, 0)
            .await?;
        Ok(match (checkpoint, self.config.stream_start) {
            (Some(next), _) => AMQPValue::LongLongInt(next),
            (None, StreamStart::First) => long_string("first"),
            (None, StreamStart::Last) => long_string("last"),
            (None, StreamStart::Next) => long_string("next"),
        })
    }

    /// Drops the session after a failure: everything unacknowledged is
    /// requeued by the broker, so the pipeline must drop it too.
    fn lose_session(&mut self, why: &str, error: Option<&lapin::Error>) -> Poll {
        tracing::warn!(
            source = %self.config.name,
            error = error.map(|e| e.to_string()).unwrap_or_default(),
            retry_in_ms = self.backoff.as_millis() as u64,
            "{why}; dropping unacknowledged messages (the broker redelivers them) and reconnecting"
        );
        self.session = None;
        self.last_handed_out = None;
        self.last_acked = None;
        self.reconnect_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
        let keys = std::mem::take(&mut self.unacked_keys);
        Poll::Revoked(keys.into_iter().collect())
    }

    async fn reconnect(&mut self) -> Result<()> {
        let wait = self.reconnect_at.saturating_duration_since(Instant::now());
        tokio::time::sleep(wait.min(Duration::from_millis(500))).await;
        if Instant::now() < self.reconnect_at {
            return Ok(());
        }
        match self.open_session().await {
            Ok(session) => {
                tracing::info!(source = %self.config.name, "reconnected to RabbitMQ");
                self.session = Some(session);
                self.session_number += 1;
                self.backoff = Duration::from_millis(200);
            }
            Err(error) => {
                tracing::warn!(source = %self.config.name, error = %error.full_message(), "reconnect failed");
                self.reconnect_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
            }
        }
        Ok(())
    }

    fn take_delivery(&mut self, delivery: lapin::message::Delivery) -> Event {
        let config = &self.config;
        let event = delivery_to_event(
            &config.name,
            config.mode,
            &config.queue,
            config.max_payload_bytes,
            delivery.exchange.as_str(),
            delivery.routing_key.as_str(),
            delivery.redelivered,
            &delivery.properties,
            &delivery.data,
        );
        if delivery.redelivered {
            metrics::global()
                .redeliveries
                .get_or_create(&self.labels)
                .inc();
        }
        self.last_handed_out = Some(delivery.delivery_tag);
        self.unacked_keys
            .insert((event.topic.clone(), event.partition.unwrap_or_default()));
        event
    }

    /// Cancels the consumer and closes the connection. Unacknowledged
    /// messages go back to the queue.
    pub async fn stop(&mut self) {
        if let Some(session) = self.session.take() {
            let cancel = session.channel.basic_cancel(
                session.consumer_tag.as_str().into(),
                BasicCancelOptions::default(),
            );
            let close = async {
                let _ = cancel.await;
                let _ = session
                    .connection
                    .close(200, "hindsight stopping".into())
                    .await;
            };
            if tokio::time::timeout(Duration::from_secs(5), close)
                .await
                .is_err()
            {
                tracing::warn!(source = %self.config.name, "closing the RabbitMQ connection timed out");
            }
        }
    }
}

fn uuid_suffix() -> String {
    format!("{:08x}", now_micros() as u32 ^ std::process::id())
}

fn long_string(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text.as_bytes().to_vec()))
}

fn amqp_error(message: impl Into<String>, error: lapin::Error) -> Error {
    Error::with_source(ErrorKind::Retryable, message, error)
}

#[async_trait]
impl Source for AmqpSource {
    async fn close(&mut self) {
        self.stop().await;
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn bus(&self) -> Bus {
        Bus::Amqp
    }

    fn max_batch_rows(&self) -> Option<usize> {
        Some(usize::from(self.prefetch / 2).max(1))
    }

    fn mark(&self) -> BatchMark {
        BatchMark {
            session: self.session_number,
            position: self.last_handed_out.unwrap_or(0),
        }
    }

    async fn poll(&mut self, max_events: usize) -> Result<Poll> {
        let Some(session) = self.session.as_mut() else {
            self.reconnect().await?;
            return Ok(Poll::Idle);
        };
        let first = tokio::time::timeout(Duration::from_millis(500), session.consumer.next()).await;
        let first = match first {
            Err(_) => return Ok(Poll::Idle),
            Ok(None) => return Ok(self.lose_session("the broker cancelled the consumer", None)),
            Ok(Some(Err(error))) => {
                return Ok(self.lose_session("the AMQP channel failed", Some(&error)))
            }
            Ok(Some(Ok(delivery))) => delivery,
        };
        let mut deliveries = vec![first];
        while deliveries.len() < max_events {
            match session.consumer.next().now_or_never() {
                Some(Some(Ok(delivery))) => deliveries.push(delivery),
                // An error or the end shows up again on the next poll, after
                // the deliveries received before it are handed out.
                _ => break,
            }
        }
        let events: Vec<Event> = deliveries
            .into_iter()
            .map(|delivery| self.take_delivery(delivery))
            .collect();
        count_consumed(&self.config.name, &events);
        Ok(Poll::Events(events))
    }

    async fn acknowledge(
        &mut self,
        _committed: &[CheckpointAdvance],
        mark: BatchMark,
    ) -> Result<()> {
        // Everything handed out before the batch was taken is committed now.
        // A mark from an earlier channel covers messages the broker requeued.
        let tag = mark.position;
        if mark.session != self.session_number || tag == 0 || self.last_acked >= Some(tag) {
            return Ok(());
        }
        let Some(session) = self.session.as_ref() else {
            return Ok(());
        };
        let acked = session
            .channel
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await;
        match acked {
            Ok(()) => {
                self.last_acked = Some(tag);
                // The keys of messages handed out after the mark stay: on a
                // channel loss the pipeline must drop those.
                if self.last_handed_out == Some(tag) {
                    self.unacked_keys.clear();
                }
            }
            Err(error) => {
                // The messages are archived; the broker will deliver them
                // again (redelivered), and the dedup view hides the copies.
                let poll = self.lose_session("cannot acknowledge", Some(&error));
                tracing::debug!(?poll, "acknowledgement lost with the channel");
            }
        }
        Ok(())
    }
}

/// Converts one delivery. Pure, for tests.
#[allow(clippy::too_many_arguments)]
pub fn delivery_to_event(
    source: &str,
    mode: AmqpMode,
    queue: &str,
    max_payload: usize,
    exchange: &str,
    routing_key: &str,
    redelivered: bool,
    properties: &BasicProperties,
    data: &[u8],
) -> Event {
    let ingest_time = now_micros();
    let table = properties.headers().as_ref();
    let headers: Vec<Header> = table
        .map(|table| {
            table
                .inner()
                .iter()
                .map(|(name, value)| Header {
                    name: name.as_str().to_owned(),
                    value: flat_value(value),
                })
                .collect()
        })
        .unwrap_or_default();
    let stream_offset = match mode {
        AmqpMode::Stream => table
            .and_then(|t| t.inner().get("x-stream-offset"))
            .and_then(amqp_integer),
        _ => None,
    };
    let timestamp = properties
        .timestamp()
        .and_then(|seconds| i64::try_from(seconds).ok())
        .map(|seconds| seconds.saturating_mul(1_000_000));
    let message_id = properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str().to_owned());
    let (topic, partition, event_id) = match (mode, stream_offset) {
        (AmqpMode::Stream, Some(offset)) => (
            queue.to_owned(),
            Some(0),
            event_id::amqp_stream(source, queue, offset),
        ),
        _ => {
            let id = match &message_id {
                Some(message_id) => event_id::amqp_message_id(source, exchange, message_id),
                None => {
                    event_id::amqp_content(source, exchange, routing_key, timestamp, &headers, data)
                }
            };
            let topic = if mode == AmqpMode::Stream {
                queue
            } else {
                exchange
            };
            (topic.to_owned(), None, id)
        }
    };
    let truncated = data.len() > max_payload;
    let short = |s: &Option<ShortString>| s.as_ref().map(|s| s.as_str().to_owned());
    Event {
        event_id,
        source: source.to_owned(),
        bus: Bus::Amqp,
        topic,
        routing_key: Some(routing_key.to_owned()),
        partition,
        offset: stream_offset,
        key: None,
        headers,
        payload: Some(data[..data.len().min(max_payload)].to_vec()),
        payload_size: data.len() as i64,
        payload_truncated: truncated,
        content_type: short(properties.content_type()),
        message_id,
        correlation_id: short(properties.correlation_id()),
        timestamp_type: None,
        amqp: AmqpProperties {
            content_encoding: short(properties.content_encoding()),
            delivery_mode: *properties.delivery_mode(),
            priority: *properties.priority(),
            expiration: short(properties.expiration()),
            reply_to: short(properties.reply_to()),
            message_type: short(properties.kind()),
            app_id: short(properties.app_id()),
            user_id: short(properties.user_id()),
            headers_table: table.map(encode_lapin_table),
            exchange: Some(exchange.to_owned()),
        },
        redelivered: Some(redelivered),
        event_time: timestamp.unwrap_or(ingest_time),
        ingest_time,
    }
}

fn amqp_integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

/// A header value as bytes for the flat `headers` column: strings as they
/// are, numbers and booleans as text, tables and arrays as typed JSON, void
/// as null.
fn flat_value(value: &AMQPValue) -> Option<Vec<u8>> {
    let text = match value {
        AMQPValue::Void => return None,
        AMQPValue::LongString(s) => return Some(s.as_bytes().to_vec()),
        AMQPValue::ShortString(s) => return Some(s.as_str().as_bytes().to_vec()),
        AMQPValue::ByteArray(b) => return Some(b.as_slice().to_vec()),
        AMQPValue::Boolean(v) => v.to_string(),
        AMQPValue::Float(v) => v.to_string(),
        AMQPValue::Double(v) => v.to_string(),
        AMQPValue::DecimalValue(d) => format!("{}e-{}", d.value, d.scale),
        AMQPValue::FieldArray(_) | AMQPValue::FieldTable(_) => value_json(value).to_string(),
        other => amqp_integer(other)
            .map(|v| v.to_string())
            .unwrap_or_default(),
    };
    Some(text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{DecimalValue, FieldArray};

    fn nested_table() -> FieldTable {
        let mut inner = FieldTable::default();
        inner.insert("depth".into(), AMQPValue::LongInt(2));
        let mut table = FieldTable::default();
        table.insert("text".into(), long_string("héllo"));
        table.insert(
            "binary".into(),
            AMQPValue::LongString(LongString::from(vec![0xff, 0x00, 0xfe])),
        );
        table.insert("count".into(), AMQPValue::LongLongInt(-7));
        table.insert("flag".into(), AMQPValue::Boolean(true));
        table.insert("nothing".into(), AMQPValue::Void);
        table.insert(
            "price".into(),
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 1999,
            }),
        );
        table.insert(
            "list".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::LongInt(1),
                long_string("two"),
            ])),
        );
        table.insert("nested".into(), AMQPValue::FieldTable(inner));
        table
    }

    /// The documented limit (README, ARCHITECTURE.md): lapin hands out the
    /// headers table as a map sorted by name, so the publisher's order and
    /// repeated names are gone before the source sees them. If lapin ever
    /// keeps them, this fails and the docs (and the source) can change.
    #[test]
    fn lapin_sorts_a_headers_table_by_name_and_keeps_the_last_of_repeated_names() {
        // A table frame as a publisher wrote it: "b" = "1", "a" = "2", "b" = "3".
        let mut entries = Vec::new();
        for (name, value) in [("b", "1"), ("a", "2"), ("b", "3")] {
            entries.push(name.len() as u8);
            entries.extend_from_slice(name.as_bytes());
            entries.push(b'S');
            entries.extend_from_slice(&(value.len() as u32).to_be_bytes());
            entries.extend_from_slice(value.as_bytes());
        }
        let mut frame = (entries.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&entries);
        let (_, table) = lapin::types::parsing::parse_field_table(&frame[..]).unwrap();
        let event = delivery_to_event(
            "rabbit",
            AmqpMode::ArchiveQueue,
            "archive",
            1024,
            "orders",
            "rk",
            false,
            &BasicProperties::default().with_headers(table),
            b"",
        );
        let headers: Vec<(String, Option<Vec<u8>>)> = event
            .headers
            .into_iter()
            .map(|header| (header.name, header.value))
            .collect();
        assert_eq!(
            headers,
            [
                ("a".to_owned(), Some(b"2".to_vec())),
                ("b".to_owned(), Some(b"3".to_vec()))
            ]
        );
    }

    #[test]
    fn keeps_every_property_and_the_typed_headers_table() {
        let properties = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_correlation_id("c-1".into())
            .with_timestamp(1_700_000_000)
            .with_content_type("application/json".into())
            .with_content_encoding("gzip".into())
            .with_delivery_mode(2)
            .with_priority(7)
            .with_expiration("60000".into())
            .with_reply_to("replies".into())
            .with_type("order.created".into())
            .with_app_id("shop".into())
            .with_user_id("guest".into())
            .with_headers(nested_table());
        let event = delivery_to_event(
            "rabbit",
            AmqpMode::ArchiveQueue,
            "archive",
            1024,
            "orders",
            "order.eu.created",
            true,
            &properties,
            b"{\"id\":1}",
        );
        assert_eq!(event.topic, "orders");
        assert_eq!(event.routing_key.as_deref(), Some("order.eu.created"));
        assert_eq!(event.message_id.as_deref(), Some("m-1"));
        assert_eq!(event.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(event.event_time, 1_700_000_000_000_000);
        assert_eq!(event.content_type.as_deref(), Some("application/json"));
        assert_eq!(event.amqp.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(event.amqp.delivery_mode, Some(2));
        assert_eq!(event.amqp.priority, Some(7));
        assert_eq!(event.amqp.expiration.as_deref(), Some("60000"));
        assert_eq!(event.amqp.reply_to.as_deref(), Some("replies"));
        assert_eq!(event.amqp.message_type.as_deref(), Some("order.created"));
        assert_eq!(event.amqp.app_id.as_deref(), Some("shop"));
        assert_eq!(event.amqp.user_id.as_deref(), Some("guest"));
        assert_eq!(event.amqp.exchange.as_deref(), Some("orders"));
        assert_eq!(event.redelivered, Some(true));
        assert_eq!(
            event.event_id,
            event_id::amqp_message_id("rabbit", "orders", "m-1")
        );

        let table: serde_json::Value =
            serde_json::from_str(event.amqp.headers_table.as_deref().unwrap()).unwrap();
        assert_eq!(table["text"], serde_json::json!({"t": "S", "v": "héllo"}));
        assert_eq!(
            table["binary"],
            serde_json::json!({"t": "S", "b64": "/wD+"})
        );
        assert_eq!(table["count"], serde_json::json!({"t": "l", "v": -7}));
        assert_eq!(table["nothing"], serde_json::json!({"t": "V", "v": null}));
        assert_eq!(
            table["nested"]["v"]["depth"],
            serde_json::json!({"t": "I", "v": 2})
        );
        assert_eq!(
            table["list"]["v"][1],
            serde_json::json!({"t": "S", "v": "two"})
        );

        let flat = |name: &str| {
            event
                .headers
                .iter()
                .find(|h| h.name == name)
                .map(|h| h.value.clone())
        };
        assert_eq!(flat("binary"), Some(Some(vec![0xff, 0x00, 0xfe])));
        assert_eq!(flat("count"), Some(Some(b"-7".to_vec())));
        assert_eq!(flat("nothing"), Some(None));
        assert_eq!(flat("price"), Some(Some(b"1999e-2".to_vec())));
    }

    #[test]
    fn truncates_large_payloads_and_ids_by_content_without_message_id() {
        let data = vec![b'x'; 100];
        let event = delivery_to_event(
            "rabbit",
            AmqpMode::Queue,
            "q",
            10,
            "",
            "q",
            false,
            &BasicProperties::default(),
            &data,
        );
        assert!(event.payload_truncated);
        assert_eq!(event.payload.as_ref().map(Vec::len), Some(10));
        assert_eq!(event.payload_size, 100);
        let again = delivery_to_event(
            "rabbit",
            AmqpMode::Queue,
            "q",
            10,
            "",
            "q",
            true,
            &BasicProperties::default(),
            &data,
        );
        assert_eq!(event.event_id, again.event_id, "a redelivery keeps its id");
    }

    #[test]
    fn stream_messages_are_positioned_by_offset() {
        let mut headers = FieldTable::default();
        headers.insert("x-stream-offset".into(), AMQPValue::LongLongInt(41));
        let properties = BasicProperties::default().with_headers(headers);
        let event = delivery_to_event(
            "rabbit",
            AmqpMode::Stream,
            "events.stream",
            1024,
            "orders",
            "a.b",
            false,
            &properties,
            b"x",
        );
        assert_eq!(event.topic, "events.stream");
        assert_eq!(event.partition, Some(0));
        assert_eq!(event.offset, Some(41));
        assert_eq!(event.amqp.exchange.as_deref(), Some("orders"));
    }
}
