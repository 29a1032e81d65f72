//! Configuration: the embedded defaults (`src/defaults.toml`, every default
//! in one place), then one TOML file, then `HINDSIGHT__SECTION__KEY`
//! environment overrides, then command-line flags. Unknown keys are errors,
//! and [`Config::validate`] reports every problem at once, each with its
//! path.
//!
//! Secrets (`storage.secret_access_key`, `http.auth_token`, the password in
//! `catalog.url` or an AMQP URL, Kafka `sasl.*` properties) are
//! `hindsight_archive::secret` types: `check-config`, logs and errors show
//! them redacted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use hindsight_archive::access::{Role, Scope};
use hindsight_archive::layout::validate_source_name;
use hindsight_archive::maintenance::retention::RetentionRule;
use hindsight_archive::maintenance::CompactionSettings;
use hindsight_archive::segment::SegmentFormat;
use hindsight_archive::store::StoreConfig;
use hindsight_archive::tables::TableSettings;
use hindsight_archive::{Secret, SecretUrl};
use hindsight_connectors::{Connections, SourceSection};
use hindsight_ingest::FlushPolicy;
use hindsight_query::QueryLimits;
use hindsight_server::maintenance::{MaintenancePolicy, RetentionView};
use hindsight_server::{ConfigToken, HttpOptions};
use serde::{Deserialize, Serialize};

/// Every default, as a configuration file would set it.
pub const DEFAULTS: &str = include_str!("defaults.toml");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the local store and the SQLite catalog live by default.
    pub data_dir: PathBuf,
    pub storage: StorageSection,
    pub catalog: CatalogSection,
    pub http: HttpSection,
    pub query: QuerySection,
    /// Flush defaults for every source.
    pub flush: FlushSection,
    pub replay: ReplaySection,
    /// Background compaction of closed hours, and the grace of retired objects.
    pub compaction: CompactionSection,
    /// The archive as Iceberg tables, kept in step by `hindsight archive`.
    pub tables: TablesSection,
    /// How long each source (and topic) keeps events: `[retention.SOURCE]`.
    #[serde(default)]
    pub retention: BTreeMap<String, RetentionSection>,
    /// Named connections (`[connections.NAME]`), for sources and replay targets.
    #[serde(default)]
    pub connections: Connections,
    /// Schema registries and per-topic schema rules, for decoding payloads.
    #[serde(default)]
    pub schemas: hindsight_schemas::SchemaSettings,
    /// Values masked for roles below a policy's (`[[redaction]]`).
    #[serde(default)]
    pub redaction: Vec<hindsight_query::redact::RedactionPolicy>,
    #[serde(default)]
    pub sources: Vec<SourceSection>,
    /// Problems found while reading secret files and resolving connection
    /// names, reported by [`Config::validate`] with the others.
    #[serde(skip)]
    pub load_problems: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySection {
    /// Let HTTP callers replay to an address rather than a named
    /// connection. Off: the server connects only where its configuration
    /// says.
    pub allow_adhoc_targets: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactionSection {
    /// Compact in the background of `hindsight archive`.
    pub enabled: bool,
    /// Time between background passes (also before the first).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Input bytes per compacted segment, at most.
    pub target_bytes: u64,
    /// A partition's day with less than this many bytes becomes one segment.
    pub quiet_day_bytes: u64,
    /// zstd level of compacted segments (1 to 22).
    pub zstd_level: i32,
    /// An hour is compacted this long after it ends.
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    /// Retired segment objects are deleted this long after their swap.
    /// Directory readers (DuckDB over the tree) see them until then.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// Copy encoded column chunks instead of re-encoding: faster, but keeps
    /// the ingest zstd level and the small row groups.
    pub column_copy: bool,
}

/// `[tables]`: one Iceberg table per (source, topic) over the segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TablesSection {
    /// Keep the tables in step in the background of `hindsight archive`
    /// (and keep retired segments a kept snapshot lists).
    pub enabled: bool,
    /// The Iceberg catalog name engines use (`catalog_name` column).
    pub catalog_name: String,
    /// A table lags the catalog by at most about this much.
    #[serde(with = "humantime_serde")]
    pub max_lag: Duration,
    /// Snapshots younger than this are kept (time travel).
    #[serde(with = "humantime_serde")]
    pub keep_snapshots: Duration,
    /// And at least this many of the newest.
    pub min_snapshots: usize,
    /// More manifests than this are merged into one per partition spec.
    pub max_manifests: usize,
}

