//! The event model shared by every bus.
//!
//! An [`Event`] is one message as the broker delivered it, kept byte for byte:
//! payload, key and header values are raw bytes; nothing is decoded or
//! re-encoded on the way into the archive.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which message bus an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    #[default]
    Kafka,
    Amqp,
}

impl Bus {
    pub fn as_str(self) -> &'static str {
        match self {
            Bus::Kafka => "kafka",
            Bus::Amqp => "amqp",
        }
    }
}

impl fmt::Display for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Bus {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "kafka" => Ok(Bus::Kafka),
            "amqp" => Ok(Bus::Amqp),
            other => Err(Error::invalid_input(format!(
                "unknown bus {other:?}: expected \"kafka\" or \"amqp\""
            ))),
        }
    }
}

/// One header: a UTF-8 name and a raw value. Kafka allows a null value and
/// repeated names; order is kept exactly as delivered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Header {
    pub name: String,
    pub value: Option<Vec<u8>>,
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Header {
            name: name.into(),
            value: Some(value.into()),
        }
    }
}

/// The AMQP 0-9-1 basic properties that have no bus-neutral column.
/// All `None` for Kafka events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AmqpProperties {
    pub content_encoding: Option<String>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub expiration: Option<String>,
    pub reply_to: Option<String>,
    pub message_type: Option<String>,
    pub app_id: Option<String>,
    pub user_id: Option<String>,
    /// The full headers table with its AMQP types and nesting, as JSON, so a
    /// replay can rebuild it exactly. The flat `headers` column carries the same
    /// entries with values rendered as bytes, for search.
    pub headers_table: Option<String>,
    /// The exchange the message was published to (`""`: the default
    /// exchange). For queue modes it is also the event's `topic`; for a
    /// stream queue the `topic` is the stream.
    pub exchange: Option<String>,
}

/// One archived event. Times are microseconds since the Unix epoch, UTC.
/// `Default` is a Kafka tombstone (no key, no value) at time 0, for building
/// events field by field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub event_id: String,
    pub source: String,
    pub bus: Bus,
    /// The Kafka topic, or the AMQP exchange.
    pub topic: String,
    pub routing_key: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    /// The value, byte-exact. `None` is a Kafka tombstone (a record with a
    /// null value, "delete this key" in a compacted topic), which is not the
    /// same as `Some(vec![])`, an empty value. RabbitMQ bodies are never `None`.
    pub payload: Option<Vec<u8>>,
    /// The size of the payload as the broker delivered it (0 for a
    /// tombstone); larger than the archived payload only when
    /// `payload_truncated`.
    pub payload_size: i64,
    pub payload_truncated: bool,
    pub content_type: Option<String>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    /// Kafka's timestamp type: `create_time` or `log_append_time`.
    pub timestamp_type: Option<String>,
    pub amqp: AmqpProperties,
    pub redelivered: Option<bool>,
    /// The broker or producer timestamp; the ingest time when the bus gives none.
    pub event_time: i64,
    pub ingest_time: i64,
}

/// The header a replay stamps on every event it publishes. Ingest tags an
/// event that carries it: its value goes to the `replay_id` column.
pub const REPLAY_ID_HEADER: &str = "hindsight-replay-id";

impl Event {
    /// Whether this is a Kafka tombstone: a record whose value is null.
    pub fn is_tombstone(&self) -> bool {
        self.payload.is_none()
    }

    /// The archived payload bytes; empty for a tombstone.
    pub fn payload_bytes(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }

    /// The replay that published this event, when it came from one: the
    /// first `hindsight-replay-id` header that is UTF-8.
    pub fn replay_id(&self) -> Option<&str> {
        self.headers
            .iter()
            .filter(|header| header.name == REPLAY_ID_HEADER)
            .find_map(|header| std::str::from_utf8(header.value.as_deref()?).ok())
    }
}

