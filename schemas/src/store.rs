//! [`Schemas`]: which schema wrote a payload, and its decoded value.
//!
//! A payload's schema is found, in order:
//! 1. a topic rule with a local schema file (`.avsc`, `.proto`, `.desc`);
//! 2. its schema id (Confluent framing or a `__value_schema_id` header),
//!    looked up in the catalog, then in the topic's registry (a rule's
//!    `registry`, else `[schemas] registry`, else the only one configured),
//!    and stored in the catalog once fetched;
//! 3. otherwise, a payload that is JSON is plain JSON.
//!
//! The compiled schemas are cached; a registry failure is remembered for
//! [`RETRY_AFTER`], so a query over a million events of an unknown id asks
//! the registry once, not once per row. Calls from synchronous code (SQL
//! functions) go through one thread of the store's own, which runs the
//! registry client.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hindsight_archive::access::glob_matches;
use hindsight_archive::catalog::Catalog;
use hindsight_archive::payload_schemas::PayloadSchemaRow;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::avro::AvroSchema;
use crate::error::{DecodeError, DecodeErrorKind};
use crate::json_schema::JsonSchema;
use crate::protobuf::{read_message_indexes, ProtobufSchema};
use crate::registry::{RegistryClient, RegistryConfig};
use crate::wire::{frame, Framed};
use crate::{Decoded, SchemaFormat, SchemaRef, StoredSchema};

/// How long a registry failure is remembered before the registry is asked again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The longest a synchronous caller waits for one fetch (with its references).
const FETCH_BOUND: Duration = Duration::from_secs(120);

/// `[schemas]` in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSettings {
    /// `[schemas.registries.NAME]`: Confluent-compatible schema registries.
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryConfig>,
    /// The registry of topics no rule names (needed only with several).
    #[serde(default)]
    pub registry: Option<String>,
    /// `[[schemas.topics]]`: per-topic rules, the first match wins.
    #[serde(default)]
    pub topics: Vec<TopicRule>,
}

/// How the payloads of some topics are decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicRule {
    /// Only this source's topics (all sources when absent).
    #[serde(default)]
    pub source: Option<String>,
    /// A topic name, or a pattern with `*` and `?`.
    pub topic: String,
    /// The registry that holds this topic's schema ids.
    #[serde(default)]
    pub registry: Option<String>,
    /// A local schema: `.avsc`, `.proto` (its directory is the import
    /// path) or a compiled descriptor set (`.desc`, `.pb`).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// The Protobuf message type of a `.proto` or `.desc` file.
    #[serde(default)]
    pub message: Option<String>,
    /// With a local file: whether payloads still carry the Confluent
    /// framing (its id is then ignored). Off by default.
    #[serde(default)]
    pub confluent_framing: bool,
}

impl TopicRule {
    fn matches(&self, source: Option<&str>, topic: &str) -> bool {
        if let (Some(wanted), Some(source)) = (&self.source, source) {
            if wanted != source {
                return false;
            }
        }
        glob_matches(&self.topic, topic)
    }
}

impl SchemaSettings {
    /// Problems a start-up check reports, each with its path.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, registry) in &self.registries {
            problems.extend(registry.problems(&format!("schemas.registries.{name}")));
        }
        let known = |name: &str| self.registries.contains_key(name);
        if let Some(name) = &self.registry {
            if !known(name) {
                problems.push(format!("schemas.registry: no [schemas.registries.{name}]"));
            }
        }
        for (index, rule) in self.topics.iter().enumerate() {
            let path = format!("schemas.topics[{index}]");
            if let Some(name) = &rule.registry {
                if !known(name) {
                    problems.push(format!("{path}.registry: no [schemas.registries.{name}]"));
                }
            }
            if rule.registry.is_some() && rule.file.is_some() {
                problems.push(format!("{path}: set registry or file, not both"));
            }
            if let Some(file) = &rule.file {
                let extension = file.extension().and_then(|e| e.to_str()).unwrap_or("");
                match extension {
                    "avsc" => {}
                    "proto" | "desc" | "pb" | "protoset" if rule.message.is_none() => problems
                        .push(format!(
                            "{path}.message: a Protobuf file needs the message type"
                        )),
                    "proto" | "desc" | "pb" | "protoset" => {}
                    _ => problems.push(format!(
                        "{path}.file: {} is not .avsc, .proto or a descriptor set (.desc)",
                        file.display()
                    )),
                }
            }
        }
        problems
    }

    /// Reads the registries' secret files.
    pub fn load_secrets(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, registry) in &mut self.registries {
            problems.extend(registry.load_secrets(&format!("schemas.registries.{name}")));
        }
        problems
    }
}

