//! Schema-aware payloads: Avro, Protobuf and JSON Schema payloads decoded
//! to JSON for people and SQL, with the schemas kept in the catalog so that
//! an event decodes with the schema that wrote it, long after its registry
//! is gone.
//!
//! Decoding never changes what is archived or replayed, and never fails a
//! caller: a payload that does not decode comes back as a [`DecodeError`]
//! saying why, and the event shows raw.
//!
//! - `wire.rs`: the Confluent framing and schema-id headers.
//! - `avro.rs`, `protobuf.rs`: bodies to JSON. `json_schema.rs`: JSON
//!   bodies checked against their JSON Schema, as confluent-kafka's
//!   deserializer checks them.
//! - `registry.rs`: the Schema Registry REST client (cached by the caller,
//!   bounded in time and rate).
//! - `store.rs`: [`Schemas`], which decides the schema of a payload (topic
//!   rules, local schema files, the registry, the catalog) and caches what
//!   it compiled.

pub mod avro;
pub mod error;
pub mod json_schema;
pub mod protobuf;
pub mod registry;
pub mod store;
pub mod wire;

use serde::{Deserialize, Serialize};

pub use error::{DecodeError, DecodeErrorKind};
pub use store::{AvroWriter, SchemaSettings, Schemas, TopicRule};

/// What kind of schema wrote a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaFormat {
    Avro,
    Protobuf,
    JsonSchema,
}

impl SchemaFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaFormat::Avro => "avro",
            SchemaFormat::Protobuf => "protobuf",
            SchemaFormat::JsonSchema => "json_schema",
        }
    }

    /// From the registry's `schemaType` (absent means Avro).
    pub fn from_registry(schema_type: Option<&str>) -> Result<Self, DecodeError> {
        match schema_type.map(str::to_ascii_uppercase).as_deref() {
            None | Some("AVRO") => Ok(SchemaFormat::Avro),
            Some("PROTOBUF") => Ok(SchemaFormat::Protobuf),
            Some("JSON") => Ok(SchemaFormat::JsonSchema),
            Some(other) => Err(DecodeError::bad_schema(format!(
                "schema type {other} is not one Hindsight decodes (AVRO, PROTOBUF, JSON)"
            ))),
        }
    }

    /// The registry's `schemaType` for this format.
    pub fn registry_type(self) -> &'static str {
        match self {
            SchemaFormat::Avro => "AVRO",
            SchemaFormat::Protobuf => "PROTOBUF",
            SchemaFormat::JsonSchema => "JSON",
        }
    }
}

impl std::str::FromStr for SchemaFormat {
    type Err = DecodeError;

    fn from_str(text: &str) -> Result<Self, DecodeError> {
        match text {
            "avro" => Ok(SchemaFormat::Avro),
            "protobuf" => Ok(SchemaFormat::Protobuf),
            "json_schema" | "json" => Ok(SchemaFormat::JsonSchema),
            other => Err(DecodeError::bad_schema(format!(
                "{other:?} is not a schema format (avro, protobuf, json_schema)"
            ))),
        }
    }
}

/// How a payload names its schema: an id, or (newer serializers, in a
/// header) a GUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SchemaRef {
    Id(u32),
    Guid(String),
}

impl SchemaRef {
    /// The catalog's `schema_key`.
    pub fn key(&self) -> String {
        match self {
            SchemaRef::Id(id) => id.to_string(),
            SchemaRef::Guid(guid) => format!("guid:{guid}"),
        }
    }
}

impl std::fmt::Display for SchemaRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemaRef::Id(id) => write!(f, "id {id}"),
            SchemaRef::Guid(guid) => write!(f, "GUID {guid}"),
        }
    }
}

/// A schema as a registry holds it: enough to decode on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSchema {
    /// The configured registry's name, or an import's label.
    pub registry: String,
    /// The schema id; absent for a schema fetched by GUID whose registry
    /// did not say its id.
    pub id: Option<u32>,
    /// The registry's GUID of the schema, where it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    pub format: SchemaFormat,
    /// The schema text (Avro JSON, `.proto` source or a base64 descriptor,
    /// JSON Schema).
    pub schema: String,
    /// Every schema it refers to, dependencies first.
    pub references: Vec<StoredReference>,
    pub subject: Option<String>,
    pub version: Option<i64>,
}

/// A schema another refers to, resolved to its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReference {
    /// The name the referring schema uses (an Avro full name, a `.proto` import path).
    pub name: String,
    pub subject: String,
    pub version: i64,
    pub schema: String,
}

impl StoredSchema {
    /// Every way a payload may name this schema.
    pub fn refs(&self) -> Vec<SchemaRef> {
        let mut refs = Vec::new();
        if let Some(id) = self.id {
            refs.push(SchemaRef::Id(id));
        }
        if let Some(guid) = &self.guid {
            refs.push(SchemaRef::Guid(guid.clone()));
        }
        refs
    }

    /// How people name it: its id, else its GUID.
    pub fn label(&self) -> String {
        match (self.id, &self.guid) {
            (Some(id), _) => id.to_string(),
            (None, Some(guid)) => guid.clone(),
            (None, None) => "?".to_owned(),
        }
    }

    pub fn to_row(&self) -> hindsight_archive::payload_schemas::PayloadSchemaRow {
        hindsight_archive::payload_schemas::PayloadSchemaRow {
            registry: self.registry.clone(),
            schema_key: self.refs().first().map(SchemaRef::key).unwrap_or_default(),
            schema_id: self.id.map(i64::from),
            schema_guid: self.guid.clone(),
            format: self.format.as_str().to_owned(),
            schema_text: self.schema.clone(),
            references_json: serde_json::to_string(&self.references)
                .unwrap_or_else(|_| "[]".to_owned()),
            subject: self.subject.clone(),
            version: self.version,
            stored_at: 0,
        }
    }

    pub fn from_row(
        row: &hindsight_archive::payload_schemas::PayloadSchemaRow,
    ) -> Result<Self, DecodeError> {
        Ok(StoredSchema {
            registry: row.registry.clone(),
            id: row
                .schema_id
                .map(|id| {
                    u32::try_from(id).map_err(|_| {
                        DecodeError::bad_schema(format!("schema id {id} is out of range"))
                    })
                })
                .transpose()?,
            guid: row.schema_guid.clone(),
            format: row.format.parse()?,
            schema: row.schema_text.clone(),
            references: serde_json::from_str(&row.references_json).map_err(|error| {
                DecodeError::bad_schema(format!(
                    "the stored references of schema {} cannot be read: {error}",
                    row.schema_key
                ))
            })?,
            subject: row.subject.clone(),
            version: row.version,
        })
    }
}

/// A decoded payload, with where its schema came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decoded {
    /// `avro`, `protobuf`, `json_schema`, or `json` for plain JSON.
    pub format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_guid: Option<String>,
    /// The registry (or import, or `file:` and the local file) the schema came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// The record or message type, where the schema names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_name: Option<String>,
    pub value: serde_json::Value,
}
