//! The publishing seam: a [`Publisher`] per bus, where replayed events go
//! ([`Target`]), and what is added to or removed from their headers
//! ([`HeaderRules`], provenance).
//!
//! The contract: [`Publisher::send`] hands one message to the client and may
//! wait for room, never for the broker. [`Publisher::seal`] closes a window,
//! everything sent since the previous seal, and returns a [`PendingWindow`]: a
//! future that resolves once every message of that window is confirmed or
//! failed, and counts them. It borrows nothing from the publisher, so the
//! runner sends the next window while the broker confirms this one. The runner
//! checkpoints a window only after its `PendingWindow` resolved, and never has
//! more than two windows sent but not checkpointed, so after a crash the only
//! events that can be published twice are those of the last two windows.

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::future::BoxFuture;
use hindsight_archive::secret::{ClientProperties, SecretUrl};
use hindsight_archive::{Bus, Event, Header};
use hindsight_query::{Error, Result};
use serde::{Deserialize, Serialize};

/// Provenance header names. Values are UTF-8 text.
pub const HEADER_REPLAY_ID: &str = hindsight_archive::event::REPLAY_ID_HEADER;
pub const HEADER_SOURCE: &str = "hindsight-source";
pub const HEADER_TOPIC: &str = "hindsight-topic";
pub const HEADER_PARTITION: &str = "hindsight-partition";
pub const HEADER_OFFSET: &str = "hindsight-offset";
pub const HEADER_EVENT_ID: &str = "hindsight-event-id";

/// Where replayed events go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    Kafka(KafkaTarget),
    Amqp(AmqpTarget),
}

