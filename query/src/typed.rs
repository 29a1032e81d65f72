//! Typed views of Avro topics: `decoded_<source>_<topic>`, one column per
//! field of the topic's record schema, decoded by `arrow-avro` into real
//! Arrow types (nested records as structs, arrays as lists, maps as maps,
//! timestamps as timestamps), so `SELECT status, avg(amount) FROM
//! decoded_shop_orders GROUP BY 1` works without JSON functions.
//!
//! A view is made when a statement names it, not for every topic: finding
//! a topic's schema reads its newest segment. Its columns:
//! `_event_id`, `_event_time`, `_partition`, `_offset`, `_key`, then the
//! record's fields, then `_decode_error` (why a row's fields are NULL).
//!
//! - The **reader schema** is the newest version the catalog holds of the
//!   subject of the topic's newest Avro event (or that event's writer
//!   schema, when it has no subject: a local file, an import). Every event is decoded with its own writer schema (found as
//!   `decode_payload` finds it: a rule's file, the catalog, the registry)
//!   and resolved to the reader schema by Avro's rules, so a topic whose
//!   schema evolved reads as its latest shape (a field added since is its
//!   default in older events).
//! - A payload that does not decode (another schema, bytes that do not
//!   match, a schema that does not resolve) gives NULL fields and its
//!   reason in `_decode_error`; it never fails the query. Rows are decoded
//!   a batch at a time; a batch with a bad payload is split in halves until
//!   the bad one is alone, so a few bad payloads cost a few extra decodes.
//! - Names are lowercased, and every character but `a-z`, `0-9` and `_`
//!   becomes `_`. Field names keep their case (quote them: `"orderId"`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{new_null_array, Array, ArrayRef, AsArray, RecordBatch, StructArray};
use arrow::datatypes::{DataType, Field, Fields};
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use datafusion::common::{exec_err, ScalarValue};
use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::{ident, lit, Expr, SessionContext};
use datafusion::sql::parser::Statement;
use hindsight_archive::access::Scope;
use hindsight_archive::catalog::{Catalog, SegmentFilter};
use hindsight_schemas::Schemas;

use crate::decode::schema_headers;
use crate::error::{Error, ErrorKind, Result};
use crate::functions::as_binary;

/// The prefix of a typed view's name.
pub const VIEW_PREFIX: &str = "decoded_";

/// How many of a topic's newest events are looked at for its reader schema.
const SAMPLE: usize = 1000;

/// The columns a view adds before the record's fields (and `_decode_error` after).
const EVENT_COLUMNS: [(&str, &str); 5] = [
    ("event_id", "_event_id"),
    ("event_time", "_event_time"),
    ("partition", "_partition"),
    ("offset", "_offset"),
    ("key", "_key"),
];
const DECODE_ERROR_COLUMN: &str = "_decode_error";

/// A topic's view name: `decoded_<source>_<topic>`, normalised.
pub fn view_name(source: &str, topic: &str) -> String {
    let normal = |name: &str| -> String {
        name.chars()
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{VIEW_PREFIX}{}_{}", normal(source), normal(topic))
}

/// Registers the typed view of every `decoded_…` table `statement` names
/// that is not registered yet.
pub(crate) async fn register_named_views(
    context: &SessionContext,
    statement: &Statement,
    catalog: &Catalog,
    schemas: &Arc<Schemas>,
    scope: Option<&Scope>,
) -> Result<()> {
    let state = context.state();
    let wanted: Vec<String> = state
        .resolve_table_references(statement)?
        .into_iter()
        .filter(|reference| reference.schema().is_none())
        .map(|reference| reference.table().to_owned())
        .filter(|name| name.starts_with(VIEW_PREFIX))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let mut topics = catalog.topic_stats().await?;
    if let Some(scope) = scope {
        topics.retain(|stats| scope.allows(&stats.source, &stats.topic));
    }
    for name in wanted {
        if context.table_exist(name.as_str())? {
            continue;
        }
        let matching: Vec<_> = topics
            .iter()
            .filter(|stats| view_name(&stats.source, &stats.topic) == name)
            .collect();
        let stats = match matching.as_slice() {
            [one] => *one,
            [] => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("no archived topic has the typed view {name:?} (a view is decoded_<source>_<topic>, lowercase, other characters as _)"),
                ))
            }
            [..] => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{name:?} names more than one topic ({}); use decode_payload on events",
                        matching
                            .iter()
                            .map(|stats| format!("{}/{}", stats.source, stats.topic))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        };
        let view = typed_view(context, catalog, schemas, &stats.source, &stats.topic).await?;
        context.register_table(name.as_str(), view)?;
    }
    Ok(())
}