/// `[retention.SOURCE]`: `keep = "400d"`, `topics = { orders = "30d" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Every topic of the source without a rule of its own.
    #[serde(default, with = "humantime_serde")]
    pub keep: Option<Duration>,
    /// Per topic (or RabbitMQ exchange or stream).
    #[serde(default)]
    pub topics: BTreeMap<String, HumanDuration>,
}

/// A duration written for people (`30d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HumanDuration(#[serde(with = "humantime_serde")] pub Duration);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// A directory, `file:///dir` or `s3://bucket/prefix`. Default: `data_dir`.
    pub url: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub allow_http: bool,
    pub row_group_rows: usize,
    pub zstd_level: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSection {
    /// `sqlite://path` or `postgres://…`. Default: `sqlite://<data_dir>/catalog.db`.
    pub url: Option<SecretUrl>,
    /// Pending segments and staging files older than this were left by a
    /// crashed writer.
    #[serde(with = "humantime_serde")]
    pub pending_grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub listen: String,
    /// When set, the API routes and `/metrics` need `Authorization: Bearer <token>`.
    pub auth_token: Option<Secret>,
    /// Largest request body accepted (SQL text), in bytes.
    pub max_body_bytes: usize,
    /// Host names the server answers to besides its listen address and
    /// `localhost` (`"*"`: any); other `Host` headers get 403.
    pub allowed_hosts: Vec<String>,
    /// API tokens by the hash of the token (`hindsight token create
    /// --config-only` prints one), each with a role and a scope.
    pub tokens: Vec<TokenEntry>,
    /// Let a server without any token listen beyond loopback.
    pub allow_unauthenticated: bool,
    /// JWT bearer tokens verified against a JWKS file or URL (`[http.jwt]`).
    #[serde(default)]
    pub jwt: Option<hindsight_server::jwt::JwtSettings>,
}

/// One `[[http.tokens]]`: only the token's hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub name: String,
    /// `blake3:` and the token's blake3 hash in hex (64 characters).
    pub hash: String,
    pub role: Role,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub topics: Vec<String>,
}

impl TokenEntry {
    /// The hash without its `blake3:` prefix, if it is well formed.
    fn hex(&self) -> Option<&str> {
        let hex = self.hash.strip_prefix("blake3:")?;
        (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
    }
}

impl HttpSection {
    /// The configuration's tokens as the server knows them.
    pub fn config_tokens(&self) -> Vec<ConfigToken> {
        let mut tokens: Vec<ConfigToken> = self
            .auth_token
            .iter()
            .filter(|token| !token.is_empty())
            .map(ConfigToken::from_secret)
            .collect();
        tokens.extend(self.tokens.iter().filter_map(|entry| {
            Some(ConfigToken {
                name: entry.name.clone(),
                hash: entry.hex()?.to_ascii_lowercase(),
                role: entry.role,
                scope: Scope {
                    sources: entry.sources.clone(),
                    topics: entry.topics.clone(),
                },
            })
        }));
        tokens
    }

    fn token_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (index, entry) in self.tokens.iter().enumerate() {
            if entry.name.trim().is_empty() {
                problems.push(format!("http.tokens[{index}].name: must not be empty"));
            }
            if !names.insert(entry.name.as_str()) || entry.name == "http.auth_token" {
                problems.push(format!(
                    "http.tokens[{index}].name: {:?} is used twice",
                    entry.name
                ));
            }
            if entry.hex().is_none() {
                problems.push(format!(
                    "http.tokens[{index}].hash: must be \"blake3:\" and 64 hex characters (`hindsight token create NAME --role R --config-only` prints one)"
                ));
            }
            if entry
                .sources
                .iter()
                .chain(&entry.topics)
                .any(|p| p.trim().is_empty())
            {
                problems.push(format!("http.tokens[{index}]: a scope pattern is empty"));
            }
        }
        problems
    }

    pub fn options(&self) -> HttpOptions {
        HttpOptions {
            tokens: self.config_tokens(),
            max_body_bytes: self.max_body_bytes,
            allowed_hosts: self.allowed_hosts.clone(),
            // `[replay] allow_adhoc_targets`, the maintenance policy and
            // `tables.catalog_name`, set by `serve`.
            allow_adhoc_targets: false,
            maintenance: MaintenancePolicy::default(),
            table_catalog: "hindsight".to_owned(),
        }
    }
}

/// Limits of every SQL query, from the CLI or the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySection {
    /// Wall-clock limit of one query.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Memory one query may use, in bytes; past it the query fails (nothing spills).
    pub max_memory_bytes: usize,
    /// Queries that run at once; more wait, then are refused.
    pub max_concurrent: usize,
}

