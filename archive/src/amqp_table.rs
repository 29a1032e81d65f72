//! The `amqp_headers_table` column: an AMQP headers table as typed JSON.
//!
//! The RabbitMQ source encodes what it received, and replay decodes it to
//! publish the same table again, so both directions live here, next to a
//! round-trip property test. [`AmqpValue`] mirrors the AMQP field types
//! without depending on a client library; the connector converts.
//!
//! The format: a JSON object from header name to `{"t": TYPE, "v": VALUE}`,
//! where TYPE is RabbitMQ's one-letter type id (`S` long string, `I` long
//! int, `F` table, `A` array, …, and `_` for a short string). Bytes that are
//! not UTF-8 (a long string, a byte array) are `{"t": …, "b64": BASE64}`.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// One AMQP field value, as RabbitMQ types it.
#[derive(Debug, Clone, PartialEq)]
pub enum AmqpValue {
    Boolean(bool),
    ShortShortInt(i8),
    ShortShortUInt(u8),
    ShortInt(i16),
    ShortUInt(u16),
    LongInt(i32),
    LongUInt(u32),
    LongLongInt(i64),
    Float(f32),
    Double(f64),
    Decimal {
        scale: u8,
        value: u32,
    },
    ShortString(String),
    /// Bytes, usually UTF-8 text.
    LongString(Vec<u8>),
    Timestamp(u64),
    Array(Vec<AmqpValue>),
    Table(AmqpTable),
    ByteArray(Vec<u8>),
    Void,
}

/// A headers table: names are unique and sorted, as lapin delivers them.
pub type AmqpTable = BTreeMap<String, AmqpValue>;

impl AmqpValue {
    /// RabbitMQ's type id (`_` for a short string, which has none).
    pub fn type_id(&self) -> char {
        match self {
            AmqpValue::Boolean(_) => 't',
            AmqpValue::ShortShortInt(_) => 'b',
            AmqpValue::ShortShortUInt(_) => 'B',
            AmqpValue::ShortInt(_) => 's',
            AmqpValue::ShortUInt(_) => 'u',
            AmqpValue::LongInt(_) => 'I',
            AmqpValue::LongUInt(_) => 'i',
            AmqpValue::LongLongInt(_) => 'l',
            AmqpValue::Float(_) => 'f',
            AmqpValue::Double(_) => 'd',
            AmqpValue::Decimal { .. } => 'D',
            AmqpValue::ShortString(_) => '_',
            AmqpValue::LongString(_) => 'S',
            AmqpValue::Timestamp(_) => 'T',
            AmqpValue::Array(_) => 'A',
            AmqpValue::Table(_) => 'F',
            AmqpValue::ByteArray(_) => 'x',
            AmqpValue::Void => 'V',
        }
    }

    fn to_json(&self) -> Value {
        let t = self.type_id().to_string();
        match self {
            AmqpValue::Boolean(v) => json!({"t": t, "v": v}),
            AmqpValue::ShortShortInt(v) => json!({"t": t, "v": v}),
            AmqpValue::ShortShortUInt(v) => json!({"t": t, "v": v}),
            AmqpValue::ShortInt(v) => json!({"t": t, "v": v}),
            AmqpValue::ShortUInt(v) => json!({"t": t, "v": v}),
            AmqpValue::LongInt(v) => json!({"t": t, "v": v}),
            AmqpValue::LongUInt(v) => json!({"t": t, "v": v}),
            AmqpValue::LongLongInt(v) => json!({"t": t, "v": v}),
            AmqpValue::Float(v) => json!({"t": t, "v": v}),
            AmqpValue::Double(v) => json!({"t": t, "v": v}),
            AmqpValue::Decimal { scale, value } => {
                json!({"t": t, "v": {"scale": scale, "value": value}})
            }
            AmqpValue::ShortString(text) => json!({"t": t, "v": text}),
            AmqpValue::LongString(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => json!({"t": t, "v": text}),
                Err(_) => json!({"t": t, "b64": STANDARD.encode(bytes)}),
            },
            AmqpValue::ByteArray(bytes) => json!({"t": t, "b64": STANDARD.encode(bytes)}),
            AmqpValue::Timestamp(v) => json!({"t": t, "v": v}),
            AmqpValue::Array(items) => {
                json!({"t": t, "v": items.iter().map(AmqpValue::to_json).collect::<Vec<_>>()})
            }
            AmqpValue::Table(table) => json!({"t": t, "v": table_to_json(table)}),
            AmqpValue::Void => json!({"t": t, "v": null}),
        }
    }