async fn typed_view(
    context: &SessionContext,
    catalog: &Catalog,
    schemas: &Arc<Schemas>,
    source: &str,
    topic: &str,
) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
    let reader_json = reader_schema(context, catalog, schemas, source, topic).await?;
    let decoder = TypedDecode::new(schemas, source, topic, reader_json)?;
    let record_fields = decoder.record_fields.clone();
    for field in &record_fields {
        let clashes = EVENT_COLUMNS.iter().any(|(_, alias)| alias == field.name())
            || field.name() == DECODE_ERROR_COLUMN;
        if clashes {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("the schema of {source}/{topic} has a field {:?}, a column the typed view adds; use decode_payload", field.name()),
            ));
        }
    }
    let decode = ScalarUDF::new_from_impl(decoder);
    let decode_error = crate::decode::all(schemas)
        .into_iter()
        .find(|function| function.name() == "decode_error")
        .ok_or_else(|| Error::internal("decode_error is missing"))?;
    let in_topic = ident("source")
        .eq(lit(source))
        .and(ident("topic").eq(lit(topic)));
    let mut inner: Vec<Expr> = EVENT_COLUMNS
        .iter()
        .map(|(column, alias)| ident(*column).alias(*alias))
        .collect();
    inner.push(
        decode
            .call(vec![ident("payload"), ident("headers")])
            .alias("_decoded"),
    );
    inner.push(
        decode_error
            .call(vec![ident("payload"), lit(topic), ident("headers")])
            .alias(DECODE_ERROR_COLUMN),
    );
    let mut outer: Vec<Expr> = EVENT_COLUMNS
        .iter()
        .map(|(_, alias)| ident(*alias))
        .collect();
    outer.extend(
        record_fields
            .iter()
            .map(|field| get_field(ident("_decoded"), field.name().as_str()).alias(field.name())),
    );
    outer.push(ident(DECODE_ERROR_COLUMN));
    let view = context
        .table("events_raw")
        .await?
        .filter(in_topic)?
        .select(inner)?
        .select(outer)?;
    Ok(view.into_view())
}

/// The writer schema of the topic's newest Avro event, as Avro JSON.
async fn reader_schema(
    context: &SessionContext,
    catalog: &Catalog,
    schemas: &Arc<Schemas>,
    source: &str,
    topic: &str,
) -> Result<String> {
    let segments = catalog
        .segments(&SegmentFilter {
            source: Some(source.to_owned()),
            topic: Some(topic.to_owned()),
            ..SegmentFilter::default()
        })
        .await?;
    let Some(newest) = segments
        .iter()
        .max_by_key(|record| record.segment.max_event_time)
    else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{source}/{topic} has no committed segments"),
        ));
    };
    let since = lit(ScalarValue::TimestampMicrosecond(
        Some(newest.segment.min_event_time),
        Some("UTC".into()),
    ));
    let sample = context
        .table("events_raw")
        .await?
        .filter(
            ident("source")
                .eq(lit(source))
                .and(ident("topic").eq(lit(topic)))
                .and(ident("event_time").gt_eq(since)),
        )?
        .sort(vec![
            ident("event_time").sort(false, false),
            ident("offset").sort(false, false),
        ])?
        .limit(0, Some(SAMPLE))?
        .select(vec![ident("payload"), ident("headers")])?
        .collect()
        .await?;
    let mut last_error = None;
    for batch in &sample {
        let payloads = as_binary(batch.column(0), "the typed view")?;
        let payloads = payloads.as_binary::<i32>();
        let headers = schema_headers(Some(batch.column(1)), "the typed view", batch.num_rows())?;
        for row in 0..batch.num_rows() {
            if payloads.is_null(row) {
                continue;
            }
            let header = headers.get(row).and_then(Option::as_deref);
            let found = schemas
                .avro_payload(Some(source), Some(topic), payloads.value(row), header)
                .and_then(|(writer, _)| schemas.avro_schema_json(&schemas.avro_latest(writer)));
            match found {
                Ok(json) => return Ok(json),
                Err(error) => last_error = Some(error.message),
            }
        }
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "{source}/{topic} has no Avro event among its newest {SAMPLE} that decodes{}; decode_payload shows each event's reason",
            last_error.map(|error| format!(" (the last: {error})")).unwrap_or_default()
        ),
    ))
}

