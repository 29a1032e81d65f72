//! Avro bodies to JSON, walking the writer's schema as parsed by
//! `apache-avro`.
//!
//! The walk is ours, not `apache_avro::from_avro_datum`, for two reasons:
//! a recursive schema lets a payload nest as deep as its length allows, and
//! the crate's decoder recurses without a bound (a hostile event would
//! overflow the stack); and the value goes straight to the JSON a person
//! reads, without an intermediate `types::Value`. Block counts are checked
//! against the bytes left before anything is allocated.
//!
//! The JSON is what fastavro gives, written as JSON: a union is its
//! branch's value; bytes and fixed are base64; a decimal is its plain text
//! with exactly `scale` digits after the point; dates and times are ISO 8601
//! (timestamps in UTC with a `Z`, 3, 6 or 9 fraction digits by precision;
//! local timestamps without it); a duration is
//! `{"months", "days", "milliseconds"}`.

use std::collections::{HashMap, HashSet};

use apache_avro::schema::{Name, Namespace, RecordSchema, ResolvedSchema, UnionSchema};
use apache_avro::Schema;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{DecodeError, MAX_DEPTH};

/// A parsed Avro writer schema with the named types it refers to.
#[derive(Debug)]
pub struct AvroSchema {
    schema: Schema,
    names: HashMap<Name, Schema>,
}

impl AvroSchema {
    /// Parses `schema`, resolving names against `references` (the schemas
    /// of the registry's references, in any order).
    pub fn parse(schema: &str, references: &[String]) -> Result<Self, DecodeError> {
        let (schema, referenced) = if references.is_empty() {
            (Schema::parse_str(schema).map_err(bad_schema)?, Vec::new())
        } else {
            Schema::parse_str_with_list(schema, references).map_err(bad_schema)?
        };
        // Dependencies first: resolving a schema needs the names it uses.
        let mut all: Vec<&Schema> = referenced.iter().collect();
        all.push(&schema);
        let names = ResolvedSchema::try_from(all)
            .map_err(bad_schema)?
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect();
        Ok(Self { schema, names })
    }

    /// The schema as Avro JSON that stands alone, for decoders that take
    /// text (`arrow-avro` in the typed SQL views): each named type a
    /// reference brings is written out where it is first used.
    pub fn to_json(&self) -> Result<String, DecodeError> {
        let mut schema = self.schema.clone();
        self.inline_references(&mut schema, &mut HashSet::new(), 0)?;
        serde_json::to_string(&schema).map_err(|error| {
            DecodeError::bad_schema(format!("the schema cannot be written as JSON: {error}"))
        })
    }

