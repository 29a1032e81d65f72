//! Replay onto Kafka: an idempotent producer with `acks=all`.
//!
//! librdkafka's [`ThreadedProducer`] polls on its own thread; `send` only
//! enqueues. Each record carries its window's [`WindowDeliveries`] as the
//! delivery opaque, so the delivery reports of one window are counted apart
//! from the next one's, which is already being sent; a sealed window's future
//! wakes when its last report arrives. Metadata requests and the final flush
//! run on blocking threads, never on an async worker. Idempotence keeps the
//! order of each partition across the producer's internal retries.
//!
//! Mapping: payload, key and headers are kept byte for byte, headers in
//! order with repeats. A tombstone (archived NULL payload) is produced as a
//! tombstone: a record with a null value, never an empty one. RabbitMQ events have no key; their flat headers are
//! kept, and their properties become headers: `content-type`, `message-id`,
//! `correlation-id`, and `amqp-<property>` for the others (`amqp-exchange`,
//! `amqp-routing-key`, `amqp-delivery-mode`, `amqp-priority`, `amqp-expiration`,
//! `amqp-reply-to`, `amqp-type`, `amqp-app-id`, `amqp-user-id`,
//! `amqp-content-encoding`). Sizes are [`super::sizes`]' business.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hindsight_archive::{Bus, Event, Header};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::client::KafkaConnection;
use super::context::ConnectionContext;
use crate::connection::PROBE_TIMEOUT;

use tokio::sync::Notify;

use hindsight_replay::publisher::{
    HeaderRules, KafkaTarget, Partitioning, PendingWindow, Publisher, SizeExcess, WindowOutcome,
};
use hindsight_replay::{Error, ErrorKind, Result};

use super::sizes::TopicSizes;

/// How long a sealed window may wait for acknowledgements before the replay fails.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const METADATA_TIMEOUT: Duration = Duration::from_secs(15);

/// The delivery reports of one window, counted as librdkafka hands them over.
pub struct WindowDeliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    /// How many records the window holds, once sealed; `u64::MAX` before.
    sealed: AtomicU64,
    first_failure: Mutex<Option<String>>,
    complete: Notify,
}

impl WindowDeliveries {
    fn new() -> Self {
        WindowDeliveries {
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            sealed: AtomicU64::new(u64::MAX),
            first_failure: Mutex::new(None),
            complete: Notify::new(),
        }
    }

    fn reported(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst) + self.failed.load(Ordering::SeqCst)
    }

    /// Counts one delivery report: delivered, or failed for `failure`.
    fn report(&self, failure: Option<String>) {
        match failure {
            None => {
                self.delivered.fetch_add(1, Ordering::SeqCst);
            }
            Some(reason) => {
                // Before the count, so a waiter that sees the count sees the reason.
                if let Ok(mut first) = self.first_failure.lock() {
                    first.get_or_insert(reason);
                }
                self.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
        if self.reported() == self.sealed.load(Ordering::SeqCst) {
            self.complete.notify_waiters();
        }
    }

    /// Waits until all `sent` records of the sealed window are reported.
    async fn confirmed(&self, sent: u64) -> WindowOutcome {
        loop {
            // Registered before the check: a report in between still wakes us.
            let notified = self.complete.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.reported() >= sent {
                break;
            }
            notified.await;
        }
        WindowOutcome {
            delivered: self.delivered.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
            first_failure: self
                .first_failure
                .lock()
                .ok()
                .and_then(|mut first| first.take()),
        }
    }
}

/// Routes each delivery report to the window its record was sent in, and
/// carries the connection's token source and error callback.
pub struct DeliveryReports {
    connection: ConnectionContext,
}

impl ClientContext for DeliveryReports {
    super::context::connection_callbacks!(|this| &this.connection);
}

impl ProducerContext for DeliveryReports {
    type DeliveryOpaque = Arc<WindowDeliveries>;

    fn delivery(&self, result: &DeliveryResult<'_>, window: Arc<WindowDeliveries>) {
        window.report(result.as_ref().err().map(|(error, _)| error.to_string()));
    }
}

/// The flat headers of an event as a Kafka record carries them.
pub fn kafka_headers(event: &Event) -> Vec<Header> {
    let mut headers = event.headers.clone();
    headers.extend(amqp_property_headers(event));
    headers
}

/// The basic properties of a RabbitMQ event as headers (none for Kafka events).
pub(crate) fn amqp_property_headers(event: &Event) -> Vec<Header> {
    let mut headers = Vec::new();
    if event.bus == Bus::Amqp {
        let mut add = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                headers.push(Header::new(name, value.into_bytes()));
            }
        };
        add("content-type", event.content_type.clone());
        add("message-id", event.message_id.clone());
        add("correlation-id", event.correlation_id.clone());
        add("amqp-exchange", event.amqp.exchange.clone());
        add("amqp-routing-key", event.routing_key.clone());
        add(
            "amqp-delivery-mode",
            event.amqp.delivery_mode.map(|v| v.to_string()),
        );
        add("amqp-priority", event.amqp.priority.map(|v| v.to_string()));
        add("amqp-expiration", event.amqp.expiration.clone());
        add("amqp-reply-to", event.amqp.reply_to.clone());
        add("amqp-type", event.amqp.message_type.clone());
        add("amqp-app-id", event.amqp.app_id.clone());
        add("amqp-user-id", event.amqp.user_id.clone());
        add("amqp-content-encoding", event.amqp.content_encoding.clone());
    }
    headers
}