/// A compiled schema, ready to decode.
enum Compiled {
    Avro(AvroSchema),
    Protobuf(ProtobufSchema),
    JsonSchema(JsonSchema),
}

impl Compiled {
    fn compile(stored: &StoredSchema) -> Result<Self, DecodeError> {
        match stored.format {
            SchemaFormat::Avro => {
                let references: Vec<String> = stored
                    .references
                    .iter()
                    .map(|reference| reference.schema.clone())
                    .collect();
                Ok(Compiled::Avro(AvroSchema::parse(
                    &stored.schema,
                    &references,
                )?))
            }
            SchemaFormat::Protobuf => Ok(Compiled::Protobuf(ProtobufSchema::from_registry(
                &stored.schema,
                &references(stored),
            )?)),
            SchemaFormat::JsonSchema => Ok(Compiled::JsonSchema(JsonSchema::parse(
                &stored.schema,
                &references(stored),
            )?)),
        }
    }

    /// Decodes a framed body: for Protobuf, the message-index path first
    /// (or, when the id came in a header, after the id in that header).
    fn decode_framed(
        &self,
        body: &[u8],
        header_tail: Option<&[u8]>,
    ) -> Result<(serde_json::Value, Option<String>), DecodeError> {
        match self {
            Compiled::Avro(schema) => Ok((schema.decode(body)?, Some(schema.describe()))),
            Compiled::Protobuf(schema) => {
                let (indexes, body) = match header_tail {
                    Some([]) => (vec![0], body),
                    Some(tail) => (read_message_indexes(tail)?.0, body),
                    None => {
                        let (indexes, used) = read_message_indexes(body)?;
                        (indexes, &body[used..])
                    }
                };
                let message = schema.message_at(&indexes)?;
                let name = message.full_name().to_owned();
                let value = schema.decode(&message, body)?;
                Ok((value, Some(name)))
            }
            Compiled::JsonSchema(schema) => Ok((schema.decode(body)?, None)),
        }
    }
}

/// A stored schema's references as (the name it uses, their text).
fn references(stored: &StoredSchema) -> Vec<(String, String)> {
    stored
        .references
        .iter()
        .map(|reference| (reference.name.clone(), reference.schema.clone()))
        .collect()
}

/// A schema the store knows: what the catalog holds, compiled on first use.
pub struct Known {
    stored: StoredSchema,
    compiled: OnceLock<Result<Compiled, DecodeError>>,
}