    /// Replaces the first use of each name not defined yet (in the order
    /// the JSON is written) with its definition from [`Self::names`].
    fn inline_references(
        &self,
        schema: &mut Schema,
        defined: &mut HashSet<Name>,
        depth: usize,
    ) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::bad_schema(format!(
                "the schema nests deeper than {MAX_DEPTH} levels"
            )));
        }
        match schema {
            Schema::Ref { name } => {
                if defined.contains(name) {
                    return Ok(());
                }
                let Some(definition) = self.names.get(name) else {
                    return Err(DecodeError::bad_schema(format!(
                        "{} is used but defined nowhere",
                        name.fullname(None)
                    )));
                };
                *schema = definition.clone();
                self.inline_references(schema, defined, depth + 1)
            }
            Schema::Record(record) => {
                defined.insert(record.name.clone());
                for field in &mut record.fields {
                    self.inline_references(&mut field.schema, defined, depth + 1)?;
                }
                Ok(())
            }
            Schema::Enum(schema) => {
                defined.insert(schema.name.clone());
                Ok(())
            }
            Schema::Fixed(schema) => {
                defined.insert(schema.name.clone());
                Ok(())
            }
            Schema::Decimal(decimal) => {
                self.inline_references(&mut decimal.inner, defined, depth + 1)
            }
            Schema::Array(array) => self.inline_references(&mut array.items, defined, depth + 1),
            Schema::Map(map) => self.inline_references(&mut map.types, defined, depth + 1),
            Schema::Union(union) => {
                let mut variants = union.variants().to_vec();
                for variant in &mut variants {
                    self.inline_references(variant, defined, depth + 1)?;
                }
                *union = UnionSchema::new(variants).map_err(bad_schema)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The schema's full name (records, enums, fixed) or its type.
    pub fn describe(&self) -> String {
        match &self.schema {
            Schema::Record(record) => record.name.fullname(None),
            Schema::Enum(schema) => schema.name.fullname(None),
            Schema::Fixed(schema) => schema.name.fullname(None),
            other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
        }
    }

    /// Decodes one datum: the whole of `body` must be used.
    pub fn decode(&self, body: &[u8]) -> Result<Value, DecodeError> {
        let mut reader = Reader { bytes: body, at: 0 };
        let value = self
            .value(&self.schema, &None, &mut reader, 0)
            .map_err(|error| DecodeError::mismatch(format!("{} (byte {})", error, reader.at)))?;
        if reader.at != body.len() {
            return Err(DecodeError::mismatch(format!(
                "{} bytes are left over after the value: the body does not match its schema",
                body.len() - reader.at
            )));
        }
        Ok(value)
    }

    fn value(
        &self,
        schema: &Schema,
        namespace: &Namespace,
        reader: &mut Reader<'_>,
        depth: usize,
    ) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("the value nests deeper than {MAX_DEPTH} levels"));
        }
        let depth = depth + 1;
        Ok(match schema {
            Schema::Null => Value::Null,
            Schema::Boolean => match reader.byte()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => return Err(format!("{other} is not a boolean")),
            },
            Schema::Int => Value::from(reader.int()?),
            Schema::Long => Value::from(reader.long()?),
            Schema::Float => float(f64::from(f32::from_le_bytes(reader.array()?))),
            Schema::Double => float(f64::from_le_bytes(reader.array()?)),
            Schema::Bytes => Value::String(BASE64.encode(reader.length_prefixed()?)),
            Schema::String => Value::String(reader.string()?.to_owned()),
            Schema::Uuid => Value::String(reader.string()?.to_owned()),
            Schema::Fixed(fixed) => Value::String(BASE64.encode(reader.take(fixed.size)?)),
            Schema::Enum(schema) => {
                let index = reader.int()?;
                let symbol = usize::try_from(index)
                    .ok()
                    .and_then(|index| schema.symbols.get(index))
                    .ok_or_else(|| {
                        format!("enum {} has no symbol {index}", schema.name.fullname(None))
                    })?;
                Value::String(symbol.clone())
            }
            Schema::Array(array) => {
                let mut items = Vec::new();
                reader.blocks(|reader| {
                    items.push(self.value(&array.items, namespace, reader, depth)?);
                    Ok(())
                })?;
                Value::Array(items)
            }
            Schema::Map(map) => {
                let mut entries = Map::new();
                reader.blocks(|reader| {
                    let key = reader.string()?.to_owned();
                    let value = self.value(&map.types, namespace, reader, depth)?;
                    entries.insert(key, value);
                    Ok(())
                })?;
                Value::Object(entries)
            }
            Schema::Union(union) => {
                let index = reader.long()?;
                let branch = usize::try_from(index)
                    .ok()
                    .and_then(|index| union.variants().get(index))
                    .ok_or_else(|| {
                        format!(
                            "the union has {} branches, not a branch {index}",
                            union.variants().len()
                        )
                    })?;
                self.value(branch, namespace, reader, depth)?
            }
            Schema::Record(RecordSchema { name, fields, .. }) => {
                let name = name.fully_qualified_name(namespace);
                let mut object = Map::new();
                for field in fields {
                    let value = self.value(&field.schema, &name.namespace, reader, depth)?;
                    object.insert(field.name.clone(), value);
                }
                Value::Object(object)
            }
            Schema::Ref { name } => {
                let name = name.fully_qualified_name(namespace);
                let resolved = self
                    .names
                    .get(&name)
                    .ok_or_else(|| format!("the schema names {} but does not define it", name))?;
                self.value(resolved, &name.namespace, reader, depth)?
            }
            Schema::Decimal(decimal) => {
                let unscaled = match &*decimal.inner {
                    Schema::Fixed(fixed) => reader.take(fixed.size)?,
                    _ => reader.length_prefixed()?,
                };
                Value::String(decimal_text(unscaled, decimal.scale)?)
            }
            Schema::BigDecimal => {
                // Bytes holding a length-prefixed unscaled value, then the scale.
                let inner = reader.length_prefixed()?;
                let mut inner_reader = Reader {
                    bytes: inner,
                    at: 0,
                };
                let unscaled = inner_reader.length_prefixed()?;
                let scale = inner_reader.long()?;
                let scale =
                    usize::try_from(scale).map_err(|_| format!("a big decimal's scale {scale}"))?;
                Value::String(decimal_text(unscaled, scale)?)
            }
            Schema::Date => {
                let days = reader.int()?;
                let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                    .and_then(|epoch| {
                        epoch.checked_add_signed(chrono::Duration::days(i64::from(days)))
                    })
                    .ok_or_else(|| format!("{days} days is not a date"))?;
                Value::String(date.format("%Y-%m-%d").to_string())
            }
            Schema::TimeMillis => {
                let millis = reader.int()?;
                Value::String(time_of_day(i64::from(millis) * 1_000_000, 3)?)
            }
            Schema::TimeMicros => {
                let micros = reader.long()?;
                Value::String(time_of_day(micros.saturating_mul(1_000), 6)?)
            }
            Schema::TimestampMillis => Value::String(timestamp(reader.long()?, 1_000, true)?),
            Schema::TimestampMicros => Value::String(timestamp(reader.long()?, 1_000_000, true)?),
            Schema::TimestampNanos => {
                Value::String(timestamp(reader.long()?, 1_000_000_000, true)?)
            }
            Schema::LocalTimestampMillis => Value::String(timestamp(reader.long()?, 1_000, false)?),
            Schema::LocalTimestampMicros => {
                Value::String(timestamp(reader.long()?, 1_000_000, false)?)
            }
            Schema::LocalTimestampNanos => {
                Value::String(timestamp(reader.long()?, 1_000_000_000, false)?)
            }
            Schema::Duration => {
                let bytes: [u8; 12] = reader.array()?;
                let part = |at: usize| {
                    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                };
                serde_json::json!({"months": part(0), "days": part(4), "milliseconds": part(8)})
            }
        })
    }
}

