//! lapin's field values to and from the archive's [`AmqpValue`], whose JSON
//! form (`hindsight_archive::amqp_table`) is the `amqp_headers_table` column.

use hindsight_archive::amqp_table::{decode_table, encode_table, AmqpTable, AmqpValue};
use hindsight_archive::Result;
use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};

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
}