impl Known {
    fn compiled(&self) -> Result<&Compiled, DecodeError> {
        self.compiled
            .get_or_init(|| Compiled::compile(&self.stored))
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// An Avro payload's writer schema: a stored one, or a rule's local file.
/// [`AvroWriter::identity`] tells writers apart (the store never drops one).
pub enum AvroWriter {
    Stored(Arc<Known>),
    Local(usize),
}

impl AvroWriter {
    /// The same for every payload of the same writer schema.
    pub fn identity(&self) -> (usize, bool) {
        match self {
            AvroWriter::Stored(known) => (Arc::as_ptr(known) as usize, true),
            AvroWriter::Local(index) => (*index, false),
        }
    }

    /// For people: the schema's label (registry id or file).
    pub fn label(&self) -> String {
        match self {
            AvroWriter::Stored(known) => known.stored.label(),
            AvroWriter::Local(index) => format!("local schema file of rule {index}"),
        }
    }
}

/// A local schema file of a topic rule, compiled once.
struct LocalSchema {
    label: String,
    schema: Result<LocalCompiled, DecodeError>,
}

enum LocalCompiled {
    Avro(AvroSchema),
    Protobuf(ProtobufSchema, String),
}

type Key = (String, SchemaRef);

/// A registry request from synchronous code, answered by the store's thread.
struct Fetch {
    registry: Arc<RegistryClient>,
    wanted: SchemaRef,
    answer: std::sync::mpsc::SyncSender<Result<StoredSchema, DecodeError>>,
}

/// Decodes payloads; one per process, shared.
pub struct Schemas {
    settings: SchemaSettings,
    registries: BTreeMap<String, Arc<RegistryClient>>,
    known: RwLock<HashMap<Key, Arc<Known>>>,
    failures: Mutex<HashMap<Key, (Instant, DecodeError)>>,
    local: Vec<Option<LocalSchema>>,
    /// Fetched, not yet written to the catalog.
    pending: Mutex<Vec<StoredSchema>>,
    catalog: Option<Catalog>,
    fetches: mpsc::UnboundedSender<Fetch>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schemas")
            .field("registries", &self.registries.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Schemas {
    /// Loads every stored schema from the catalog (when there is one) and
    /// compiles the rules' local files. Fails only on a registry that
    /// cannot be set up (a bad URL or CA file).
    pub async fn open(
        settings: SchemaSettings,
        catalog: Option<Catalog>,
    ) -> Result<Arc<Self>, String> {
        let rows = match &catalog {
            Some(catalog) => catalog
                .payload_schemas()
                .await
                .map_err(|error| format!("cannot read the stored schemas: {error}"))?,
            None => Vec::new(),
        };
        Self::build(settings, catalog, &rows)
    }

    /// Asks every registry once ([`RegistryClient::probe`]): its name, and
    /// the schema types it serves or why it cannot be used.
    pub async fn probe_registries(&self) -> Vec<(String, Result<Vec<String>, DecodeError>)> {
        let mut answers = Vec::new();
        for (name, client) in &self.registries {
            answers.push((name.clone(), client.probe().await));
        }
        answers
    }

    /// No registry, no rule, no catalog: plain JSON, and what is inserted.
    pub fn plain() -> Arc<Self> {
        match Self::build(SchemaSettings::default(), None, &[]) {
            Ok(schemas) => schemas,
            Err(error) => unreachable!("no registry to set up: {error}"),
        }
    }

    fn build(
        settings: SchemaSettings,
        catalog: Option<Catalog>,
        rows: &[PayloadSchemaRow],
    ) -> Result<Arc<Self>, String> {
        let mut registries = BTreeMap::new();
        for (name, config) in &settings.registries {
            registries.insert(name.clone(), Arc::new(RegistryClient::new(name, config)?));
        }
        let mut known = HashMap::new();
        for row in rows {
            match StoredSchema::from_row(row) {
                Ok(stored) => {
                    let entry = Arc::new(Known {
                        stored,
                        compiled: OnceLock::new(),
                    });
                    for schema in entry.stored.refs() {
                        known.insert((entry.stored.registry.clone(), schema), Arc::clone(&entry));
                    }
                }
                Err(error) => {
                    tracing::warn!(registry = row.registry, schema = row.schema_key, %error, "a stored schema cannot be read")
                }
            }
        }
        let local = settings
            .topics
            .iter()
            .map(|rule| {
                rule.file
                    .as_ref()
                    .map(|file| load_local(file, rule.message.as_deref()))
            })
            .collect();
        let (fetches, requests) = mpsc::unbounded_channel();
        if !registries.is_empty() {
            spawn_fetcher(requests);
        }
        Ok(Arc::new(Schemas {
            settings,
            registries,
            known: RwLock::new(known),
            failures: Mutex::new(HashMap::new()),
            local,
            pending: Mutex::new(Vec::new()),
            catalog,
            fetches,
        }))
    }

    pub fn settings(&self) -> &SchemaSettings {
        &self.settings
    }

    /// Every schema the store knows, by registry and id.
    pub fn known(&self) -> Vec<StoredSchema> {
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<StoredSchema> = known.values().map(|known| known.stored.clone()).collect();
        all.sort_by(|a, b| (&a.registry, a.id, &a.guid).cmp(&(&b.registry, b.id, &b.guid)));
        all.dedup();
        all
    }

    /// Adds a schema (an import, or one fetched by an async caller): kept
    /// in memory and queued for the catalog. The first one under an id stays.
    pub fn insert(&self, stored: StoredSchema) -> bool {
        let refs = stored.refs();
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        if refs.is_empty()
            || refs
                .iter()
                .any(|schema| known.contains_key(&(stored.registry.clone(), schema.clone())))
        {
            return false;
        }
        let entry = Arc::new(Known {
            stored: stored.clone(),
            compiled: OnceLock::new(),
        });
        for schema in refs {
            known.insert((stored.registry.clone(), schema), Arc::clone(&entry));
        }
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(stored);
        true
    }

    /// Writes the schemas fetched since the last call to the catalog.
    /// Returns how many were new there.
    pub async fn persist(&self) -> hindsight_archive::Result<usize> {
        let Some(catalog) = &self.catalog else {
            return Ok(0);
        };
        let pending =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let mut stored = 0;
        for (index, schema) in pending.iter().enumerate() {
            match catalog.put_payload_schema(&schema.to_row()).await {
                Ok(new) => stored += usize::from(new),
                Err(error) => {
                    // Put the rest back for the next call.
                    self.pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend(pending[index..].iter().cloned());
                    return Err(error);
                }
            }
        }
        Ok(stored)
    }

    /// Writes fetched schemas to the catalog every second until `stop`.
    pub fn spawn_persister(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let schemas = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let stopped = tokio::select! {
                    () = stop.cancelled() => true,
                    () = tokio::time::sleep(Duration::from_secs(1)) => false,
                };
                if let Err(error) = schemas.persist().await {
                    tracing::warn!(%error, "cannot store fetched schemas in the catalog; will retry");
                }
                if stopped {
                    return;
                }
            }
        });
    }

    /// The registry a topic's schema ids belong to.
    fn registry_for(&self, rule: Option<&TopicRule>) -> Option<&Arc<RegistryClient>> {
        let name = rule
            .and_then(|rule| rule.registry.as_deref())
            .or(self.settings.registry.as_deref());
        match name {
            Some(name) => self.registries.get(name),
            None if self.registries.len() == 1 => self.registries.values().next(),
            None => None,
        }
    }

    fn rule_for(&self, source: Option<&str>, topic: Option<&str>) -> Option<(usize, &TopicRule)> {
        let topic = topic?;
        self.settings
            .topics
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.matches(source, topic))
    }

