//! An event as the API and the UI show it: text where the bytes are UTF-8,
//! base64 always, the AMQP properties grouped.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hindsight_archive::event::rfc3339;
use hindsight_archive::Event;
use serde::Serialize;

/// One header, its value as text when it is UTF-8 and always as base64.
#[derive(Debug, Serialize)]
pub struct HeaderView {
    pub name: String,
    pub value: Option<String>,
    pub value_base64: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AmqpView {
    /// The exchange the message was published to (`""`: the default exchange).
    pub exchange: Option<String>,
    pub content_encoding: Option<String>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub expiration: Option<String>,
    pub reply_to: Option<String>,
    #[serde(rename = "type")]
    pub message_type: Option<String>,
    pub app_id: Option<String>,
    pub user_id: Option<String>,
    /// The AMQP headers table as typed JSON.
    pub headers_table: Option<serde_json::Value>,
}

/// A whole event as the API shows it.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub event_id: String,
    pub source: String,
    pub bus: String,
    pub topic: String,
    pub routing_key: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub key: Option<String>,
    pub key_base64: Option<String>,
    pub headers: Vec<HeaderView>,
    /// The payload as text when it is valid UTF-8.
    pub payload_text: Option<String>,
    /// Null for a tombstone; `""` for an empty payload.
    pub payload_base64: Option<String>,
    /// A Kafka tombstone: the record's value is null (not empty).
    pub tombstone: bool,
    pub payload_size: i64,
    pub payload_truncated: bool,
    pub content_type: Option<String>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub timestamp_type: Option<String>,
    pub amqp: Option<AmqpView>,
    pub redelivered: Option<bool>,
    pub event_time: Option<String>,
    pub ingest_time: Option<String>,
    /// In search results: the start of a schema-framed payload decoded
    /// (Avro, Protobuf, JSON Schema), for the explorer's rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoded_preview: Option<String>,
}

impl From<Event> for EventView {
    fn from(event: Event) -> Self {
        let text = |bytes: &[u8]| std::str::from_utf8(bytes).ok().map(str::to_owned);
        let amqp = (event.bus == hindsight_archive::Bus::Amqp).then(|| AmqpView {
            exchange: event.amqp.exchange.clone(),
            content_encoding: event.amqp.content_encoding.clone(),
            delivery_mode: event.amqp.delivery_mode,
            priority: event.amqp.priority,
            expiration: event.amqp.expiration.clone(),
            reply_to: event.amqp.reply_to.clone(),
            message_type: event.amqp.message_type.clone(),
            app_id: event.amqp.app_id.clone(),
            user_id: event.amqp.user_id.clone(),
            headers_table: event.amqp.headers_table.as_deref().map(|table| {
                serde_json::from_str(table)
                    .unwrap_or_else(|_| serde_json::Value::String(table.to_owned()))
            }),
        });
        EventView {
            key: event.key.as_deref().and_then(text),
            key_base64: event.key.as_deref().map(|key| STANDARD.encode(key)),
            headers: event
                .headers
                .iter()
                .map(|header| HeaderView {
                    name: header.name.clone(),
                    value: header.value.as_deref().and_then(text),
                    value_base64: header.value.as_deref().map(|value| STANDARD.encode(value)),
                })
                .collect(),
            payload_text: event.payload.as_deref().and_then(text),
            payload_base64: event
                .payload
                .as_deref()
                .map(|payload| STANDARD.encode(payload)),
            tombstone: event.is_tombstone(),
            event_time: rfc3339(event.event_time),
            ingest_time: rfc3339(event.ingest_time),
            amqp,
            event_id: event.event_id,
            source: event.source,
            bus: event.bus.to_string(),
            topic: event.topic,
            routing_key: event.routing_key,
            partition: event.partition,
            offset: event.offset,
            payload_size: event.payload_size,
            payload_truncated: event.payload_truncated,
            content_type: event.content_type,
            message_id: event.message_id,
            correlation_id: event.correlation_id,
            timestamp_type: event.timestamp_type,
            redelivered: event.redelivered,
            decoded_preview: None,
        }
    }
}
