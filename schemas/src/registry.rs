//! A client of the Confluent Schema Registry REST API: the schema of an
//! id (`GET /schemas/ids/{id}`), with its references resolved
//! (`GET /subjects/{subject}/versions/{version}`), and the subject and
//! version it was registered under (`GET /schemas/ids/{id}/versions`).
//!
//! Every call is bounded in time (`timeout`) and in rate
//! (`max_requests_per_second`); the caller caches what it gets.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hindsight_archive::secret::Secret;
use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, DecodeErrorKind};
use crate::{SchemaFormat, SchemaRef, StoredReference, StoredSchema};

/// One `[schemas.registries.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `http://host:8081` or `https://…`, without credentials.
    pub url: String,
    /// Basic auth: the user, with `password` or `password_file`.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Bearer auth: the token, or a file holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the registry's certificate, when the
    /// system's roots do not.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long one request may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// At most this many requests a second, whatever asks.
    #[serde(default = "default_rate")]
    pub max_requests_per_second: u32,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_rate() -> u32 {
    20
}

impl RegistryConfig {
    /// Problems a start-up check reports, each with its path.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut problems = Vec::new();
        match url::Url::parse(&self.url) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => problems.push(format!(
                "{path}.url: {} is not an http:// or https:// URL",
                hindsight_archive::secret::redact_url(&self.url)
            )),
            Ok(url) if !url.username().is_empty() || url.password().is_some() => problems.push(
                format!("{path}.url: put credentials in username and password_file, not the URL"),
            ),
            Ok(_) => {}
            Err(error) => problems.push(format!("{path}.url: {error}")),
        }
        if self.username.is_some() && (self.token.is_some() || self.token_file.is_some()) {
            problems.push(format!(
                "{path}: basic auth (username) and a bearer token exclude each other"
            ));
        }
        if self.max_requests_per_second == 0 {
            problems.push(format!(
                "{path}.max_requests_per_second: must be at least 1"
            ));
        }
        problems
    }

    /// Reads `password_file` and `token_file` (a value given inline as
    /// well is a problem: which one is meant?).
    pub fn load_secrets(&mut self, path: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.password.is_some() && self.password_file.is_some() {
            problems.push(format!("{path}: set password or password_file, not both"));
        }
        if self.token.is_some() && self.token_file.is_some() {
            problems.push(format!("{path}: set token or token_file, not both"));
        }
        for (file, slot, name) in [
            (&self.password_file, &mut self.password, "password_file"),
            (&self.token_file, &mut self.token, "token_file"),
        ] {
            if let Some(file) = file {
                match std::fs::read_to_string(file) {
                    Ok(text) => *slot = Some(Secret::new(text.trim_end_matches(['\r', '\n']))),
                    Err(error) => {
                        problems.push(format!("{path}.{name}: {}: {error}", file.display()))
                    }
                }
            }
        }
        problems
    }
}

/// A registry client: one per configured registry.
#[derive(Debug)]
pub struct RegistryClient {
    name: String,
    base: url::Url,
    config: RegistryConfig,
    http: reqwest::Client,
    next_request: std::sync::Mutex<Instant>,
}

#[derive(Debug, Deserialize)]
struct SchemaAnswer {
    schema: String,
    #[serde(default)]
    id: Option<u32>,
    #[serde(default)]
    guid: Option<String>,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<ReferenceAnswer>,
}

#[derive(Debug, Deserialize)]
struct ReferenceAnswer {
    name: String,
    subject: String,
    version: i64,
}

#[derive(Debug, Deserialize)]
struct VersionAnswer {
    subject: String,
    version: i64,
}

/// References nest at most this deep (a cycle or a hostile registry stops here).
const MAX_REFERENCE_DEPTH: usize = 16;