    /// Decodes one payload. Synchronous: a schema that must come from the
    /// registry is fetched on the store's thread, within the registry's
    /// timeout. `value_schema_header` is the `__value_schema_id` header.
    pub fn decode(
        &self,
        source: Option<&str>,
        topic: Option<&str>,
        payload: &[u8],
        value_schema_header: Option<&[u8]>,
    ) -> Result<Decoded, DecodeError> {
        let rule = self.rule_for(source, topic);
        if let Some((index, rule)) = rule {
            if let Some(Some(local)) = self.local.get(index) {
                return self.decode_local(local, rule, payload);
            }
        }
        let rule = rule.map(|(_, rule)| rule);
        let framed = match frame(payload, value_schema_header) {
            Ok(framed) => framed,
            Err(error) => {
                // Not framed: plain JSON is still JSON.
                return match serde_json::from_slice::<serde_json::Value>(payload) {
                    Ok(value) if !payload.is_empty() => Ok(Decoded {
                        format: "json",
                        schema_id: None,
                        schema_guid: None,
                        registry: None,
                        subject: None,
                        version: None,
                        schema_name: None,
                        value,
                    }),
                    _ => Err(error),
                };
            }
        };
        let known = self.schema_of(rule, &framed.schema)?;
        self.decode_with(&known, framed)
    }

