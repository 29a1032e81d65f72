//! SQL over the archive with DataFusion: the session, its tables and views,
//! the read-only guard, and the per-query limits.
//!
//! Each query gets its own DataFusion session with:
//! - `events_raw` ([`EventsTable`]): every committed event, catalog-pruned;
//! - `events`: `events_raw` plus `payload_text` (the payload as UTF-8, or NULL);
//! - `events_dedup`: `events` with one row per event. RabbitMQ may deliver a
//!   message again (classic queues after a reconnect), and the archive keeps
//!   both copies; this view keeps the first by ingest time, preferring the copy
//!   that was not flagged `redelivered`. Kafka events are archived at most once
//!   by construction and pass through unchanged;
//! - `segments` ([`SegmentsTable`]): the catalog's committed segments;
//! - DataFusion's functions, datafusion-functions-json (`json_get_str`, `->>`, ...)
//!   and Hindsight's ([`crate::functions`]).
//!
//! Limits: a query must be read-only ([`check_read_only`]), runs under a
//! memory pool of `memory_limit` bytes without spilling to disk, must finish
//! within `timeout`, and at most `max_concurrent` queries run at once.

use std::num::NonZeroUsize;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::datasource::{provider_as_source, ViewTable};
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use datafusion::prelude::ident;
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{visit_relations, ObjectNamePart, Statement};
use futures::{Stream, StreamExt};
use hindsight_archive::access::{Principal, Role, Scope};
use hindsight_archive::schema::event_schema;

use crate::redact::{RedactionPolicy, Redactions};
use hindsight_archive::catalog::Catalog;
use hindsight_archive::store::ArchiveStore;
use hindsight_schemas::Schemas;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::tables::{EventsTable, ScanCounter, ScanStats, SegmentsTable, ARCHIVE_STORE_URL};

/// How long a query may wait for one of the `max_concurrent` slots.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// Limits for every query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Wall-clock limit from admission to the last row.
    pub timeout: Duration,
    /// Memory pool of one query, in bytes. Operators that need more fail the
    /// query (nothing spills to disk).
    pub memory_limit: usize,
    /// Queries that run at once; more wait up to [`QUEUE_WAIT`], then are refused.
    pub max_concurrent: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            timeout: Duration::from_secs(60),
            memory_limit: 512 * 1024 * 1024,
            max_concurrent: 4,
        }
    }
}

/// The view that adds `payload_text`.
const EVENTS_VIEW: &str =
    "CREATE VIEW events AS SELECT *, utf8_or_null(payload) AS payload_text FROM events_raw";

/// One row per event: positioned Kafka events are unique by construction;
/// AMQP copies are ranked, the first not-redelivered copy by ingest time wins.
/// The window partitions by (source, topic, event_id), so that filters on
/// source and topic still reach the catalog.
const EVENTS_DEDUP_VIEW: &str = "CREATE VIEW events_dedup AS \
     SELECT * FROM events WHERE bus <> 'amqp' \
     UNION ALL \
     SELECT * EXCLUDE (hindsight_copy) FROM ( \
       SELECT *, row_number() OVER ( \
         PARTITION BY source, topic, event_id \
         ORDER BY coalesce(redelivered, false), ingest_time, \"offset\" \
       ) AS hindsight_copy \
       FROM events WHERE bus = 'amqp' \
     ) WHERE hindsight_copy = 1";

/// Runs read-only SQL over one archive.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    inner: Arc<EngineInner>,
    /// The sources and topics this engine's sessions see (None: all).
    scope: Option<Arc<Scope>>,
    /// The role its sessions read as: redaction policies mask values for
    /// roles below theirs. The command line and an unscoped engine read as
    /// admin.
    role: Role,
}

#[derive(Debug)]
struct EngineInner {
    store: ArchiveStore,
    catalog: Catalog,
    limits: QueryLimits,
    /// Shared by every query: the object store registry and the Parquet metadata cache.
    runtime: Arc<RuntimeEnv>,
    slots: Arc<Semaphore>,
    /// Decodes schema-aware payloads for `decode_payload` and friends.
    schemas: Arc<Schemas>,
    /// The configured redaction policies (`[[redaction]]`).
    redaction: Vec<RedactionPolicy>,
}

impl QueryEngine {
    pub fn new(store: ArchiveStore, catalog: Catalog, limits: QueryLimits) -> Result<Self> {
        Self::with_schemas(store, catalog, limits, Schemas::plain())
    }

    /// An engine whose `decode_payload` decodes with `schemas`.
    pub fn with_schemas(
        store: ArchiveStore,
        catalog: Catalog,
        limits: QueryLimits,
        schemas: Arc<Schemas>,
    ) -> Result<Self> {
        let runtime = RuntimeEnvBuilder::new()
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(Error::from)?;
        let url = url::Url::parse(ARCHIVE_STORE_URL)
            .map_err(|error| Error::internal(format!("invalid archive store url: {error}")))?;
        runtime.register_object_store(&url, store.object_store());
        Ok(QueryEngine {
            inner: Arc::new(EngineInner {
                store,
                catalog,
                limits,
                runtime,
                slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
                schemas,
                redaction: Vec::new(),
            }),
            scope: None,
            role: Role::Admin,
        })
    }

