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
//! `amqp-content-encoding`).
//!
//! Sizes: the producer's `message.max.bytes` is set to what the target
//! topics accept, so that a large event the broker takes is not refused by
//! the client. What a topic accepts is its `max.message.bytes`, asked with
//! DescribeConfigs; else the broker's `message.max.bytes`; else the
//! producer property `message.max.bytes` when the user set one; else Kafka's
//! default (1 MiB + 12 bytes). Tansu 0.6 answers DescribeConfigs with only
//! the configs a topic was created with, and nothing for brokers, so on
//! Tansu a topic created without `max.message.bytes` gets Kafka's default.
//! [`Publisher::oversized`] compares each record, as one uncompressed batch
//! of its own (the most the broker can count), with that limit before it is
//! sent, so the runner can stop or skip it instead of failing mid-window.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hindsight_archive::{Bus, Event, Header};
use rdkafka::admin::{AdminClient, AdminOptions, OwnedResourceSpecifier, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use tokio::sync::Notify;

use hindsight_replay::publisher::{
    HeaderRules, KafkaTarget, Partitioning, PendingWindow, Publisher, SizeExcess, SizeLimit,
    SizeLimits, WindowOutcome,
};
use hindsight_replay::{Error, ErrorKind, Result};

/// How long a sealed window may wait for acknowledgements before the replay fails.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
const METADATA_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the size limits of the target topics may take to ask.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a Kafka broker accepts when nothing says otherwise: the default of
/// the broker's `message.max.bytes` (and so of topics' `max.message.bytes`).
pub const KAFKA_DEFAULT_MAX_MESSAGE_BYTES: u64 = 1_048_588;
/// librdkafka's bounds for `message.max.bytes`.
const PRODUCER_MIN_MESSAGE_BYTES: u64 = 1_000;
const PRODUCER_MAX_MESSAGE_BYTES: u64 = 1_000_000_000;
/// A v2 record batch header, and a record's own framing at its largest
/// (length, attributes, timestamp and offset deltas, key, value and header
/// count), and one header's two length varints.
const RECORD_BATCH_OVERHEAD: u64 = 61;
const RECORD_OVERHEAD: u64 = 5 + 1 + 10 + 5 + 5 + 5 + 5;
const HEADER_OVERHEAD: u64 = 5 + 5;

/// The size limit of each of `topics` on the target (see the module docs).
/// Never fails: what the broker does not answer falls back, and the
/// fallback says so in `from`.
async fn size_limits(target: &KafkaTarget, topics: &[String]) -> BTreeMap<String, SizeLimit> {
    let (by_topic, broker) = match describe_size_limits(target, topics).await {
        Ok(answered) => answered,
        Err(error) => {
            tracing::warn!(brokers = %target.brokers, %error, "cannot ask the target topics' size limits");
            (HashMap::new(), None)
        }
    };
    let property = target
        .client
        .get("message.max.bytes")
        .and_then(|value| value.parse::<u64>().ok());
    topics
        .iter()
        .map(|topic| {
            let limit = match (by_topic.get(topic), broker, property) {
                (Some(bytes), _, _) => SizeLimit {
                    bytes: *bytes,
                    from: "the topic's max.message.bytes".to_owned(),
                },
                (None, Some(bytes), _) => SizeLimit {
                    bytes,
                    from: "the broker's message.max.bytes".to_owned(),
                },
                (None, None, Some(bytes)) => SizeLimit {
                    bytes,
                    from: "the producer property message.max.bytes".to_owned(),
                },
                (None, None, None) => SizeLimit {
                    bytes: KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
                    from: "Kafka's default message.max.bytes (the broker did not say more)"
                        .to_owned(),
                },
            };
            (topic.clone(), limit)
        })
        .collect()
}

/// The producer's `message.max.bytes`: the user's own setting, else the
/// most any target topic accepts.
fn producer_max_bytes(target: &KafkaTarget, limits: &BTreeMap<String, SizeLimit>) -> Result<u64> {
    match target.client.get("message.max.bytes") {
        Some(value) => value.parse::<u64>().map_err(|_| {
            Error::invalid_input(format!(
                "the Kafka property message.max.bytes={value} is not a number of bytes"
            ))
        }),
        None => Ok(limits
            .values()
            .map(|limit| limit.bytes)
            .max()
            .unwrap_or(KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
            .clamp(PRODUCER_MIN_MESSAGE_BYTES, PRODUCER_MAX_MESSAGE_BYTES)),
    }
}

/// What the target topics accept, and the size of each event against it:
/// shared by the publisher and the dry-run, so both judge alike.
#[derive(Debug, Clone)]
pub struct TopicSizes {
    target: KafkaTarget,
    rules: HeaderRules,
    /// What each destination accepts, asked once per topic.
    pub limits: BTreeMap<String, SizeLimit>,
    /// The producer's `message.max.bytes`.
    pub producer_max_bytes: u64,
}

impl TopicSizes {
    /// Asks the limits of `destinations`, the topics a plan sends to.
    pub async fn ask(
        target: &KafkaTarget,
        rules: HeaderRules,
        destinations: &[String],
    ) -> Result<Self> {
        let limits = size_limits(target, destinations).await;
        let producer_max_bytes = producer_max_bytes(target, &limits)?;
        Ok(TopicSizes {
            target: target.clone(),
            rules,
            limits,
            producer_max_bytes,
        })
    }

    /// `Some` when `event`, mapped as a record, is larger than
    /// `destination` accepts from this producer.
    pub async fn excess(&mut self, event: &Event, destination: &str) -> Option<SizeExcess> {
        if !self.limits.contains_key(destination) {
            // A destination the plan did not name (an AMQP event's exchange).
            let asked = size_limits(&self.target, &[destination.to_owned()]).await;
            self.limits.extend(asked);
        }
        let (limit, limit_from) = match self.limits.get(destination) {
            Some(limit) if limit.bytes <= self.producer_max_bytes => {
                (limit.bytes, limit.from.clone())
            }
            _ => (
                self.producer_max_bytes,
                "the producer's message.max.bytes".to_owned(),
            ),
        };
        let size = record_batch_size(event, &self.rules);
        (size > limit).then_some(SizeExcess {
            size,
            limit,
            limit_from,
        })
    }
}

#[async_trait]
impl SizeLimits for TopicSizes {
    fn limits(&self) -> BTreeMap<String, SizeLimit> {
        self.limits.clone()
    }

    async fn excess(&mut self, event: &Event, destination: &str) -> Option<SizeExcess> {
        TopicSizes::excess(self, event, destination).await
    }
}

/// Asks the topics' `max.message.bytes`, and, when a topic has none, the
/// first broker's `message.max.bytes`.
async fn describe_size_limits(
    target: &KafkaTarget,
    topics: &[String],
) -> std::result::Result<(HashMap<String, u64>, Option<u64>), String> {
    if topics.is_empty() {
        return Ok((HashMap::new(), None));
    }
    let config = super::client::client_config(&target.brokers, &[], &target.client);
    let admin: Arc<AdminClient<DefaultClientContext>> =
        Arc::new(config.create().map_err(|error| error.to_string())?);
    let options = AdminOptions::new().request_timeout(Some(DESCRIBE_TIMEOUT));
    let parse = |value: Option<&str>| value.and_then(|text| text.trim().parse::<u64>().ok());
    let specifiers: Vec<ResourceSpecifier<'_>> = topics
        .iter()
        .map(|topic| ResourceSpecifier::Topic(topic))
        .collect();
    let described = tokio::time::timeout(
        DESCRIBE_TIMEOUT + Duration::from_secs(1),
        admin.describe_configs(&specifiers, &options),
    )
    .await
    .map_err(|_| "DescribeConfigs timed out".to_owned())?
    .map_err(|error| error.to_string())?;
    let mut by_topic = HashMap::new();
    for resource in described.into_iter().flatten() {
        if let OwnedResourceSpecifier::Topic(name) = &resource.specifier {
            let value = resource
                .get("max.message.bytes")
                .and_then(|entry| entry.value.as_deref());
            if let Some(bytes) = parse(value) {
                by_topic.insert(name.clone(), bytes);
            }
        }
    }
    if by_topic.len() == topics.len() {
        return Ok((by_topic, None));
    }
    let metadata_client = Arc::clone(&admin);
    let metadata = tokio::task::spawn_blocking(move || {
        metadata_client
            .inner()
            .fetch_metadata(None, METADATA_TIMEOUT)
    })
    .await
    .map_err(|error| error.to_string())?
    .map_err(|error| error.to_string())?;
    let Some(broker_id) = metadata.brokers().first().map(|broker| broker.id()) else {
        return Ok((by_topic, None));
    };
    let broker = tokio::time::timeout(
        DESCRIBE_TIMEOUT + Duration::from_secs(1),
        admin.describe_configs(&[ResourceSpecifier::Broker(broker_id)], &options),
    )
    .await
    .map_err(|_| "DescribeConfigs timed out".to_owned())?
    .map_err(|error| error.to_string())?
    .into_iter()
    .flatten()
    .find_map(|resource| {
        parse(
            resource
                .get("message.max.bytes")
                .and_then(|entry| entry.value.as_deref()),
        )
    });
    Ok((by_topic, broker))
}

/// The size of `event` as a Kafka record batch of its own, uncompressed,
/// with its headers mapped as [`KafkaPublisher`] sends them: the most a
/// broker can count against `max.message.bytes`, and at least what
/// librdkafka counts against `message.max.bytes`.
pub fn record_batch_size(event: &Event, rules: &HeaderRules) -> u64 {
    let properties = amqp_property_headers(event);
    let mut headers = 0u64;
    rules.each_header(
        event.headers.iter().chain(&properties),
        event,
        |name, value| {
            headers += HEADER_OVERHEAD + name.len() as u64 + value.map_or(0, <[u8]>::len) as u64;
        },
    );
    RECORD_BATCH_OVERHEAD
        + RECORD_OVERHEAD
        + event.key.as_ref().map_or(0, Vec::len) as u64
        + event.payload_bytes().len() as u64
        + headers
}

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

/// Routes each delivery report to the window its record was sent in.
#[derive(Default)]
pub struct DeliveryReports;

impl ClientContext for DeliveryReports {}

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
fn amqp_property_headers(event: &Event) -> Vec<Header> {
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
    pub async fn connect(
        target: &KafkaTarget,
        rules: HeaderRules,
        destinations: &[String],
    ) -> Result<Self> {
        let sizes = TopicSizes::ask(target, rules.clone(), destinations).await?;
        tracing::info!(message_max_bytes = sizes.producer_max_bytes, limits = ?sizes.limits, "kafka replay producer sized");
        let config = super::client::client_config(
            &target.brokers,
            &[
                ("enable.idempotence", "true".into()),
                ("acks", "all".into()),
                ("partitioner", "murmur2_random".into()),
                ("linger.ms", "5".into()),
                ("message.timeout.ms", "60000".into()),
                ("message.max.bytes", sizes.producer_max_bytes.to_string()),
            ],
            &target.client,
        );
        let producer: ThreadedProducer<DeliveryReports> = config
            .create_with_context(DeliveryReports)
            .map_err(|error| {
                Error::invalid_input(format!(
                    "cannot create a Kafka producer for {}: {error}",
                    target.brokers
                ))
            })?;
        Ok(KafkaPublisher {
            producer,
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
                self.target.brokers
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