/// Rows (by index in the batch) and their Avro bodies.
type Bodies<'a> = Vec<(usize, &'a [u8])>;

/// The view's decoding function: payload and headers to the record struct.
#[derive(Debug)]
struct TypedDecode {
    name: String,
    source: String,
    topic: String,
    schemas: Arc<Schemas>,
    reader_json: String,
    /// The record's fields as `arrow-avro` decodes them.
    record_fields: Fields,
    /// The struct returned: the same fields, each nullable.
    output_type: DataType,
    /// Writer schemas' JSON by writer identity (an error stays an error).
    writers: Mutex<HashMap<(usize, bool), std::result::Result<String, String>>>,
    signature: Signature,
}

impl TypedDecode {
    fn new(schemas: &Arc<Schemas>, source: &str, topic: &str, reader_json: String) -> Result<Self> {
        let probe = build_decoder(&reader_json, &reader_json, 1).map_err(|error| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("the Avro schema of {source}/{topic} has no typed view: {error}"),
            )
        })?;
        let record_fields = probe.schema().fields().clone();
        let output_type = DataType::Struct(
            record_fields
                .iter()
                .map(|field| Arc::new(field.as_ref().clone().with_nullable(true)))
                .collect::<Vec<Arc<Field>>>()
                .into(),
        );
        Ok(TypedDecode {
            name: format!("decode_avro_{}", view_name(source, topic)),
            source: source.to_owned(),
            topic: topic.to_owned(),
            schemas: Arc::clone(schemas),
            reader_json,
            record_fields,
            output_type,
            writers: Mutex::new(HashMap::new()),
            signature: Signature::any(2, Volatility::Immutable),
        })
    }

    fn writer_json(
        &self,
        writer: &hindsight_schemas::AvroWriter,
    ) -> std::result::Result<String, String> {
        let mut writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
        writers
            .entry(writer.identity())
            .or_insert_with(|| {
                self.schemas
                    .avro_schema_json(writer)
                    .map_err(|error| error.message)
            })
            .clone()
    }

    /// Decodes `bodies` (rows of one writer) into `pieces`; a failing run
    /// is split until each bad body is alone, and its error recorded.
    fn decode_or_split(
        &self,
        writer_json: &str,
        bodies: &[(usize, &[u8])],
        pieces: &mut Vec<(Vec<usize>, StructArray)>,
        errors: &mut HashMap<usize, String>,
    ) {
        match decode_bodies(writer_json, &self.reader_json, bodies) {
            Ok(batch) => {
                let rows = bodies.iter().map(|(row, _)| *row).collect();
                pieces.push((rows, StructArray::from(batch)));
            }
            Err(error) => {
                if let [(row, _)] = bodies {
                    errors.insert(*row, error);
                } else {
                    let (first, second) = bodies.split_at(bodies.len() / 2);
                    self.decode_or_split(writer_json, first, pieces, errors);
                    self.decode_or_split(writer_json, second, pieces, errors);
                }
            }
        }
    }
}

impl PartialEq for TypedDecode {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.reader_json == other.reader_json
    }
}

impl Eq for TypedDecode {}

