//! Protobuf bodies framed by the Confluent Schema Registry, rendered as the
//! proto3 JSON mapping that Python's
//! `json_format.MessageToDict(msg, preserving_proto_field_name=True)` gives.
//!
//! Schemas are compiled in memory with protox: registry text (.proto source or
//! a base64 `FileDescriptorProto`), local .proto files, or a `protoc`
//! descriptor set.

use std::collections::HashMap;
use std::fmt::{self, Display};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use prost::Message as _;
use prost_reflect::prost_types::{FileDescriptorProto, FileDescriptorSet};
use prost_reflect::{
    DescriptorPool, DynamicMessage, FileDescriptor, MessageDescriptor, SerializeOptions,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use protox::Compiler;
use serde::ser::{self, Impossible, Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::error::{DecodeError, MAX_DEPTH};

/// The registry's schema text carries no file name of its own.
const MAIN_FILE: &str = "schema.proto";
/// Taken instead when a reference is already called [`MAIN_FILE`].
const MAIN_FILE_ALT: &str = "hindsight-registry-schema.proto";

/// Padding is optional: a value that lost it still means the same bytes.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Everything but the field names stays at the defaults, which are
/// json_format's: unset fields left out, 64-bit integers as strings, enums by
/// name, bytes as base64.
const JSON_OPTIONS: SerializeOptions = SerializeOptions::new().use_proto_field_name(true);

/// A compiled Protobuf schema: one main file and the files it imports.
#[derive(Clone)]
pub struct ProtobufSchema {
    pool: DescriptorPool,
    file: FileDescriptor,
}

impl ProtobufSchema {
    /// From a registry's schema text: .proto source, or a base64 serialized
    /// `FileDescriptorProto` (what confluent-kafka's Python serializer
    /// registers and `?format=serialized` returns). `references` are the
    /// resolved imports as (import name, schema text in either form), in any
    /// order. Google's well-known types resolve without being given.
    pub fn from_registry(
        schema: &str,
        references: &[(String, String)],
    ) -> Result<Self, DecodeError> {
        let main = if references.iter().any(|(name, _)| name == MAIN_FILE) {
            MAIN_FILE_ALT
        } else {
            MAIN_FILE
        };
        let mut files = HashMap::with_capacity(references.len() + 1);
        for (name, text) in references {
            files.insert(name.clone(), Source::from_registry(name, text)?);
        }
        files.insert(main.to_owned(), Source::from_registry(main, schema)?);
        compile(files, &[main], main)
    }

    /// From local .proto files: `files` maps import names to source text, and
    /// `main` names the one to compile.
    pub fn from_proto_files(main: &str, files: &[(String, String)]) -> Result<Self, DecodeError> {
        let mut sources = HashMap::with_capacity(files.len());
        for (name, text) in files {
            sources.insert(name.clone(), Source::text(name, text)?);
        }
        if !sources.contains_key(main) {
            return Err(DecodeError::bad_schema(format!(
                "{main} is not among the .proto files given"
            )));
        }
        compile(sources, &[main], main)
    }

    /// From a compiled `FileDescriptorSet` (`protoc --descriptor_set_out`, a
    /// `.desc` file). Every file in it is loaded, so [`Self::message_named`]
    /// finds any of its messages; the main file, which [`Self::message_at`]
    /// indexes, is the last one, as protoc writes the files it was asked for
    /// after their imports.
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<Self, DecodeError> {
        let set = FileDescriptorSet::decode(bytes)
            .map_err(|err| DecodeError::bad_schema(format!("not a FileDescriptorSet: {err}")))?;
        let names: Vec<String> = set.file.iter().map(|file| file.name().to_owned()).collect();
        let Some(main) = names.last() else {
            return Err(DecodeError::bad_schema("the descriptor set holds no files"));
        };
        let files = set
            .file
            .into_iter()
            .map(|file| (file.name().to_owned(), Source::Descriptor(Box::new(file))))
            .collect();
        let open: Vec<&str> = names.iter().map(String::as_str).collect();
        compile(files, &open, main)
    }

    /// The message at a Confluent message-index path: `[]` or `[0]` is the
    /// main file's first top-level message, `[1]` the second, `[1, 0]` the
    /// first message nested in the second. Map fields' entry types count as
    /// nested messages, as they do in the descriptors Confluent's clients index.
    pub fn message_at(&self, indexes: &[i32]) -> Result<MessageDescriptor, DecodeError> {
        let path: &[i32] = if indexes.is_empty() { &[0] } else { indexes };
        let missing = || {
            DecodeError::mismatch(format!(
                "the schema has no message at index path {indexes:?} (it defines {})",
                self.describe()
            ))
        };
        let (&first, rest) = path.split_first().ok_or_else(missing)?;
        let mut message = usize::try_from(first)
            .ok()
            .and_then(|index| self.file.messages().nth(index))
            .ok_or_else(missing)?;
        for &index in rest {
            let nested = usize::try_from(index)
                .ok()
                .and_then(|index| message.child_messages().nth(index))
                .ok_or_else(missing)?;
            message = nested;
        }
        Ok(message)
    }

    /// A message by its full name (`package.Outer.Inner`), from any file of
    /// the schema: how local configuration picks one.
    pub fn message_named(&self, full_name: &str) -> Result<MessageDescriptor, DecodeError> {
        let name = full_name.strip_prefix('.').unwrap_or(full_name);
        self.pool.get_message_by_name(name).ok_or_else(|| {
            DecodeError::bad_schema(format!("the schema has no message named {name}"))
        })
    }

    /// Decodes `body` (the bytes after the framing) as `message` and returns
    /// the proto3 JSON mapping with the original field names, equal to
    /// `MessageToDict(msg, preserving_proto_field_name=True)`.
    pub fn decode(
        &self,
        message: &MessageDescriptor,
        body: &[u8],
    ) -> Result<serde_json::Value, DecodeError> {
        // prost stops at 100 nested messages (its RECURSION_LIMIT), so neither
        // decoding nor dropping the result can run the stack out.
        let decoded = DynamicMessage::decode(message.clone(), body).map_err(|err| {
            DecodeError::mismatch(format!(
                "the body does not match {}: {err}",
                message.full_name()
            ))
        })?;
        let json = Bounded {
            inner: serde_json::value::Serializer,
            depth: 0,
        };
        decoded
            .serialize_with_options(json, &JSON_OPTIONS)
            .map_err(|err| {
                DecodeError::mismatch(format!(
                    "{} does not map to JSON: {err}",
                    message.full_name()
                ))
            })
    }

    /// Names the schema for people: the main file's top-level messages, or
    /// the file's name when it defines none.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .file
            .messages()
            .map(|message| message.full_name().to_owned())
            .collect();
        if names.is_empty() {
            self.file.name().to_owned()
        } else {
            names.join(", ")
        }
    }
}

impl fmt::Debug for ProtobufSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtobufSchema")
            .field("file", &self.file.name())
            .finish_non_exhaustive()
    }
}