impl RegistryClient {
    pub fn new(name: &str, config: &RegistryConfig) -> Result<Self, String> {
        let base =
            url::Url::parse(&config.url).map_err(|error| format!("registry {name:?}: {error}"))?;
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("hindsight/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|error| format!("registry {name:?}: {}: {error}", ca.display()))?;
            let certificate = reqwest::Certificate::from_pem(&pem).map_err(|error| {
                format!(
                    "registry {name:?}: {} is not a PEM certificate: {error}",
                    ca.display()
                )
            })?;
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder
            .build()
            .map_err(|error| format!("registry {name:?}: {error}"))?;
        Ok(Self {
            name: name.to_owned(),
            base,
            config: config.clone(),
            http,
            next_request: std::sync::Mutex::new(Instant::now()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The registry's URL as it may be shown.
    pub fn shown_url(&self) -> String {
        hindsight_archive::secret::redact_url(self.base.as_str())
    }

    /// One authenticated request (`GET /schemas/types`): the schema types
    /// the registry serves, or why it cannot be used (refused, TLS, 401).
    pub async fn probe(&self) -> Result<Vec<String>, DecodeError> {
        self.get::<Vec<String>>(&["schemas", "types"])
            .await?
            .ok_or_else(|| {
                self.unavailable("it answered 404 Not Found: is the URL the registry's?")
            })
    }

    /// The schema a payload names, its references resolved
    /// (`GET /schemas/ids/{id}` or `GET /schemas/guids/{guid}`).
    pub async fn fetch(&self, wanted: &SchemaRef) -> Result<StoredSchema, DecodeError> {
        let (kind, key) = match wanted {
            SchemaRef::Id(id) => ("ids", id.to_string()),
            SchemaRef::Guid(guid) => ("guids", guid.clone()),
        };
        let answer: SchemaAnswer = self.get(&["schemas", kind, &key]).await?.ok_or_else(|| {
            DecodeError::new(
                DecodeErrorKind::UnknownSchema,
                format!("schema {wanted} is not in registry {:?}", self.name),
            )
        })?;
        let format = SchemaFormat::from_registry(answer.schema_type.as_deref())?;
        let mut references = Vec::new();
        self.resolve(&answer.references, &mut references, 0).await?;
        let id = match wanted {
            SchemaRef::Id(id) => Some(*id),
            SchemaRef::Guid(_) => answer.id,
        };
        let guid = match wanted {
            SchemaRef::Guid(guid) => Some(guid.clone()),
            SchemaRef::Id(_) => answer.guid.clone(),
        };
        // Which subject and version the id was registered as: for people,
        // so a failure here costs nothing but that.
        let (subject, version) = match id {
            Some(id) => match self
                .get::<Vec<VersionAnswer>>(&["schemas", "ids", &id.to_string(), "versions"])
                .await
            {
                Ok(Some(versions)) => versions
                    .into_iter()
                    .next()
                    .map(|found| (Some(found.subject), Some(found.version)))
                    .unwrap_or((None, None)),
                _ => (None, None),
            },
            None => (None, None),
        };
        Ok(StoredSchema {
            registry: self.name.clone(),
            id,
            guid,
            format,
            schema: answer.schema,
            references,
            subject,
            version,
        })
    }

    /// Resolves references depth first, dependencies before their users,
    /// each name once.
    fn resolve<'a>(
        &'a self,
        wanted: &'a [ReferenceAnswer],
        out: &'a mut Vec<StoredReference>,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, Result<(), DecodeError>> {
        Box::pin(async move {
            if depth >= MAX_REFERENCE_DEPTH {
                return Err(DecodeError::bad_schema(format!(
                    "references nest deeper than {MAX_REFERENCE_DEPTH} levels"
                )));
            }
            for reference in wanted {
                if out.iter().any(|known| known.name == reference.name) {
                    continue;
                }
                let answer: SchemaAnswer = self
                    .get(&[
                        "subjects",
                        &reference.subject,
                        "versions",
                        &reference.version.to_string(),
                    ])
                    .await?
                    .ok_or_else(|| {
                        DecodeError::new(
                            DecodeErrorKind::UnknownSchema,
                            format!(
                                "reference {} (subject {:?} version {}) is not in registry {:?}",
                                reference.name, reference.subject, reference.version, self.name
                            ),
                        )
                    })?;
                self.resolve(&answer.references, out, depth + 1).await?;
                out.push(StoredReference {
                    name: reference.name.clone(),
                    subject: reference.subject.clone(),
                    version: reference.version,
                    schema: answer.schema,
                });
            }
            Ok(())
        })
    }

    /// GETs a JSON answer; `None` for a 404.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
    ) -> Result<Option<T>, DecodeError> {
        self.wait_for_turn().await?;
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| self.unavailable("its URL cannot have a path"))?
            .pop_if_empty()
            .extend(segments);
        let mut request = self
            .http
            .get(url)
            .header("Accept", "application/vnd.schemaregistry.v1+json");
        if let Some(user) = &self.config.username {
            request = request.basic_auth(
                user,
                self.config
                    .password
                    .as_ref()
                    .map(|password| password.expose()),
            );
        } else if let Some(token) = &self.config.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|error| {
            let cause = if error.is_timeout() {
                format!("no answer within {:?}", self.config.timeout)
            } else if error.is_connect() {
                // The cause says why: refused, or the TLS certificate.
                format!(
                    "cannot connect: {}",
                    hindsight_archive::error::causes(&error.without_url())
                )
            } else {
                hindsight_archive::error::causes(&error.without_url())
            };
            self.unavailable(&cause)
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.unavailable(&format!("it answered {status}")));
        }
        let body = response.bytes().await.map_err(|error| {
            self.unavailable(&format!("its answer was cut: {}", error.without_url()))
        })?;
        serde_json::from_slice(&body).map(Some).map_err(|error| {
            self.unavailable(&format!("its answer is not what the API defines: {error}"))
        })
    }

    fn unavailable(&self, cause: &str) -> DecodeError {
        DecodeError::new(
            DecodeErrorKind::RegistryUnavailable,
            format!(
                "schema registry {:?} ({}): {cause}",
                self.name,
                self.shown_url()
            ),
        )
    }

    /// Spaces requests `1 / max_requests_per_second` apart; a caller that
    /// would wait longer than the timeout gives up instead.
    async fn wait_for_turn(&self) -> Result<(), DecodeError> {
        let interval = Duration::from_secs(1) / self.config.max_requests_per_second.max(1);
        let wait = {
            let mut next = self
                .next_request
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let slot = (*next).max(now);
            let wait = slot - now;
            if wait > self.config.timeout {
                return Err(self.unavailable(&format!(
                    "more than {} requests a second were asked for (max_requests_per_second)",
                    self.config.max_requests_per_second
                )));
            }
            *next = slot + interval;
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}