pub struct KafkaPublisher {
    producer: ThreadedProducer<DeliveryReports>,
    /// The brokers, for messages.
    addresses: String,
    target: KafkaTarget,
    rules: HeaderRules,
    partitions: HashMap<String, i32>,
    sizes: TopicSizes,
    /// The open window, and how many records were sent into it.
    window: Arc<WindowDeliveries>,
    sent: u64,
}

impl KafkaPublisher {
    /// A producer sized for `destinations`, the topics the plan sends to.
    /// `link` is the connection `what` names (`connection "prod-kafka"`).
    /// A wrong password or certificate fails here, in one line.
    pub async fn connect(
        what: &str,
        link: &KafkaConnection,
        target: &KafkaTarget,
        rules: HeaderRules,
        destinations: &[String],
    ) -> Result<Self> {
        let probe = link.clone();
        let probe_what = what.to_owned();
        tokio::task::spawn_blocking(move || probe.probe(&probe_what, PROBE_TIMEOUT))
            .await
            .map_err(|error| Error::internal(format!("the probe panicked: {error}")))??;
        let sizes = TopicSizes::ask(what, link, rules.clone(), destinations).await?;
        tracing::info!(message_max_bytes = sizes.producer_max_bytes, limits = ?sizes.limits, "kafka replay producer sized");
        let config = link.client_config(&[
            ("enable.idempotence", "true".into()),
            ("acks", "all".into()),
            ("partitioner", "murmur2_random".into()),
            ("linger.ms", "5".into()),
            ("message.timeout.ms", "60000".into()),
            ("message.max.bytes", sizes.producer_max_bytes.to_string()),
        ]);
        let producer: ThreadedProducer<DeliveryReports> = config
            .create_with_context(DeliveryReports {
                connection: link.context(what),
            })
            .map_err(|error| {
                Error::invalid_input(format!(
                    "cannot create a Kafka producer for {what} ({}): {error}",
                    link.addresses()
                ))
            })?;
        Ok(KafkaPublisher {
            producer,
            addresses: link.addresses(),
            target: target.clone(),
            rules,
            partitions: HashMap::new(),
            sizes,
            window: Arc::new(WindowDeliveries::new()),
            sent: 0,
        })
    }

    /// The partition count of `topic`, asked once.
    async fn partition_count(&mut self, topic: &str) -> Result<i32> {
        if let Some(count) = self.partitions.get(topic) {
            return Ok(*count);
        }
        let producer = self.producer.clone();
        let name = topic.to_owned();
        let metadata = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&name), METADATA_TIMEOUT)
        })
        .await
        .map_err(|error| Error::internal(format!("metadata request panicked: {error}")))?
        .map_err(|error| {
            Error::new(
                ErrorKind::Retryable,
                format!("cannot read the metadata of Kafka topic {topic:?}: {error}"),
            )
        })?;
        let count = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
            .unwrap_or(0);
        if count == 0 {
            return Err(Error::invalid_input(format!(
                "Kafka topic {topic:?} does not exist on {}: create it first",
                self.addresses
            )));
        }
        self.partitions.insert(topic.to_owned(), count);
        Ok(count)
    }
}

