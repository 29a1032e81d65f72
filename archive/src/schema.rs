//! The one Arrow schema for every bus, and conversion between [`Event`]s and
//! Arrow record batches.
//!
//! `headers` is `list<struct<name: utf8, value: binary>>` rather than an Arrow
//! `map`: Kafka allows repeated header names, and DuckDB refuses a Parquet MAP
//! with repeated keys ("Map keys must be unique"). A list of pairs keeps order
//! and repeats, and every Parquet reader understands it. New header names
//! never change the schema.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, Int32Builder,
    Int64Builder, ListArray, RecordBatch, StringBuilder, StructArray, TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{
    DataType, Field, Fields, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit,
    TimestampMicrosecondType,
};

use crate::error::{Error, Result};
use crate::event::{AmqpProperties, Event, Header};

/// Bumped when a column is added or changes meaning; written into every
/// segment's Parquet key-value metadata as `hindsight.schema_version`.
/// Version 4: `payload` is nullable, NULL for a Kafka tombstone. Older
/// segments declare it required and read as the same column with no nulls.
/// Version 5: every field carries its Iceberg field id (`PARQUET:field_id`);
/// older segments are read through the tables' name mapping.
pub const SCHEMA_VERSION: &str = "5";

const UTC: &str = "UTC";

/// The Parquet field id key: arrow-rs writes it into the Parquet schema's
/// `field_id`, which Iceberg readers resolve columns by.
pub const FIELD_ID_KEY: &str = parquet::arrow::PARQUET_FIELD_ID_META_KEY;

/// Field ids of the nested `headers` fields; the top-level columns are
/// numbered 1, 2, … in schema order. Ids are part of the contract: a new
/// column takes the next free id (`LAST_FIELD_ID + 1`), never a used one.
pub const HEADERS_ELEMENT_ID: i32 = 31;
pub const HEADER_NAME_ID: i32 = 32;
pub const HEADER_VALUE_ID: i32 = 33;
pub const LAST_FIELD_ID: i32 = 33;

fn with_id(field: Field, id: i32) -> Field {
    field.with_metadata(HashMap::from([(FIELD_ID_KEY.to_owned(), id.to_string())]))
}

fn header_fields() -> Fields {
    Fields::from(vec![
        with_id(Field::new("name", DataType::Utf8, false), HEADER_NAME_ID),
        with_id(Field::new("value", DataType::Binary, true), HEADER_VALUE_ID),
    ])
}

fn header_item_field() -> Arc<Field> {
    Arc::new(with_id(
        Field::new("item", DataType::Struct(header_fields()), false),
        HEADERS_ELEMENT_ID,
    ))
}

/// The field id a schema field carries, when it carries one.
pub fn field_id(field: &Field) -> Option<i32> {
    field.metadata().get(FIELD_ID_KEY)?.parse().ok()
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

/// The archive schema. Column order is part of the contract: append only.
/// Every field carries its Iceberg field id (`PARQUET:field_id`).
pub fn event_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let columns = vec![
                Field::new("event_id", DataType::Utf8, false),
                Field::new("source", DataType::Utf8, false),
                Field::new("bus", DataType::Utf8, false),
                Field::new("topic", DataType::Utf8, false),
                Field::new("routing_key", DataType::Utf8, true),
                Field::new("partition", DataType::Int32, true),
                Field::new("offset", DataType::Int64, true),
                Field::new("key", DataType::Binary, true),
                Field::new("headers", DataType::List(header_item_field()), false),
                Field::new("payload", DataType::Binary, true),
                Field::new("payload_size", DataType::Int64, false),
                Field::new("payload_truncated", DataType::Boolean, false),
                Field::new("content_type", DataType::Utf8, true),
                Field::new("message_id", DataType::Utf8, true),
                Field::new("correlation_id", DataType::Utf8, true),
                Field::new("timestamp_type", DataType::Utf8, true),
                Field::new("amqp_content_encoding", DataType::Utf8, true),
                Field::new("amqp_delivery_mode", DataType::Int32, true),
                Field::new("amqp_priority", DataType::Int32, true),
                Field::new("amqp_expiration", DataType::Utf8, true),
                Field::new("amqp_reply_to", DataType::Utf8, true),
                Field::new("amqp_type", DataType::Utf8, true),
                Field::new("amqp_app_id", DataType::Utf8, true),
                Field::new("amqp_user_id", DataType::Utf8, true),
                Field::new("amqp_headers_table", DataType::Utf8, true),
                Field::new("redelivered", DataType::Boolean, true),
                Field::new("event_time", timestamp_type(), false),
                Field::new("ingest_time", timestamp_type(), false),
                Field::new("amqp_exchange", DataType::Utf8, true),
                Field::new("replay_id", DataType::Utf8, true),
            ];
            Arc::new(Schema::new(
                columns
                    .into_iter()
                    .zip(1..)
                    .map(|(column, id)| with_id(column, id))
                    .collect::<Vec<_>>(),
            ))
        })
        .clone()
}