/// Reads the Confluent Protobuf message-index path at the start of `bytes`
/// (after the magic byte and the 4-byte schema id): a zigzag varint count,
/// then that many zigzag varints; a count of 0 (the single byte 0x00) means
/// `[0]`. Returns the path and how many bytes it took.
pub fn read_message_indexes(bytes: &[u8]) -> Result<(Vec<i32>, usize), DecodeError> {
    let mut pos = 0;
    let count = read_zigzag(bytes, &mut pos)?;
    if count == 0 {
        return Ok((vec![0], pos));
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|&count| count <= MAX_DEPTH)
        .ok_or_else(|| {
            DecodeError::framing(format!(
                "the message-index path claims {count} entries (at most {MAX_DEPTH} are accepted)"
            ))
        })?;
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        let index = read_zigzag(bytes, &mut pos)?;
        let index = i32::try_from(index)
            .ok()
            .filter(|&index| index >= 0)
            .ok_or_else(|| {
                DecodeError::framing(format!("message index {index} is out of range"))
            })?;
        indexes.push(index);
    }
    Ok((indexes, pos))
}

/// One zigzag varint of the message-index path, advancing `pos` past it.
fn read_zigzag(bytes: &[u8], pos: &mut usize) -> Result<i64, DecodeError> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = *bytes.get(*pos).ok_or_else(|| {
            DecodeError::framing("the message-index path runs past the end of the payload")
        })?;
        *pos += 1;
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return Err(DecodeError::framing(
                "a varint in the message-index path overflows 64 bits",
            ));
        }
        raw |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(DecodeError::framing(
        "a varint in the message-index path is longer than 10 bytes",
    ))
}

/// One file as the compiler is handed it.
enum Source {
    Text(String),
    Descriptor(Box<FileDescriptorProto>),
}

impl Source {
    /// Registry text is one of two forms; a base64 string never holds the
    /// whitespace or punctuation that .proto source cannot do without.
    fn from_registry(name: &str, text: &str) -> Result<Self, DecodeError> {
        let trimmed = text.trim();
        if !looks_serialized(trimmed) {
            return Self::text(name, text);
        }
        let bytes = BASE64.decode(trimmed).map_err(|err| {
            DecodeError::bad_schema(format!("{name} is neither .proto source nor base64: {err}"))
        })?;
        let mut descriptor = FileDescriptorProto::decode(bytes.as_slice()).map_err(|err| {
            DecodeError::bad_schema(format!(
                "{name} is not a serialized FileDescriptorProto: {err}"
            ))
        })?;
        // Imports are looked up by the importer's string, whatever name the
        // serializer recorded inside the descriptor.
        descriptor.name = Some(name.to_owned());
        Ok(Self::Descriptor(Box::new(descriptor)))
    }

