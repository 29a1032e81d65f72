//! Page checksums: every Parquet page header carries the CRC-32 of its page.
//!
//! Writing: the `parquet` crate's writer leaves the header's `crc` field
//! empty (59.x: "TODO: Add support for crc checksum"). So a segment is
//! encoded as usual and then re-framed: each column chunk is copied page by
//! page with the checksum added to the page header (a Thrift compact struct,
//! field 4), and spliced into a new file with `append_column`, which moves
//! the chunk's offsets. Page indexes, bloom filters, statistics and key-value
//! metadata are carried over unchanged.
//!
//! Reading: [`verify_pages_in_range`] checks every page inside a run of bytes
//! against its header. Every reader of segments calls it: the SQL scan on
//! each range it fetches (`query/src/segment_reader.rs`), [`decode_segment`] (replay)
//! on the whole object, and `hindsight verify`. The errors name the column;
//! callers add the segment's key. (The `parquet` crate's own check, its `crc`
//! feature, is left off: it would check the same pages again, unnamed, and
//! rebuild DataFusion with it.)
//!
//! The checksum is the standard CRC-32 (ISO-HDLC, as zlib) of the page bytes
//! after the header, as the Parquet format defines it, so pyarrow
//! (`page_checksum_verification=True`) and Spark check it too.
//!
//! [`decode_segment`]: crate::segment::decode_segment

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use parquet::file::properties::{ReaderProperties, WriterProperties};
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;

use crate::error::{Error, ErrorKind, Result};

/// CRC-32 (ISO-HDLC, the zlib one), sixteen bytes at a time.
static PAGE_CRC: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);

/// Thrift compact type codes used below.
const THRIFT_I32: u8 = 5;
const THRIFT_STOP: u8 = 0;
/// `PageHeader` field ids.
const FIELD_COMPRESSED_PAGE_SIZE: i16 = 3;
const FIELD_CRC: i16 = 4;