    fn decode_with(&self, known: &Known, framed: Framed<'_>) -> Result<Decoded, DecodeError> {
        let compiled = known.compiled()?;
        let (value, schema_name) = compiled
            .decode_framed(framed.body, framed.header_tail)
            .map_err(|error| {
                DecodeError::new(
                    error.kind,
                    format!(
                        "schema {} of {}: {}",
                        known.stored.label(),
                        known.stored.registry,
                        error.message
                    ),
                )
            })?;
        Ok(Decoded {
            format: known.stored.format.as_str(),
            schema_id: known.stored.id,
            schema_guid: known.stored.guid.clone(),
            registry: Some(known.stored.registry.clone()),
            subject: known.stored.subject.clone(),
            version: known.stored.version,
            schema_name,
            value,
        })
    }

    fn decode_local(
        &self,
        local: &LocalSchema,
        rule: &TopicRule,
        payload: &[u8],
    ) -> Result<Decoded, DecodeError> {
        let schema = local.schema.as_ref().map_err(Clone::clone)?;
        let body = if rule.confluent_framing {
            frame(payload, None)?.body
        } else {
            payload
        };
        let (format, value, name) = match schema {
            LocalCompiled::Avro(schema) => ("avro", schema.decode(body)?, schema.describe()),
            LocalCompiled::Protobuf(schema, message) => {
                let body = if rule.confluent_framing {
                    &body[read_message_indexes(body)?.1..]
                } else {
                    body
                };
                let descriptor = schema.message_named(message)?;
                (
                    "protobuf",
                    schema.decode(&descriptor, body)?,
                    message.clone(),
                )
            }
        };
        Ok(Decoded {
            format,
            schema_id: None,
            schema_guid: None,
            registry: Some(local.label.clone()),
            subject: None,
            version: None,
            schema_name: Some(name),
            value,
        })
    }