    fn text(name: &str, text: &str) -> Result<Self, DecodeError> {
        // protox parses recursively; absurd nesting is refused before it can
        // exhaust the stack.
        if source_nesting(text) > MAX_DEPTH {
            return Err(DecodeError::bad_schema(format!(
                "{name} nests deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Self::Text(text.to_owned()))
    }
}

fn looks_serialized(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'='))
}

/// How deeply brackets of any kind nest in .proto source, outside comments
/// and string literals.
fn source_nesting(source: &str) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut bytes = source.bytes().peekable();
    while let Some(byte) = bytes.next() {
        match byte {
            b'/' if bytes.peek() == Some(&b'/') => {
                for byte in bytes.by_ref() {
                    if byte == b'\n' {
                        break;
                    }
                }
            }
            b'/' if bytes.peek() == Some(&b'*') => {
                bytes.next();
                let mut star = false;
                for byte in bytes.by_ref() {
                    if star && byte == b'/' {
                        break;
                    }
                    star = byte == b'*';
                }
            }
            b'"' | b'\'' => {
                while let Some(inner) = bytes.next() {
                    if inner == b'\\' {
                        bytes.next();
                    } else if inner == byte || inner == b'\n' {
                        break;
                    }
                }
            }
            b'{' | b'[' | b'(' | b'<' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' | b')' | b'>' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Serves the schema's own files from memory, by exact import name.
struct MemoryResolver {
    files: HashMap<String, Source>,
}

impl FileResolver for MemoryResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.files.get(name) {
            Some(Source::Text(text)) => File::from_source(name, text),
            Some(Source::Descriptor(descriptor)) => Ok(File::from_file_descriptor_proto(
                descriptor.as_ref().clone(),
            )),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Files Confluent's registry bundles, and its serializers therefore never
/// register as references (`_is_builtin` in confluent-kafka: every
/// `confluent/` and `google/type/` import): Google's common types as .proto
/// source (googleapis-common-protos), and Confluent's own as the descriptors
/// confluent-kafka compiled in (`schemas/bundled/README.md`).
const BUNDLED_SOURCES: &[(&str, &str)] = &[
    (
        "google/type/calendar_period.proto",
        include_str!("../bundled/google/type/calendar_period.proto"),
    ),
    (
        "google/type/color.proto",
        include_str!("../bundled/google/type/color.proto"),
    ),
    (
        "google/type/date.proto",
        include_str!("../bundled/google/type/date.proto"),
    ),
    (
        "google/type/datetime.proto",
        include_str!("../bundled/google/type/datetime.proto"),
    ),
    (
        "google/type/dayofweek.proto",
        include_str!("../bundled/google/type/dayofweek.proto"),
    ),
    (
        "google/type/decimal.proto",
        include_str!("../bundled/google/type/decimal.proto"),
    ),
    (
        "google/type/expr.proto",
        include_str!("../bundled/google/type/expr.proto"),
    ),
    (
        "google/type/fraction.proto",
        include_str!("../bundled/google/type/fraction.proto"),
    ),
    (
        "google/type/interval.proto",
        include_str!("../bundled/google/type/interval.proto"),
    ),
    (
        "google/type/latlng.proto",
        include_str!("../bundled/google/type/latlng.proto"),
    ),
    (
        "google/type/localized_text.proto",
        include_str!("../bundled/google/type/localized_text.proto"),
    ),
    (
        "google/type/money.proto",
        include_str!("../bundled/google/type/money.proto"),
    ),
    (
        "google/type/month.proto",
        include_str!("../bundled/google/type/month.proto"),
    ),
    (
        "google/type/phone_number.proto",
        include_str!("../bundled/google/type/phone_number.proto"),
    ),
    (
        "google/type/postal_address.proto",
        include_str!("../bundled/google/type/postal_address.proto"),
    ),
    (
        "google/type/quaternion.proto",
        include_str!("../bundled/google/type/quaternion.proto"),
    ),
    (
        "google/type/timeofday.proto",
        include_str!("../bundled/google/type/timeofday.proto"),
    ),
];
const BUNDLED_DESCRIPTORS: &[(&str, &[u8])] = &[
    (
        "confluent/meta.proto",
        include_bytes!("../bundled/confluent/meta.proto.pb"),
    ),
    (
        "confluent/type/decimal.proto",
        include_bytes!("../bundled/confluent/type/decimal.proto.pb"),
    ),
    (
        "confluent/type/variant.proto",
        include_bytes!("../bundled/confluent/type/variant.proto.pb"),
    ),
    (
        "confluent/types/decimal.proto",
        include_bytes!("../bundled/confluent/types/decimal.proto.pb"),
    ),
];

/// Answers for the [bundled](BUNDLED_SOURCES) imports a schema does not
/// bring itself.
struct BundledResolver;

impl FileResolver for BundledResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if let Some((_, text)) = BUNDLED_SOURCES.iter().find(|(file, _)| *file == name) {
            return File::from_source(name, text);
        }
        let Some((_, bytes)) = BUNDLED_DESCRIPTORS.iter().find(|(file, _)| *file == name) else {
            return Err(protox::Error::file_not_found(name));
        };
        let descriptor =
            FileDescriptorProto::decode(*bytes).map_err(|_| protox::Error::file_not_found(name))?;
        Ok(File::from_file_descriptor_proto(descriptor))
    }
}

fn compile(
    files: HashMap<String, Source>,
    open: &[&str],
    main: &str,
) -> Result<ProtobufSchema, DecodeError> {
    let mut resolver = ChainFileResolver::new();
    // Confluent's serializers register the well-known types as references
    // only sometimes, and protoc leaves them out of a descriptor set without
    // --include_imports; protox's own copies answer for them first.
    resolver.add(GoogleFileResolver::new());
    resolver.add(MemoryResolver { files });
    // A schema's own copy of a bundled file, if it brings one, wins.
    resolver.add(BundledResolver);
    let mut compiler = Compiler::with_file_resolver(resolver);
    for &name in open {
        compiler.open_file(name).map_err(compile_error)?;
    }
    let pool = compiler.descriptor_pool();
    let file = pool.get_file_by_name(main).ok_or_else(|| {
        DecodeError::bad_schema(format!("{main} is missing from the compiled schema"))
    })?;
    Ok(ProtobufSchema { pool, file })
}

/// protox's Debug form is `file:line:column: message`; Display drops the
/// location.
fn compile_error(err: protox::Error) -> DecodeError {
    DecodeError::bad_schema(one_line(&format!("{err:?}")))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Python protobuf's `ToShortestFloat`: the value printed with 6, 7, 8 then
/// 9 significant digits (`'%.{p}g'`, rounding ties to even), the first that
/// reads back as the same f32. Not Rust's shortest (`f32::to_string`),
/// which breaks the tie the other way: 54.2578125 is `54.257812` here
/// and in Python, `54.257813` in Rust's `Display`.
fn python_shortest_float(value: f32) -> Option<f64> {
    if !value.is_finite() {
        return None;
    }
    let wide = f64::from(value);
    (6..=9).find_map(|digits: usize| {
        let text = format!("{:.*e}", digits - 1, wide);
        let rounded: f64 = text.parse().ok()?;
        (rounded as f32 == value).then_some(rounded)
    })
}

/// Passes prost-reflect's serialization through to `inner` with two changes:
/// a `float` is widened through its shortest decimal, as json_format prints
/// it, and nesting deeper than [`MAX_DEPTH`] is refused.
struct Bounded<S> {
    inner: S,
    depth: usize,
}

/// A value one level inside a [`Bounded`] container.
struct Nested<'a, T: ?Sized> {
    value: &'a T,
    depth: usize,
}

impl<T: ?Sized + Serialize> Serialize for Nested<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Bounded {
            inner: serializer,
            depth: self.depth,
        })
    }
}

