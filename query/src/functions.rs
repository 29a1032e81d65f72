//! SQL functions Hindsight adds to DataFusion's: payloads as text, and
//! header lookups over the `headers` list of `{name, value}` pairs.
//!
//! - `utf8_or_null(bytes)`: the bytes as UTF-8 text, or NULL when they are not
//!   valid UTF-8. The `payload_text` column of `events` is `utf8_or_null(payload)`.
//! - `header_text(headers, name)`: the first value of header `name` as UTF-8
//!   text, or NULL when it is absent or not valid UTF-8.
//! - `has_header(headers, name)` and `has_header(headers, name, value)`: whether a
//!   header of that name (with that UTF-8 value) is present.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanBuilder, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Every function of this module, to register with a session.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(Utf8OrNull::default()),
        ScalarUDF::new_from_impl(HeaderText::default()),
        ScalarUDF::new_from_impl(HasHeader::default()),
    ]
}

/// `utf8_or_null(bytes) -> utf8`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Utf8OrNull {
    signature: Signature,
}

impl Default for Utf8OrNull {
    fn default() -> Self {
        Utf8OrNull {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

/// Any binary or string array as a plain `Binary` array.
pub(crate) fn as_binary(array: &ArrayRef, function: &str) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Binary => Ok(Arc::clone(array)),
        DataType::LargeBinary
        | DataType::BinaryView
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Null => Ok(arrow::compute::cast(array, &DataType::Binary)?),
        other => exec_err!("{function} takes bytes or text, not {other}"),
    }
}

impl ScalarUDFImpl for Utf8OrNull {
    fn name(&self) -> &str {
        "utf8_or_null"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(
                DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Null,
            ) => Ok(DataType::Utf8),
            Some(other) => plan_err!("utf8_or_null takes bytes or text, not {other}"),
            None => plan_err!("utf8_or_null takes one argument"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [input] = arrays.as_slice() else {
            return exec_err!("utf8_or_null takes one argument");
        };
        let bytes = as_binary(input, "utf8_or_null")?;
        let bytes = bytes.as_binary::<i32>();
        let mut text = StringBuilder::with_capacity(bytes.len(), bytes.values().len());
        for value in bytes.iter() {
            text.append_option(value.and_then(|value| std::str::from_utf8(value).ok()));
        }
        Ok(ColumnarValue::Array(Arc::new(text.finish())))
    }
}

/// Validates `headers` as `list<struct<name: utf8, value: binary>>`.
pub(crate) fn check_headers_type(function: &str, data_type: Option<&DataType>) -> Result<()> {
    let Some(DataType::List(item)) = data_type else {
        return plan_err!("{function} takes the headers column as its first argument");
    };
    let DataType::Struct(fields) = item.data_type() else {
        return plan_err!("{function} takes the headers column as its first argument");
    };
    if fields.find("name").is_none() || fields.find("value").is_none() {
        return plan_err!("{function} takes the headers column as its first argument");
    }
    Ok(())
}

/// Calls `visit(row, names, values, range)` for every row of a headers list.
pub(crate) fn for_each_row(
    headers: &ArrayRef,
    function: &str,
    mut visit: impl FnMut(usize, Option<(&dyn Array, &dyn Array, std::ops::Range<usize>)>),
) -> Result<()> {
    let Some(list) = headers.as_list_opt::<i32>() else {
        return exec_err!("{function} takes the headers column as its first argument");
    };
    let pairs = list.values().as_struct();
    let (Some(names), Some(values)) = (pairs.column_by_name("name"), pairs.column_by_name("value"))
    else {
        return exec_err!("{function} takes the headers column as its first argument");
    };
    let offsets = list.value_offsets();
    for row in 0..list.len() {
        if list.is_null(row) {
            visit(row, None);
            continue;
        }
        let start = usize::try_from(offsets[row]).unwrap_or_default();
        let end = usize::try_from(offsets[row + 1]).unwrap_or_default();
        visit(row, Some((names.as_ref(), values.as_ref(), start..end)));
    }
    Ok(())
}

pub(crate) fn string_at(array: &dyn Array, index: usize) -> Option<&str> {
    if array.is_null(index) {
        return None;
    }
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(index)),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(index)),
        DataType::Utf8View => Some(array.as_string_view().value(index)),
        _ => None,
    }
}

pub(crate) fn bytes_at(array: &dyn Array, index: usize) -> Option<&[u8]> {
    if array.is_null(index) {
        return None;
    }
    match array.data_type() {
        DataType::Binary => Some(array.as_binary::<i32>().value(index)),
        DataType::LargeBinary => Some(array.as_binary::<i64>().value(index)),
        DataType::BinaryView => Some(array.as_binary_view().value(index)),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            string_at(array, index).map(str::as_bytes)
        }
        _ => None,
    }
}

/// `header_text(headers, name) -> utf8`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HeaderText {
    signature: Signature,
}