    /// Reads a value back. Numbers are parsed from their JSON text (a raw
    /// value), because going through an `f64` first would change the last
    /// digit of some doubles.
    fn from_field(field: &Field) -> Result<AmqpValue> {
        let shown = || serde_json::to_string(field).unwrap_or_else(|_| "(unprintable)".to_owned());
        let bad = |what: &str| {
            Error::invalid_input(format!(
                "an archived AMQP header value is malformed ({what}): {}",
                shown()
            ))
        };
        let kind = field.t.chars().next().ok_or_else(|| bad("no type"))?;
        let raw = field.v.as_deref().map_or("null", RawValue::get);
        let number = |what: &str| -> Result<&str> {
            let text = raw.trim();
            if text.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) {
                Ok(text)
            } else {
                Err(bad(what))
            }
        };
        let int = |what: &str| -> Result<i64> { number(what)?.parse().map_err(|_| bad(what)) };
        let uint = |what: &str| -> Result<u64> { number(what)?.parse().map_err(|_| bad(what)) };
        let parse =
            |what: &str| -> Result<Value> { serde_json::from_str(raw).map_err(|_| bad(what)) };
        let text = || -> Result<String> {
            match parse("text")? {
                Value::String(text) => Ok(text),
                _ => Err(bad("text")),
            }
        };
        let bytes = || -> Result<Option<Vec<u8>>> {
            match &field.b64 {
                Some(text) => STANDARD.decode(text).map(Some).map_err(|_| bad("base64")),
                None => Ok(None),
            }
        };
        Ok(match kind {
            't' => AmqpValue::Boolean(parse("boolean")?.as_bool().ok_or_else(|| bad("boolean"))?),
            'b' => AmqpValue::ShortShortInt(i8::try_from(int("i8")?).map_err(|_| bad("i8"))?),
            'B' => AmqpValue::ShortShortUInt(u8::try_from(uint("u8")?).map_err(|_| bad("u8"))?),
            's' | 'U' => AmqpValue::ShortInt(i16::try_from(int("i16")?).map_err(|_| bad("i16"))?),
            'u' => AmqpValue::ShortUInt(u16::try_from(uint("u16")?).map_err(|_| bad("u16"))?),
            'I' => AmqpValue::LongInt(i32::try_from(int("i32")?).map_err(|_| bad("i32"))?),
            'i' => AmqpValue::LongUInt(u32::try_from(uint("u32")?).map_err(|_| bad("u32"))?),
            'l' | 'L' => AmqpValue::LongLongInt(int("i64")?),
            // The shortest text of an f32 parses back to the same f32.
            'f' => AmqpValue::Float(number("float")?.parse().map_err(|_| bad("float"))?),
            'd' => AmqpValue::Double(number("double")?.parse().map_err(|_| bad("double"))?),
            'D' => {
                let decimal: Decimal = serde_json::from_str(raw).map_err(|_| bad("decimal"))?;
                AmqpValue::Decimal {
                    scale: decimal.scale,
                    value: decimal.value,
                }
            }
            '_' => AmqpValue::ShortString(text()?),
            'S' => match bytes()? {
                Some(raw) => AmqpValue::LongString(raw),
                None => AmqpValue::LongString(text()?.into_bytes()),
            },
            'x' => AmqpValue::ByteArray(bytes()?.unwrap_or_default()),
            'T' => AmqpValue::Timestamp(uint("timestamp")?),
            'A' => {
                let items: Vec<Field> = serde_json::from_str(raw).map_err(|_| bad("array"))?;
                AmqpValue::Array(
                    items
                        .iter()
                        .map(AmqpValue::from_field)
                        .collect::<Result<Vec<_>>>()?,
                )
            }
            'F' => AmqpValue::Table(decode_table(raw)?),
            'V' => AmqpValue::Void,
            _ => return Err(bad("unknown type")),
        })
    }
}

