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

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use hindsight_archive::catalog::{Catalog, CheckpointAdvance};
use hindsight_archive::event::now_micros;
use hindsight_archive::metrics::{self, Metrics};
use hindsight_archive::{Bus, Error, ErrorKind, Event, Result};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, Consumer};

use hindsight_ingest::source::{count_consumed, BatchMark, Poll, Source};

use super::config::{AmqpMode, AmqpSourceConfig, QueueType, StreamStart};
use super::convert::{delivery_to_event, long_string};

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
        // The caller names the source (start-up context, or the log span).
        let (what, link) = config.link();
        let connection = link
            .connect(&what, &format!("hindsight source {}", config.name))
            .await?;
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
            arguments.insert("x-queue-type".into(), long_string(queue_type.as_bytes()));
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
                    arguments.insert(name.as_str().into(), long_string(value.as_bytes()));
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
            (None, StreamStart::First) => long_string(b"first"),
            (None, StreamStart::Last) => long_string(b"last"),
            (None, StreamStart::Next) => long_string(b"next"),
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
