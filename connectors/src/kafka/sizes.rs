//! What a Kafka target accepts. The producer's `message.max.bytes` is set to what the target
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
use std::sync::Arc;
use std::time::Duration;

use super::client::KafkaConnection;
use super::context::ConnectionContext;
use async_trait::async_trait;
use hindsight_archive::Event;
use rdkafka::admin::{AdminClient, AdminOptions, OwnedResourceSpecifier, ResourceSpecifier};

use hindsight_replay::publisher::{HeaderRules, SizeExcess, SizeLimit, SizeLimits};
use hindsight_replay::{Error, Result};

use super::publisher::{amqp_property_headers, METADATA_TIMEOUT};

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
async fn size_limits(
    what: &str,
    link: &KafkaConnection,
    topics: &[String],
) -> BTreeMap<String, SizeLimit> {
    let (by_topic, broker) = match describe_size_limits(what, link, topics).await {
        Ok(answered) => answered,
        Err(error) => {
            tracing::warn!(connection = %what, brokers = %link.addresses(), %error, "cannot ask the target topics' size limits");
            (HashMap::new(), None)
        }
    };
    let property = link
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
fn producer_max_bytes(link: &KafkaConnection, limits: &BTreeMap<String, SizeLimit>) -> Result<u64> {
    match link.client.get("message.max.bytes") {
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
    /// The connection, and its name for messages, to ask more topics.
    what: String,
    link: KafkaConnection,
    rules: HeaderRules,
    /// What each destination accepts, asked once per topic.
    pub limits: BTreeMap<String, SizeLimit>,
    /// The producer's `message.max.bytes`.
    pub producer_max_bytes: u64,
}

impl TopicSizes {
    /// Asks the limits of `destinations`, the topics a plan sends to.
    pub async fn ask(
        what: &str,
        link: &KafkaConnection,
        rules: HeaderRules,
        destinations: &[String],
    ) -> Result<Self> {
        let limits = size_limits(what, link, destinations).await;
        let producer_max_bytes = producer_max_bytes(link, &limits)?;
        Ok(TopicSizes {
            what: what.to_owned(),
            link: link.clone(),
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
            let asked = size_limits(&self.what, &self.link, &[destination.to_owned()]).await;
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
    what: &str,
    link: &KafkaConnection,
    topics: &[String],
) -> std::result::Result<(HashMap<String, u64>, Option<u64>), String> {
    if topics.is_empty() {
        return Ok((HashMap::new(), None));
    }
    let config = link.client_config(&[]);
    let admin: Arc<AdminClient<ConnectionContext>> = Arc::new(
        config
            .create_with_context(link.context(what))
            .map_err(|error| error.to_string())?,
    );
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