    /// The schema of `id`: from memory, else from the catalog's registry
    /// entries, else fetched (and remembered, and queued for the catalog).
    fn schema_of(
        &self,
        rule: Option<&TopicRule>,
        id: &SchemaRef,
    ) -> Result<Arc<Known>, DecodeError> {
        let registry = self.registry_for(rule);
        if let Some(found) = self.lookup(registry.map(|registry| registry.name()), id) {
            return Ok(found);
        }
        let Some(registry) = registry else {
            return Err(DecodeError::new(
                DecodeErrorKind::UnknownSchema,
                if self.registries.is_empty() {
                    format!("schema {id} is not in the catalog, and no schema registry is configured ([schemas.registries.NAME], or `hindsight schemas import`)")
                } else {
                    format!("schema {id} is not in the catalog, and no registry is named for this topic ([schemas] registry, or a [[schemas.topics]] rule)")
                },
            ));
        };
        let key = (registry.name().to_owned(), id.clone());
        if let Some((since, error)) = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            if since.elapsed() < RETRY_AFTER {
                return Err(error.clone());
            }
        }
        match self.fetch_blocking(registry, id) {
            Ok(stored) => {
                self.insert(stored);
                self.lookup(Some(registry.name()), id).ok_or_else(|| {
                    DecodeError::new(
                        DecodeErrorKind::UnknownSchema,
                        format!("schema {id} vanished"),
                    )
                })
            }
            Err(error) => {
                let error = if error.kind == DecodeErrorKind::RegistryUnavailable {
                    DecodeError::new(
                        error.kind,
                        format!("schema {id} is not in the catalog, and {}", error.message),
                    )
                } else {
                    error
                };
                self.failures
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, (Instant::now(), error.clone()));
                Err(error)
            }
        }
    }

    /// A known schema of `id`: in `registry` when one is named, else the
    /// one registry (or import) that has that id.
    fn lookup(&self, registry: Option<&str>, id: &SchemaRef) -> Option<Arc<Known>> {
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(registry) = registry {
            if let Some(found) = known.get(&(registry.to_owned(), id.clone())) {
                return Some(Arc::clone(found));
            }
        }
        let mut candidates = known.iter().filter(|((_, known_id), _)| known_id == id);
        match (candidates.next(), candidates.next()) {
            (Some((_, found)), None) => Some(Arc::clone(found)),
            _ => None,
        }
    }

    fn fetch_blocking(
        &self,
        registry: &Arc<RegistryClient>,
        wanted: &SchemaRef,
    ) -> Result<StoredSchema, DecodeError> {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        let unavailable = |cause: &str| {
            DecodeError::new(
                DecodeErrorKind::RegistryUnavailable,
                format!("schema registry {:?}: {cause}", registry.name()),
            )
        };
        self.fetches
            .send(Fetch {
                registry: Arc::clone(registry),
                wanted: wanted.clone(),
                answer,
            })
            .map_err(|_| unavailable("the registry thread has stopped"))?;
        // A fetch is bounded by the registry's timeout per request; this
        // bound only guards against a thread that never answers.
        answered
            .recv_timeout(FETCH_BOUND)
            .map_err(|_| unavailable("no answer from the registry thread"))?
    }

    /// The writer schema of an Avro payload and its body, for the typed SQL
    /// views, which decode with `arrow-avro`. Found as [`Schemas::decode`]
    /// finds it; an error says why the payload is not Avro this way.
    pub fn avro_payload<'a>(
        &self,
        source: Option<&str>,
        topic: Option<&str>,
        payload: &'a [u8],
        value_schema_header: Option<&'a [u8]>,
    ) -> Result<(AvroWriter, &'a [u8]), DecodeError> {
        let rule = self.rule_for(source, topic);
        if let Some((index, rule)) = rule {
            if let Some(Some(local)) = self.local.get(index) {
                let LocalCompiled::Avro(_) = local.schema.as_ref().map_err(Clone::clone)? else {
                    return Err(DecodeError::mismatch(format!(
                        "the topic's schema {} is not Avro",
                        local.label
                    )));
                };
                let body = if rule.confluent_framing {
                    frame(payload, None)?.body
                } else {
                    payload
                };
                return Ok((AvroWriter::Local(index), body));
            }
        }
        let framed = frame(payload, value_schema_header)?;
        let known = self.schema_of(rule.map(|(_, rule)| rule), &framed.schema)?;
        if known.stored.format != SchemaFormat::Avro {
            return Err(DecodeError::mismatch(format!(
                "schema {} is {}, not Avro",
                known.stored.label(),
                known.stored.format.as_str()
            )));
        }
        Ok((AvroWriter::Stored(known), framed.body))
    }

    /// The newest version the store knows of `writer`'s subject in its
    /// registry (Avro, without references), else `writer` itself: the
    /// shape a typed view reads every version as.
    pub fn avro_latest(&self, writer: AvroWriter) -> AvroWriter {
        let AvroWriter::Stored(known) = &writer else {
            return writer;
        };
        let (Some(subject), Some(version)) = (&known.stored.subject, known.stored.version) else {
            return writer;
        };
        let all = self.known.read().unwrap_or_else(PoisonError::into_inner);
        let newest = all
            .values()
            .filter(|candidate| {
                candidate.stored.registry == known.stored.registry
                    && candidate.stored.subject.as_ref() == Some(subject)
                    && candidate.stored.format == SchemaFormat::Avro
                    && candidate.stored.references.is_empty()
                    && candidate.stored.version.is_some_and(|v| v > version)
            })
            .max_by_key(|candidate| candidate.stored.version);
        match newest {
            Some(newest) => AvroWriter::Stored(Arc::clone(newest)),
            None => writer,
        }
    }

    /// The Avro JSON of a writer [`Schemas::avro_payload`] returned.
    pub fn avro_schema_json(&self, writer: &AvroWriter) -> Result<String, DecodeError> {
        let schema = match writer {
            AvroWriter::Stored(known) => match known.compiled()? {
                Compiled::Avro(schema) => schema,
                _ => return Err(DecodeError::mismatch("the schema is not Avro")),
            },
            AvroWriter::Local(index) => match self.local.get(*index) {
                Some(Some(LocalSchema {
                    schema: Ok(LocalCompiled::Avro(schema)),
                    ..
                })) => schema,
                _ => return Err(DecodeError::mismatch("the topic's schema is not Avro")),
            },
        };
        schema.to_json()
    }

    /// Whether a schema compiles (an import refuses one that does not).
    pub fn check(stored: &StoredSchema) -> Result<(), DecodeError> {
        Compiled::compile(stored).map(|_| ())
    }

    /// What search looks in for a payload framed by a schema (or of a
    /// topic with a local schema file): `Some(Some(json))` when it decodes,
    /// `Some(None)` when it does not; `None` for any other payload, whose
    /// UTF-8 text is searched. The in-memory twin of SQL's `decoded_text`.
    pub fn decoded_text(
        &self,
        source: Option<&str>,
        topic: Option<&str>,
        payload: &[u8],
        value_schema_header: Option<&[u8]>,
    ) -> Option<Option<String>> {
        if Self::schema_ref(payload, value_schema_header).is_none()
            && !self.has_local_schema(source, topic)
        {
            return None;
        }
        Some(
            self.decode(source, topic, payload, value_schema_header)
                .ok()
                .map(|decoded| decoded.value.to_string()),
        )
    }

    /// Whether a topic's payloads decode with a local schema file (they
    /// then need no framing).
    pub fn has_local_schema(&self, source: Option<&str>, topic: Option<&str>) -> bool {
        self.rule_for(source, topic)
            .is_some_and(|(index, _)| matches!(self.local.get(index), Some(Some(_))))
    }

    /// The schema id of a payload, when it is framed.
    pub fn schema_id(payload: &[u8], value_schema_header: Option<&[u8]>) -> Option<u32> {
        match Self::schema_ref(payload, value_schema_header)? {
            SchemaRef::Id(id) => Some(id),
            SchemaRef::Guid(_) => None,
        }
    }

    /// How a framed payload names its schema.
    pub fn schema_ref(payload: &[u8], value_schema_header: Option<&[u8]>) -> Option<SchemaRef> {
        frame(payload, value_schema_header)
            .ok()
            .map(|framed| framed.schema)
    }

    /// Fetches, from the topic's registry, every id among `ids` the store
    /// does not know yet, and queues them for the catalog. For ingest: the
    /// schemas of what was archived are kept while the registry still has
    /// them. Failures are logged and remembered, never raised.
    pub async fn capture(&self, source: &str, topic: &str, ids: &[SchemaRef]) -> usize {
        let rule = self
            .rule_for(Some(source), Some(topic))
            .map(|(_, rule)| rule);
        if rule.is_some_and(|rule| rule.file.is_some()) {
            return 0;
        }
        let Some(registry) = self.registry_for(rule).cloned() else {
            return 0;
        };
        let mut captured = 0;
        for id in ids {
            if self.lookup(Some(registry.name()), id).is_some() {
                continue;
            }
            let key = (registry.name().to_owned(), id.clone());
            let recent_failure = self
                .failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
                .is_some_and(|(since, _)| since.elapsed() < RETRY_AFTER);
            if recent_failure {
                continue;
            }
            match registry.fetch(id).await {
                Ok(stored) => {
                    captured += usize::from(self.insert(stored));
                }
                Err(error) => {
                    tracing::warn!(source, topic, schema = %id, %error, "cannot fetch the schema of archived events; will retry");
                    self.failures
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key, (Instant::now(), error));
                }
            }
        }
        captured
    }
}

