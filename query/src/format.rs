//! Query results as bytes: a table for people, NDJSON, JSON, CSV, Parquet and
//! Arrow IPC for tools. Every format but `table` streams: [`Encoder`] turns
//! each record batch into bytes as it arrives.
//!
//! Binary columns (`payload`, `key`) are hex in JSON and CSV; select
//! `payload_text` or `encode(payload, 'base64')` for text. Nested columns
//! (`headers`) are JSON in NDJSON and JSON, and their display text in CSV.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::writer::StreamWriter;
use arrow::json::writer::LineDelimited;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};

/// Output formats of `hindsight query` and `POST /api/v1/sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
    Ndjson,
    Csv,
    Parquet,
    ArrowIpc,
}

impl FromStr for OutputFormat {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "table" => Ok(OutputFormat::Table),
            "json" => Ok(OutputFormat::Json),
            "ndjson" => Ok(OutputFormat::Ndjson),
            "csv" => Ok(OutputFormat::Csv),
            "parquet" => Ok(OutputFormat::Parquet),
            "arrow" => Ok(OutputFormat::ArrowIpc),
            other => Err(Error::invalid_input(format!(
                "unknown format {other:?}: use table, json, ndjson, csv, parquet or arrow"
            ))),
        }
    }
}

impl OutputFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Table => "text/plain; charset=utf-8",
            OutputFormat::Json => "application/json",
            OutputFormat::Ndjson => "application/x-ndjson",
            OutputFormat::Csv => "text/csv; charset=utf-8",
            OutputFormat::Parquet => "application/vnd.apache.parquet",
            OutputFormat::ArrowIpc => "application/vnd.apache.arrow.stream",
        }
    }

    /// The format an HTTP `Accept` header asks for; `None` when it names
    /// nothing this API produces. No header, or `*/*`, means NDJSON.
    pub fn from_accept(accept: Option<&str>) -> Option<OutputFormat> {
        let Some(accept) = accept else {
            return Some(OutputFormat::Ndjson);
        };
        accept.split(',').find_map(|item| {
            let media = item.split(';').next().unwrap_or_default().trim();
            match media.to_ascii_lowercase().as_str() {
                "application/x-ndjson" | "application/jsonl" | "application/json-seq" => {
                    Some(OutputFormat::Ndjson)
                }
                "*/*" | "application/*" | "" => Some(OutputFormat::Ndjson),
                "application/json" => Some(OutputFormat::Json),
                "text/csv" | "text/*" => Some(OutputFormat::Csv),
                "application/vnd.apache.arrow.stream" => Some(OutputFormat::ArrowIpc),
                "application/vnd.apache.parquet" => Some(OutputFormat::Parquet),
                _ => None,
            }
        })
    }
}

fn arrow_error(error: ArrowError) -> Error {
    Error::internal(format!("cannot encode the result: {error}"))
}

fn parquet_error(error: parquet::errors::ParquetError) -> Error {
    Error::internal(format!("cannot encode the result as parquet: {error}"))
}

/// Turns record batches into bytes, one batch at a time.
pub struct Encoder {
    state: EncoderState,
}

enum EncoderState {
    Ndjson,
    Json { rows_written: u64 },
    Csv { header_written: bool },
    Arrow(Box<StreamWriter<Vec<u8>>>),
    Parquet(Box<ArrowWriter<Vec<u8>>>),
    Table { batches: Vec<RecordBatch> },
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoder")
    }
}

impl Encoder {
    pub fn new(format: OutputFormat, schema: &SchemaRef) -> Result<Self> {
        let state = match format {
            OutputFormat::Ndjson => EncoderState::Ndjson,
            OutputFormat::Json => EncoderState::Json { rows_written: 0 },
            OutputFormat::Csv => EncoderState::Csv {
                header_written: false,
            },
            OutputFormat::ArrowIpc => EncoderState::Arrow(Box::new(
                StreamWriter::try_new(Vec::new(), schema).map_err(arrow_error)?,
            )),
            OutputFormat::Parquet => {
                let properties = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .build();
                EncoderState::Parquet(Box::new(
                    ArrowWriter::try_new(Vec::new(), Arc::clone(schema), Some(properties))
                        .map_err(parquet_error)?,
                ))
            }
            OutputFormat::Table => EncoderState::Table {
                batches: Vec::new(),
            },
        };
        Ok(Encoder { state })
    }

    /// The bytes of one batch (possibly empty: Parquet buffers row groups).
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>> {
        match &mut self.state {
            EncoderState::Ndjson => ndjson_lines(batch),
            EncoderState::Json { rows_written } => {
                let lines = ndjson_lines(batch)?;
                let mut out = Vec::with_capacity(lines.len() + 2);
                for line in lines.split(|byte| *byte == b'\n').filter(|l| !l.is_empty()) {
                    out.extend_from_slice(if *rows_written == 0 { b"[\n" } else { b",\n" });
                    out.extend_from_slice(line);
                    *rows_written += 1;
                }
                Ok(out)
            }
            EncoderState::Csv { header_written } => {
                if batch.num_rows() == 0 && *header_written {
                    return Ok(Vec::new());
                }
                let flat = nested_as_text(batch)?;
                let mut out = Vec::new();
                {
                    let mut writer = arrow::csv::WriterBuilder::new()
                        .with_header(!*header_written)
                        .build(&mut out);
                    writer.write(&flat).map_err(arrow_error)?;
                }
                *header_written = true;
                Ok(out)
            }
            EncoderState::Arrow(writer) => {
                writer.write(batch).map_err(arrow_error)?;
                Ok(std::mem::take(writer.get_mut()))
            }
            EncoderState::Parquet(writer) => {
                writer.write(batch).map_err(parquet_error)?;
                Ok(std::mem::take(writer.inner_mut()))
            }
            EncoderState::Table { batches } => {
                batches.push(batch.clone());
                Ok(Vec::new())
            }
        }
    }

