//! SQL functions over schema-aware payloads (`hindsight-schemas`):
//!
//! - `decode_payload(payload [, topic [, headers]])`: the decoded value as
//!   JSON text (Avro, Protobuf, JSON Schema, or plain JSON), for the JSON
//!   functions (`json_get_str(decode_payload(payload, topic), 'id')`); NULL
//!   when it does not decode.
//! - `decode_error(payload [, topic [, headers]])`: why it does not, or NULL.
//! - `decoded_text(payload [, topic [, headers]])`: what search looks in:
//!   the decoded JSON of a payload framed by a schema, the UTF-8 text of
//!   any other (as `payload_text`), NULL when neither.
//! - `payload_schema_id(payload [, headers])`: the schema id of a framed
//!   payload (Confluent prefix, or the `__value_schema_id` header), or NULL.
//!
//! `topic` picks the topic's rule (a local schema file, its registry);
//! `headers` carries the schema id when the serializer put it there.
//! A payload never fails the query: it is NULL here and the reason is in
//! `decode_error`. Schemas come from the catalog, or from the registry once
//! per id (the store caches them, and failures for a while).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Builder, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use hindsight_schemas::wire::VALUE_SCHEMA_ID_HEADER;
use hindsight_schemas::Schemas;

use crate::functions::{as_binary, bytes_at, check_headers_type, for_each_row, string_at};

/// The three functions, decoding with `schemas`.
pub fn all(schemas: &Arc<Schemas>) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(Decode::new(schemas, Output::Value)),
        ScalarUDF::new_from_impl(Decode::new(schemas, Output::Error)),
        ScalarUDF::new_from_impl(Decode::new(schemas, Output::Text)),
        ScalarUDF::new_from_impl(SchemaId::default()),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    Value,
    Error,
    Text,
}

/// `decode_payload` and `decode_error`.
#[derive(Debug)]
struct Decode {
    schemas: Arc<Schemas>,
    output: Output,
    signature: Signature,
}

impl Decode {
    fn new(schemas: &Arc<Schemas>, output: Output) -> Self {
        Decode {
            schemas: Arc::clone(schemas),
            output,
            signature: Signature::one_of(
                vec![
                    TypeSignature::Any(1),
                    TypeSignature::Any(2),
                    TypeSignature::Any(3),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl PartialEq for Decode {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.schemas, &other.schemas) && self.output == other.output
    }
}

impl Eq for Decode {}

impl Hash for Decode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.output.hash(state);
    }
}

/// The `__value_schema_id` header of each row, when a headers column is given.
pub(crate) fn schema_headers(
    headers: Option<&ArrayRef>,
    function: &str,
    rows: usize,
) -> Result<Vec<Option<Vec<u8>>>> {
    let mut found = vec![None; rows];
    if let Some(headers) = headers {
        for_each_row(headers, function, |row, pairs| {
            if let Some((names, values, range)) = pairs {
                found[row] = range
                    .into_iter()
                    .find(|index| string_at(names, *index) == Some(VALUE_SCHEMA_ID_HEADER))
                    .and_then(|index| bytes_at(values, index))
                    .map(<[u8]>::to_vec);
            }
        })?;
    }
    Ok(found)
}

fn check_arguments(function: &str, arg_types: &[DataType], topic_at: Option<usize>) -> Result<()> {
    match arg_types.first() {
        Some(
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Null,
        ) => {}
        Some(other) => return plan_err!("{function} takes the payload (bytes) first, not {other}"),
        None => return plan_err!("{function} takes the payload column"),
    }
    let headers_at = match topic_at {
        Some(topic_at) => {
            if let Some(topic) = arg_types.get(topic_at) {
                if !matches!(
                    topic,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
                ) {
                    return plan_err!("{function}: the topic is text, not {topic}");
                }
            }
            topic_at + 1
        }
        None => 1,
    };
    if arg_types.len() > headers_at {
        check_headers_type(function, arg_types.get(headers_at))?;
    }
    Ok(())
}

impl ScalarUDFImpl for Decode {
    fn name(&self) -> &str {
        match self.output {
            Output::Value => "decode_payload",
            Output::Error => "decode_error",
            Output::Text => "decoded_text",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arguments(self.name(), arg_types, Some(1))?;
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let function = self.name();
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(payloads) = arrays.first() else {
            return exec_err!("{function} takes the payload column");
        };
        let payloads = as_binary(payloads, function)?;
        let payloads = payloads.as_binary::<i32>();
        let topics = match arrays.get(1) {
            Some(topics) => Some(arrow::compute::cast(topics, &DataType::Utf8)?),
            None => None,
        };
        let headers = schema_headers(arrays.get(2), function, rows)?;
        let mut out = StringBuilder::with_capacity(rows, 0);
        let mut text = String::new();
        for row in 0..rows.min(payloads.len()) {
            if payloads.is_null(row) {
                out.append_null();
                continue;
            }
            let topic = topics
                .as_ref()
                .and_then(|topics| string_at(topics.as_ref(), row));
            let header = headers.get(row).and_then(Option::as_deref);
            let payload = payloads.value(row);
            if self.output == Output::Text {
                // The one definition search and replay share.
                match self.schemas.decoded_text(None, topic, payload, header) {
                    Some(decoded) => out.append_option(decoded),
                    None => out.append_option(std::str::from_utf8(payload).ok()),
                }
                continue;
            }
            match self.schemas.decode(None, topic, payload, header) {
                Ok(decoded) if self.output == Output::Value => {
                    text.clear();
                    // A `Value` always serializes.
                    text.push_str(&decoded.value.to_string());
                    out.append_value(&text);
                }
                Err(error) if self.output == Output::Error => out.append_value(&error.message),
                _ => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `payload_schema_id(payload [, headers]) -> bigint`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SchemaId {
    signature: Signature,
}

impl Default for SchemaId {
    fn default() -> Self {
        SchemaId {
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for SchemaId {
    fn name(&self) -> &str {
        "payload_schema_id"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arguments(self.name(), arg_types, None)?;
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(payloads) = arrays.first() else {
            return exec_err!("payload_schema_id takes the payload column");
        };
        let payloads = as_binary(payloads, "payload_schema_id")?;
        let payloads = payloads.as_binary::<i32>();
        let headers = schema_headers(arrays.get(1), "payload_schema_id", rows)?;
        let mut out = Int64Builder::with_capacity(rows);
        for row in 0..rows.min(payloads.len()) {
            let header = headers.get(row).and_then(Option::as_deref);
            let id = (!payloads.is_null(row))
                .then(|| Schemas::schema_id(payloads.value(row), header))
                .flatten();
            out.append_option(id.map(i64::from));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