/// Builds one record batch from events (owned or borrowed), in order.
pub fn events_to_batch<E: Borrow<Event>>(events: &[E]) -> Result<RecordBatch> {
    let rows = events.len();
    let mut event_id = StringBuilder::with_capacity(rows, rows * 32);
    let mut source = StringBuilder::with_capacity(rows, rows * 8);
    let mut bus = StringBuilder::with_capacity(rows, rows * 5);
    let mut topic = StringBuilder::with_capacity(rows, rows * 16);
    let mut routing_key = StringBuilder::new();
    let mut partition = Int32Builder::with_capacity(rows);
    let mut offset = Int64Builder::with_capacity(rows);
    let mut key = BinaryBuilder::new();
    let payload_bytes: usize = events
        .iter()
        .map(|event| event.borrow().payload_bytes().len())
        .sum();
    let mut payload = BinaryBuilder::with_capacity(rows, payload_bytes);
    let mut payload_size = Int64Builder::with_capacity(rows);
    let mut payload_truncated = BooleanBuilder::with_capacity(rows);
    let mut content_type = StringBuilder::new();
    let mut message_id = StringBuilder::new();
    let mut correlation_id = StringBuilder::new();
    let mut timestamp_type_column = StringBuilder::new();
    let mut amqp_content_encoding = StringBuilder::new();
    let mut amqp_delivery_mode = Int32Builder::new();
    let mut amqp_priority = Int32Builder::new();
    let mut amqp_expiration = StringBuilder::new();
    let mut amqp_reply_to = StringBuilder::new();
    let mut amqp_type = StringBuilder::new();
    let mut amqp_app_id = StringBuilder::new();
    let mut amqp_user_id = StringBuilder::new();
    let mut amqp_headers_table = StringBuilder::new();
    let mut redelivered = BooleanBuilder::with_capacity(rows);
    let mut event_time = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone(UTC);
    let mut ingest_time = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone(UTC);
    let mut amqp_exchange = StringBuilder::new();
    let mut replay_id = StringBuilder::new();

    let mut header_offsets = Vec::with_capacity(rows + 1);
    header_offsets.push(0i32);
    let mut header_names = StringBuilder::new();
    let mut header_values = BinaryBuilder::new();

    for event in events {
        let event: &Event = event.borrow();
        event_id.append_value(&event.event_id);
        source.append_value(&event.source);
        bus.append_value(event.bus.as_str());
        topic.append_value(&event.topic);
        routing_key.append_option(event.routing_key.as_deref());
        partition.append_option(event.partition);
        offset.append_option(event.offset);
        key.append_option(event.key.as_deref());
        for header in &event.headers {
            header_names.append_value(&header.name);
            header_values.append_option(header.value.as_deref());
        }
        let header_count = i32::try_from(header_names.len())
            .map_err(|_| Error::invalid_input("too many headers in one segment"))?;
        header_offsets.push(header_count);
        payload.append_option(event.payload.as_deref());
        payload_size.append_value(event.payload_size);
        payload_truncated.append_value(event.payload_truncated);
        content_type.append_option(event.content_type.as_deref());
        message_id.append_option(event.message_id.as_deref());
        correlation_id.append_option(event.correlation_id.as_deref());
        timestamp_type_column.append_option(event.timestamp_type.as_deref());
        let amqp = &event.amqp;
        amqp_content_encoding.append_option(amqp.content_encoding.as_deref());
        amqp_delivery_mode.append_option(amqp.delivery_mode.map(i32::from));
        amqp_priority.append_option(amqp.priority.map(i32::from));
        amqp_expiration.append_option(amqp.expiration.as_deref());
        amqp_reply_to.append_option(amqp.reply_to.as_deref());
        amqp_type.append_option(amqp.message_type.as_deref());
        amqp_app_id.append_option(amqp.app_id.as_deref());
        amqp_user_id.append_option(amqp.user_id.as_deref());
        amqp_headers_table.append_option(amqp.headers_table.as_deref());
        redelivered.append_option(event.redelivered);
        event_time.append_value(event.event_time);
        ingest_time.append_value(event.ingest_time);
        amqp_exchange.append_option(amqp.exchange.as_deref());
        replay_id.append_option(event.replay_id());
    }

    let header_pairs = StructArray::try_new(
        header_fields(),
        vec![
            Arc::new(header_names.finish()) as ArrayRef,
            Arc::new(header_values.finish()) as ArrayRef,
        ],
        None,
    )?;
    let headers = ListArray::try_new(
        header_item_field(),
        OffsetBuffer::new(header_offsets.into()),
        Arc::new(header_pairs),
        None,
    )?;

    let columns: Vec<ArrayRef> = vec![
        Arc::new(event_id.finish()),
        Arc::new(source.finish()),
        Arc::new(bus.finish()),
        Arc::new(topic.finish()),
        Arc::new(routing_key.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(key.finish()),
        Arc::new(headers),
        Arc::new(payload.finish()),
        Arc::new(payload_size.finish()),
        Arc::new(payload_truncated.finish()),
        Arc::new(content_type.finish()),
        Arc::new(message_id.finish()),
        Arc::new(correlation_id.finish()),
        Arc::new(timestamp_type_column.finish()),
        Arc::new(amqp_content_encoding.finish()),
        Arc::new(amqp_delivery_mode.finish()),
        Arc::new(amqp_priority.finish()),
        Arc::new(amqp_expiration.finish()),
        Arc::new(amqp_reply_to.finish()),
        Arc::new(amqp_type.finish()),
        Arc::new(amqp_app_id.finish()),
        Arc::new(amqp_user_id.finish()),
        Arc::new(amqp_headers_table.finish()),
        Arc::new(redelivered.finish()),
        Arc::new(event_time.finish()),
        Arc::new(ingest_time.finish()),
        Arc::new(amqp_exchange.finish()),
        Arc::new(replay_id.finish()),
    ];
    Ok(RecordBatch::try_new(event_schema(), columns)?)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::invalid_input(format!("segment has no column {name:?}")))
}