    /// The closing bytes: `]`, the Arrow end-of-stream marker, the Parquet
    /// footer, or the whole table.
    pub fn finish(&mut self, schema: &SchemaRef) -> Result<Vec<u8>> {
        match &mut self.state {
            EncoderState::Ndjson => Ok(Vec::new()),
            EncoderState::Json { rows_written } => Ok(if *rows_written == 0 {
                b"[]\n".to_vec()
            } else {
                b"\n]\n".to_vec()
            }),
            EncoderState::Csv { header_written } => {
                if *header_written {
                    return Ok(Vec::new());
                }
                let empty = RecordBatch::new_empty(Arc::clone(schema));
                self.batch(&empty)
            }
            EncoderState::Arrow(writer) => {
                writer.finish().map_err(arrow_error)?;
                Ok(std::mem::take(writer.get_mut()))
            }
            EncoderState::Parquet(writer) => {
                writer.finish().map_err(parquet_error)?;
                Ok(std::mem::take(writer.inner_mut()))
            }
            EncoderState::Table { batches } => {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                let mut text = if batches.is_empty() {
                    let empty = RecordBatch::new_empty(Arc::clone(schema));
                    arrow::util::pretty::pretty_format_batches(&[empty])
                } else {
                    arrow::util::pretty::pretty_format_batches(batches)
                }
                .map_err(arrow_error)?
                .to_string();
                text.push_str(&format!(
                    "\n{rows} row{}\n",
                    if rows == 1 { "" } else { "s" }
                ));
                Ok(text.into_bytes())
            }
        }
    }
}

fn ndjson_lines(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, LineDelimited>(&mut out);
        writer.write(batch).map_err(arrow_error)?;
        writer.finish().map_err(arrow_error)?;
    }
    Ok(out)
}

/// CSV has no nested values: lists, structs and maps become their display text.
fn nested_as_text(batch: &RecordBatch) -> Result<RecordBatch> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|field| field.data_type().is_nested())
    {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !field.data_type().is_nested() {
            fields.push(Arc::clone(field));
            columns.push(Arc::clone(column));
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options).map_err(arrow_error)?;
        let mut text = StringBuilder::with_capacity(column.len(), column.len() * 16);
        for row in 0..column.len() {
            if column.is_null(row) {
                text.append_null();
            } else {
                text.append_value(formatter.value(row).to_string());
            }
        }
        fields.push(Arc::new(Field::new(field.name(), DataType::Utf8, true)));
        columns.push(Arc::new(text.finish()));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn sample() -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a,b"), None])),
            ],
        )
        .unwrap();
        (schema, batch)
    }

    fn encode(format: OutputFormat, batches: &[RecordBatch], schema: &SchemaRef) -> Vec<u8> {
        let mut encoder = Encoder::new(format, schema).unwrap();
        let mut out = Vec::new();
        for batch in batches {
            out.extend(encoder.batch(batch).unwrap());
        }
        out.extend(encoder.finish(schema).unwrap());
        out
    }

    #[test]
    fn text_formats_encode_rows_and_nulls() {
        let (schema, batch) = sample();
        let batches = [batch.clone(), batch];
        let ndjson = String::from_utf8(encode(OutputFormat::Ndjson, &batches, &schema)).unwrap();
        assert_eq!(ndjson.lines().count(), 4);
        assert_eq!(ndjson.lines().nth(1), Some(r#"{"n":2,"s":null}"#));
        let json: serde_json::Value =
            serde_json::from_slice(&encode(OutputFormat::Json, &batches, &schema)).unwrap();
        assert_eq!(json.as_array().map(Vec::len), Some(4));
        assert_eq!(json[0]["s"], "a,b");
        let csv = String::from_utf8(encode(OutputFormat::Csv, &batches, &schema)).unwrap();
        assert_eq!(csv, "n,s\n1,\"a,b\"\n2,\n1,\"a,b\"\n2,\n");
        let empty_json = encode(OutputFormat::Json, &[], &schema);
        assert_eq!(empty_json, b"[]\n");
        let empty_csv = String::from_utf8(encode(OutputFormat::Csv, &[], &schema)).unwrap();
        assert_eq!(empty_csv, "n,s\n");
        let table = String::from_utf8(encode(OutputFormat::Table, &batches, &schema)).unwrap();
        assert!(table.contains("| a,b |"), "{table}");
        assert!(table.ends_with("4 rows\n"), "{table}");
    }

    #[test]
    fn binary_formats_read_back() {
        let (schema, batch) = sample();
        let arrow = encode(
            OutputFormat::ArrowIpc,
            std::slice::from_ref(&batch),
            &schema,
        );
        let reader = arrow::ipc::reader::StreamReader::try_new(arrow.as_slice(), None).unwrap();
        let read: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(read, vec![batch.clone()]);
        let parquet = encode(OutputFormat::Parquet, std::slice::from_ref(&batch), &schema);
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(parquet),
        )
        .unwrap()
        .build()
        .unwrap();
        let read: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(read, vec![batch]);
    }

    #[test]
    fn accept_headers_choose_formats() {
        assert_eq!(OutputFormat::from_accept(None), Some(OutputFormat::Ndjson));
        assert_eq!(
            OutputFormat::from_accept(Some("text/csv;q=0.9, */*;q=0.1")),
            Some(OutputFormat::Csv)
        );
        assert_eq!(
            OutputFormat::from_accept(Some("application/vnd.apache.arrow.stream")),
            Some(OutputFormat::ArrowIpc)
        );
        assert_eq!(OutputFormat::from_accept(Some("image/png")), None);
    }
}