    /// An engine whose sessions mask values by `policies` for principals
    /// below each policy's role ([`QueryEngine::for_principal`]).
    pub fn with_redaction(self, policies: Vec<RedactionPolicy>) -> Result<Self> {
        let inner = Arc::try_unwrap(self.inner).map_err(|_| {
            Error::internal("redaction policies are set before the engine is shared")
        })?;
        Ok(QueryEngine {
            inner: Arc::new(EngineInner {
                redaction: policies,
                ..inner
            }),
            ..self
        })
    }

    /// The engine as `principal` reads: its scope, and its role for redaction.
    pub fn for_principal(&self, principal: &Principal) -> QueryEngine {
        QueryEngine {
            role: principal.role,
            ..self.scoped(&principal.scope)
        }
    }

    /// The same engine, whose sessions see only what `scope` allows: every
    /// table built on `events_raw` and `segments`, event fetch, and replay
    /// plans (`hindsight-replay` asks [`QueryEngine::scope`]).
    pub fn scoped(&self, scope: &Scope) -> QueryEngine {
        QueryEngine {
            inner: Arc::clone(&self.inner),
            scope: (!scope.is_everything()).then(|| Arc::new(scope.clone())),
            role: self.role,
        }
    }

    /// The scope of [`QueryEngine::scoped`], when it narrows anything.
    pub fn scope(&self) -> Option<&Arc<Scope>> {
        self.scope.as_ref()
    }

    pub fn limits(&self) -> QueryLimits {
        self.inner.limits
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn store(&self) -> &ArchiveStore {
        &self.inner.store
    }

    pub fn schemas(&self) -> &Arc<Schemas> {
        &self.inner.schemas
    }

    /// Waits for a query slot, then builds a session whose clock is running.
    pub async fn session(&self) -> Result<QuerySession> {
        let slot = tokio::time::timeout(QUEUE_WAIT, Arc::clone(&self.inner.slots).acquire_owned())
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Busy,
                    format!(
                        "{} queries are already running (query.max_concurrent); try again later",
                        self.inner.limits.max_concurrent
                    ),
                )
            })?
            .map_err(|_| Error::internal("the query engine is shutting down"))?;
        let deadline = Instant::now() + self.inner.limits.timeout;
        let counter = ScanCounter::default();
        let context = self.build_context(&counter).await?;
        Ok(QuerySession {
            context,
            catalog: self.inner.catalog.clone(),
            schemas: Arc::clone(&self.inner.schemas),
            scope: self.scope.clone(),
            counter,
            slot,
            deadline,
            timeout: self.inner.limits.timeout,
        })
    }

    async fn build_context(&self, counter: &ScanCounter) -> Result<SessionContext> {
        let base = &self.inner.runtime;
        let memory_pool = TrackConsumersPool::new(
            GreedyMemoryPool::new(self.inner.limits.memory_limit),
            NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
        );
        let runtime = Arc::new(RuntimeEnv {
            memory_pool: Arc::new(memory_pool),
            disk_manager: Arc::clone(&base.disk_manager),
            cache_manager: Arc::clone(&base.cache_manager),
            object_store_registry: Arc::clone(&base.object_store_registry),
        });
        let config = SessionConfig::new()
            .with_information_schema(true)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            .set_bool("datafusion.execution.parquet.reorder_filters", true);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        let mut context = SessionContext::new_with_state(state);
        // These two rules move field and JSON accessors towards the scan. In
        // DataFusion 55 they rebuild a view's projection without its
        // expressions: an ORDER BY json_get_str(payload_text, …) over a
        // redacting view read the raw payload (tests/access.rs). Off for
        // every session; they only save work.
        for rule in ["extract_leaf_expressions", "push_down_leaf_projections"] {
            context.remove_optimizer_rule(rule);
        }
        for function in crate::functions::all()
            .into_iter()
            .chain(crate::decode::all(&self.inner.schemas))
        {
            context.register_udf(function);
        }
        datafusion_functions_json::register_all(&mut context)?;
        context.register_table(
            "events_raw",
            self.events_provider(
                EventsTable::new(
                    self.inner.store.clone(),
                    self.inner.catalog.clone(),
                    Arc::clone(counter),
                )
                .with_scope(self.scope.clone()),
            )?,
        )?;
        context.register_table(
            "segments",
            Arc::new(SegmentsTable::new(
                self.inner.catalog.clone(),
                self.scope.clone(),
            )),
        )?;
        context.sql(EVENTS_VIEW).await?;
        context.sql(EVENTS_DEDUP_VIEW).await?;
        Ok(context)
    }

    /// Whether a redaction policy masks values for this engine's role.
    pub fn masks_values(&self) -> bool {
        !Redactions::for_role(&self.inner.redaction, self.role).is_empty()
    }

    /// Whether a redaction policy masks values of (source, topic) for this
    /// engine's role.
    pub fn masks_values_of(&self, source: &str, topic: &str) -> bool {
        Redactions::for_role(&self.inner.redaction, self.role).covers(source, topic)
    }

    /// `table` as this engine's sessions see it: itself, or, when a
    /// redaction policy masks values for the engine's role, a view whose
    /// `payload`, `key` and `headers` are masked (`crate::redact`). The
    /// table itself is then registered nowhere, so SQL cannot name it.
    pub fn events_provider(&self, table: EventsTable) -> Result<Arc<dyn TableProvider>> {
        let redactions = Redactions::for_role(&self.inner.redaction, self.role);
        if redactions.is_empty() {
            return Ok(Arc::new(table));
        }
        let [payload, key, headers] = redactions.functions(&self.inner.schemas);
        let (masks_payload, masks_key, masks_headers) = redactions.masks();
        let columns: Vec<Expr> = event_schema()
            .fields()
            .iter()
            .map(|field| match field.name().as_str() {
                "payload" if masks_payload => payload
                    .call(vec![
                        ident("payload"),
                        ident("source"),
                        ident("topic"),
                        ident("headers"),
                    ])
                    .alias("payload"),
                "key" if masks_key => key
                    .call(vec![ident("key"), ident("source"), ident("topic")])
                    .alias("key"),
                // The AMQP headers table repeats the header values.
                "amqp_headers_table" if masks_headers => {
                    Expr::Literal(datafusion::common::ScalarValue::Utf8(None), None)
                        .alias("amqp_headers_table")
                }
                "headers" if masks_headers => headers
                    .call(vec![ident("headers"), ident("source"), ident("topic")])
                    .alias("headers"),
                name => ident(name),
            })
            .collect();
        let plan =
            // Not named `events_raw`: with the view's name on both sides,
            // DataFusion 55's projection merging took the view's
            // `events_raw.payload` for the table's (an ORDER BY over a
            // redacted column read the raw one; the access tests catch it).
            LogicalPlanBuilder::scan(
                "hindsight_unredacted_events",
                provider_as_source(Arc::new(table)),
                None,
            )?
                .project(columns)?
                .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }

    /// Checks, plans and starts one read-only SQL statement.
    pub async fn sql(&self, sql: &str) -> Result<QueryOutput> {
        self.session().await?.sql(sql).await
    }
}