fn bad_schema(error: apache_avro::Error) -> DecodeError {
    DecodeError::bad_schema(format!("the Avro schema cannot be parsed: {error}"))
}

/// NaN and the infinities have no JSON number: they are written as text.
fn float(value: f64) -> Value {
    serde_json::Number::from_f64(value)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(value.to_string()))
}

/// A two's-complement big-endian unscaled value as plain decimal text.
fn decimal_text(unscaled: &[u8], scale: usize) -> Result<String, String> {
    if unscaled.len() > 64 {
        return Err(format!(
            "a decimal of {} bytes is longer than any precision allows",
            unscaled.len()
        ));
    }
    let negative = unscaled.first().is_some_and(|byte| byte & 0x80 != 0);
    // Magnitude as base-10^9 limbs, little-endian.
    let mut magnitude: Vec<u8> = unscaled.to_vec();
    if negative {
        // Two's complement: invert and add one.
        for byte in &mut magnitude {
            *byte = !*byte;
        }
        for byte in magnitude.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
    }
    let mut digits = big_endian_to_decimal(&magnitude);
    if digits.len() <= scale {
        digits = format!("{}{digits}", "0".repeat(scale + 1 - digits.len()));
    }
    let point = digits.len() - scale;
    let mut text = String::with_capacity(digits.len() + 2);
    if negative && digits.bytes().any(|digit| digit != b'0') {
        text.push('-');
    }
    text.push_str(&digits[..point]);
    if scale > 0 {
        text.push('.');
        text.push_str(&digits[point..]);
    }
    Ok(text)
}