/// How replayed Kafka records choose their partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    /// Source partition modulo the target's partition count: the order of
    /// every source partition, and so of every key, is kept.
    #[default]
    Preserve,
    /// Exactly the source partition; refused when the target has fewer.
    Same,
    /// The producer's partitioner on the key (murmur2, like Java clients).
    Key,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTarget {
    /// A `[connections.NAME]` with `bus = "kafka"`: what a record stores
    /// instead of addresses and credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Instead of a connection (ad hoc): bootstrap servers, comma-separated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub brokers: String,
    /// Every event goes to this topic (`--to-topic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Source topic (or exchange) to target topic; wins over `topic`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topic_map: BTreeMap<String, String>,
    #[serde(default)]
    pub partitioning: Partitioning,
    /// Keep the archived event time as the record timestamp (default: now,
    /// so that the target's retention does not delete old events at once).
    #[serde(default)]
    pub keep_timestamp: bool,
    /// Extra librdkafka producer properties. Secret ones (`sasl.password`,
    /// …) are never serialised: a record or an answer shows them redacted.
    #[serde(default, skip_serializing_if = "ClientProperties::is_empty")]
    pub client: ClientProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpTarget {
    /// A `[connections.NAME]` with `bus = "amqp"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Instead of a connection (ad hoc): `amqp://user:password@host:port/vhost`;
    /// serialised without the password.
    #[serde(default, skip_serializing_if = "SecretUrl::is_empty")]
    pub url: SecretUrl,
    /// Every event goes to this exchange (`--to-exchange`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    /// Source exchange (or Kafka topic) to target exchange; wins over `exchange`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exchange_map: BTreeMap<String, String>,
    /// Overrides every routing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
}

impl Target {
    pub fn bus(&self) -> Bus {
        match self {
            Target::Kafka(_) => Bus::Kafka,
            Target::Amqp(_) => Bus::Amqp,
        }
    }

    /// The topic or exchange an event goes to: the mapping, then the
    /// override, then the original (same bus only).
    pub fn destination_of(&self, bus: Bus, topic: &str, exchange: Option<&str>) -> Result<String> {
        let original = match bus {
            Bus::Kafka => topic,
            Bus::Amqp => exchange.unwrap_or(topic),
        };
        let (map, fixed, same_bus, flag) = match self {
            Target::Kafka(kafka) => (
                &kafka.topic_map,
                &kafka.topic,
                bus == Bus::Kafka,
                "--to-topic",
            ),
            Target::Amqp(amqp) => (
                &amqp.exchange_map,
                &amqp.exchange,
                bus == Bus::Amqp,
                "--to-exchange",
            ),
        };
        if let Some(mapped) = map.get(original) {
            return Ok(mapped.clone());
        }
        if let Some(fixed) = fixed {
            return Ok(fixed.clone());
        }
        if same_bus {
            return Ok(original.to_owned());
        }
        Err(Error::invalid_input(format!(
            "{bus} events from {original:?} have no {} target: give {flag} or a mapping",
            self.bus()
        )))
    }

    pub fn destination(&self, event: &Event) -> Result<String> {
        self.destination_of(event.bus, &event.topic, event.amqp.exchange.as_deref())
    }

    /// The named connection this target goes through, if any.
    pub fn connection(&self) -> Option<&str> {
        match self {
            Target::Kafka(kafka) => kafka.connection.as_deref(),
            Target::Amqp(amqp) => amqp.connection.as_deref(),
        }
    }

    /// True when the target is given by address rather than by a named
    /// connection.
    pub fn is_adhoc(&self) -> bool {
        self.connection().is_none()
    }

    /// True when the target itself carries credentials (a URL password,
    /// secret client properties), which the HTTP API never takes.
    pub fn carries_credentials(&self) -> bool {
        match self {
            Target::Kafka(kafka) => kafka
                .client
                .keys()
                .any(|name| hindsight_archive::secret::is_secret_property(name)),
            Target::Amqp(amqp) => amqp.url.has_password(),
        }
    }

    /// Problems with how the target is addressed: exactly one of a named
    /// connection or an address.
    pub fn addressing_problem(&self) -> Option<String> {
        let (connection, address, field) = match self {
            Target::Kafka(kafka) => (
                &kafka.connection,
                !kafka.brokers.trim().is_empty(),
                "brokers",
            ),
            Target::Amqp(amqp) => (&amqp.connection, !amqp.url.is_empty(), "url"),
        };
        match (connection, address) {
            (Some(_), true) => Some(format!(
                "the target names a connection and gives {field}: give one of them"
            )),
            (None, false) => Some(format!(
                "the target needs a connection (a [connections.NAME] of the server's configuration) or {field}"
            )),
            _ => None,
        }
    }

    /// True when this target was read back from a record, so its
    /// credentials were left out (they are never stored) and it cannot
    /// connect as it is. A named connection never lacks them: they stay in
    /// the configuration.
    pub fn lacks_credentials(&self) -> bool {
        match self {
            Target::Kafka(kafka) => kafka.connection.is_none() && kafka.client.lacks_secrets(),
            Target::Amqp(amqp) => amqp.connection.is_none() && amqp.url.lacks_password(),
        }
    }

    /// This target (read back from a record) with the credentials of
    /// `given`, which must be the same target otherwise.
    pub fn with_credentials_of(&self, given: &Target) -> Result<Target> {
        let same = serde_json::to_value(self).ok() == serde_json::to_value(given).ok();
        if !same {
            return Err(Error::invalid_input(
                "the target given to resume is not the replay's target: give the same \
                 target, with its credentials",
            ));
        }
        Ok(given.clone())
    }
}

/// Header rewriting, applied before provenance headers are added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    /// Exact names, or prefixes ending in `*`.
    pub strip: Vec<String>,
    /// Replace every header of this name with one of this value, or add it.
    pub set: Vec<(String, String)>,
    /// The replay id, when provenance headers are on.
    pub provenance: Option<String>,
}