/// Re-frames an encoded Parquet file so that every page header carries its CRC.
pub(crate) fn add_page_checksums(encoded: Bytes, properties: WriterProperties) -> Result<Bytes> {
    let options = ReadOptionsBuilder::new()
        .with_page_index()
        .with_reader_properties(
            ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    let reader = SerializedFileReader::new_with_options(encoded.clone(), options)?;
    let metadata = reader.metadata();
    let file_metadata = metadata.file_metadata();
    let own_keys: Vec<String> = properties
        .key_value_metadata()
        .map(|pairs| pairs.iter().map(|pair| pair.key.clone()).collect())
        .unwrap_or_default();
    let mut output = Vec::with_capacity(encoded.len() + encoded.len() / 64 + 1024);
    let mut writer = SerializedFileWriter::new(
        &mut output,
        file_metadata.schema_descr().root_schema_ptr(),
        Arc::new(properties),
    )?;
    for (row_group_index, row_group) in metadata.row_groups().iter().enumerate() {
        let row_group_reader = reader.get_row_group(row_group_index)?;
        let mut row_group_writer = writer.next_row_group()?;
        for (column_index, column) in row_group.columns().iter().enumerate() {
            let (start, length) = column.byte_range();
            let chunk_range = usize::try_from(start)
                .ok()
                .zip(usize::try_from(start + length).ok())
                .filter(|(_, end)| *end <= encoded.len())
                .ok_or_else(|| Error::internal("column chunk lies outside the segment"))?;
            let chunk = encoded.slice(chunk_range.0..chunk_range.1);
            let framed = frame_chunk(&chunk)?;
            let relative = |offset: i64| offset - start as i64;
            let moved = |offset: i64| framed.moved_offset(relative(offset));
            let mut offset_index = metadata
                .offset_index()
                .and_then(|index| index.get(row_group_index)?.get(column_index).cloned());
            if let Some(offset_index) = offset_index.as_mut() {
                for location in &mut offset_index.page_locations {
                    let (new_offset, added) = framed.moved_page(relative(location.offset))?;
                    location.offset = new_offset;
                    location.compressed_page_size += added;
                }
            }
            let added_total = framed.bytes.len() as i64 - length as i64;
            let chunk_metadata = column
                .clone()
                .into_builder()
                .set_total_compressed_size(framed.bytes.len() as i64)
                .set_total_uncompressed_size(column.uncompressed_size() + added_total)
                .set_data_page_offset(moved(column.data_page_offset())?)
                .set_dictionary_page_offset(column.dictionary_page_offset().map(moved).transpose()?)
                .build()?;
            let close = ColumnCloseResult {
                bytes_written: framed.bytes.len() as u64,
                rows_written: u64::try_from(row_group.num_rows()).unwrap_or_default(),
                metadata: chunk_metadata,
                bloom_filter: row_group_reader
                    .get_column_bloom_filter(column_index)
                    .cloned(),
                column_index: metadata
                    .column_index()
                    .and_then(|index| index.get(row_group_index)?.get(column_index).cloned()),
                offset_index,
            };
            row_group_writer.append_column(&Bytes::from(framed.bytes), close)?;
        }
        row_group_writer.close()?;
    }
    for pair in file_metadata.key_value_metadata().into_iter().flatten() {
        if !own_keys.contains(&pair.key) {
            writer.append_key_value_metadata(pair.clone());
        }
    }
    writer.close()?;
    Ok(Bytes::from(output))
}

/// One column chunk with checksums in its page headers.
struct FramedChunk {
    bytes: Vec<u8>,
    /// Old page start (relative to the chunk) to (new start, bytes added).
    pages: HashMap<i64, (i64, i32)>,
}

impl FramedChunk {
    fn moved_page(&self, old_offset: i64) -> Result<(i64, i32)> {
        self.pages
            .get(&old_offset)
            .copied()
            .ok_or_else(|| Error::internal("page index names an offset that starts no page"))
    }

    fn moved_offset(&self, old_offset: i64) -> Result<i64> {
        Ok(self.moved_page(old_offset)?.0)
    }
}

/// Copies a column chunk page by page, adding each page's CRC to its header.
fn frame_chunk(chunk: &[u8]) -> Result<FramedChunk> {
    let mut framed = FramedChunk {
        bytes: Vec::with_capacity(chunk.len() + chunk.len() / 64 + 64),
        pages: HashMap::new(),
    };
    let mut position = 0;
    while position < chunk.len() {
        let header = parse_page_header(&chunk[position..])?;
        let data_start = position + header.length;
        let data_end = data_start + header.compressed_page_size;
        let data = chunk
            .get(data_start..data_end)
            .ok_or_else(|| Error::internal("a parquet page runs past its column chunk"))?;
        let new_start = framed.bytes.len();
        write_header_with_crc(&header.fields, PAGE_CRC.checksum(data), &mut framed.bytes);
        let added = (framed.bytes.len() - new_start) as i32 - header.length as i32;
        framed.bytes.extend_from_slice(data);
        framed
            .pages
            .insert(position as i64, (new_start as i64, added));
        position = data_end;
    }
    Ok(framed)
}

/// A page header as raw Thrift fields: (id, compact type, encoded value).
pub(crate) struct RawPageHeader<'a> {
    pub(crate) fields: Vec<(i16, u8, &'a [u8])>,
    /// Bytes the header takes, the stop byte included.
    pub(crate) length: usize,
    pub(crate) compressed_page_size: usize,
}

pub(crate) fn parse_page_header(bytes: &[u8]) -> Result<RawPageHeader<'_>> {
    let mut cursor = ThriftCursor { bytes, position: 0 };
    let mut fields = Vec::new();
    let mut last_id = 0i16;
    let mut compressed_page_size = None;
    loop {
        let (id, field_type) = match cursor.field_header(last_id)? {
            None => break,
            Some(field) => field,
        };
        let value_start = cursor.position;
        if id == FIELD_COMPRESSED_PAGE_SIZE && field_type == THRIFT_I32 {
            compressed_page_size = usize::try_from(zigzag_decode(cursor.varint()?)).ok();
        } else {
            cursor.skip(field_type, 0)?;
        }
        fields.push((id, field_type, &bytes[value_start..cursor.position]));
        last_id = id;
    }
    Ok(RawPageHeader {
        fields,
        length: cursor.position,
        compressed_page_size: compressed_page_size
            .ok_or_else(|| Error::internal("a parquet page header has no page size"))?,
    })
}

