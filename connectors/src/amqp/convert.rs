//! A RabbitMQ delivery as an archived [`Event`], and lapin's field values to
//! and from the archive's [`AmqpValue`], whose JSON form
//! (`hindsight_archive::amqp_table`) is the `amqp_headers_table` column.

use hindsight_archive::amqp_table::{decode_table, encode_table, AmqpTable, AmqpValue};
use hindsight_archive::event::{event_id, now_micros, AmqpProperties};
use hindsight_archive::{Bus, Event, Header, Result};
use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use lapin::BasicProperties;

use super::config::AmqpMode;

pub fn value_from_lapin(value: &AMQPValue) -> AmqpValue {
    match value {
        AMQPValue::Boolean(v) => AmqpValue::Boolean(*v),
        AMQPValue::ShortShortInt(v) => AmqpValue::ShortShortInt(*v),
        AMQPValue::ShortShortUInt(v) => AmqpValue::ShortShortUInt(*v),
        AMQPValue::ShortInt(v) => AmqpValue::ShortInt(*v),
        AMQPValue::ShortUInt(v) => AmqpValue::ShortUInt(*v),
        AMQPValue::LongInt(v) => AmqpValue::LongInt(*v),
        AMQPValue::LongUInt(v) => AmqpValue::LongUInt(*v),
        AMQPValue::LongLongInt(v) => AmqpValue::LongLongInt(*v),
        AMQPValue::Float(v) => AmqpValue::Float(*v),
        AMQPValue::Double(v) => AmqpValue::Double(*v),
        AMQPValue::DecimalValue(d) => AmqpValue::Decimal {
            scale: d.scale,
            value: d.value,
        },
        AMQPValue::ShortString(s) => AmqpValue::ShortString(s.as_str().to_owned()),
        AMQPValue::LongString(s) => AmqpValue::LongString(s.as_bytes().to_vec()),
        AMQPValue::FieldArray(items) => {
            AmqpValue::Array(items.as_slice().iter().map(value_from_lapin).collect())
        }
        AMQPValue::Timestamp(v) => AmqpValue::Timestamp(*v),
        AMQPValue::FieldTable(table) => AmqpValue::Table(table_from_lapin(table)),
        AMQPValue::ByteArray(bytes) => AmqpValue::ByteArray(bytes.as_slice().to_vec()),
        AMQPValue::Void => AmqpValue::Void,
    }
}

pub fn table_from_lapin(table: &FieldTable) -> AmqpTable {
    table
        .inner()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value_from_lapin(value)))
        .collect()
}

pub fn value_to_lapin(value: &AmqpValue) -> AMQPValue {
    match value {
        AmqpValue::Boolean(v) => AMQPValue::Boolean(*v),
        AmqpValue::ShortShortInt(v) => AMQPValue::ShortShortInt(*v),
        AmqpValue::ShortShortUInt(v) => AMQPValue::ShortShortUInt(*v),
        AmqpValue::ShortInt(v) => AMQPValue::ShortInt(*v),
        AmqpValue::ShortUInt(v) => AMQPValue::ShortUInt(*v),
        AmqpValue::LongInt(v) => AMQPValue::LongInt(*v),
        AmqpValue::LongUInt(v) => AMQPValue::LongUInt(*v),
        AmqpValue::LongLongInt(v) => AMQPValue::LongLongInt(*v),
        AmqpValue::Float(v) => AMQPValue::Float(*v),
        AmqpValue::Double(v) => AMQPValue::Double(*v),
        AmqpValue::Decimal { scale, value } => AMQPValue::DecimalValue(DecimalValue {
            scale: *scale,
            value: *value,
        }),
        AmqpValue::ShortString(s) => AMQPValue::ShortString(ShortString::from(s.as_str())),
        AmqpValue::LongString(bytes) => AMQPValue::LongString(LongString::from(bytes.clone())),
        AmqpValue::Timestamp(v) => AMQPValue::Timestamp(*v),
        AmqpValue::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items.iter().map(value_to_lapin).collect::<Vec<_>>(),
        )),
        AmqpValue::Table(table) => AMQPValue::FieldTable(table_to_lapin(table)),
        AmqpValue::ByteArray(bytes) => AMQPValue::ByteArray(ByteArray::from(bytes.clone())),
        AmqpValue::Void => AMQPValue::Void,
    }
}

pub fn table_to_lapin(table: &AmqpTable) -> FieldTable {
    let mut lapin_table = FieldTable::default();
    for (name, value) in table {
        lapin_table.insert(ShortString::from(name.as_str()), value_to_lapin(value));
    }
    lapin_table
}

/// Bytes as an AMQP long string.
pub fn long_string(bytes: &[u8]) -> AMQPValue {
    AMQPValue::LongString(LongString::from(bytes.to_vec()))
}

/// The `amqp_headers_table` column's text for a received table.
pub fn encode_lapin_table(table: &FieldTable) -> String {
    encode_table(&table_from_lapin(table))
}

/// A table to publish, from the `amqp_headers_table` column's text.
pub fn decode_lapin_table(text: &str) -> Result<FieldTable> {
    decode_table(text).map(|table| table_to_lapin(&table))
}

/// The typed JSON of one value's content (`v`), for the flat `headers` column.
pub fn value_json(value: &AMQPValue) -> serde_json::Value {
    let mut table = AmqpTable::new();
    table.insert(String::new(), value_from_lapin(value));
    hindsight_archive::amqp_table::table_to_json(&table)[""]["v"].clone()
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

    #[test]
    fn every_lapin_type_converts_both_ways_unchanged() {
        let mut inner = FieldTable::default();
        inner.insert("depth".into(), AMQPValue::LongInt(2));
        let mut table = FieldTable::default();
        for (name, value) in [
            ("a", AMQPValue::Boolean(true)),
            ("b", AMQPValue::ShortShortInt(-3)),
            ("c", AMQPValue::ShortShortUInt(3)),
            ("d", AMQPValue::ShortInt(-300)),
            ("e", AMQPValue::ShortUInt(300)),
            ("f", AMQPValue::LongInt(-70_000)),
            ("g", AMQPValue::LongUInt(70_000)),
            ("h", AMQPValue::LongLongInt(-7)),
            ("i", AMQPValue::Float(0.1)),
            ("j", AMQPValue::Double(0.2)),
            (
                "k",
                AMQPValue::DecimalValue(DecimalValue {
                    scale: 2,
                    value: 1999,
                }),
            ),
            ("l", AMQPValue::ShortString("short".into())),
            (
                "m",
                AMQPValue::LongString(LongString::from(vec![0xff, 0x00])),
            ),
            ("n", AMQPValue::Timestamp(1_700_000_000)),
            (
                "o",
                AMQPValue::FieldArray(FieldArray::from(vec![
                    AMQPValue::LongInt(1),
                    AMQPValue::Void,
                ])),
            ),
            ("p", AMQPValue::FieldTable(inner)),
            ("q", AMQPValue::ByteArray(ByteArray::from(vec![1, 2]))),
            ("r", AMQPValue::Void),
        ] {
            table.insert(name.into(), value);
        }
        let text = encode_lapin_table(&table);
        assert_eq!(decode_lapin_table(&text).unwrap(), table);
    }

    use lapin::types::{DecimalValue, FieldArray};

    fn nested_table() -> FieldTable {
        let mut inner = FieldTable::default();
        inner.insert("depth".into(), AMQPValue::LongInt(2));
        let mut table = FieldTable::default();
        table.insert("text".into(), long_string("héllo".as_bytes()));
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
                long_string(b"two"),
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
