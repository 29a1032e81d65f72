//! `hindsight schemas list|show|import`, opening the schema store for the
//! other commands, and the capture of schemas while archiving.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{bail, Context};
use clap::Subcommand;
use hindsight_archive::catalog::Catalog;
use hindsight_archive::Event;
use hindsight_ingest::EventObserver;
use hindsight_schemas::wire::value_schema_header;
use hindsight_schemas::{SchemaFormat, SchemaRef, Schemas, StoredReference, StoredSchema};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Every schema the catalog keeps: registry, id, format, subject, version.
    List {
        /// Print one JSON object per schema.
        #[arg(long)]
        json: bool,
    },
    /// One schema's text and references.
    Show {
        /// The schema id.
        id: u32,
        /// The registry (or import label) it belongs to, when several have the id.
        #[arg(long)]
        registry: Option<String>,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Store schemas for archives whose registry is gone: schema files
    /// (`.avsc`, `.proto`, JSON Schema `.json`) under the id their payloads
    /// carry, or a registry export (`--export`).
    Import {
        /// Schema files; with one file, `--id` is the id payloads carry.
        files: Vec<PathBuf>,
        /// A registry export: a JSON array of
        /// `{"subject", "version", "id", "schemaType", "schema", "references"}`,
        /// as `GET /subjects/{s}/versions/{v}` answers.
        #[arg(long, conflicts_with = "files")]
        export: Option<PathBuf>,
        /// The label the schemas are stored under: the name of the registry
        /// that payloads' ids belong to.
        #[arg(long)]
        registry: String,
        /// The schema id of the one file.
        #[arg(long)]
        id: Option<u32>,
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        version: Option<i64>,
    },
}

/// The schema store of a command: the catalog's schemas and `[schemas]`.
pub async fn open(config: &Config, catalog: &Catalog) -> anyhow::Result<Arc<Schemas>> {
    Schemas::open(config.schemas.clone(), Some(catalog.clone()))
        .await
        .map_err(|error| anyhow::anyhow!(error))
        .context("cannot set up [schemas]")
}

pub async fn run(config: &Config, command: SchemasCommand) -> anyhow::Result<()> {
    let (_store, catalog) = crate::open::open_archive(config).await?;
    let schemas = open(config, &catalog).await?;
    match command {
        SchemasCommand::List { json } => {
            let known = schemas.known();
            if json {
                for schema in &known {
                    println!("{}", serde_json::to_string(&summary(schema))?);
                }
            } else if known.is_empty() {
                println!("no schemas stored yet: they are fetched while archiving, or imported");
            } else {
                println!(
                    "{:<16} {:>8}  {:<12} {:<40} {:>7}",
                    "REGISTRY", "ID", "FORMAT", "SUBJECT", "VERSION"
                );
                for schema in &known {
                    println!(
                        "{:<16} {:>8}  {:<12} {:<40} {:>7}",
                        schema.registry,
                        schema.label(),
                        schema.format.as_str(),
                        schema.subject.as_deref().unwrap_or("-"),
                        schema
                            .version
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "-".to_owned())
                    );
                }
            }
        }
        SchemasCommand::Show { id, registry, json } => {
            let matching: Vec<StoredSchema> = schemas
                .known()
                .into_iter()
                .filter(|schema| schema.id == Some(id))
                .filter(|schema| {
                    registry
                        .as_deref()
                        .is_none_or(|name| schema.registry == name)
                })
                .collect();
            let schema = match matching.as_slice() {
                [] => bail!("no stored schema with id {id}"),
                [one] => one,
                several => bail!(
                    "schema id {id} is stored for several registries ({}): pick one with --registry",
                    several.iter().map(|s| s.registry.as_str()).collect::<Vec<_>>().join(", ")
                ),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(schema)?);
            } else {
                println!(
                    "registry {}, id {}, {}{}{}",
                    schema.registry,
                    schema.label(),
                    schema.format.as_str(),
                    schema
                        .subject
                        .as_deref()
                        .map(|s| format!(", subject {s}"))
                        .unwrap_or_default(),
                    schema
                        .version
                        .map(|v| format!(", version {v}"))
                        .unwrap_or_default()
                );
                for reference in &schema.references {
                    println!(
                        "references {} (subject {}, version {})",
                        reference.name, reference.subject, reference.version
                    );
                }
                println!("{}", schema.schema);
            }
        }
        SchemasCommand::Import {
            files,
            export,
            registry,
            id,
            subject,
            version,
        } => {
            let imported = match export {
                Some(export) => from_export(&export, &registry)?,
                None => from_files(&files, &registry, id, subject, version)?,
            };
            let mut added = 0;
            for schema in imported {
                let (id, format) = (schema.label(), schema.format);
                // Refuse what does not compile, before it is stored.
                Schemas::check(&schema)
                    .map_err(|error| anyhow::anyhow!(error.message))
                    .with_context(|| format!("schema {id} ({})", format.as_str()))?;
                if schemas.insert(schema) {
                    added += 1;
                } else {
                    println!("schema {id} of {registry} is already stored; kept the stored one");
                }
            }
            let stored = schemas.persist().await?;
            println!("imported {added} schema(s) into registry label {registry:?} ({stored} new in the catalog)");
        }
    }
    Ok(())
}

fn summary(schema: &StoredSchema) -> serde_json::Value {
    serde_json::json!({
        "registry": schema.registry,
        "id": schema.id,
        "guid": schema.guid,
        "format": schema.format.as_str(),
        "subject": schema.subject,
        "version": schema.version,
        "references": schema.references.iter().map(|r| &r.name).collect::<Vec<_>>(),
    })
}