fn write_header_with_crc(fields: &[(i16, u8, &[u8])], crc: u32, output: &mut Vec<u8>) {
    let mut crc_value = Vec::with_capacity(5);
    // The Thrift field is an i32: the same 32 bits, read as signed.
    write_varint(zigzag_encode(i64::from(crc as i32)), &mut crc_value);
    let already_has_crc = fields.iter().any(|(id, _, _)| *id == FIELD_CRC);
    let mut with_crc: Vec<(i16, u8, &[u8])> = fields.to_vec();
    if !already_has_crc {
        let insert_at = with_crc
            .iter()
            .position(|(id, _, _)| *id > FIELD_CRC)
            .unwrap_or(with_crc.len());
        with_crc.insert(insert_at, (FIELD_CRC, THRIFT_I32, &crc_value));
    }
    let mut last_id = 0i16;
    for (id, field_type, value) in with_crc {
        let delta = id - last_id;
        if (1..=15).contains(&delta) {
            output.push(((delta as u8) << 4) | field_type);
        } else {
            output.push(field_type);
            write_varint(zigzag_encode(i64::from(id)), output);
        }
        output.extend_from_slice(value);
        last_id = id;
    }
    output.push(THRIFT_STOP);
}

fn zigzag_encode(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn zigzag_decode(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn write_varint(mut value: u64, output: &mut Vec<u8>) {
    while value >= 0x80 {
        output.push((value as u8) | 0x80);
        value >>= 7;
    }
    output.push(value as u8);
}

/// Just enough of the Thrift compact protocol to walk a page header.
struct ThriftCursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl ThriftCursor<'_> {
    fn byte(&mut self) -> Result<u8> {
        let byte = *self
            .bytes
            .get(self.position)
            .ok_or_else(|| Error::internal("a parquet page header is cut short"))?;
        self.position += 1;
        Ok(byte)
    }

    fn advance(&mut self, count: usize) -> Result<()> {
        if self.position + count > self.bytes.len() {
            return Err(Error::internal("a parquet page header is cut short"));
        }
        self.position += count;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::internal("a parquet page header has a bad varint"))
    }

    /// The next field's (id, type), or `None` at the struct's stop byte.
    fn field_header(&mut self, last_id: i16) -> Result<Option<(i16, u8)>> {
        let byte = self.byte()?;
        if byte == THRIFT_STOP {
            return Ok(None);
        }
        let field_type = byte & 0x0f;
        let delta = i16::from(byte >> 4);
        let id = if delta == 0 {
            i16::try_from(zigzag_decode(self.varint()?))
                .map_err(|_| Error::internal("a parquet page header has a bad field id"))?
        } else {
            last_id + delta
        };
        Ok(Some((id, field_type)))
    }

    /// Skips one element of a list, set or map: there a boolean takes a byte.
    fn skip_element(&mut self, element_type: u8, depth: usize) -> Result<()> {
        if matches!(element_type, 1 | 2) {
            return self.advance(1);
        }
        self.skip(element_type, depth)
    }

    /// Skips one value of a compact type. `depth` bounds nesting.
    fn skip(&mut self, field_type: u8, depth: usize) -> Result<()> {
        if depth > 32 {
            return Err(Error::internal("a parquet page header nests too deep"));
        }
        match field_type {
            // Booleans in a field carry their value in the type.
            1 | 2 => Ok(()),
            3 => self.advance(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.advance(8),
            8 => {
                let length = usize::try_from(self.varint()?)
                    .map_err(|_| Error::internal("a parquet page header is too long"))?;
                self.advance(length)
            }
            9 | 10 => {
                let header = self.byte()?;
                let element_type = header & 0x0f;
                let mut count = u64::from(header >> 4);
                if count == 15 {
                    count = self.varint()?;
                }
                for _ in 0..count {
                    self.skip_element(element_type, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let count = self.varint()?;
                if count == 0 {
                    return Ok(());
                }
                let types = self.byte()?;
                for _ in 0..count {
                    self.skip_element(types >> 4, depth + 1)?;
                    self.skip_element(types & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => {
                let mut last_id = 0;
                while let Some((id, inner_type)) = self.field_header(last_id)? {
                    self.skip(inner_type, depth + 1)?;
                    last_id = id;
                }
                Ok(())
            }
            other => Err(Error::internal(format!(
                "a parquet page header has an unknown thrift type {other}"
            ))),
        }
    }
}

/// Checks the checksum of every page that lies wholly inside `bytes`, which
/// were read from `range_start` of a segment described by `metadata`. Pages
/// without a checksum (segments written before checksums) pass. The reader
/// under SQL calls this on every fetch, so a damaged page fails the query
/// with the segment's name before the decoder sees it; `hindsight verify`
/// calls it on whole objects.
pub fn verify_pages_in_range(
    metadata: &ParquetMetaData,
    range_start: u64,
    bytes: &[u8],
) -> Result<()> {
    let range_end = range_start + bytes.len() as u64;
    let inside = |start: u64, length: u64| start >= range_start && start + length <= range_end;
    for (row_group_index, row_group) in metadata.row_groups().iter().enumerate() {
        for (column_index, column) in row_group.columns().iter().enumerate() {
            let (chunk_start, chunk_length) = column.byte_range();
            if chunk_start + chunk_length <= range_start || chunk_start >= range_end {
                continue;
            }
            let local = |offset: u64| (offset - range_start) as usize;
            if inside(chunk_start, chunk_length) {
                let chunk = &bytes[local(chunk_start)..local(chunk_start + chunk_length)];
                let mut position = 0;
                while position < chunk.len() {
                    position += verify_page(&chunk[position..], column)?;
                }
                continue;
            }
            // Part of a chunk: the pages the page index locates.
            let Some(locations) = metadata
                .offset_index()
                .and_then(|index| index.get(row_group_index)?.get(column_index))
            else {
                continue;
            };
            let first_data_page = column.data_page_offset() as u64;
            if let Some(dictionary) = column.dictionary_page_offset() {
                let dictionary = dictionary as u64;
                if inside(dictionary, first_data_page.saturating_sub(dictionary)) {
                    verify_page(&bytes[local(dictionary)..local(first_data_page)], column)?;
                }
            }
            for location in locations.page_locations() {
                let (start, length) =
                    (location.offset as u64, location.compressed_page_size as u64);
                if inside(start, length) {
                    verify_page(&bytes[local(start)..local(start + length)], column)?;
                }
            }
        }
    }
    Ok(())
}

/// Verifies the page at the start of `bytes`; returns its length, header included.
fn verify_page(bytes: &[u8], column: &ColumnChunkMetaData) -> Result<usize> {
    let column_name = || column.column_path().string();
    let header = parse_page_header(bytes).map_err(|error| {
        Error::with_source(
            ErrorKind::InvalidInput,
            format!(
                "a page header of column {} cannot be read: the segment is damaged",
                column_name()
            ),
            error,
        )
    })?;
    let data = bytes
        .get(header.length..header.length + header.compressed_page_size)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "a page of column {} runs past its column chunk: the segment is damaged",
                    column_name()
                ),
            )
        })?;
    let stored = header
        .fields
        .iter()
        .find(|(id, field_type, _)| *id == FIELD_CRC && *field_type == THRIFT_I32)
        .map(|(_, _, value)| {
            ThriftCursor {
                bytes: value,
                position: 0,
            }
            .varint()
        })
        .transpose()?;
    if let Some(stored) = stored {
        let expected = zigzag_decode(stored) as i32 as u32;
        if PAGE_CRC.checksum(data) != expected {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "page checksum mismatch in column {}: the segment is damaged",
                    column_name()
                ),
            ));
        }
    }
    Ok(header.length + header.compressed_page_size)
}