impl std::hash::Hash for TypedDecode {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for TypedDecode {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(self.output_type.clone())
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [payloads, headers] = arrays.as_slice() else {
            return exec_err!("{} takes the payload and headers columns", self.name);
        };
        let payloads = as_binary(payloads, &self.name)?;
        let payloads = payloads.as_binary::<i32>();
        let headers = schema_headers(Some(headers), &self.name, rows)?;
        // Rows by writer schema, in row order.
        let mut by_writer: HashMap<(usize, bool), (String, Bodies<'_>)> = HashMap::new();
        let mut errors: HashMap<usize, String> = HashMap::new();
        for row in 0..rows.min(payloads.len()) {
            if payloads.is_null(row) {
                continue;
            }
            let header = headers.get(row).and_then(Option::as_deref);
            let payload = payloads.value(row);
            let found = self
                .schemas
                .avro_payload(Some(&self.source), Some(&self.topic), payload, header)
                .map_err(|error| error.message)
                .and_then(|(writer, body)| {
                    Ok((writer.identity(), self.writer_json(&writer)?, body))
                });
            match found {
                Ok((identity, json, body)) => by_writer
                    .entry(identity)
                    .or_insert_with(|| (json, Vec::new()))
                    .1
                    .push((row, body)),
                Err(error) => {
                    errors.insert(row, error);
                }
            }
        }
        let mut pieces = Vec::new();
        for (json, bodies) in by_writer.values() {
            self.decode_or_split(json, bodies, &mut pieces, &mut errors);
        }
        let DataType::Struct(output_fields) = &self.output_type else {
            return exec_err!("{} returns a struct", self.name);
        };
        let null_row = new_null_array(&self.output_type, 1);
        let mut arrays: Vec<ArrayRef> = vec![null_row];
        let mut place = vec![(0usize, 0usize); rows];
        for (rows_of_piece, piece) in pieces {
            let (_, columns, nulls) = piece.into_parts();
            let piece = StructArray::try_new(output_fields.clone(), columns, nulls)?;
            arrays.push(Arc::new(piece));
            let index = arrays.len() - 1;
            for (at, row) in rows_of_piece.into_iter().enumerate() {
                place[row] = (index, at);
            }
        }
        let refs: Vec<&dyn Array> = arrays.iter().map(AsRef::as_ref).collect();
        let out = arrow::compute::interleave(&refs, &place)?;
        Ok(ColumnarValue::Array(out))
    }
}

/// A decoder of bodies written with `writer_json`, resolved to `reader_json`.
fn build_decoder(
    writer_json: &str,
    reader_json: &str,
    batch_size: usize,
) -> std::result::Result<Decoder, String> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store
        .set(Fingerprint::Id(0), AvroSchema::new(writer_json.to_owned()))
        .map_err(|error| error.to_string())?;
    ReaderBuilder::new()
        .with_batch_size(batch_size.max(1))
        .with_reader_schema(AvroSchema::new(reader_json.to_owned()))
        .with_writer_schema_store(store)
        .with_active_fingerprint(Fingerprint::Id(0))
        .build_decoder()
        .map_err(|error| error.to_string())
}