/// Deterministic event ids: the same delivery always gets the same id, so
/// re-archiving a message after a crash is detectable and deduplicable.
pub mod event_id {
    fn digest(parts: &[&[u8]]) -> String {
        let mut hasher = blake3::Hasher::new();
        for part in parts {
            // Length-prefix every part so that ("ab", "c") and ("a", "bc") differ.
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let hash = hasher.finalize();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(32);
        for byte in &hash.as_bytes()[..16] {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        text
    }

    /// Kafka: source + topic + partition + offset identify a record exactly.
    pub fn kafka(source: &str, topic: &str, partition: i32, offset: i64) -> String {
        digest(&[
            b"kafka",
            source.as_bytes(),
            topic.as_bytes(),
            &partition.to_le_bytes(),
            &offset.to_le_bytes(),
        ])
    }

    /// A RabbitMQ stream queue: source + stream + offset, like a Kafka record.
    pub fn amqp_stream(source: &str, stream: &str, offset: i64) -> String {
        digest(&[
            b"amqp-stream",
            source.as_bytes(),
            stream.as_bytes(),
            &offset.to_le_bytes(),
        ])
    }

    /// AMQP with a message id: source + exchange + message id.
    pub fn amqp_message_id(source: &str, exchange: &str, message_id: &str) -> String {
        digest(&[
            b"amqp-id",
            source.as_bytes(),
            exchange.as_bytes(),
            message_id.as_bytes(),
        ])
    }

    /// AMQP without a message id: the delivery (exchange, routing key, timestamp)
    /// and the content (payload and headers, in order).
    pub fn amqp_content(
        source: &str,
        exchange: &str,
        routing_key: &str,
        timestamp: Option<i64>,
        headers: &[super::Header],
        payload: &[u8],
    ) -> String {
        let timestamp = timestamp.unwrap_or(i64::MIN).to_le_bytes();
        let mut parts: Vec<&[u8]> = vec![
            b"amqp-content",
            source.as_bytes(),
            exchange.as_bytes(),
            routing_key.as_bytes(),
            &timestamp,
            payload,
        ];
        for header in headers {
            parts.push(header.name.as_bytes());
            parts.push(header.value.as_deref().unwrap_or(b"\0null"));
        }
        digest(&parts)
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// RFC 3339 text (UTC, microseconds) for microseconds since the epoch.
pub fn rfc3339(micros: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_as_rfc3339() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00.000000Z"));
        assert_eq!(
            rfc3339(1_795_295_700_123_456).as_deref(),
            Some("2026-11-21T21:15:00.123456Z")
        );
    }

    #[test]
    fn kafka_ids_are_deterministic_and_distinct() {
        let first = event_id::kafka("s", "orders", 0, 1);
        assert_eq!(first, event_id::kafka("s", "orders", 0, 1));
        assert_eq!(first.len(), 32);
        assert_ne!(first, event_id::kafka("s", "orders", 0, 2));
        assert_ne!(first, event_id::kafka("s", "orders", 1, 1));
        assert_ne!(first, event_id::kafka("s2", "orders", 0, 1));
        // Ids never change between versions (the dedup view relies on it):
        // this one was written by an earlier build, into a benchmark archive.
        assert_eq!(
            event_id::kafka("bench", "bench-1795312204", 4, 82973),
            "eceb1a77c59737190c0600a17225f843"
        );
    }

    #[test]
    fn amqp_content_ids_depend_on_headers_and_payload() {
        let headers = vec![Header::new("a", "1")];
        let base = event_id::amqp_content("s", "x", "rk", Some(5), &headers, b"p");
        assert_ne!(
            base,
            event_id::amqp_content("s", "x", "rk", Some(5), &[], b"p")
        );
        assert_ne!(
            base,
            event_id::amqp_content("s", "x", "rk", Some(5), &headers, b"q")
        );
        assert_eq!(
            base,
            event_id::amqp_content("s", "x", "rk", Some(5), &headers, b"p")
        );
    }

    #[test]
    fn bus_parses_and_refuses_unknown() {
        assert_eq!("kafka".parse::<Bus>().ok(), Some(Bus::Kafka));
        assert_eq!("amqp".parse::<Bus>().ok(), Some(Bus::Amqp));
        assert!("mqtt".parse::<Bus>().is_err());
    }
}