fn deeper<E: ser::Error>(depth: usize) -> Result<usize, E> {
    if depth >= MAX_DEPTH {
        Err(E::custom(format!("nested deeper than {MAX_DEPTH} levels")))
    } else {
        Ok(depth + 1)
    }
}

/// prost-reflect writes messages as maps and repeated fields as sequences;
/// nothing in the JSON mapping takes the other serde shapes.
fn unsupported<E: ser::Error>(what: &str) -> E {
    E::custom(format!("{what} has no place in the protobuf JSON mapping"))
}

impl<S: Serializer> Serializer for Bounded<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Bounded<S::SerializeSeq>;
    type SerializeTuple = Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = Impossible<S::Ok, S::Error>;
    type SerializeMap = Bounded<S::SerializeMap>;
    type SerializeStruct = Impossible<S::Ok, S::Error>;
    type SerializeStructVariant = Impossible<S::Ok, S::Error>;

    fn serialize_bool(self, v: bool) -> Result<S::Ok, S::Error> {
        self.inner.serialize_bool(v)
    }

    fn serialize_i8(self, v: i8) -> Result<S::Ok, S::Error> {
        self.inner.serialize_i8(v)
    }

    fn serialize_i16(self, v: i16) -> Result<S::Ok, S::Error> {
        self.inner.serialize_i16(v)
    }

    fn serialize_i32(self, v: i32) -> Result<S::Ok, S::Error> {
        self.inner.serialize_i32(v)
    }

    fn serialize_i64(self, v: i64) -> Result<S::Ok, S::Error> {
        self.inner.serialize_i64(v)
    }

    fn serialize_u8(self, v: u8) -> Result<S::Ok, S::Error> {
        self.inner.serialize_u8(v)
    }

    fn serialize_u16(self, v: u16) -> Result<S::Ok, S::Error> {
        self.inner.serialize_u16(v)
    }

    fn serialize_u32(self, v: u32) -> Result<S::Ok, S::Error> {
        self.inner.serialize_u32(v)
    }

    fn serialize_u64(self, v: u64) -> Result<S::Ok, S::Error> {
        self.inner.serialize_u64(v)
    }

    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        // json_format prints a float field as the shortest decimal that reads
        // back as the same f32 (0.1); widening it gives 0.10000000149011612.
        match python_shortest_float(v) {
            Some(shortest) => self.inner.serialize_f64(shortest),
            None => self.inner.serialize_f32(v),
        }
    }

    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        self.inner.serialize_f64(v)
    }

    fn serialize_char(self, v: char) -> Result<S::Ok, S::Error> {
        self.inner.serialize_char(v)
    }

    fn serialize_str(self, v: &str) -> Result<S::Ok, S::Error> {
        self.inner.serialize_str(v)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<S::Ok, S::Error> {
        self.inner.serialize_bytes(v)
    }

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_none()
    }

    fn serialize_some<T>(self, value: &T) -> Result<S::Ok, S::Error>
    where
        T: ?Sized + Serialize,
    {
        let depth = self.depth;
        self.inner.serialize_some(&Nested { value, depth })
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit()
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_struct(name)
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        variant_index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.inner
            .serialize_unit_variant(name, variant_index, variant)
    }

    fn serialize_newtype_struct<T>(self, name: &'static str, value: &T) -> Result<S::Ok, S::Error>
    where
        T: ?Sized + Serialize,
    {
        let depth = self.depth;
        self.inner
            .serialize_newtype_struct(name, &Nested { value, depth })
    }

    fn serialize_newtype_variant<T>(
        self,
        _name: &'static str,
        _variant_index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<S::Ok, S::Error>
    where
        T: ?Sized + Serialize,
    {
        Err(unsupported("an enum variant with data"))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        let depth = deeper::<S::Error>(self.depth)?;
        Ok(Bounded {
            inner: self.inner.serialize_seq(len)?,
            depth,
        })
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, S::Error> {
        Err(unsupported("a tuple"))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        Err(unsupported("a tuple struct"))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        Err(unsupported("a tuple variant"))
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        let depth = deeper::<S::Error>(self.depth)?;
        Ok(Bounded {
            inner: self.inner.serialize_map(len)?,
            depth,
        })
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        Err(unsupported("a struct"))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        Err(unsupported("a struct variant"))
    }

    fn collect_str<T>(self, value: &T) -> Result<S::Ok, S::Error>
    where
        T: ?Sized + Display,
    {
        self.inner.collect_str(value)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

impl<S: SerializeSeq> SerializeSeq for Bounded<S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_element<T>(&mut self, value: &T) -> Result<(), S::Error>
    where
        T: ?Sized + Serialize,
    {
        self.inner.serialize_element(&Nested {
            value,
            depth: self.depth,
        })
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        self.inner.end()
    }
}

impl<S: SerializeMap> SerializeMap for Bounded<S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_key<T>(&mut self, key: &T) -> Result<(), S::Error>
    where
        T: ?Sized + Serialize,
    {
        self.inner.serialize_key(&Nested {
            value: key,
            depth: self.depth,
        })
    }

    fn serialize_value<T>(&mut self, value: &T) -> Result<(), S::Error>
    where
        T: ?Sized + Serialize,
    {
        self.inner.serialize_value(&Nested {
            value,
            depth: self.depth,
        })
    }

    fn serialize_entry<K, V>(&mut self, key: &K, value: &V) -> Result<(), S::Error>
    where
        K: ?Sized + Serialize,
        V: ?Sized + Serialize,
    {
        self.inner.serialize_entry(
            &Nested {
                value: key,
                depth: self.depth,
            },
            &Nested {
                value,
                depth: self.depth,
            },
        )
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        self.inner.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DecodeErrorKind;
    use base64::engine::general_purpose::STANDARD;
    use prost::Message;
    use prost_reflect::{MapKey, Value};
    use serde_json::json;

    const COMMON: &str = r#"syntax = "proto3";
package hindsight.common;

message Money {
  string currency = 1;
  int64 units = 2;
}
"#;

    const ORDERS: &str = r#"syntax = "proto3";
package hindsight.test;

import "common.proto";
import "google/protobuf/timestamp.proto";

enum Status {
  STATUS_UNSPECIFIED = 0;
  STATUS_PAID = 1;
  STATUS_SHIPPED = 2;
}

message Order {
  string id = 1;
  int64 quantity = 2;
  bytes signature = 3;
  Status status = 4;
  repeated string tags = 5;
  map<string, int32> counts = 6;
  google.protobuf.Timestamp placed_at = 7;
  hindsight.common.Money total = 8;
  oneof contact {
    string email = 9;
    string phone = 10;
  }
  float ratio = 11;
  Customer customer = 12;
}

message Customer {
  message Address {
    string city = 1;
  }
  string name = 1;
  Address address = 2;
}

message Node {
  Node child = 1;
}
"#;

    /// sample_order's values as Python protobuf 7.36 serializes them; its
    /// `MessageToDict(msg, preserving_proto_field_name=True)` is
    /// expected_order().
    const PYTHON_ORDER: &str = "0a036f2d3110031a04000102ff20022a01612a016232050a017810013a0c08c8ebc8\
        b1061080cab5ee0142070a03455552100c4a0d61406578616d706c652e636f6d5dcdcccc3d620e0a034164611207\
        0a055061726973";

    /// `protoc --include_imports --descriptor_set_out` of COMMON as
    /// common.proto and ORDERS as schema.proto (grpcio-tools 1.85), base64.
    const PROTOC_SET: &str =
        "CmMKDGNvbW1vbi5wcm90bxIQaGluZHNpZ2h0LmNvbW1vbiI5CgVNb25leRIaCghjdXJyZW5jeRgBIAEoCVIIY3Vy\
        cmVuY3kSFAoFdW5pdHMYAiABKANSBXVuaXRzYgZwcm90bzMK/wEKH2dvb2dsZS9wcm90b2J1Zi90aW1lc3RhbXAu\
        cHJvdG8SD2dvb2dsZS5wcm90b2J1ZiI7CglUaW1lc3RhbXASGAoHc2Vjb25kcxgBIAEoA1IHc2Vjb25kcxIUCgVu\
        YW5vcxgCIAEoBVIFbmFub3NChQEKE2NvbS5nb29nbGUucHJvdG9idWZCDlRpbWVzdGFtcFByb3RvUAFaMmdvb2ds\
        ZS5nb2xhbmcub3JnL3Byb3RvYnVmL3R5cGVzL2tub3duL3RpbWVzdGFtcHBi+AEBogIDR1BCqgIeR29vZ2xlLlBy\
        b3RvYnVmLldlbGxLbm93blR5cGVzYgZwcm90bzMKyAYKDHNjaGVtYS5wcm90bxIOaGluZHNpZ2h0LnRlc3QaDGNv\
        bW1vbi5wcm90bxofZ29vZ2xlL3Byb3RvYnVmL3RpbWVzdGFtcC5wcm90byL6AwoFT3JkZXISDgoCaWQYASABKAlS\
        AmlkEhoKCHF1YW50aXR5GAIgASgDUghxdWFudGl0eRIcCglzaWduYXR1cmUYAyABKAxSCXNpZ25hdHVyZRIuCgZz\
        dGF0dXMYBCABKA4yFi5oaW5kc2lnaHQudGVzdC5TdGF0dXNSBnN0YXR1cxISCgR0YWdzGAUgAygJUgR0YWdzEjkK\
        BmNvdW50cxgGIAMoCzIhLmhpbmRzaWdodC50ZXN0Lk9yZGVyLkNvdW50c0VudHJ5UgZjb3VudHMSNwoJcGxhY2Vk\
        X2F0GAcgASgLMhouZ29vZ2xlLnByb3RvYnVmLlRpbWVzdGFtcFIIcGxhY2VkQXQSLQoFdG90YWwYCCABKAsyFy5o\
        aW5kc2lnaHQuY29tbW9uLk1vbmV5UgV0b3RhbBIWCgVlbWFpbBgJIAEoCUgAUgVlbWFpbBIWCgVwaG9uZRgKIAEo\
        CUgAUgVwaG9uZRIUCgVyYXRpbxgLIAEoAlIFcmF0aW8SNAoIY3VzdG9tZXIYDCABKAsyGC5oaW5kc2lnaHQudGVz\
        dC5DdXN0b21lclIIY3VzdG9tZXIaOQoLQ291bnRzRW50cnkSEAoDa2V5GAEgASgJUgNrZXkSFAoFdmFsdWUYAiAB\
        KAVSBXZhbHVlOgI4AUIJCgdjb250YWN0InkKCEN1c3RvbWVyEhIKBG5hbWUYASABKAlSBG5hbWUSOgoHYWRkcmVz\
        cxgCIAEoCzIgLmhpbmRzaWdodC50ZXN0LkN1c3RvbWVyLkFkZHJlc3NSB2FkZHJlc3MaHQoHQWRkcmVzcxISCgRj\
        aXR5GAEgASgJUgRjaXR5IjIKBE5vZGUSKgoFY2hpbGQYASABKAsyFC5oaW5kc2lnaHQudGVzdC5Ob2RlUgVjaGls\
        ZCpFCgZTdGF0dXMSFgoSU1RBVFVTX1VOU1BFQ0lGSUVEEAASDwoLU1RBVFVTX1BBSUQQARISCg5TVEFUVVNfU0hJ\
        UFBFRBACYgZwcm90bzM=";

    fn references() -> Vec<(String, String)> {
        vec![("common.proto".to_owned(), COMMON.to_owned())]
    }

    fn orders() -> ProtobufSchema {
        ProtobufSchema::from_registry(ORDERS, &references()).unwrap()
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn empty(like: &MessageDescriptor, full_name: &str) -> DynamicMessage {
        DynamicMessage::new(like.parent_pool().get_message_by_name(full_name).unwrap())
    }

    fn sample_order(order: &MessageDescriptor) -> DynamicMessage {
        let mut placed_at = empty(order, "google.protobuf.Timestamp");
        placed_at.set_field_by_name("seconds", Value::I64(1_714_566_600));
        placed_at.set_field_by_name("nanos", Value::I32(500_000_000));

        let mut total = empty(order, "hindsight.common.Money");
        total.set_field_by_name("currency", Value::String("EUR".to_owned()));
        total.set_field_by_name("units", Value::I64(12));

        let mut address = empty(order, "hindsight.test.Customer.Address");
        address.set_field_by_name("city", Value::String("Paris".to_owned()));
        let mut customer = empty(order, "hindsight.test.Customer");
        customer.set_field_by_name("name", Value::String("Ada".to_owned()));
        customer.set_field_by_name("address", Value::Message(address));

        let mut message = DynamicMessage::new(order.clone());
        message.set_field_by_name("id", Value::String("o-1".to_owned()));
        message.set_field_by_name("quantity", Value::I64(3));
        message.set_field_by_name(
            "signature",
            Value::Bytes(prost::bytes::Bytes::from_static(&[0, 1, 2, 255])),
        );
        message.set_field_by_name("status", Value::EnumNumber(2));
        message.set_field_by_name(
            "tags",
            Value::List(vec![
                Value::String("a".to_owned()),
                Value::String("b".to_owned()),
            ]),
        );
        let Some(Value::Map(counts)) = message.get_field_by_name_mut("counts") else {
            panic!("counts is not a map field");
        };
        counts.insert(MapKey::String("x".to_owned()), Value::I32(1));
        message.set_field_by_name("placed_at", Value::Message(placed_at));
        message.set_field_by_name("total", Value::Message(total));
        message.set_field_by_name("email", Value::String("a@example.com".to_owned()));
        message.set_field_by_name("ratio", Value::F32(0.1));
        message.set_field_by_name("customer", Value::Message(customer));
        message
    }

    fn expected_order() -> serde_json::Value {
        json!({
            "id": "o-1",
            "quantity": "3",
            "signature": "AAEC/w==",
            "status": "STATUS_SHIPPED",
            "tags": ["a", "b"],
            "counts": {"x": 1},
            "placed_at": "2024-05-01T12:30:00.500Z",
            "total": {"currency": "EUR", "units": "12"},
            "email": "a@example.com",
            "ratio": 0.1,
            "customer": {"name": "Ada", "address": {"city": "Paris"}}
        })
    }

    /// A hindsight.test.Node holding `levels` nested children.
    fn nested_nodes(levels: usize) -> Vec<u8> {
        let mut body = Vec::new();
        for _ in 0..levels {
            let mut outer = vec![0x0a];
            let mut len = body.len();
            while len >= 0x80 {
                outer.push(((len & 0x7f) as u8) | 0x80);
                len >>= 7;
            }
            outer.push(len as u8);
            outer.extend_from_slice(&body);
            body = outer;
        }
        body
    }

    fn name_at(schema: &ProtobufSchema, path: &[i32]) -> String {
        schema.message_at(path).unwrap().full_name().to_owned()
    }

    #[test]
    fn message_index_paths_follow_confluent() {
        let schema = orders();
        assert_eq!(name_at(&schema, &[]), "hindsight.test.Order");
        assert_eq!(name_at(&schema, &[0]), "hindsight.test.Order");
        assert_eq!(name_at(&schema, &[1]), "hindsight.test.Customer");
        assert_eq!(name_at(&schema, &[1, 0]), "hindsight.test.Customer.Address");
        assert_eq!(name_at(&schema, &[2]), "hindsight.test.Node");
        assert_eq!(
            name_at(&schema, &[0, 0]),
            "hindsight.test.Order.CountsEntry"
        );

        let absent: [&[i32]; 4] = [&[3], &[1, 1], &[-1], &[1, 0, 0]];
        for path in absent {
            let err = schema.message_at(path).unwrap_err();
            assert_eq!(err.kind, DecodeErrorKind::Mismatch, "{path:?}");
        }
        assert_eq!(
            schema.describe(),
            "hindsight.test.Order, hindsight.test.Customer, hindsight.test.Node"
        );
    }

    #[test]
    fn decodes_to_the_json_mapping_with_proto_field_names() {
        let schema = orders();
        let order = schema.message_at(&[0]).unwrap();
        let body = sample_order(&order).encode_to_vec();
        assert_eq!(schema.decode(&order, &body).unwrap(), expected_order());
    }

    #[test]
    fn decodes_what_python_protobuf_wrote() {
        let schema = orders();
        let order = schema.message_at(&[0]).unwrap();
        let json = schema.decode(&order, &hex(PYTHON_ORDER)).unwrap();
        assert_eq!(json, expected_order());
    }

    #[test]
    fn imports_the_registry_bundles_resolve_without_references() {
        // What confluent-kafka registers for such a schema: its own text, no
        // reference for `confluent/` or `google/type/` imports.
        let schema = ProtobufSchema::from_registry(
            r#"syntax = "proto3";
            package shop;
            import "confluent/meta.proto";
            import "confluent/type/decimal.proto";
            import "google/type/date.proto";
            import "google/type/money.proto";
            message Sale {
              option (confluent.message_meta).doc = "one sale";
              string id = 1 [(confluent.field_meta).tags = "PII"];
              google.type.Date day = 2;
              google.type.Money price = 3;
              confluent.type.Decimal exact = 4;
            }"#,
            &[],
        )
        .unwrap();
        let sale = schema.message_at(&[0]).unwrap();
        let mut message = DynamicMessage::new(sale.clone());
        message.set_field_by_name("id", Value::String("s1".to_owned()));
        let mut day = DynamicMessage::new(schema.message_named("google.type.Date").unwrap());
        day.set_field_by_name("year", Value::I32(2026));
        day.set_field_by_name("month", Value::I32(12));
        day.set_field_by_name("day", Value::I32(3));
        message.set_field_by_name("day", Value::Message(day));
        let mut price = DynamicMessage::new(schema.message_named("google.type.Money").unwrap());
        price.set_field_by_name("currency_code", Value::String("EUR".to_owned()));
        price.set_field_by_name("units", Value::I64(12));
        message.set_field_by_name("price", Value::Message(price));
        let mut exact =
            DynamicMessage::new(schema.message_named("confluent.type.Decimal").unwrap());
        exact.set_field_by_name("value", Value::Bytes(vec![0x04, 0xd2].into()));
        exact.set_field_by_name("precision", Value::U32(6));
        exact.set_field_by_name("scale", Value::I32(2));
        message.set_field_by_name("exact", Value::Message(exact));
        assert_eq!(
            schema.decode(&sale, &message.encode_to_vec()).unwrap(),
            json!({
                "id": "s1",
                "day": {"year": 2026, "month": 12, "day": 3},
                "price": {"currency_code": "EUR", "units": "12"},
                "exact": {"value": "BNI=", "precision": 6, "scale": 2}
            })
        );
        // A file the schema brings itself is taken over the bundled one.
        let own = ProtobufSchema::from_registry(
            r#"syntax = "proto3"; import "google/type/date.proto"; message M { google.type.Date d = 1; }"#,
            &[(
                "google/type/date.proto".to_owned(),
                r#"syntax = "proto3"; package google.type; message Date { int32 only = 1; }"#
                    .to_owned(),
            )],
        )
        .unwrap();
        let date = own.message_named("google.type.Date").unwrap();
        assert_eq!(
            date.fields()
                .map(|f| f.name().to_owned())
                .collect::<Vec<_>>(),
            ["only"]
        );
    }

    #[test]
    fn decodes_a_nested_message() {
        let schema = orders();
        let address = schema.message_at(&[1, 0]).unwrap();
        let mut message = DynamicMessage::new(address.clone());
        message.set_field_by_name("city", Value::String("Paris".to_owned()));
        let json = schema.decode(&address, &message.encode_to_vec()).unwrap();
        assert_eq!(json, json!({"city": "Paris"}));
        // Unset proto3 scalars are left out, as json_format leaves them out.
        assert_eq!(schema.decode(&address, &[]).unwrap(), json!({}));
    }

    #[test]
    fn a_broken_body_is_a_mismatch() {
        let schema = orders();
        let order = schema.message_at(&[0]).unwrap();
        let body = sample_order(&order).encode_to_vec();
        let broken: [&[u8]; 3] = [&body[..body.len() - 1], &[0x0a], &[0xff; 12]];
        for bytes in broken {
            let err = schema.decode(&order, bytes).unwrap_err();
            assert_eq!(err.kind, DecodeErrorKind::Mismatch);
            assert!(
                err.message.contains("hindsight.test.Order"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let schema = orders();
        let node = schema.message_at(&[2]).unwrap();
        let json = schema.decode(&node, &nested_nodes(2)).unwrap();
        assert_eq!(json, json!({"child": {"child": {}}}));
        assert!(schema.decode(&node, &nested_nodes(30)).is_ok());

        // Within prost's recursion limit, past MAX_DEPTH: refused while rendering.
        let err = schema.decode(&node, &nested_nodes(80)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Mismatch);
        assert!(err.message.contains("deeper than 64"), "{}", err.message);

        // Past prost's recursion limit: refused while decoding.
        let err = schema.decode(&node, &nested_nodes(500)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Mismatch);
    }

    #[test]
    fn floats_print_as_python_protobuf_prints_them() {
        assert_eq!(
            python_shortest_float(54.257_812_5_f64 as f32),
            Some(54.257812)
        );
        assert_eq!(python_shortest_float(0.1), Some(0.1));
        assert_eq!(python_shortest_float(96.546_486), Some(96.546486));
        assert_eq!(python_shortest_float(f32::NAN), None);
    }

    #[test]
    fn reads_message_indexes() {
        assert_eq!(read_message_indexes(&[0x00]).unwrap(), (vec![0], 1));
        assert_eq!(read_message_indexes(&[0x02, 0x02]).unwrap(), (vec![1], 2));
        assert_eq!(
            read_message_indexes(&[0x04, 0x02, 0x00]).unwrap(),
            (vec![1, 0], 3)
        );
        // Only the path is consumed; the body follows it.
        assert_eq!(
            read_message_indexes(&[0x02, 0x02, 0x0a, 0x01]).unwrap(),
            (vec![1], 2)
        );
    }

    #[test]
    fn malformed_message_indexes_are_framing_errors() {
        let malformed: [&[u8]; 8] = [
            &[],                                   // nothing at all
            &[0x02],                               // count 1, no index
            &[0x80],                               // varint cut short
            &[0x80; 11],                           // varint longer than 10 bytes
            &[0x82, 0x01],                         // count 65
            &[0x01],                               // count -1
            &[0x02, 0x01],                         // index -1
            &[0x02, 0x80, 0x80, 0x80, 0x80, 0x10], // index 2^31
        ];
        for bytes in malformed {
            let err = read_message_indexes(bytes).unwrap_err();
            assert_eq!(err.kind, DecodeErrorKind::Framing, "{bytes:?}");
        }
    }

    #[test]
    fn serialized_descriptors_round_trip() {
        let schema = orders();
        let serialized = |name: &str| {
            let file = schema.pool.get_file_by_name(name).unwrap();
            STANDARD.encode(file.file_descriptor_proto().encode_to_vec())
        };
        let serialized_refs = vec![("common.proto".to_owned(), serialized("common.proto"))];
        let main = serialized(MAIN_FILE);

        let from_base64 = ProtobufSchema::from_registry(&main, &serialized_refs).unwrap();
        let address = from_base64.message_at(&[1, 0]).unwrap();
        assert_eq!(address.full_name(), "hindsight.test.Customer.Address");
        let order = from_base64.message_at(&[0]).unwrap();
        let json = from_base64.decode(&order, &hex(PYTHON_ORDER)).unwrap();
        assert_eq!(json, expected_order());

        // Either form may stand for either file.
        assert!(ProtobufSchema::from_registry(&main, &references()).is_ok());
        assert!(ProtobufSchema::from_registry(ORDERS, &serialized_refs).is_ok());
    }

    #[test]
    fn local_proto_files_resolve_by_import_name() {
        let files = vec![
            ("common.proto".to_owned(), COMMON.to_owned()),
            ("orders.proto".to_owned(), ORDERS.to_owned()),
        ];
        let schema = ProtobufSchema::from_proto_files("orders.proto", &files).unwrap();
        let address = schema
            .message_named("hindsight.test.Customer.Address")
            .unwrap();
        assert_eq!(address.full_name(), "hindsight.test.Customer.Address");
        let err = schema.message_named("hindsight.test.Nope").unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadSchema);

        let err = ProtobufSchema::from_proto_files("other.proto", &files).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadSchema);
    }

    #[test]
    fn protoc_descriptor_sets_load() {
        let bytes = STANDARD.decode(PROTOC_SET).unwrap();
        let schema = ProtobufSchema::from_descriptor_set(&bytes).unwrap();
        let order = schema.message_named("hindsight.test.Order").unwrap();
        let json = schema.decode(&order, &hex(PYTHON_ORDER)).unwrap();
        assert_eq!(json, expected_order());
        let address = schema.message_at(&[1, 0]).unwrap();
        assert_eq!(address.full_name(), "hindsight.test.Customer.Address");

        let not_sets: [&[u8]; 2] = [&[0xff], &[]];
        for bytes in not_sets {
            let err = ProtobufSchema::from_descriptor_set(bytes).unwrap_err();
            assert_eq!(err.kind, DecodeErrorKind::BadSchema);
        }
    }

    #[test]
    fn bad_schemas_are_reported_on_one_line() {
        let broken = "syntax = \"proto3\";\n\nmessage Broken {\n  string id = ;\n}\n";
        let err = ProtobufSchema::from_registry(broken, &[]).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadSchema);
        assert!(err.message.contains(MAIN_FILE), "{}", err.message);
        assert!(!err.message.contains('\n'), "{}", err.message);

        let err = ProtobufSchema::from_registry(ORDERS, &[]).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadSchema);
        assert!(err.message.contains("common.proto"), "{}", err.message);

        // Base64 that is no descriptor, and text that is neither form.
        for text in ["////", "AAAA!"] {
            let err = ProtobufSchema::from_registry(text, &[]).unwrap_err();
            assert_eq!(err.kind, DecodeErrorKind::BadSchema, "{text}");
        }

        let deep = format!("{}{}", "message A {".repeat(100), "}".repeat(100));
        let err = ProtobufSchema::from_registry(&deep, &[]).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadSchema);
    }
}