#[async_trait]
impl Publisher for KafkaPublisher {
    async fn oversized(&mut self, event: &Event, destination: &str) -> Result<Option<SizeExcess>> {
        Ok(self.sizes.excess(event, destination).await)
    }

    async fn send(&mut self, event: &Event, destination: &str) -> Result<()> {
        let count = self.partition_count(destination).await?;
        let source_partition = event.partition.unwrap_or(0);
        let partition = match self.target.partitioning {
            Partitioning::Preserve => Some(source_partition.rem_euclid(count)),
            Partitioning::Same if source_partition < count => Some(source_partition),
            Partitioning::Same => {
                return Err(Error::invalid_input(format!(
                    "Kafka topic {destination:?} has {count} partitions, and an event comes \
                     from partition {source_partition}: use partitioning preserve or key"
                )))
            }
            Partitioning::Key => None,
        };
        // Copied straight from the event into librdkafka: no header list in between.
        let properties = amqp_property_headers(event);
        let mut headers = Some(OwnedHeaders::new_with_capacity(
            event.headers.len() + properties.len() + self.rules.set.len() + 6,
        ));
        self.rules.each_header(
            event.headers.iter().chain(&properties),
            event,
            |key, value| {
                headers = headers
                    .take()
                    .map(|headers| headers.insert(KafkaHeader { key, value }));
            },
        );
        let headers = headers.unwrap_or_default();
        let mut record: BaseRecord<'_, [u8], [u8], Arc<WindowDeliveries>> =
            BaseRecord::with_opaque_to(destination, Arc::clone(&self.window)).headers(headers);
        // No payload at all (not an empty one) is a tombstone.
        if let Some(payload) = &event.payload {
            record = record.payload(payload.as_slice());
        }
        if let Some(key) = &event.key {
            record = record.key(key.as_slice());
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if self.target.keep_timestamp {
            record = record.timestamp(event.event_time.div_euclid(1000));
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.sent += 1;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The producer thread drains the queue; wait for room.
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => {
                    return Err(Error::new(
                        ErrorKind::Retryable,
                        format!("cannot produce to Kafka topic {destination:?}: {error}"),
                    ))
                }
            }
        }
    }

    fn seal(&mut self) -> PendingWindow {
        let window = std::mem::replace(&mut self.window, Arc::new(WindowDeliveries::new()));
        let sent = std::mem::take(&mut self.sent);
        window.sealed.store(sent, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::timeout(FLUSH_TIMEOUT, window.confirmed(sent))
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Retryable,
                        format!(
                            "Kafka did not acknowledge the replayed records within {FLUSH_TIMEOUT:?}"
                        ),
                    )
                })
        })
    }

    async fn close(&mut self) -> Result<()> {
        if self.sent > 0 {
            self.seal().await?;
        }
        // Records of windows nobody waited for (the replay failed): give
        // them their chance before the producer goes.
        if self.producer.in_flight_count() > 0 {
            let producer = self.producer.clone();
            tokio::task::spawn_blocking(move || producer.flush(FLUSH_TIMEOUT))
                .await
                .map_err(|error| Error::internal(format!("flush panicked: {error}")))?
                .map_err(|error| {
                    Error::new(
                        ErrorKind::Retryable,
                        format!(
                            "Kafka did not acknowledge the replayed records within {FLUSH_TIMEOUT:?}: {error}"
                        ),
                    )
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sealed_window_waits_for_its_own_reports_only() {
        let first = Arc::new(WindowDeliveries::new());
        let second = Arc::new(WindowDeliveries::new());
        first.report(None);
        second.report(None);
        first.sealed.store(3, Ordering::SeqCst);
        let waiting = tokio::spawn({
            let first = Arc::clone(&first);
            async move { first.confirmed(3).await }
        });
        // The next window's reports, however many, do not complete it.
        for _ in 0..5 {
            second.report(None);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        first.report(Some("message timed out".to_owned()));
        first.report(None);
        let outcome = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the last report wakes the waiter")
            .unwrap();
        assert_eq!(
            outcome,
            WindowOutcome {
                delivered: 2,
                failed: 1,
                first_failure: Some("message timed out".to_owned()),
            }
        );
        // A window whose reports all came before it was sealed resolves at once.
        second.sealed.store(6, Ordering::SeqCst);
        assert_eq!(second.confirmed(6).await.delivered, 6);
    }
}