impl QuerySection {
    pub fn limits(&self) -> QueryLimits {
        QueryLimits {
            timeout: self.timeout,
            memory_limit: self.max_memory_bytes,
            max_concurrent: self.max_concurrent,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlushSection {
    pub max_rows: usize,
    pub max_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl FlushSection {
    pub fn policy(&self) -> FlushPolicy {
        FlushPolicy {
            max_rows: self.max_rows,
            max_bytes: self.max_bytes,
            max_age: self.max_age,
        }
    }
}

impl Config {
    /// Defaults, then the file (if given), then `HINDSIGHT__…` variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(file) = file {
            if !file.is_file() {
                bail!("configuration file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("HINDSIGHT__").split("__"));
        let mut config: Config = figment.extract().context("invalid configuration")?;
        config.resolve_connections();
        Ok(config)
    }

    /// Reads the connections' secret files, and gives each source the
    /// connection it names. Problems go to [`Config::validate`].
    pub fn resolve_connections(&mut self) {
        let mut problems = Vec::new();
        for (name, connection) in &mut self.connections {
            problems.extend(connection.load_secrets(&format!("connections.{name}")));
        }
        problems.extend(self.schemas.load_secrets());
        for (index, source) in self.sources.iter_mut().enumerate() {
            problems.extend(source.resolve(&format!("sources[{index}]"), &self.connections));
        }
        self.load_problems = problems;
    }

    pub fn storage_url(&self) -> String {
        self.storage
            .url
            .clone()
            .unwrap_or_else(|| self.data_dir.display().to_string())
    }

    /// The catalog URL, with its password: for the database driver only.
    pub fn catalog_url(&self) -> SecretUrl {
        self.catalog.url.clone().unwrap_or_else(|| {
            SecretUrl::new(format!(
                "sqlite://{}",
                self.data_dir.join("catalog.db").display()
            ))
        })
    }

    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            url: self.storage_url(),
            endpoint: self.storage.endpoint.clone(),
            region: self.storage.region.clone(),
            access_key_id: self.storage.access_key_id.clone(),
            secret_access_key: self.storage.secret_access_key.clone(),
            allow_http: self.storage.allow_http,
        }
    }

    pub fn segment_format(&self) -> SegmentFormat {
        SegmentFormat {
            row_group_rows: self.storage.row_group_rows,
            zstd_level: self.storage.zstd_level,
        }
    }

    pub fn compaction_settings(&self) -> CompactionSettings {
        CompactionSettings {
            target_bytes: self.compaction.target_bytes,
            quiet_day_bytes: self.compaction.quiet_day_bytes,
            zstd_level: self.compaction.zstd_level,
            row_group_rows: self.storage.row_group_rows,
            settle: self.compaction.settle,
            grace: self.compaction.grace,
            column_copy: self.compaction.column_copy,
            keep_for_tables: self.tables.enabled,
        }
    }

    pub fn table_settings(&self) -> TableSettings {
        TableSettings {
            catalog_name: self.tables.catalog_name.clone(),
            keep_snapshots: self.tables.keep_snapshots,
            min_snapshots: self.tables.min_snapshots,
            max_manifests: self.tables.max_manifests,
            ..TableSettings::default()
        }
    }

    /// Every `[retention.SOURCE]` as rules, topic rules first.
    pub fn retention_rules(&self) -> Vec<RetentionRule> {
        let mut rules = Vec::new();
        for (source, section) in &self.retention {
            for (topic, keep) in &section.topics {
                rules.push(RetentionRule {
                    source: source.clone(),
                    topic: Some(topic.clone()),
                    keep: keep.0,
                });
            }
            if let Some(keep) = section.keep {
                rules.push(RetentionRule {
                    source: source.clone(),
                    topic: None,
                    keep,
                });
            }
        }
        rules
    }

    /// The policy `/api/v1/maintenance` shows.
    pub fn maintenance_policy(&self) -> MaintenancePolicy {
        MaintenancePolicy {
            compaction_enabled: self.compaction.enabled,
            interval_seconds: self.compaction.interval.as_secs(),
            target_bytes: self.compaction.target_bytes,
            zstd_level: self.compaction.zstd_level,
            grace_seconds: self.compaction.grace.as_secs(),
            retention: self
                .retention_rules()
                .into_iter()
                .map(|rule| RetentionView {
                    source: rule.source,
                    topic: rule.topic,
                    keep_seconds: rule.keep.as_secs(),
                })
                .collect(),
        }
    }

    fn maintenance_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let tables = &self.tables;
        if tables.max_lag < Duration::from_secs(1) {
            problems.push("tables.max_lag: must be at least 1s".to_owned());
        }
        if tables.catalog_name.is_empty() || tables.catalog_name.len() > 255 {
            problems.push("tables.catalog_name: must be 1 to 255 characters".to_owned());
        }
        if tables.max_manifests < 2 {
            problems.push("tables.max_manifests: must be at least 2".to_owned());
        }
        let compaction = &self.compaction;
        if !(1..=22).contains(&compaction.zstd_level) {
            problems.push("compaction.zstd_level: must be between 1 and 22".to_owned());
        }
        if compaction.target_bytes < 1024 * 1024 {
            problems.push("compaction.target_bytes: must be at least 1 MiB (1048576)".to_owned());
        }
        if compaction.interval < Duration::from_secs(1) {
            problems.push("compaction.interval: must be at least 1s".to_owned());
        }
        for (source, section) in &self.retention {
            if section.keep.is_none() && section.topics.is_empty() {
                problems.push(format!(
                    "retention.{source}: set keep = \"400d\" or topics = {{ TOPIC = \"30d\" }}"
                ));
            }
            let short = |keep: Duration| keep < Duration::from_secs(60);
            if section.keep.is_some_and(short) {
                problems.push(format!("retention.{source}.keep: must be at least 1m"));
            }
            for (topic, keep) in &section.topics {
                if short(keep.0) {
                    problems.push(format!(
                        "retention.{source}.topics.{topic}: must be at least 1m"
                    ));
                }
            }
        }
        problems
    }

    pub fn listen_address(&self) -> anyhow::Result<SocketAddr> {
        self.http
            .listen
            .parse()
            .with_context(|| format!("http.listen {:?} is not an address", self.http.listen))
    }

    /// Every problem, each as `path: message`.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let url = self.storage_url();
        if !(url.starts_with("s3://") || url.starts_with("file://") || !url.contains("://")) {
            problems.push(format!(
                "storage.url: {url:?} is not a directory, file:///dir or s3://bucket/prefix"
            ));
        }
        if !(1..=22).contains(&self.storage.zstd_level) {
            problems.push("storage.zstd_level: must be between 1 and 22".to_owned());
        }
        if self.storage.row_group_rows == 0 {
            problems.push("storage.row_group_rows: must be at least 1".to_owned());
        }
        problems.extend(self.maintenance_problems());
        problems.extend(self.schemas.problems());
        let catalog = self.catalog_url();
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|prefix| catalog.expose().starts_with(prefix))
        {
            problems.push(format!(
                "catalog.url: {catalog:?} must start with sqlite:// or postgres://"
            ));
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "http.listen: {:?} is not an address like 127.0.0.1:7878",
                self.http.listen
            ));
        }
        problems.extend(self.http.token_problems());
        if let Some(jwt) = &self.http.jwt {
            problems.extend(jwt.problems());
        }
        for (index, policy) in self.redaction.iter().enumerate() {
            problems.extend(policy.problems(&format!("redaction[{index}]")));
        }
        if self.http.max_body_bytes == 0 {
            problems.push("http.max_body_bytes: must be at least 1".to_owned());
        }
        if self.http.auth_token.as_ref().is_some_and(Secret::is_empty) {
            problems.push(
                "http.auth_token: must not be empty (leave it out to disable auth)".to_owned(),
            );
        }
        for (index, entry) in self.http.allowed_hosts.iter().enumerate() {
            if let Err(problem) = hindsight_server::allowed_hosts::check_allowed_host(entry) {
                problems.push(format!("http.allowed_hosts[{index}]: {problem}"));
            }
        }
        if self.query.timeout.is_zero() {
            problems.push("query.timeout: must be longer than zero".to_owned());
        }
        if self.query.max_memory_bytes < 1024 * 1024 {
            problems.push("query.max_memory_bytes: must be at least 1048576 (1 MiB)".to_owned());
        }
        if self.query.max_concurrent == 0 {
            problems.push("query.max_concurrent: must be at least 1".to_owned());
        }
        if self.flush.max_rows == 0 {
            problems.push("flush.max_rows: must be at least 1".to_owned());
        }
        if self.flush.max_bytes == 0 {
            problems.push("flush.max_bytes: must be at least 1".to_owned());
        }
        if self.flush.max_age.is_zero() {
            problems.push("flush.max_age: must be longer than zero".to_owned());
        }
        for (name, connection) in &self.connections {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                problems.push(format!(
                    "connections.{name}: a connection name is letters, digits, '-', '_' and '.'"
                ));
            }
            problems.extend(connection.problems(&format!("connections.{name}")));
        }
        problems.extend(self.load_problems.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        for (index, source) in self.sources.iter().enumerate() {
            let path = format!("sources[{index}]");
            let name = source.config().name();
            if let Err(reason) = validate_source_name(name) {
                problems.push(format!("{path}.name: {name:?} {reason}"));
            }
            if !seen.insert(name.to_owned()) {
                problems.push(format!("{path}.name: {name:?} is used twice"));
            }
            problems.extend(source.problems(&path, self.flush.policy()));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        let mut config: Config = Figment::from(Toml::string(DEFAULTS))
            .merge(Toml::string(text))
            .extract()?;
        config.resolve_connections();
        Ok(config)
    }

    #[test]
    fn defaults_need_no_file() {
        let config = parse("").unwrap();
        assert_eq!(config.data_dir, PathBuf::from("./hindsight-data"));
        assert_eq!(config.http.listen, "127.0.0.1:7878");
        assert_eq!(
            config.catalog_url().expose(),
            "sqlite://./hindsight-data/catalog.db"
        );
        assert_eq!(config.storage_url(), "./hindsight-data");
        assert!(config.validate().is_empty());
    }

    /// The defaults file and the libraries' own defaults must not drift.
    #[test]
    fn the_defaults_file_matches_the_libraries_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.segment_format(), SegmentFormat::default());
        assert_eq!(config.query.limits(), QueryLimits::default());
        assert_eq!(config.flush.policy(), FlushPolicy::default());
        let http = HttpOptions::default();
        assert_eq!(config.http.options(), http);
        assert_eq!(config.storage.allow_http, StoreConfig::default().allow_http);
        assert_eq!(config.table_settings(), TableSettings::default());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_section() {
        let error = parse("[storage]\nurll = \"x\"\n").unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("urll"), "{text}");
    }

    #[test]
    fn sources_override_the_flush_limits() {
        let config = parse(
            r#"
            [flush]
            max_rows = 500
            max_age = "20s"
            [[sources]]
            type = "kafka"
            name = "fast"
            brokers = ["b:9092"]
            topics = ["t"]
            group_id = "g"
            [sources.flush]
            max_age = "1s"
            [[sources]]
            type = "amqp"
            name = "rabbit"
            url = "amqp://localhost"
            queue = "q"
            consumer_timeout = "30s"
            [[sources.bindings]]
            exchange = "orders"
            "#,
        )
        .unwrap();
        let defaults = config.flush.policy();
        let fast = config.sources[0].config().flush_policy(defaults);
        assert_eq!((fast.max_rows, fast.max_age), (500, Duration::from_secs(1)));
        let rabbit = config.sources[1].config().flush_policy(defaults);
        assert_eq!(rabbit.max_age, Duration::from_secs(20));
        // 20 s of flush age is more than half the 30 s consumer timeout.
        let problems = config.validate();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("sources[1].consumer_timeout:")),
            "{problems:?}"
        );
    }

    #[test]
    fn retention_is_per_source_and_topic_and_bad_maintenance_settings_are_named() {
        let config = parse(
            r#"
            [compaction]
            zstd_level = 30
            [retention.orders-prod]
            keep = "400d"
            topics = { payments = "30d" }
            [retention.empty]
            "#,
        )
        .unwrap();
        let rules = config.retention_rules();
        let day = 24 * 3600;
        let described: Vec<(String, Option<String>, u64)> = rules
            .into_iter()
            .map(|rule| (rule.source, rule.topic, rule.keep.as_secs()))
            .collect();
        assert_eq!(
            described,
            [
                (
                    "orders-prod".to_owned(),
                    Some("payments".to_owned()),
                    30 * day
                ),
                ("orders-prod".to_owned(), None, 400 * day),
            ]
        );
        let problems = config.validate();
        for expected in ["compaction.zstd_level:", "retention.empty:"] {
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "{expected} missing from {problems:?}"
            );
        }
        assert!(parse("[retention.x]\nkeep = \"soon\"\n").is_err());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let config = parse(
            r#"
            [http]
            listen = "nowhere"
            [[sources]]
            type = "amqp"
            name = "rabbit"
            url = "amqp://localhost"
            queue = "q"
            [[sources.bindings]]
            exchange = "orders"
            [[sources]]
            type = "kafka"
            name = "bad/name"
            brokers = []
            group_id = ""
            "#,
        )
        .unwrap();
        let problems = config.validate();
        for expected in [
            "http.listen:",
            "sources[1].name:",
            "sources[1].brokers:",
            "sources[1].topics:",
            "sources[1].group_id:",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "{expected} missing from {problems:?}"
            );
        }
        assert_eq!(problems.len(), 5, "{problems:?}");
    }

    #[test]
    fn allowed_hosts_are_names_and_bad_entries_are_reported_with_their_index() {
        let config = parse("[http]\nallowed_hosts = [\"hindsight.example.com\", \"*\"]\n").unwrap();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(
            config.http.options().allowed_hosts,
            ["hindsight.example.com", "*"]
        );
        let problems = parse(
            "[http]\nallowed_hosts = [\"ok.example\", \"https://x.example\", \"x.example:8080\"]\n",
        )
        .unwrap()
        .validate();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("http.allowed_hosts[1]:"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("http.allowed_hosts[2]:"),
            "{problems:?}"
        );
    }

    #[test]
    fn query_limits_and_the_token_are_configurable_and_the_token_is_never_printed() {
        let config = parse(
            "[http]\nauth_token = \"s3cret\"\nmax_body_bytes = 4096\n\
             [query]\ntimeout = \"5s\"\nmax_memory_bytes = 67108864\nmax_concurrent = 2\n",
        )
        .unwrap();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let tokens = config.http.options().tokens;
        assert_eq!(tokens.len(), 1);
        assert_eq!(
            tokens[0].hash,
            hindsight_archive::access::token_hash("s3cret")
        );
        assert_eq!(tokens[0].role, Role::Admin);
        assert_eq!(config.http.options().max_body_bytes, 4096);
        let limits = config.query.limits();
        assert_eq!(limits.timeout, Duration::from_secs(5));
        assert_eq!(limits.memory_limit, 64 * 1024 * 1024);
        assert_eq!(limits.max_concurrent, 2);
        let printed = serde_json::to_string(&config).unwrap();
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(
            printed.contains(hindsight_archive::secret::REDACTED),
            "{printed}"
        );

        let problems = parse("[query]\ntimeout = \"0s\"\nmax_concurrent = 0\n")
            .unwrap()
            .validate();
        assert!(
            problems.iter().any(|p| p.starts_with("query.timeout:")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("query.max_concurrent:")),
            "{problems:?}"
        );
    }

    #[test]
    fn no_secret_of_any_section_is_printed() {
        let config = parse(
            r#"
            [storage]
            url = "s3://bucket/prefix"
            access_key_id = "AKIAEXAMPLE"
            secret_access_key = "secret-key-1"
            [catalog]
            url = "postgres://hindsight:secret-db-2@db.internal/hindsight"
            [http]
            auth_token = "secret-token-3"
            [[sources]]
            type = "amqp"
            name = "rabbit"
            url = "amqp://user:secret-amqp-4@rabbit.internal:5672/%2f"
            queue = "q"
            [[sources.bindings]]
            exchange = "orders"
            [[sources]]
            type = "kafka"
            name = "kafka"
            brokers = ["b:9092"]
            topics = ["t"]
            group_id = "g"
            client = { "sasl.username" = "alice", "sasl.password" = "secret-kafka-5" }
            "#,
        )
        .unwrap();
        let printed = format!(
            "{}\n{config:?}\n{:?}",
            serde_json::to_string_pretty(&config).unwrap(),
            config.validate()
        );
        for secret in [
            "secret-key-1",
            "secret-db-2",
            "secret-token-3",
            "secret-amqp-4",
            "secret-kafka-5",
        ] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        for shown in ["AKIAEXAMPLE", "db.internal", "rabbit.internal", "alice"] {
            assert!(printed.contains(shown), "{shown} missing from {printed}");
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("hindsight.toml", "[http]\nlisten = \"127.0.0.1:1\"\n")?;
            jail.set_env("HINDSIGHT__HTTP__LISTEN", "127.0.0.1:2");
            jail.set_env("HINDSIGHT__CATALOG__URL", "postgres://h@localhost/h");
            let config = Config::load(Some(Path::new("hindsight.toml")))
                .map_err(|e| figment::Error::from(e.to_string()))?;
            assert_eq!(config.http.listen, "127.0.0.1:2");
            assert_eq!(config.catalog_url().expose(), "postgres://h@localhost/h");
            Ok(())
        });
    }
}