fn from_files(
    files: &[PathBuf],
    registry: &str,
    id: Option<u32>,
    subject: Option<String>,
    version: Option<i64>,
) -> anyhow::Result<Vec<StoredSchema>> {
    let [file] = files else {
        bail!("import one schema file at a time with --id (the id its payloads carry), or a registry export with --export");
    };
    let Some(id) = id else {
        bail!(
            "--id is needed: the schema id that payloads written with {} carry",
            file.display()
        );
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let format = match file.extension().and_then(|e| e.to_str()) {
        Some("avsc") => SchemaFormat::Avro,
        Some("proto") => SchemaFormat::Protobuf,
        Some("json") => SchemaFormat::JsonSchema,
        _ => bail!(
            "{}: a schema file is .avsc, .proto or .json (JSON Schema)",
            file.display()
        ),
    };
    Ok(vec![StoredSchema {
        registry: registry.to_owned(),
        id: Some(id),
        guid: None,
        format,
        schema: text,
        references: Vec::new(),
        subject,
        version,
    }])
}

#[derive(Debug, Deserialize)]
struct ExportedSchema {
    subject: Option<String>,
    version: Option<i64>,
    id: u32,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    schema: String,
    #[serde(default)]
    references: Vec<ExportedReference>,
}

#[derive(Debug, Clone, Deserialize)]
struct ExportedReference {
    name: String,
    subject: String,
    version: i64,
}

/// A registry export, references resolved within it.
fn from_export(path: &PathBuf, registry: &str) -> anyhow::Result<Vec<StoredSchema>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let exported: Vec<ExportedSchema> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a registry export (a JSON array of schemas)",
            path.display()
        )
    })?;
    let find = |subject: &str, version: i64| {
        exported.iter().find(|schema| {
            schema.subject.as_deref() == Some(subject) && schema.version == Some(version)
        })
    };
    let mut out = Vec::new();
    let mut seen_ids = HashSet::new();
    for schema in &exported {
        if !seen_ids.insert(schema.id) {
            continue; // one id under several subjects: one schema
        }
        let mut references: Vec<StoredReference> = Vec::new();
        let mut stack: Vec<(ExportedReference, usize)> = schema
            .references
            .iter()
            .rev()
            .cloned()
            .map(|r| (r, 0))
            .collect();
        // Depth first, dependencies before their users.
        let mut order: Vec<ExportedReference> = Vec::new();
        while let Some((reference, depth)) = stack.pop() {
            if depth > 16 {
                bail!(
                    "schema {}: references nest deeper than 16 levels",
                    schema.id
                );
            }
            let target = find(&reference.subject, reference.version).with_context(|| {
                format!(
                    "schema {} refers to {} (subject {} version {}), which the export does not hold",
                    schema.id, reference.name, reference.subject, reference.version
                )
            })?;
            order.push(reference.clone());
            stack.extend(target.references.iter().cloned().map(|r| (r, depth + 1)));
        }
        for reference in order.into_iter().rev() {
            if references.iter().any(|known| known.name == reference.name) {
                continue;
            }
            let target = find(&reference.subject, reference.version)
                .context("a reference vanished from the export")?;
            references.push(StoredReference {
                name: reference.name,
                subject: reference.subject,
                version: reference.version,
                schema: target.schema.clone(),
            });
        }
        out.push(StoredSchema {
            registry: registry.to_owned(),
            id: Some(schema.id),
            guid: None,
            format: SchemaFormat::from_registry(schema.schema_type.as_deref())
                .map_err(|error| anyhow::anyhow!(error.message))?,
            schema: schema.schema.clone(),
            references,
            subject: schema.subject.clone(),
            version: schema.version,
        });
    }
    Ok(out)
}

/// Sees every archived event; the first time a (source, topic, schema id)
/// shows up it is handed to a task that fetches the schema from the
/// registry and stores it in the catalog. Ingest never waits for it.
pub struct SchemaCapture {
    /// Hashes of the (source, topic, schema) seen so far.
    seen: Mutex<HashSet<u64>>,
    found: mpsc::UnboundedSender<(String, String, SchemaRef)>,
}

impl SchemaCapture {
    /// `None` when no registry is configured: nothing to capture from.
    pub fn spawn(schemas: &Arc<Schemas>, cancel: CancellationToken) -> Option<Arc<Self>> {
        if schemas.settings().registries.is_empty() {
            return None;
        }
        let (found, mut wanted) = mpsc::unbounded_channel::<(String, String, SchemaRef)>();
        let schemas = Arc::clone(schemas);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = wanted.recv() => next,
                    () = cancel.cancelled() => None,
                };
                let Some((source, topic, id)) = next else {
                    break;
                };
                if schemas.capture(&source, &topic, &[id]).await > 0 {
                    if let Err(error) = schemas.persist().await {
                        tracing::warn!(%error, "cannot store fetched schemas in the catalog; will retry");
                    }
                }
            }
            if let Err(error) = schemas.persist().await {
                tracing::warn!(%error, "cannot store fetched schemas in the catalog");
            }
        });
        Some(Arc::new(SchemaCapture {
            seen: Mutex::new(HashSet::new()),
            found,
        }))
    }
}

impl EventObserver for SchemaCapture {
    fn observe(&self, source: &str, event: &Event) {
        let Some(payload) = event.payload.as_deref() else {
            return;
        };
        let header = value_schema_header(&event.headers);
        let Some(id) = Schemas::schema_ref(payload, header) else {
            return;
        };
        // A hash, not the owned key: this runs for every archived event,
        // and allocates only for a (source, topic, schema) not seen before.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (source, event.topic.as_str(), &id).hash(&mut hasher);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() < 100_000 && seen.insert(hasher.finish()) {
            let _ = self
                .found
                .send((source.to_owned(), event.topic.clone(), id));
        }
    }
}