impl HeaderRules {
    pub fn strips(&self, name: &str) -> bool {
        self.set.iter().any(|(set, _)| set == name)
            || self.strip.iter().any(|rule| match rule.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => rule == name,
            })
    }

    /// Calls `add` with each provenance header of one event, in a fixed
    /// order, without allocating (but for the numbers).
    pub fn each_provenance_header(&self, event: &Event, mut add: impl FnMut(&'static str, &str)) {
        let Some(replay_id) = &self.provenance else {
            return;
        };
        add(HEADER_REPLAY_ID, replay_id);
        add(HEADER_SOURCE, &event.source);
        add(HEADER_TOPIC, &event.topic);
        if let Some(partition) = event.partition {
            add(HEADER_PARTITION, &partition.to_string());
        }
        if let Some(offset) = event.offset {
            add(HEADER_OFFSET, &offset.to_string());
        }
        add(HEADER_EVENT_ID, &event.event_id);
    }

    /// The provenance headers of one event, in a fixed order.
    pub fn provenance_headers(&self, event: &Event) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        self.each_provenance_header(event, |name, value| {
            headers.push((name, value.to_owned()));
        });
        headers
    }

    /// Calls `add` with each header of a replayed event, borrowed, in order:
    /// `headers` after the rules, then `set`, then provenance.
    pub fn each_header<'h>(
        &self,
        headers: impl IntoIterator<Item = &'h Header>,
        event: &Event,
        mut add: impl FnMut(&str, Option<&[u8]>),
    ) {
        for header in headers {
            if !self.strips(&header.name) {
                add(&header.name, header.value.as_deref());
            }
        }
        for (name, value) in &self.set {
            add(name, Some(value.as_bytes()));
        }
        self.each_provenance_header(event, |name, value| add(name, Some(value.as_bytes())));
    }

    /// A flat header list after the rules, then `set`, then provenance.
    pub fn apply(&self, headers: &[Header], event: &Event) -> Vec<Header> {
        let mut result = Vec::new();
        self.each_header(headers, event, |name, value| {
            result.push(Header {
                name: name.to_owned(),
                value: value.map(<[u8]>::to_vec),
            });
        });
        result
    }
}

/// What one sealed window came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowOutcome {
    pub delivered: u64,
    pub failed: u64,
    /// The first failure of the window, for the audit record and the log.
    pub first_failure: Option<String>,
}

/// The confirms of one sealed window: resolves once every message of it is
/// confirmed or failed. An error (a lost channel, a timeout) means the
/// window's fate is unknown, so it must not be checkpointed.
pub type PendingWindow = BoxFuture<'static, Result<WindowOutcome>>;

/// An event larger than its destination accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeExcess {
    /// The event's size as the target would receive it.
    pub size: u64,
    /// The most the destination accepts, and who said so.
    pub limit: u64,
    pub limit_from: String,
}

/// The largest record batch a Kafka topic accepts, and who said so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SizeLimit {
    pub bytes: u64,
    pub from: String,
}

/// What a target's destinations accept, asked once and then judged per
/// event exactly as its publisher judges (the dry-run uses it).
#[async_trait]
pub trait SizeLimits: Send {
    /// What each destination asked so far accepts.
    fn limits(&self) -> BTreeMap<String, SizeLimit>;
    /// `Some` when `event` is larger than `destination` accepts.
    async fn excess(&mut self, event: &Event, destination: &str) -> Option<SizeExcess>;
}

/// Opens publishers onto targets. The binary passes in the one its build
/// has (`hindsight-connectors`, with a cargo feature per bus), so this
/// crate needs no broker client.
#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Connects a publisher for `target`, which will send to `destinations`
    /// (the topics or exchanges the plan names).
    async fn publisher(
        &self,
        target: &Target,
        rules: HeaderRules,
        destinations: &[String],
    ) -> Result<Box<dyn Publisher>>;

    /// The size limits of `target`'s destinations; `None` for a bus whose
    /// limits this side cannot ask.
    async fn size_limits(
        &self,
        target: &Target,
        rules: HeaderRules,
        destinations: &[String],
    ) -> Result<Option<Box<dyn SizeLimits>>>;

    /// The named connections replays may target, without secrets.
    fn connections(&self) -> Vec<ConnectionInfo> {
        Vec::new()
    }
}

/// A named connection as listings show it: never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    pub name: String,
    pub bus: Bus,
    /// Brokers (`host:port,…`) or the RabbitMQ `host:port`.
    pub addresses: String,
    /// `plaintext`, `ssl`, `sasl_ssl (scram-sha-256)`, `tls+external`, …
    pub security: String,
}