/// One query's session: its DataFusion context, its slot and its deadline.
pub struct QuerySession {
    pub context: SessionContext,
    catalog: Catalog,
    schemas: Arc<Schemas>,
    scope: Option<Arc<Scope>>,
    counter: ScanCounter,
    slot: OwnedSemaphorePermit,
    deadline: Instant,
    timeout: Duration,
}

impl std::fmt::Debug for QuerySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerySession")
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl QuerySession {
    fn timeout_error(&self) -> Error {
        timeout_error(self.timeout)
    }

    /// Plans and starts `sql` after checking that it only reads.
    pub async fn sql(self, sql: &str) -> Result<QueryOutput> {
        let state = self.context.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect)?;
        check_read_only(&statement)?;
        tokio::time::timeout_at(
            self.deadline,
            crate::typed::register_named_views(
                &self.context,
                &statement,
                &self.catalog,
                &self.schemas,
                self.scope.as_deref(),
            ),
        )
        .await
        .map_err(|_| self.timeout_error())??;
        let planned = tokio::time::timeout_at(self.deadline, state.statement_to_plan(statement))
            .await
            .map_err(|_| self.timeout_error())??;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&planned)
            .map_err(|error| Error::new(ErrorKind::ReadOnly, error.strip_backtrace()))?;
        let dataframe = self.context.execute_logical_plan(planned).await?;
        self.run(dataframe).await
    }

    /// Starts a DataFrame built on this session (the events API builds its
    /// queries this way, never from text).
    pub async fn run(self, dataframe: DataFrame) -> Result<QueryOutput> {
        let started = tokio::time::timeout_at(self.deadline, dataframe.execute_stream())
            .await
            .map_err(|_| self.timeout_error())??;
        let stats = self.scan_stats();
        let schema = started.schema();
        let running = Running {
            stream: started,
            _slot: self.slot,
            _context: self.context,
        };
        let stream = LimitedStream::new(Arc::clone(&schema), running, self.deadline, self.timeout);
        Ok(QueryOutput {
            schema,
            stream: Box::pin(stream),
            stats,
        })
    }

    /// The counter the session's tables report their scans to.
    pub fn scan_counter(&self) -> ScanCounter {
        Arc::clone(&self.counter)
    }

    pub fn scan_stats(&self) -> ScanStats {
        self.counter.lock().map(|stats| *stats).unwrap_or_default()
    }
}

/// A started query: its schema, its rows as a stream, and how many segments it reads.
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub stream: SendableRecordBatchStream,
    pub stats: ScanStats,
}

impl std::fmt::Debug for QueryOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryOutput")
            .field("schema", &self.schema)
            .field("stats", &self.stats)
            .finish()
    }
}

impl QueryOutput {
    /// Every row, in memory. For small results (the events API, tests).
    pub async fn collect(mut self) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        while let Some(batch) = self.stream.next().await {
            batches.push(batch?);
        }
        Ok(batches)
    }
}