fn typed<'a, T: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    column(batch, name)?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| Error::invalid_input(format!("segment column {name:?} has the wrong type")))
}

type Strings = arrow::array::StringArray;
type Binaries = arrow::array::BinaryArray;
type Booleans = arrow::array::BooleanArray;

fn opt_string(array: &Strings, row: usize) -> Option<String> {
    array.is_valid(row).then(|| array.value(row).to_owned())
}

fn opt_u8(array: &arrow::array::Int32Array, row: usize, name: &str) -> Result<Option<u8>> {
    if array.is_null(row) {
        return Ok(None);
    }
    u8::try_from(array.value(row))
        .map(Some)
        .map_err(|_| Error::invalid_input(format!("segment column {name:?} is out of range")))
}

/// Reads events back from a record batch of the archive schema.
pub fn batch_to_events(batch: &RecordBatch) -> Result<Vec<Event>> {
    let event_id = typed::<Strings>(batch, "event_id")?;
    let source = typed::<Strings>(batch, "source")?;
    let bus = typed::<Strings>(batch, "bus")?;
    let topic = typed::<Strings>(batch, "topic")?;
    let routing_key = typed::<Strings>(batch, "routing_key")?;
    let partition = column(batch, "partition")?.as_primitive::<Int32Type>();
    let offset = column(batch, "offset")?.as_primitive::<Int64Type>();
    let key = typed::<Binaries>(batch, "key")?;
    let headers = typed::<ListArray>(batch, "headers")?;
    let payload = typed::<Binaries>(batch, "payload")?;
    let payload_size = column(batch, "payload_size")?.as_primitive::<Int64Type>();
    let payload_truncated = typed::<Booleans>(batch, "payload_truncated")?;
    let content_type = typed::<Strings>(batch, "content_type")?;
    let message_id = typed::<Strings>(batch, "message_id")?;
    let correlation_id = typed::<Strings>(batch, "correlation_id")?;
    let timestamp_type_column = typed::<Strings>(batch, "timestamp_type")?;
    let amqp_content_encoding = typed::<Strings>(batch, "amqp_content_encoding")?;
    let amqp_delivery_mode = column(batch, "amqp_delivery_mode")?.as_primitive::<Int32Type>();
    let amqp_priority = column(batch, "amqp_priority")?.as_primitive::<Int32Type>();
    let amqp_expiration = typed::<Strings>(batch, "amqp_expiration")?;
    let amqp_reply_to = typed::<Strings>(batch, "amqp_reply_to")?;
    let amqp_type = typed::<Strings>(batch, "amqp_type")?;
    let amqp_app_id = typed::<Strings>(batch, "amqp_app_id")?;
    let amqp_user_id = typed::<Strings>(batch, "amqp_user_id")?;
    let amqp_headers_table = typed::<Strings>(batch, "amqp_headers_table")?;
    let redelivered = typed::<Booleans>(batch, "redelivered")?;
    let event_time = column(batch, "event_time")?.as_primitive::<TimestampMicrosecondType>();
    let ingest_time = column(batch, "ingest_time")?.as_primitive::<TimestampMicrosecondType>();
    let amqp_exchange = typed::<Strings>(batch, "amqp_exchange")?;

    let header_pairs = headers.values().as_struct();
    let header_names = header_pairs
        .column_by_name("name")
        .and_then(|names| names.as_string_opt::<i32>())
        .ok_or_else(|| Error::invalid_input("segment headers have no utf8 \"name\" field"))?;
    let header_values = header_pairs
        .column_by_name("value")
        .and_then(|values| values.as_binary_opt::<i32>())
        .ok_or_else(|| Error::invalid_input("segment headers have no binary \"value\" field"))?;
    let header_offsets = headers.value_offsets();

    let mut events = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let start = usize::try_from(header_offsets[row]).unwrap_or_default();
        let end = usize::try_from(header_offsets[row + 1]).unwrap_or_default();
        let event_headers = (start..end)
            .map(|index| Header {
                name: header_names.value(index).to_owned(),
                value: header_values
                    .is_valid(index)
                    .then(|| header_values.value(index).to_vec()),
            })
            .collect();
        events.push(Event {
            event_id: event_id.value(row).to_owned(),
            source: source.value(row).to_owned(),
            bus: bus.value(row).parse()?,
            topic: topic.value(row).to_owned(),
            routing_key: opt_string(routing_key, row),
            partition: partition.is_valid(row).then(|| partition.value(row)),
            offset: offset.is_valid(row).then(|| offset.value(row)),
            key: key.is_valid(row).then(|| key.value(row).to_vec()),
            headers: event_headers,
            payload: payload.is_valid(row).then(|| payload.value(row).to_vec()),
            payload_size: payload_size.value(row),
            payload_truncated: payload_truncated.value(row),
            content_type: opt_string(content_type, row),
            message_id: opt_string(message_id, row),
            correlation_id: opt_string(correlation_id, row),
            timestamp_type: opt_string(timestamp_type_column, row),
            amqp: AmqpProperties {
                content_encoding: opt_string(amqp_content_encoding, row),
                delivery_mode: opt_u8(amqp_delivery_mode, row, "amqp_delivery_mode")?,
                priority: opt_u8(amqp_priority, row, "amqp_priority")?,
                expiration: opt_string(amqp_expiration, row),
                reply_to: opt_string(amqp_reply_to, row),
                message_type: opt_string(amqp_type, row),
                app_id: opt_string(amqp_app_id, row),
                user_id: opt_string(amqp_user_id, row),
                exchange: opt_string(amqp_exchange, row),
                headers_table: opt_string(amqp_headers_table, row),
            },
            redelivered: redelivered.is_valid(row).then(|| redelivered.value(row)),
            event_time: event_time.value(row),
            ingest_time: ingest_time.value(row),
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Bus;

    fn event(offset: i64, payload: Option<&[u8]>) -> Event {
        Event {
            event_id: format!("e{offset}"),
            source: "s".into(),
            bus: Bus::Kafka,
            topic: "t".into(),
            partition: Some(0),
            offset: Some(offset),
            payload: payload.map(<[u8]>::to_vec),
            payload_size: payload.map_or(0, <[u8]>::len) as i64,
            ..Event::default()
        }
    }

    #[test]
    fn a_tombstone_is_a_null_payload_and_an_empty_payload_is_not() {
        let events = vec![event(0, None), event(1, Some(b"")), event(2, Some(b"{}"))];
        let batch = events_to_batch(&events).unwrap();
        let payload = typed::<Binaries>(&batch, "payload").unwrap();
        assert!(payload.is_null(0));
        assert!(payload.is_valid(1) && payload.value(1).is_empty());
        assert_eq!(payload.value(2), b"{}");
        let decoded = batch_to_events(&batch).unwrap();
        assert_eq!(decoded, events);
        assert!(decoded[0].is_tombstone() && !decoded[1].is_tombstone());
    }
}