/// Decodes every body or fails: each must be exactly one record.
fn decode_bodies(
    writer_json: &str,
    reader_json: &str,
    bodies: &[(usize, &[u8])],
) -> std::result::Result<RecordBatch, String> {
    let mut decoder = build_decoder(writer_json, reader_json, bodies.len())?;
    let mut framed = Vec::with_capacity(bodies.iter().map(|(_, body)| body.len() + 5).sum());
    for (_, body) in bodies {
        // The Confluent prefix with id 0: the only writer this decoder knows.
        framed.extend_from_slice(&[0, 0, 0, 0, 0]);
        framed.extend_from_slice(body);
    }
    let consumed = decoder.decode(&framed).map_err(|error| error.to_string())?;
    if consumed != framed.len() {
        return Err("the body ends inside a value: it is truncated".to_owned());
    }
    let batch = decoder
        .flush()
        .map_err(|error| error.to_string())?
        .ok_or_else(|| "nothing decoded".to_owned())?;
    if batch.num_rows() != bodies.len() {
        return Err("the body does not match its schema".to_owned());
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type":"record","name":"T","fields":[
        {"name":"id","type":"string"},
        {"name":"n","type":"long"},
        {"name":"tags","type":{"type":"array","items":"long"}}]}"#;

    fn zigzag(value: i64) -> Vec<u8> {
        let mut n = ((value << 1) ^ (value >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            if n < 0x80 {
                out.push(n as u8);
                return out;
            }
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
    }

    fn body(id: &str, n: i64, tags: &[i64]) -> Vec<u8> {
        let mut out = zigzag(id.len() as i64);
        out.extend_from_slice(id.as_bytes());
        out.extend(zigzag(n));
        if !tags.is_empty() {
            out.extend(zigzag(tags.len() as i64));
            for tag in tags {
                out.extend(zigzag(*tag));
            }
        }
        out.push(0);
        out
    }

    fn decode(bodies: &[Vec<u8>]) -> (usize, HashMap<usize, String>) {
        let decoder = TypedDecode::new(&Schemas::plain(), "s", "t", SCHEMA.to_owned()).unwrap();
        let rows: Vec<(usize, &[u8])> = bodies
            .iter()
            .enumerate()
            .map(|(row, body)| (row, body.as_slice()))
            .collect();
        let mut pieces = Vec::new();
        let mut errors = HashMap::new();
        decoder.decode_or_split(SCHEMA, &rows, &mut pieces, &mut errors);
        let decoded = pieces.iter().map(|(rows, _)| rows.len()).sum();
        (decoded, errors)
    }

    #[test]
    fn a_schema_with_references_gets_real_columns() {
        let address = r#"{"type": "record", "name": "Address", "namespace": "c",
            "fields": [{"name": "city", "type": "string"}]}"#
            .to_owned();
        let customer = hindsight_schemas::avro::AvroSchema::parse(
            r#"{"type": "record", "name": "Customer", "namespace": "c", "fields": [
                {"name": "home", "type": "c.Address"},
                {"name": "past", "type": {"type": "array", "items": "c.Address"}}]}"#,
            &[address],
        )
        .unwrap();
        let json = customer.to_json().unwrap();
        let mut body = zigzag(4);
        body.extend(b"Oslo");
        body.extend(zigzag(1));
        body.extend(zigzag(3));
        body.extend(b"Rio");
        body.push(0);
        let batch = decode_bodies(&json, &json, &[(0, body.as_slice())]).unwrap();
        let home = batch.column_by_name("home").unwrap().as_struct();
        let city = home.column_by_name("city").unwrap();
        assert_eq!(city.as_string::<i32>().value(0), "Oslo");
        let past = batch.column_by_name("past").unwrap().as_list::<i32>();
        assert_eq!(past.value(0).len(), 1);
    }

    #[test]
    fn bad_bodies_among_good_ones_are_singled_out() {
        let good = body("a", 7, &[1, 2, 3]);
        let mut bodies: Vec<Vec<u8>> = (0..100).map(|i| body(&format!("e{i}"), i, &[i])).collect();
        bodies[10] = good[..good.len() - 2].to_vec(); // truncated
        bodies[50] = [good.clone(), vec![0, 0]].concat(); // bytes left over
        bodies[77] = vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]; // overlong varint
        let (decoded, errors) = decode(&bodies);
        assert_eq!(decoded, 97);
        let mut bad: Vec<usize> = errors.keys().copied().collect();
        bad.sort_unstable();
        assert_eq!(bad, vec![10, 50, 77], "{errors:?}");
    }

    #[test]
    fn every_prefix_of_a_body_and_a_huge_block_count_are_errors() {
        let good = body("abc", 12345, &[5, 6, 7, 8]);
        for cut in 0..good.len() {
            let (decoded, errors) = decode(&[good[..cut].to_vec()]);
            assert_eq!((decoded, errors.len()), (0, 1), "prefix of {cut} bytes");
        }
        let mut huge = zigzag(1);
        huge.push(b'x');
        huge.extend(zigzag(1));
        huge.extend(zigzag(i64::MAX / 2));
        huge.push(2);
        let (decoded, errors) = decode(&[huge]);
        assert_eq!((decoded, errors.len()), (0, 1));
    }

    #[test]
    fn view_names_are_lowercase_with_underscores() {
        assert_eq!(
            view_name("Shop-EU", "orders.v1"),
            "decoded_shop_eu_orders_v1"
        );
    }
}