/// What a running query holds: its plan's stream, its slot and its session.
/// Dropping it cancels the plan's tasks and frees its memory and slot.
struct Running {
    stream: SendableRecordBatchStream,
    _slot: OwnedSemaphorePermit,
    _context: SessionContext,
}

/// What a [`LimitedStream`] shares with its watchdog.
#[derive(Default)]
struct Shared {
    running: Option<Running>,
    /// Who to wake when the watchdog stops the query.
    waker: Option<std::task::Waker>,
}

/// The rows of a query, cut off at its deadline. A watchdog drops the query
/// at the deadline even when nobody polls (a client that stopped reading);
/// dropping the stream (the client went away) drops the query at once.
struct LimitedStream {
    schema: SchemaRef,
    shared: Arc<std::sync::Mutex<Shared>>,
    /// Set once the end, an error or the timeout was reported.
    finished: bool,
    timeout: Duration,
    watchdog: tokio::task::JoinHandle<()>,
}

impl LimitedStream {
    fn new(schema: SchemaRef, running: Running, deadline: Instant, timeout: Duration) -> Self {
        let shared = Arc::new(std::sync::Mutex::new(Shared {
            running: Some(running),
            waker: None,
        }));
        let weak = Arc::downgrade(&shared);
        let watchdog = tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let (expired, waker) = match shared.lock() {
                Ok(mut state) => (state.running.take(), state.waker.take()),
                Err(_) => (None, None),
            };
            drop(expired);
            if let Some(waker) = waker {
                waker.wake();
            }
        });
        LimitedStream {
            schema,
            shared,
            finished: false,
            timeout,
            watchdog,
        }
    }

    /// Drops the query now.
    fn stop(&self) {
        let stopped = self
            .shared
            .lock()
            .ok()
            .and_then(|mut state| state.running.take());
        drop(stopped);
    }
}

impl Drop for LimitedStream {
    fn drop(&mut self) {
        self.watchdog.abort();
    }
}

impl Stream for LimitedStream {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let polled = {
            let Ok(mut state) = self.shared.lock() else {
                return Poll::Ready(None);
            };
            let polled = state
                .running
                .as_mut()
                .map(|running| running.stream.poll_next_unpin(cx));
            if matches!(polled, Some(Poll::Pending)) {
                state.waker = Some(cx.waker().clone());
            }
            polled
        };
        match polled {
            // The watchdog took the query: the deadline passed.
            None => {
                self.finished = true;
                let error = timeout_error(self.timeout);
                Poll::Ready(Some(Err(DataFusionError::from(error))))
            }
            Some(Poll::Ready(None)) => {
                self.finished = true;
                self.stop();
                Poll::Ready(None)
            }
            Some(Poll::Ready(Some(Err(error)))) => {
                self.finished = true;
                self.stop();
                Poll::Ready(Some(Err(error)))
            }
            Some(other) => other,
        }
    }
}

impl RecordBatchStream for LimitedStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

fn timeout_error(timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "the query ran longer than its {} timeout (query.timeout)",
            humanize(timeout)
        ),
    )
}

fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

fn refuse(what: &str) -> Error {
    Error::new(
        ErrorKind::ReadOnly,
        format!(
            "{what} is not allowed: the archive is read-only here; only SELECT, WITH, \
             EXPLAIN, SHOW and DESCRIBE run"
        ),
    )
}