/// The store's registry thread: its own single-threaded runtime, so that
/// synchronous callers (SQL functions on DataFusion's threads) can wait
/// for an answer without blocking an async runtime's own workers on
/// themselves. It ends when the store is dropped.
fn spawn_fetcher(mut requests: mpsc::UnboundedReceiver<Fetch>) {
    let started = std::thread::Builder::new()
        .name("schema-registry".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%error, "cannot start the schema registry thread");
                    return;
                }
            };
            runtime.block_on(async move {
                while let Some(fetch) = requests.recv().await {
                    tokio::spawn(async move {
                        let _ = fetch.answer.send(fetch.registry.fetch(&fetch.wanted).await);
                    });
                }
            });
        });
    if let Err(error) = started {
        tracing::error!(%error, "cannot start the schema registry thread");
    }
}

fn load_local(file: &PathBuf, message: Option<&str>) -> LocalSchema {
    let label = format!("file:{}", file.display());
    let extension = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    let read_error = |error: std::io::Error| {
        DecodeError::bad_schema(format!("cannot read {}: {error}", file.display()))
    };
    let schema = (|| match extension {
        "avsc" => {
            let text = std::fs::read_to_string(file).map_err(read_error)?;
            Ok(LocalCompiled::Avro(AvroSchema::parse(&text, &[])?))
        }
        "proto" => {
            let directory = file.parent().map(PathBuf::from).unwrap_or_default();
            let mut files = Vec::new();
            collect_protos(&directory, &directory, &mut files, 0).map_err(read_error)?;
            let main = file
                .strip_prefix(&directory)
                .map(|path| path.to_string_lossy().into_owned())
                .unwrap_or_default();
            let schema = ProtobufSchema::from_proto_files(&main, &files)?;
            Ok(LocalCompiled::Protobuf(
                schema,
                message.unwrap_or_default().to_owned(),
            ))
        }
        _ => {
            let bytes = std::fs::read(file).map_err(read_error)?;
            let schema = ProtobufSchema::from_descriptor_set(&bytes)?;
            Ok(LocalCompiled::Protobuf(
                schema,
                message.unwrap_or_default().to_owned(),
            ))
        }
    })();
    if let Err(error) = &schema {
        tracing::warn!(file = %file.display(), %error, "a local schema file cannot be used; its topics show raw");
    }
    LocalSchema { label, schema }
}