/// An unsigned big-endian integer of any length as decimal digits.
fn big_endian_to_decimal(bytes: &[u8]) -> String {
    let mut limbs: Vec<u32> = vec![0]; // base 10^9, least significant first
    for &byte in bytes {
        let mut carry = u64::from(byte);
        for limb in &mut limbs {
            let value = u64::from(*limb) * 256 + carry;
            *limb = (value % 1_000_000_000) as u32;
            carry = value / 1_000_000_000;
        }
        while carry > 0 {
            limbs.push((carry % 1_000_000_000) as u32);
            carry /= 1_000_000_000;
        }
    }
    let mut text = String::new();
    for (index, limb) in limbs.iter().rev().enumerate() {
        if index == 0 {
            text.push_str(&limb.to_string());
        } else {
            text.push_str(&format!("{limb:09}"));
        }
    }
    text
}

fn time_of_day(nanos: i64, digits: usize) -> Result<String, String> {
    let seconds = u32::try_from(nanos.div_euclid(1_000_000_000))
        .map_err(|_| format!("{nanos} ns is not a time of day"))?;
    let fraction = nanos.rem_euclid(1_000_000_000) as u32;
    let time = chrono::NaiveTime::from_num_seconds_from_midnight_opt(seconds, fraction)
        .ok_or_else(|| format!("{nanos} ns is not a time of day"))?;
    Ok(match digits {
        3 => time.format("%H:%M:%S%.3f").to_string(),
        _ => time.format("%H:%M:%S%.6f").to_string(),
    })
}

fn timestamp(value: i64, per_second: i64, utc: bool) -> Result<String, String> {
    let seconds = value.div_euclid(per_second);
    let nanos = (value.rem_euclid(per_second) * (1_000_000_000 / per_second)) as u32;
    let time = chrono::DateTime::from_timestamp(seconds, nanos)
        .ok_or_else(|| format!("{value} is out of the range of timestamps"))?
        .naive_utc();
    let fraction = match per_second {
        1_000 => "%.3f",
        1_000_000 => "%.6f",
        _ => "%.9f",
    };
    let zone = if utc { "Z" } else { "" };
    Ok(format!(
        "{}{zone}",
        time.format(&format!("%Y-%m-%dT%H:%M:%S{fraction}"))
    ))
}