/// The leading keywords of a statement (`DROP TABLE`, `INSERT INTO`), for messages.
fn statement_name(statement: &Statement) -> String {
    let text = statement.to_string();
    let keywords: Vec<&str> = text
        .split_whitespace()
        .take_while(|word| word.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .take(4)
        .collect();
    if keywords.is_empty() {
        "this statement".to_owned()
    } else {
        keywords.join(" ")
    }
}

/// Refuses anything but queries: DDL, DML, COPY, SET, CREATE EXTERNAL TABLE,
/// and tables named by a path or URL (`FROM '/etc/passwd'`).
pub fn check_read_only(statement: &DfStatement) -> Result<()> {
    match statement {
        DfStatement::Statement(inner) => check_sql_statement(inner),
        DfStatement::Explain(explain) => check_read_only(&explain.statement),
        DfStatement::CreateExternalTable(_) => Err(refuse("CREATE EXTERNAL TABLE")),
        DfStatement::CopyTo(_) => Err(refuse("COPY")),
        DfStatement::Reset(_) => Err(refuse("RESET")),
    }
}

fn check_sql_statement(statement: &Statement) -> Result<()> {
    match statement {
        Statement::Query(_)
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ExplainTable { .. } => {}
        Statement::Explain { statement, .. } => return check_sql_statement(statement),
        other => return Err(refuse(&statement_name(other))),
    }
    let outside = visit_relations(statement, |name| {
        let is_path = name.0.iter().any(|part| match part {
            ObjectNamePart::Identifier(ident) => {
                ident.quote_style == Some('\'')
                    || ident.value.contains('/')
                    || ident.value.contains('\\')
                    || ident.value.contains("://")
            }
            ObjectNamePart::Function(_) => true,
        });
        if is_path {
            ControlFlow::Break(name.to_string())
        } else {
            ControlFlow::Continue(())
        }
    });
    if let ControlFlow::Break(name) = outside {
        return Err(Error::new(
            ErrorKind::ReadOnly,
            format!(
                "reading files or URLs ({name}) is not allowed: query the tables events, \
                 events_dedup, events_raw and segments"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn check(sql: &str) -> Result<()> {
        let mut statements = DFParser::parse_sql(sql).unwrap();
        check_read_only(&statements.pop_front().unwrap())
    }

    #[test]
    fn only_reading_statements_pass() {
        for allowed in [
            "SELECT 1",
            "WITH x AS (SELECT * FROM events) SELECT count(*) FROM x",
            "EXPLAIN SELECT * FROM events",
            "EXPLAIN ANALYZE SELECT * FROM events WHERE topic = 'a'",
            "SHOW TABLES",
            "SHOW COLUMNS FROM events",
            "DESCRIBE events",
        ] {
            check(allowed).unwrap_or_else(|e| panic!("{allowed}: {e}"));
        }
        for (refused, named) in [
            ("DROP TABLE events", "DROP TABLE"),
            ("CREATE TABLE x AS SELECT 1", "CREATE TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            (
                "INSERT INTO events_raw SELECT * FROM events_raw",
                "INSERT INTO",
            ),
            ("DELETE FROM events_raw", "DELETE FROM"),
            ("UPDATE events_raw SET topic = 'x'", "UPDATE"),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE EXTERNAL TABLE",
            ),
            ("EXPLAIN DROP TABLE events", "DROP TABLE"),
            ("SELECT * FROM '/etc/passwd'", "reading files or URLs"),
            (
                "SELECT * FROM events e JOIN 'https://example.invalid/x.parquet' u ON true",
                "reading files or URLs",
            ),
        ] {
            let error = check(refused).expect_err(refused);
            assert_eq!(error.kind(), ErrorKind::ReadOnly, "{refused}");
            assert!(
                error.message().contains(named),
                "{refused}: {}",
                error.message()
            );
        }
    }
}

#[cfg(test)]
mod archive_tests {
    //! The engine over a real (temporary) archive: a local store and a SQLite catalog.

    use std::collections::HashMap;

    use hindsight_archive::event::{event_id, AmqpProperties};
    use hindsight_archive::segment::SegmentFormat;
    use hindsight_archive::store::StoreConfig;
    use hindsight_archive::writer::{ArchiveWriter, Batch};
    use hindsight_archive::{Bus, Event, Header};

    use super::*;

    const HOUR: i64 = 3_600_000_000;
    /// 2024-01-01T00:00:00Z
    const START: i64 = 1_704_067_200_000_000;

    fn kafka_event(topic: &str, partition: i32, offset: i64, event_time: i64) -> Event {
        let payload = format!(r#"{{"customer":"c-{}","n":{offset}}}"#, offset % 3);
        Event {
            event_id: event_id::kafka("src", topic, partition, offset),
            source: "src".into(),
            bus: Bus::Kafka,
            topic: topic.into(),
            routing_key: None,
            partition: Some(partition),
            offset: Some(offset),
            key: Some(format!("k-{}", offset % 5).into_bytes()),
            headers: vec![Header::new("kind", "test")],
            payload_size: payload.len() as i64,
            payload: Some(payload.into_bytes()),
            payload_truncated: false,
            content_type: None,
            message_id: None,
            correlation_id: None,
            timestamp_type: Some("create_time".into()),
            amqp: AmqpProperties::default(),
            redelivered: None,
            event_time,
            ingest_time: event_time,
        }
    }

    fn amqp_event(message_id: &str, redelivered: bool, ingest_time: i64) -> Event {
        Event {
            event_id: event_id::amqp_message_id("rabbit", "exchange", message_id),
            source: "rabbit".into(),
            bus: Bus::Amqp,
            topic: "exchange".into(),
            routing_key: Some("orders.created".into()),
            partition: None,
            offset: None,
            key: None,
            headers: vec![],
            payload: Some(message_id.as_bytes().to_vec()),
            payload_size: message_id.len() as i64,
            payload_truncated: false,
            content_type: Some("text/plain".into()),
            message_id: Some(message_id.into()),
            correlation_id: None,
            timestamp_type: None,
            amqp: AmqpProperties::default(),
            redelivered: Some(redelivered),
            event_time: START,
            ingest_time,
        }
    }

    async fn archive_with(
        batches: Vec<(&str, Bus, Vec<Event>)>,
        limits: QueryLimits,
    ) -> (tempfile::TempDir, QueryEngine) {
        let directory = tempfile::tempdir().unwrap();
        let store = ArchiveStore::open(&StoreConfig {
            url: directory.path().join("store").display().to_string(),
            ..StoreConfig::default()
        })
        .unwrap();
        let catalog = Catalog::open(&format!(
            "sqlite://{}",
            directory.path().join("catalog.db").display()
        ))
        .await
        .unwrap();
        let writer = ArchiveWriter::new(store.clone(), catalog.clone(), SegmentFormat::default());
        let mut checkpoints: HashMap<(String, i32), Option<i64>> = HashMap::new();
        for (source, bus, events) in batches {
            catalog.register_source(source, bus).await.unwrap();
            let summary = writer
                .write_batch(&Batch::from_events(source, events), &checkpoints)
                .await
                .unwrap();
            for advance in summary.advanced {
                checkpoints.insert((advance.topic, advance.partition), Some(advance.next));
            }
        }
        let engine = QueryEngine::new(store, catalog, limits).unwrap();
        (directory, engine)
    }

    /// Two topics, two partitions, three hours, ten events per segment.
    async fn kafka_archive(limits: QueryLimits) -> (tempfile::TempDir, QueryEngine) {
        let mut batches = Vec::new();
        for hour in 0..3i64 {
            let mut events = Vec::new();
            for topic in ["a", "b"] {
                for partition in 0..2 {
                    for index in 0..10i64 {
                        let offset = hour * 10 + index;
                        let time = START + hour * HOUR + index * 60_000_000;
                        events.push(kafka_event(topic, partition, offset, time));
                    }
                }
            }
            batches.push(("src", Bus::Kafka, events));
        }
        archive_with(batches, limits).await
    }

    /// The one filter's DataFusion translation (search) and its in-memory
    /// matcher (replay) select the same events, JSON edge cases included.
    #[tokio::test]
    async fn the_filter_selects_the_same_events_in_sql_and_in_memory() {
        let payloads = [
            r#"{"n": 42, "f": 1.50, "o": {"a": 1}, "z": null, "items": [{"sku": "A"}, {"sku": "B"}]}"#,
            r#"{"n": "42", "f": 1.5, "o": {"a":1}, "items": {"0": {"sku": "A"}}}"#,
            r#"{"n": 42.0, "items": [{"sku": "B"}], "s": "x y"}"#,
            r#"not json, but "n": 42"#,
            "",
        ];
        let events: Vec<Event> = payloads
            .iter()
            .enumerate()
            .map(|(offset, payload)| Event {
                payload: Some(payload.as_bytes().to_vec()),
                payload_size: payload.len() as i64,
                ..kafka_event("t", 0, offset as i64, START + offset as i64)
            })
            .collect();
        let (_directory, engine) = archive_with(
            vec![("src", Bus::Kafka, events.clone())],
            QueryLimits::default(),
        )
        .await;
        for conditions in [
            vec!["n=42"],
            vec!["f=1.50"],
            vec!["f=1.5"],
            vec![r#"o={"a": 1}"#],
            vec![r#"o={"a":1}"#],
            vec!["z=null"],
            vec!["items.0.sku=A"],
            vec!["items.1.sku=B"],
            vec!["items.0.sku=B", "n=42.0"],
            vec!["s=x y"],
        ] {
            let filter = crate::filter::FilterSelection {
                json: conditions.iter().map(|c| (*c).to_owned()).collect(),
                ..Default::default()
            }
            .compile()
            .unwrap();
            let page = crate::events::search(
                &engine,
                &crate::events::EventSearch {
                    filter: filter.clone(),
                    limit: 100,
                    cursor: None,
                },
            )
            .await
            .unwrap();
            let mut by_sql: Vec<String> = page.events.into_iter().map(|e| e.event_id).collect();
            let mut in_memory: Vec<String> = events
                .iter()
                .filter(|event| filter.matches(event))
                .map(|event| event.event_id.clone())
                .collect();
            by_sql.sort();
            in_memory.sort();
            assert_eq!(by_sql, in_memory, "{conditions:?}");
        }
    }

    #[tokio::test]
    async fn histograms_count_each_bucket_from_a_multiple_of_the_step() {
        let (_directory, engine) = kafka_archive(QueryLimits::default()).await;
        let filter = crate::filter::EventFilter {
            topics: vec!["a".to_owned()],
            ..Default::default()
        };
        let hourly = crate::events::histogram(&engine, &filter, HOUR)
            .await
            .unwrap();
        let first = START.div_euclid(HOUR) * HOUR;
        assert_eq!(
            hourly,
            vec![(first, 20), (first + HOUR, 20), (first + 2 * HOUR, 20)]
        );
        // One event a minute in each of two partitions: a bucket a minute.
        let minute = 60_000_000;
        let by_minute = crate::events::histogram(&engine, &filter, minute)
            .await
            .unwrap();
        assert_eq!(by_minute.len(), 30);
        assert!(by_minute
            .iter()
            .all(|(start, count)| start % minute == 0 && *count == 2));
        assert_eq!(by_minute[0].0, START.div_euclid(minute) * minute);
        // Sub-second steps start at multiples of the step too.
        let millis = crate::events::histogram(&engine, &filter, 20_000)
            .await
            .unwrap();
        assert_eq!(millis.iter().map(|(_, count)| count).sum::<u64>(), 60);
        assert!(millis.iter().all(|(start, _)| start % 20_000 == 0));
        assert!(crate::events::histogram(&engine, &filter, 0).await.is_err());
    }

    async fn rows_and_stats(engine: &QueryEngine, sql: &str) -> (String, ScanStats) {
        let output = engine
            .sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let stats = output.stats;
        let batches = output.collect().await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        (text, stats)
    }

    fn single_value(text: &str) -> String {
        text.lines()
            .nth(3)
            .unwrap_or_default()
            .trim_matches(|c| c == '|' || c == ' ')
            .to_owned()
    }

    #[tokio::test]
    async fn the_catalog_prunes_segments_before_any_file_is_opened() {
        let (_directory, engine) = kafka_archive(QueryLimits::default()).await;
        let cases = [
            ("SELECT count(*) FROM events", 12, "120"),
            ("SELECT count(*) FROM events WHERE topic = 'a'", 6, "60"),
            (
                "SELECT count(*) FROM events WHERE topic = 'a' AND \"partition\" = 1",
                3,
                "30",
            ),
            // The offset range of partition 0 of topic b in hour 1 only.
            (
                "SELECT count(*) FROM events WHERE topic = 'b' AND \"offset\" BETWEEN 12 AND 15",
                2,
                "8",
            ),
            (
                "SELECT count(*) FROM events WHERE event_time >= '2024-01-01T02:00:00Z'",
                4,
                "40",
            ),
            (
                "SELECT count(*) FROM events WHERE event_time >= '2024-01-01T01:00:00Z' \
                 AND event_time < '2024-01-01T01:05:00Z' AND topic IN ('a', 'zzz')",
                2,
                "10",
            ),
            (
                "SELECT count(*) FROM events WHERE topic = 'a' OR \"offset\" > 25",
                8,
                "68",
            ),
            ("SELECT count(*) FROM events WHERE topic = 'nope'", 0, "0"),
            // Not a catalog fact: every segment is opened, the bloom filter does the rest.
            (
                "SELECT count(*) FROM events WHERE key = CAST('k-1' AS BYTEA)",
                12,
                "24",
            ),
        ];
        for (sql, scanned, count) in cases {
            let (text, stats) = rows_and_stats(&engine, sql).await;
            assert_eq!(stats.segments_scanned, scanned, "{sql}");
            assert_eq!(single_value(&text), count, "{sql}\n{text}");
        }
    }

    #[tokio::test]
    async fn events_dedup_keeps_the_first_copy_of_a_redelivered_message() {
        let amqp = vec![
            amqp_event("m-1", true, START + 5),
            amqp_event("m-1", false, START + 9),
            amqp_event("m-1", true, START + 2),
            amqp_event("m-2", false, START + 1),
        ];
        let kafka = vec![
            kafka_event("a", 0, 0, START),
            kafka_event("a", 0, 1, START + 1),
        ];
        let (_directory, engine) = archive_with(
            vec![("rabbit", Bus::Amqp, amqp), ("src", Bus::Kafka, kafka)],
            QueryLimits::default(),
        )
        .await;
        let (text, _) = rows_and_stats(&engine, "SELECT count(*) FROM events").await;
        assert_eq!(single_value(&text), "6");
        let (text, _) = rows_and_stats(&engine, "SELECT count(*) FROM events_dedup").await;
        assert_eq!(single_value(&text), "4");
        let (text, _) = rows_and_stats(
            &engine,
            "SELECT CAST(ingest_time AS BIGINT) - 1704067200000000 AS t FROM events_dedup \
             WHERE message_id = 'm-1'",
        )
        .await;
        // The one copy not flagged redelivered wins, though it arrived last.
        assert_eq!(single_value(&text), "9", "{text}");
        let (text, stats) = rows_and_stats(
            &engine,
            "SELECT count(*) FROM events_dedup WHERE source = 'src'",
        )
        .await;
        assert_eq!(single_value(&text), "2");
        assert_eq!(
            stats.segments_scanned, 1,
            "the source filter reaches the catalog"
        );
    }

    /// A segment as schema version 3 wrote it: `payload` required. Its
    /// columns are version 4's, so a batch of events without tombstones fits.
    fn version_3_segment(events: &[Event]) -> Vec<u8> {
        use hindsight_archive::schema::{event_schema, events_to_batch};
        let fields: Vec<_> = event_schema()
            .fields()
            .iter()
            .map(|field| match field.name().as_str() {
                "payload" => Arc::new(field.as_ref().clone().with_nullable(false)),
                _ => Arc::clone(field),
            })
            .collect();
        let schema = Arc::new(arrow::datatypes::Schema::new(fields));
        let batch = events_to_batch(events).unwrap();
        let batch = RecordBatch::try_new(Arc::clone(&schema), batch.columns().to_vec()).unwrap();
        let properties = parquet::file::properties::WriterProperties::builder()
            .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
                "hindsight.schema_version".to_owned(),
                "3".to_owned(),
            )]))
            .build();
        let mut bytes = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        bytes
    }

    #[tokio::test]
    async fn tombstones_are_null_payloads_apart_from_empty_ones_and_version_3_segments_read() {
        let mut tombstone = kafka_event("new", 0, 0, START);
        tombstone.payload = None;
        tombstone.payload_size = 0;
        let mut empty = kafka_event("new", 0, 1, START + 1);
        empty.payload = Some(Vec::new());
        empty.payload_size = 0;
        let value = kafka_event("new", 0, 2, START + 2);
        let old: Vec<Event> = (0..2)
            .map(|offset| kafka_event("old", 0, offset, START + offset))
            .collect();
        let (directory, engine) = archive_with(
            vec![
                ("src", Bus::Kafka, vec![tombstone, empty, value]),
                ("src", Bus::Kafka, old.clone()),
            ],
            QueryLimits::default(),
        )
        .await;
        // Replace the "old" segment by the same events as version 3 wrote them.
        let catalog = engine.catalog();
        let filter = hindsight_archive::catalog::SegmentFilter {
            topic: Some("old".into()),
            ..Default::default()
        };
        let record = catalog.segments(&filter).await.unwrap().remove(0).segment;
        let bytes = version_3_segment(&old);
        // Replay decodes whole segments with their own schema.
        let decoded = hindsight_archive::segment::decode_segment(bytes.clone().into()).unwrap();
        assert_eq!(decoded, old);
        std::fs::write(directory.path().join("store").join(&record.uri), &bytes).unwrap();
        catalog
            .execute_raw(&format!(
                "UPDATE segments SET byte_size = {} WHERE id = '{}'",
                bytes.len(),
                record.id
            ))
            .await
            .unwrap();

        let (text, _) = rows_and_stats(
            &engine,
            "SELECT topic, \"offset\", payload IS NULL AS tombstone, payload_size, \
             length(payload) AS length, payload_text IS NULL AS no_text FROM events \
             ORDER BY topic, \"offset\"",
        )
        .await;
        let expected = [
            "+-------+--------+-----------+--------------+--------+---------+",
            "| topic | offset | tombstone | payload_size | length | no_text |",
            "+-------+--------+-----------+--------------+--------+---------+",
            "| new   | 0      | true      | 0            |        | true    |",
            "| new   | 1      | false     | 0            | 0      | false   |",
            "| new   | 2      | false     | 24           | 24     | false   |",
            "| old   | 0      | false     | 24           | 24     | false   |",
            "| old   | 1      | false     | 24           | 24     | false   |",
            "+-------+--------+-----------+--------------+--------+---------+",
        ]
        .join("\n");
        assert_eq!(text, expected);
        let (text, _) = rows_and_stats(
            &engine,
            "SELECT count(*) AS n FROM events WHERE payload IS NULL",
        )
        .await;
        assert!(text.contains("| 1 |"), "{text}");
    }

    #[tokio::test]
    async fn payload_text_json_functions_and_the_segments_table() {
        let (_directory, engine) = kafka_archive(QueryLimits::default()).await;
        let (text, _) = rows_and_stats(
            &engine,
            "SELECT count(*) FROM events WHERE json_get_str(payload_text, 'customer') = 'c-1' \
             AND (payload_text ->> 'n') = '4'",
        )
        .await;
        assert_eq!(single_value(&text), "4", "{text}");
        let (text, _) = rows_and_stats(
            &engine,
            "SELECT sum(\"rows\") FROM segments WHERE topic = 'b'",
        )
        .await;
        assert_eq!(single_value(&text), "60", "{text}");
        let (text, _) = rows_and_stats(&engine, "SHOW TABLES").await;
        for table in ["events", "events_dedup", "events_raw", "segments"] {
            assert!(
                text.contains(&format!("| {table} ")),
                "{table} missing:\n{text}"
            );
        }
    }

    #[tokio::test]
    async fn a_query_nobody_reads_gives_its_slot_back_at_the_deadline() {
        let limits = QueryLimits {
            timeout: Duration::from_millis(300),
            max_concurrent: 1,
            ..QueryLimits::default()
        };
        let (_directory, engine) = kafka_archive(limits).await;
        let abandoned = engine.sql("SELECT * FROM events").await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let started = std::time::Instant::now();
        let (text, _) = rows_and_stats(&engine, "SELECT count(*) FROM events").await;
        assert_eq!(single_value(&text), "120");
        assert!(
            started.elapsed() < QUEUE_WAIT / 2,
            "the second query waited for the abandoned one's slot"
        );
        let error = abandoned
            .collect()
            .await
            .expect_err("past its deadline the abandoned query reports a timeout");
        assert_eq!(error.kind(), ErrorKind::Timeout);
    }

    #[tokio::test]
    async fn memory_and_time_limits_fail_the_query_and_free_the_slot() {
        let limits = QueryLimits {
            timeout: Duration::from_millis(500),
            memory_limit: 64 * 1024,
            max_concurrent: 1,
        };
        let (_directory, engine) = kafka_archive(limits).await;
        let error = engine
            .sql("SELECT payload_text, count(*) FROM events GROUP BY payload_text ORDER BY 1")
            .await
            .unwrap()
            .collect()
            .await
            .expect_err("a 64 KiB pool cannot sort and group every payload");
        assert_eq!(error.kind(), ErrorKind::ResourcesExhausted, "{error}");
        let started = std::time::Instant::now();
        let error = match engine
            .sql("SELECT count(*) FROM generate_series(1, 100000000000)")
            .await
        {
            Ok(output) => output.collect().await.expect_err("must time out"),
            Err(error) => error,
        };
        assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // With one slot, this only runs if both failed queries gave theirs back.
        let (text, _) = rows_and_stats(&engine, "SELECT count(*) FROM events").await;
        assert_eq!(single_value(&text), "120");
    }
}