/// Publishes replayed events onto one bus.
#[async_trait]
pub trait Publisher: Send {
    /// Says, before `send`, when `event` is larger than `destination`
    /// accepts. `None`: it fits, or the bus has no limit this side knows.
    async fn oversized(
        &mut self,
        _event: &Event,
        _destination: &str,
    ) -> Result<Option<SizeExcess>> {
        Ok(None)
    }
    /// Hands one event over, mapped for the target with `destination` and the
    /// header rules. May wait for room in the client; never for the broker.
    async fn send(&mut self, event: &Event, destination: &str) -> Result<()>;
    /// Closes the window: everything sent since the previous seal. Returns at
    /// once; the returned future waits for the broker, and later sends go to
    /// the next window meanwhile.
    fn seal(&mut self) -> PendingWindow;
    /// Waits for the unsealed window, then disconnects. Sealed windows are
    /// their `PendingWindow`'s business.
    async fn close(&mut self) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(bus: Bus) -> Event {
        Event {
            event_id: "e".repeat(32),
            source: "src".to_owned(),
            bus,
            topic: "orders".to_owned(),
            routing_key: None,
            partition: Some(2),
            offset: Some(41),
            key: None,
            headers: vec![
                Header::new("keep", "1"),
                Header::new("x-secret", "s"),
                Header::new("trace", "old"),
            ],
            payload: Some(Vec::new()),
            payload_size: 0,
            payload_truncated: false,
            content_type: None,
            message_id: None,
            correlation_id: None,
            timestamp_type: None,
            amqp: Default::default(),
            redelivered: None,
            event_time: 0,
            ingest_time: 0,
        }
    }

    #[test]
    fn destinations_map_then_override_then_original() {
        let mut kafka = KafkaTarget {
            connection: None,
            brokers: "b".to_owned(),
            topic: None,
            topic_map: BTreeMap::new(),
            partitioning: Partitioning::Preserve,
            keep_timestamp: false,
            client: Default::default(),
        };
        let target = Target::Kafka(kafka.clone());
        assert_eq!(target.destination(&event(Bus::Kafka)).unwrap(), "orders");
        assert!(target.destination(&event(Bus::Amqp)).is_err());
        kafka.topic = Some("copy".to_owned());
        kafka
            .topic_map
            .insert("orders".to_owned(), "mapped".to_owned());
        let target = Target::Kafka(kafka);
        assert_eq!(target.destination(&event(Bus::Kafka)).unwrap(), "mapped");
        let mut other = event(Bus::Kafka);
        other.topic = "payments".to_owned();
        assert_eq!(target.destination(&other).unwrap(), "copy");
    }

    #[test]
    fn rules_strip_set_and_add_provenance_last() {
        let rules = HeaderRules {
            strip: vec!["x-*".to_owned()],
            set: vec![("trace".to_owned(), "new".to_owned())],
            provenance: Some("r1".to_owned()),
        };
        let sample = event(Bus::Kafka);
        let names: Vec<(String, String)> = rules
            .apply(&sample.headers, &sample)
            .into_iter()
            .map(|h| (h.name, String::from_utf8(h.value.unwrap()).unwrap()))
            .collect();
        let expected: Vec<(String, String)> = [
            ("keep", "1"),
            ("trace", "new"),
            (HEADER_REPLAY_ID, "r1"),
            (HEADER_SOURCE, "src"),
            (HEADER_TOPIC, "orders"),
            (HEADER_PARTITION, "2"),
            (HEADER_OFFSET, "41"),
            (HEADER_EVENT_ID, &"e".repeat(32)),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn a_stored_target_keeps_no_credentials_and_takes_them_back_on_resume() {
        let target: Target = serde_json::from_value(serde_json::json!({
            "type": "amqp", "url": "amqp://guest:hunter2@127.0.0.1:5672/%2f", "exchange": "x"
        }))
        .unwrap();
        let stored = serde_json::to_string(&target).unwrap();
        assert!(!stored.contains("hunter2"), "{stored}");
        assert!(stored.contains("127.0.0.1:5672"), "{stored}");
        let read_back: Target = serde_json::from_str(&stored).unwrap();
        assert!(read_back.lacks_credentials());
        assert!(!target.lacks_credentials());
        assert_eq!(read_back.with_credentials_of(&target).unwrap(), target);
        let other: Target = serde_json::from_value(serde_json::json!({
            "type": "amqp", "url": "amqp://guest:hunter2@10.0.0.1:5672/%2f", "exchange": "x"
        }))
        .unwrap();
        assert!(read_back.with_credentials_of(&other).is_err());

        let kafka: Target = serde_json::from_value(serde_json::json!({
            "type": "kafka", "brokers": "b:9092", "client": {"sasl.password": "pw", "acks": "all"}
        }))
        .unwrap();
        let stored = serde_json::to_string(&kafka).unwrap();
        assert!(!stored.contains("\"pw\""), "{stored}");
        assert!(stored.contains("acks"), "{stored}");
        let read_back: Target = serde_json::from_str(&stored).unwrap();
        assert!(read_back.lacks_credentials());
    }
}