impl Default for HeaderText {
    fn default() -> Self {
        HeaderText {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for HeaderText {
    fn name(&self) -> &str {
        "header_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_headers_type("header_text", arg_types.first())?;
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [headers, wanted] = arrays.as_slice() else {
            return exec_err!("header_text takes two arguments: headers and a name");
        };
        let wanted = arrow::compute::cast(wanted, &DataType::Utf8)?;
        let mut text = StringBuilder::with_capacity(headers.len(), 0);
        for_each_row(headers, "header_text", |row, pairs| {
            let name = string_at(wanted.as_ref(), row);
            let found = pairs.zip(name).and_then(|((names, values, range), name)| {
                range
                    .into_iter()
                    .find(|index| string_at(names, *index) == Some(name))
                    .and_then(|index| bytes_at(values, index))
                    .and_then(|value| std::str::from_utf8(value).ok())
            });
            text.append_option(found);
        })?;
        Ok(ColumnarValue::Array(Arc::new(text.finish())))
    }
}

/// `has_header(headers, name [, value]) -> boolean`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HasHeader {
    signature: Signature,
}

impl Default for HasHeader {
    fn default() -> Self {
        HasHeader {
            signature: Signature::one_of(
                vec![
                    datafusion::logical_expr::TypeSignature::Any(2),
                    datafusion::logical_expr::TypeSignature::Any(3),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for HasHeader {
    fn name(&self) -> &str {
        "has_header"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_headers_type("has_header", arg_types.first())?;
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (headers, wanted_name, wanted_value) = match arrays.as_slice() {
            [headers, name] => (headers, arrow::compute::cast(name, &DataType::Utf8)?, None),
            [headers, name, value] => (
                headers,
                arrow::compute::cast(name, &DataType::Utf8)?,
                Some(as_binary(value, "has_header")?),
            ),
            _ => return exec_err!("has_header takes headers, a name and optionally a value"),
        };
        let mut result = BooleanBuilder::with_capacity(headers.len());
        for_each_row(headers, "has_header", |row, pairs| {
            let Some(name) = string_at(wanted_name.as_ref(), row) else {
                result.append_null();
                return;
            };
            let value = match &wanted_value {
                Some(values) => match bytes_at(values.as_ref(), row) {
                    Some(value) => Some(value),
                    None => {
                        result.append_null();
                        return;
                    }
                },
                None => None,
            };
            let Some((names, values, range)) = pairs else {
                result.append_null();
                return;
            };
            let found = range.into_iter().any(|index| {
                string_at(names, index) == Some(name)
                    && value.is_none_or(|wanted| bytes_at(values, index) == Some(wanted))
            });
            result.append_value(found);
        })?;
        Ok(ColumnarValue::Array(Arc::new(result.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;
    use hindsight_archive::event::{event_id, AmqpProperties};
    use hindsight_archive::schema::events_to_batch;
    use hindsight_archive::{Bus, Event, Header};

    fn event(offset: i64, payload: &[u8], headers: Vec<Header>) -> Event {
        Event {
            event_id: event_id::kafka("s", "t", 0, offset),
            source: "s".into(),
            bus: Bus::Kafka,
            topic: "t".into(),
            routing_key: None,
            partition: Some(0),
            offset: Some(offset),
            key: None,
            headers,
            payload: Some(payload.to_vec()),
            payload_size: payload.len() as i64,
            payload_truncated: false,
            content_type: None,
            message_id: None,
            correlation_id: None,
            timestamp_type: None,
            amqp: AmqpProperties::default(),
            redelivered: None,
            event_time: offset,
            ingest_time: offset,
        }
    }

    #[tokio::test]
    async fn payload_text_and_header_functions() {
        let batch = events_to_batch(&[
            event(
                0,
                br#"{"a":1}"#,
                vec![Header::new("kind", "x"), Header::new("kind", "y")],
            ),
            event(1, &[0xff, 0x00], vec![Header::new("bin", vec![0xff])]),
            event(2, b"", vec![]),
        ])
        .unwrap();
        let context = SessionContext::new();
        for function in all() {
            context.register_udf(function);
        }
        context.register_batch("e", batch).unwrap();
        let rows = context
            .sql(
                "SELECT utf8_or_null(payload) AS text, utf8_or_null(payload) IS NULL AS invalid, \
                 header_text(headers, 'kind') AS kind, \
                 header_text(headers, 'bin') AS bin, has_header(headers, 'kind') AS any_kind, \
                 has_header(headers, 'kind', 'y') AS kind_y, has_header(headers, 'bin', x'ff') AS bin_ff \
                 FROM e ORDER BY \"offset\"",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&rows)
            .unwrap()
            .to_string();
        let expected = [
            "+---------+---------+------+-----+----------+--------+--------+",
            "| text    | invalid | kind | bin | any_kind | kind_y | bin_ff |",
            "+---------+---------+------+-----+----------+--------+--------+",
            "| {\"a\":1} | false   | x    |     | true     | true   | false  |",
            "|         | true    |      |     | false    | false  | true   |",
            "|         | false   |      |     | false    | false  | false  |",
            "+---------+---------+------+-----+----------+--------+--------+",
        ];
        assert_eq!(text, expected.join("\n"));
    }
}