/// The bytes of one datum, read with bounds checks everywhere.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let byte = *self
            .bytes
            .get(self.at)
            .ok_or("the body ends in the middle of a value")?;
        self.at += 1;
        Ok(byte)
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(length)
            .filter(|end| *end <= self.bytes.len())
            .ok_or("the body ends in the middle of a value")?;
        let bytes = &self.bytes[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A zigzag varint of at most 10 bytes.
    fn long(&mut self) -> Result<i64, String> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = self.byte()?;
            if shift == 63 && byte > 1 {
                return Err("a varint overflows 64 bits".to_owned());
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err("a varint is longer than 10 bytes".to_owned())
    }

    fn int(&mut self) -> Result<i32, String> {
        let value = self.long()?;
        i32::try_from(value).map_err(|_| format!("{value} does not fit an int"))
    }

    fn length_prefixed(&mut self) -> Result<&'a [u8], String> {
        let length = self.long()?;
        let length = usize::try_from(length).map_err(|_| format!("a length of {length}"))?;
        self.take(length)
    }

    fn string(&mut self) -> Result<&'a str, String> {
        std::str::from_utf8(self.length_prefixed()?).map_err(|_| "a string is not UTF-8".to_owned())
    }

    /// Array and map blocks: a count (negative: followed by a byte size),
    /// items, until a count of zero. Every item takes at least one byte,
    /// except nulls, so a count beyond the bytes left (or a million nulls)
    /// is refused before anything is allocated.
    fn blocks(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut total: u64 = 0;
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.long()?; // the block's size in bytes, which we do not need
            }
            let count = count.unsigned_abs();
            total += count;
            let left = (self.bytes.len() - self.at) as u64;
            if total > left.max(1) * 8 && total > 1_000_000 {
                return Err(format!("a block of {count} items in {left} bytes"));
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zigzag(value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut value = ((value << 1) ^ (value >> 63)) as u64;
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    #[test]
    fn decimals_keep_their_scale_and_sign() {
        assert_eq!(decimal_text(&[0x04, 0xd2], 2).unwrap(), "12.34");
        assert_eq!(decimal_text(&[0xfb], 2).unwrap(), "-0.05");
        assert_eq!(decimal_text(&[0x00], 0).unwrap(), "0");
        assert_eq!(decimal_text(&[0x01, 0x00], 3).unwrap(), "0.256");
        assert_eq!(
            decimal_text(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 4).unwrap(),
            "236118324143482260.6847"
        );
        assert_eq!(decimal_text(&[0x80], 1).unwrap(), "-12.8");
    }

    #[test]
    fn times_are_iso_8601() {
        assert_eq!(
            timestamp(1_764_583_200_123, 1_000, true).unwrap(),
            "2025-12-01T10:00:00.123Z"
        );
        assert_eq!(
            timestamp(-1, 1_000_000, false).unwrap(),
            "1969-12-31T23:59:59.999999"
        );
        assert_eq!(time_of_day(3_723_004_000_000, 3).unwrap(), "01:02:03.004");
    }

    #[test]
    fn a_record_with_unions_arrays_maps_and_logical_types_decodes() {
        let schema = AvroSchema::parse(
            r#"{"type": "record", "name": "Order", "namespace": "t", "fields": [
                {"name": "id", "type": "string"},
                {"name": "note", "type": ["null", "string"]},
                {"name": "lines", "type": {"type": "array", "items": {
                    "type": "record", "name": "Line", "fields": [{"name": "n", "type": "int"}]}}},
                {"name": "more", "type": {"type": "array", "items": "Line"}},
                {"name": "counters", "type": {"type": "map", "values": "long"}},
                {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}},
                {"name": "day", "type": {"type": "int", "logicalType": "date"}},
                {"name": "status", "type": {"type": "enum", "name": "S", "symbols": ["A", "B"]}},
                {"name": "blob", "type": "bytes"}
            ]}"#,
            &[],
        )
        .unwrap();
        assert_eq!(schema.describe(), "t.Order");
        let mut body = Vec::new();
        body.extend(zigzag(2));
        body.extend(b"o1");
        body.extend(zigzag(1)); // union branch 1: string
        body.extend(zigzag(2));
        body.extend(b"hi");
        body.extend(zigzag(2)); // two lines
        body.extend(zigzag(7));
        body.extend(zigzag(-8));
        body.extend(zigzag(0));
        body.extend(zigzag(-1)); // a block with a byte size
        body.extend(zigzag(1));
        body.extend(zigzag(5));
        body.extend(zigzag(0));
        body.extend(zigzag(1)); // one map entry
        body.extend(zigzag(1));
        body.extend(b"k");
        body.extend(zigzag(-3));
        body.extend(zigzag(0));
        body.extend(zigzag(2));
        body.extend([0x04, 0xd2]);
        body.extend(zigzag(1));
        body.extend(zigzag(1)); // B
        body.extend(zigzag(3));
        body.extend([0, 1, 2]);
        let value = schema.decode(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "id": "o1", "note": "hi", "lines": [{"n": 7}, {"n": -8}], "more": [{"n": 5}],
                "counters": {"k": -3}, "price": "12.34", "day": "1970-01-02",
                "status": "B", "blob": "AAEC"
            })
        );
        // Fields come out in the schema's order, not sorted.
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["id", "note", "lines", "more", "counters", "price", "day", "status", "blob"]
        );
        // Every prefix is a clear error, never a panic.
        for end in 0..body.len() {
            let error = schema.decode(&body[..end]).unwrap_err();
            assert_eq!(error.kind, crate::error::DecodeErrorKind::Mismatch);
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(schema
            .decode(&longer)
            .unwrap_err()
            .message
            .contains("left over"));
    }

    #[test]
    fn a_recursive_schema_cannot_nest_a_payload_past_the_limit() {
        let schema = AvroSchema::parse(
            r#"{"type": "record", "name": "Node", "fields": [
                {"name": "next", "type": ["null", "Node"]}]}"#,
            &[],
        )
        .unwrap();
        let mut shallow = vec![2u8; 10];
        shallow.push(0);
        assert!(schema.decode(&shallow).is_ok());
        let mut deep = vec![2u8; 100_000];
        deep.push(0);
        let error = schema.decode(&deep).unwrap_err();
        assert!(error.message.contains("deeper"), "{error}");
    }

    #[test]
    fn huge_block_counts_and_bad_unions_are_refused() {
        let schema = AvroSchema::parse(r#"{"type": "array", "items": "null"}"#, &[]).unwrap();
        let mut body = zigzag(i64::MAX / 2);
        body.push(0);
        assert!(schema.decode(&body).is_err());
        let union = AvroSchema::parse(r#"["null", "long"]"#, &[]).unwrap();
        assert!(union
            .decode(&zigzag(200))
            .unwrap_err()
            .message
            .contains("branches"));
        assert!(union.decode(&zigzag(-1)).is_err());
    }

    #[test]
    fn references_resolve_named_types_from_other_schemas() {
        let address = r#"{"type": "record", "name": "Address", "namespace": "c",
            "fields": [{"name": "city", "type": "string"}]}"#
            .to_owned();
        let schema = AvroSchema::parse(
            r#"{"type": "record", "name": "Customer", "namespace": "c",
                "fields": [{"name": "home", "type": "c.Address"}]}"#,
            &[address],
        )
        .unwrap();
        let mut body = zigzag(3);
        body.extend(b"Oslo");
        assert!(schema.decode(&body).is_err());
        let mut body = zigzag(4);
        body.extend(b"Oslo");
        assert_eq!(
            schema.decode(&body).unwrap(),
            serde_json::json!({"home": {"city": "Oslo"}})
        );
    }

    #[test]
    fn the_json_of_a_schema_with_references_stands_alone() {
        let address = r#"{"type": "record", "name": "Address", "namespace": "c",
            "fields": [{"name": "city", "type": "string"},
                       {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["HOME", "WORK"]}}]}"#
            .to_owned();
        let schema = AvroSchema::parse(
            r#"{"type": "record", "name": "Customer", "namespace": "c", "fields": [
                {"name": "home", "type": "c.Address"},
                {"name": "work", "type": ["null", "c.Address"]},
                {"name": "past", "type": {"type": "array", "items": "c.Address"}},
                {"name": "kind", "type": "c.Kind"},
                {"name": "next", "type": ["null", "Customer"]}]}"#,
            &[address],
        )
        .unwrap();
        let json = schema.to_json().unwrap();
        // It parses on its own, with no reference given, and decodes alike.
        let alone = AvroSchema::parse(&json, &[]).unwrap_or_else(|error| panic!("{error}: {json}"));
        assert_eq!(json.matches(r#""name":"Address""#).count(), 1, "{json}");
        let mut body = zigzag(4);
        body.extend(b"Oslo");
        body.extend(zigzag(1)); // WORK
        body.extend(zigzag(0)); // work: null
        body.extend(zigzag(0)); // past: empty
        body.extend(zigzag(0)); // HOME
        body.extend(zigzag(0)); // next: null
        assert_eq!(alone.decode(&body).unwrap(), schema.decode(&body).unwrap());
        assert_eq!(
            alone.decode(&body).unwrap(),
            serde_json::json!({"home": {"city": "Oslo", "kind": "WORK"}, "work": null,
                               "past": [], "kind": "HOME", "next": null})
        );
    }
}