/// Every `.proto` under `directory`, by its path relative to `root` (the
/// import path), at most 8 levels down.
fn collect_protos(
    root: &std::path::Path,
    directory: &std::path::Path,
    files: &mut Vec<(String, String)>,
    depth: usize,
) -> std::io::Result<()> {
    if depth > 8 {
        return Ok(());
    }
    for entry in std::fs::read_dir(directory)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(root, &path, files, depth + 1)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            let name = path
                .strip_prefix(root)
                .map(|relative| relative.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            files.push((name, std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_match_like_globs() {
        assert!(glob_matches("orders", "orders"));
        assert!(!glob_matches("orders", "orders2"));
        assert!(glob_matches("orders.*", "orders.v1"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("o?ders*", "orders-eu"));
        assert!(!glob_matches("o?ders", "oders"));
    }

    #[tokio::test]
    async fn plain_json_decodes_without_any_schema_and_framed_payloads_say_what_is_missing() {
        let schemas = Schemas::plain();
        let decoded = schemas
            .decode(None, Some("t"), br#"{"a": [1, 2]}"#, None)
            .unwrap();
        assert_eq!(decoded.format, "json");
        assert_eq!(decoded.value, serde_json::json!({"a": [1, 2]}));
        let error = schemas
            .decode(None, Some("t"), &[0, 0, 0, 0, 9, 1], None)
            .unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::UnknownSchema);
        assert!(error.message.contains("no schema registry"), "{error}");
        let error = schemas
            .decode(None, Some("t"), b"\x01binary", None)
            .unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::Framing);
    }

    #[tokio::test]
    async fn an_inserted_schema_decodes_and_a_second_insert_under_its_id_is_refused() {
        let schemas = Schemas::plain();
        let stored = StoredSchema {
            registry: "import".to_owned(),
            id: Some(3),
            guid: None,
            format: SchemaFormat::Avro,
            schema: r#"{"type": "record", "name": "R", "fields": [{"name": "n", "type": "long"}]}"#
                .to_owned(),
            references: Vec::new(),
            subject: Some("t-value".to_owned()),
            version: Some(2),
        };
        assert!(schemas.insert(stored.clone()));
        assert!(!schemas.insert(StoredSchema {
            schema: "\"string\"".to_owned(),
            ..stored
        }));
        let decoded = schemas
            .decode(None, Some("t"), &[0, 0, 0, 0, 3, 0x54], None)
            .unwrap();
        assert_eq!(decoded.value, serde_json::json!({"n": 42}));
        assert_eq!(
            (
                decoded.format,
                decoded.schema_id,
                decoded.subject.as_deref(),
                decoded.version
            ),
            ("avro", Some(3), Some("t-value"), Some(2))
        );
        let error = schemas
            .decode(None, Some("t"), &[0, 0, 0, 0, 3, 0x80], None)
            .unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::Mismatch);
        assert!(error.message.starts_with("schema 3 of import"), "{error}");
    }
}
