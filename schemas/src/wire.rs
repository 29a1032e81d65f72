//! How a payload says which schema wrote it.
//!
//! - The Confluent wire format: byte `0x00`, a 4-byte big-endian schema id,
//!   then the body (for Protobuf, the message-index path comes first).
//! - A schema id in a header (`__value_schema_id`, `__key_schema_id`), as
//!   newer Confluent serializers write it, with the body alone in the
//!   payload. confluent-kafka 2.16 writes `0x01` and the schema's 16-byte
//!   GUID, then (Protobuf) the message-index path; `0x00` and a 4-byte id,
//!   4 big-endian bytes, or decimal text are read as ids.

use crate::error::DecodeError;
use crate::SchemaRef;

/// The header newer serializers put a value's schema id in.
pub const VALUE_SCHEMA_ID_HEADER: &str = "__value_schema_id";
/// The header for a key's schema id.
pub const KEY_SCHEMA_ID_HEADER: &str = "__key_schema_id";

/// The value of an event's `__value_schema_id` header, if it has one.
pub fn value_schema_header(headers: &[hindsight_archive::Header]) -> Option<&[u8]> {
    headers
        .iter()
        .find(|header| header.name == VALUE_SCHEMA_ID_HEADER)
        .and_then(|header| header.value.as_deref())
}

/// Where the schema id of a payload came from, and where its body starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed<'a> {
    pub schema: SchemaRef,
    pub body: &'a [u8],
    /// What follows the id in a schema-id header: the Protobuf
    /// message-index path, which is then not in the body.
    pub header_tail: Option<&'a [u8]>,
}

/// The schema id of a Confluent-framed payload, without decoding it:
/// `None` for anything else.
pub fn confluent_schema_id(payload: &[u8]) -> Option<u32> {
    match payload {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// Finds the schema id of `payload`: a `__value_schema_id` header first
/// (the payload is then the body alone), else the Confluent prefix.
pub fn frame<'a>(
    payload: &'a [u8],
    value_schema_header: Option<&'a [u8]>,
) -> Result<Framed<'a>, DecodeError> {
    if let Some(header) = value_schema_header {
        let (schema, tail) = header_schema(header)?;
        return Ok(Framed {
            schema,
            body: payload,
            header_tail: Some(tail),
        });
    }
    match payload {
        [0, a, b, c, d, body @ ..] => Ok(Framed {
            schema: SchemaRef::Id(u32::from_be_bytes([*a, *b, *c, *d])),
            body,
            header_tail: None,
        }),
        [0, ..] => Err(DecodeError::framing(format!(
            "the payload is {} byte(s): too short for the Confluent framing (a 0x00 byte and a 4-byte schema id)",
            payload.len()
        ))),
        [] => Err(DecodeError::framing("the payload is empty")),
        [first, ..] => Err(DecodeError::framing(format!(
            "the payload starts with 0x{first:02x}, not the Confluent magic byte 0x00, and has no {VALUE_SCHEMA_ID_HEADER} header"
        ))),
    }
}

/// A schema-id header's value: the schema, and what follows it.
pub fn header_schema(value: &[u8]) -> Result<(SchemaRef, &[u8]), DecodeError> {
    match value {
        [1, rest @ ..] if rest.len() >= 16 => {
            let (guid, tail) = rest.split_at(16);
            Ok((SchemaRef::Guid(guid_text(guid)), tail))
        }
        [0, a, b, c, d, tail @ ..] => {
            Ok((SchemaRef::Id(u32::from_be_bytes([*a, *b, *c, *d])), tail))
        }
        [a, b, c, d] => Ok((SchemaRef::Id(u32::from_be_bytes([*a, *b, *c, *d])), &[])),
        text => std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .map(|id| (SchemaRef::Id(id), &[][..]))
            .ok_or_else(|| {
                DecodeError::framing(format!(
                    "the {VALUE_SCHEMA_ID_HEADER} header ({} bytes) holds no schema id or GUID",
                    value.len()
                ))
            }),
    }
}

/// A GUID as its canonical 8-4-4-4-12 text.
fn guid_text(bytes: &[u8]) -> String {
    let hex = hex(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confluent_prefix_and_header_ids_are_read() {
        let payload = [0, 0, 0, 1, 2, 0xaa];
        assert_eq!(confluent_schema_id(&payload), Some(258));
        let framed = frame(&payload, None).unwrap();
        assert_eq!(
            (framed.schema, framed.body),
            (SchemaRef::Id(258), &[0xaa][..])
        );
        assert!(frame(&[0, 0, 1], None)
            .unwrap_err()
            .message
            .contains("too short"));
        assert!(frame(b"{}", None).unwrap_err().message.contains("0x7b"));
        assert!(frame(&[], None).is_err());
        let header = [0u8, 0, 0, 7];
        let framed = frame(b"body", Some(&header)).unwrap();
        assert_eq!(
            (framed.schema, framed.body, framed.header_tail),
            (SchemaRef::Id(7), &b"body"[..], Some(&[][..]))
        );
        assert_eq!(header_schema(b"42").unwrap().0, SchemaRef::Id(42));
        // confluent-kafka 2.16: 0x01, the GUID, then the message indexes.
        let mut guid = vec![1u8];
        guid.extend((0..16).map(|n| n * 17));
        guid.extend([2, 2]);
        let (schema, tail) = header_schema(&guid).unwrap();
        assert_eq!(
            schema,
            SchemaRef::Guid("00112233-4455-6677-8899-aabbccddeeff".to_owned())
        );
        assert_eq!(tail, &[2, 2]);
        assert!(header_schema(b"x").is_err());
    }
}