/// One value as the column holds it.
#[derive(Debug, Serialize, Deserialize)]
struct Field {
    t: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b64: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Decimal {
    scale: u8,
    value: u32,
}

/// The table as the column's JSON value.
pub fn table_to_json(table: &AmqpTable) -> Value {
    Value::Object(
        table
            .iter()
            .map(|(name, value)| (name.clone(), value.to_json()))
            .collect(),
    )
}

/// The table as the column's text.
pub fn encode_table(table: &AmqpTable) -> String {
    table_to_json(table).to_string()
}

/// Reads a table back from the column's JSON value.
pub fn table_from_json(json: &Value) -> Result<AmqpTable> {
    decode_table(&json.to_string())
}

/// Reads a table back from the column's text.
pub fn decode_table(text: &str) -> Result<AmqpTable> {
    let fields: BTreeMap<String, Field> = serde_json::from_str(text).map_err(|error| {
        Error::invalid_input(format!(
            "an archived AMQP headers table is not a JSON object of typed values: {error}"
        ))
    })?;
    fields
        .iter()
        .map(|(name, field)| Ok((name.clone(), AmqpValue::from_field(field)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaf() -> impl Strategy<Value = AmqpValue> {
        prop_oneof![
            any::<bool>().prop_map(AmqpValue::Boolean),
            any::<i8>().prop_map(AmqpValue::ShortShortInt),
            any::<u8>().prop_map(AmqpValue::ShortShortUInt),
            any::<i16>().prop_map(AmqpValue::ShortInt),
            any::<u16>().prop_map(AmqpValue::ShortUInt),
            any::<i32>().prop_map(AmqpValue::LongInt),
            any::<u32>().prop_map(AmqpValue::LongUInt),
            any::<i64>().prop_map(AmqpValue::LongLongInt),
            // JSON has no NaN or infinities; AMQP floats in headers are finite.
            any::<f32>()
                .prop_filter("finite", |v| v.is_finite())
                .prop_map(AmqpValue::Float),
            any::<f64>()
                .prop_filter("finite", |v| v.is_finite())
                .prop_map(AmqpValue::Double),
            (any::<u8>(), any::<u32>())
                .prop_map(|(scale, value)| AmqpValue::Decimal { scale, value }),
            ".{0,20}".prop_map(AmqpValue::ShortString),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(AmqpValue::LongString),
            ".{0,20}".prop_map(|text: String| AmqpValue::LongString(text.into_bytes())),
            any::<u64>().prop_map(AmqpValue::Timestamp),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(AmqpValue::ByteArray),
            Just(AmqpValue::Void),
        ]
    }

    fn value() -> impl Strategy<Value = AmqpValue> {
        leaf().prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(AmqpValue::Array),
                proptest::collection::btree_map(".{0,12}", inner, 0..6).prop_map(AmqpValue::Table),
            ]
        })
    }

    proptest! {
        #[test]
        fn every_headers_table_survives_the_column_unchanged(
            table in proptest::collection::btree_map(".{0,12}", value(), 0..8)
        ) {
            let text = encode_table(&table);
            prop_assert_eq!(decode_table(&text).unwrap(), table);
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_base64_and_text_stays_readable() {
        let mut table = AmqpTable::new();
        table.insert("raw".into(), AmqpValue::LongString(vec![0xff, 0x00]));
        table.insert("text".into(), AmqpValue::LongString(b"h\xc3\xa9".to_vec()));
        let json = table_to_json(&table);
        assert_eq!(json["raw"], json!({"t": "S", "b64": "/wA="}));
        assert_eq!(json["text"], json!({"t": "S", "v": "hé"}));
    }

    #[test]
    fn typed_json_rebuilds_the_exact_table() {
        let json = json!({
            "text": {"t": "S", "v": "héllo"},
            "binary": {"t": "S", "b64": "/wD+"},
            "count": {"t": "l", "v": -7},
            "small": {"t": "b", "v": -3},
            "flag": {"t": "t", "v": true},
            "nothing": {"t": "V", "v": null},
            "price": {"t": "D", "v": {"scale": 2, "value": 1999}},
            "ratio": {"t": "f", "v": 0.1f32},
            "when": {"t": "T", "v": 1_700_000_000u64},
            "bytes": {"t": "x", "b64": "AQI="},
            "list": {"t": "A", "v": [{"t": "I", "v": 1}, {"t": "S", "v": "two"}]},
            "nested": {"t": "F", "v": {"depth": {"t": "I", "v": 2}}}
        });
        let table = table_from_json(&json).unwrap();
        assert_eq!(
            table["text"],
            AmqpValue::LongString("héllo".as_bytes().to_vec())
        );
        assert_eq!(
            table["binary"],
            AmqpValue::LongString(vec![0xff, 0x00, 0xfe])
        );
        assert_eq!(table["count"], AmqpValue::LongLongInt(-7));
        assert_eq!(table["small"], AmqpValue::ShortShortInt(-3));
        assert_eq!(table["flag"], AmqpValue::Boolean(true));
        assert_eq!(table["nothing"], AmqpValue::Void);
        assert_eq!(
            table["price"],
            AmqpValue::Decimal {
                scale: 2,
                value: 1999
            }
        );
        assert_eq!(table["ratio"], AmqpValue::Float(0.1));
        assert_eq!(table["when"], AmqpValue::Timestamp(1_700_000_000));
        assert_eq!(table["bytes"], AmqpValue::ByteArray(vec![1, 2]));
        assert_eq!(
            table["list"],
            AmqpValue::Array(vec![
                AmqpValue::LongInt(1),
                AmqpValue::LongString(b"two".to_vec())
            ])
        );
        let mut nested = AmqpTable::new();
        nested.insert("depth".into(), AmqpValue::LongInt(2));
        assert_eq!(table["nested"], AmqpValue::Table(nested));
        assert!(table_from_json(&json!({"x": {"t": "I", "v": 1e12}})).is_err());
    }

    #[test]
    fn malformed_values_are_named_in_the_error() {
        let error = decode_table(r#"{"n": {"t": "I", "v": "x"}}"#).unwrap_err();
        assert!(error.message().contains("i32") || error.message().contains("integer"));
        let error = decode_table(r#"{"n": {"t": "?"}}"#).unwrap_err();
        assert!(
            error.message().contains("unknown type"),
            "{}",
            error.message()
        );
        assert!(decode_table("[1]").is_err());
    }
}
