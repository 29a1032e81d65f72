//! The catalog: which segments exist, and where every partition's archive ends.
//!
//! SQLite (the embedded default) and PostgreSQL (many nodes) run the same
//! portable schema from `migrations/` through sqlx's `Any` driver.
//!
//! Writers follow one protocol, and [`Catalog::commit`] is the only way a
//! segment becomes visible:
//! 1. [`Catalog::stage_segments`] records the segments as `pending`;
//! 2. the writer publishes their objects;
//! 3. [`Catalog::commit`] marks them `committed` and advances their
//!    checkpoints, in one transaction, by compare-and-set: if a checkpoint is
//!    not where the writer says it was, nothing changes and the writer gets
//!    [`ErrorKind::Conflict`]. This fences a stale or zombie writer.
//!
//! A crash between 1 and 3 leaves `pending` rows; [`Catalog::abandoned_segments`]
//! finds them by age so that their objects and rows can be removed.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection, Row};

use crate::error::{Error, ErrorKind, Result};
use crate::event::{now_micros, Bus};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Which database backs the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogBackend {
    Sqlite,
    Postgres,
}

/// A segment about to be staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSegment {
    pub id: String,
    /// The object key, relative to the store root.
    pub uri: String,
    pub source: String,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub min_event_time: i64,
    pub max_event_time: i64,
    pub rows: i64,
    pub bytes: i64,
    /// `blake3:<hex>` of the object's bytes; `None` for segments written
    /// before checksums were recorded.
    pub checksum: Option<String>,
}

/// A segment as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    pub segment: NewSegment,
    pub created_at: i64,
    pub committed_at: Option<i64>,
    pub state: SegmentState,
    /// When a compaction, retention run or erasure retired it; readers
    /// only ever see live segments (`None`), except a replay planned
    /// before the retirement ([`Catalog::segments_as_of`]).
    pub retired_at: Option<i64>,
    /// 0: written by ingest; 1: written by compaction.
    pub compaction_level: i64,
    /// For a retired segment: where its rows live now. `None` when they
    /// are gone (retention) or the segment is live.
    pub moved_to: Option<RowSlice>,
}

/// Rows `[first_row, first_row + rows)` of a live segment, in the order a
/// retired segment held them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSlice {
    pub segment_id: String,
    pub uri: String,
    pub first_row: i64,
    pub rows: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    Pending,
    Committed,
}

/// Move a checkpoint from `expected` (`None`: no checkpoint yet) to `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointAdvance {
    pub source: String,
    pub topic: String,
    pub partition: i32,
    pub expected: Option<i64>,
    pub next: i64,
}

/// One atomic catalog commit: segments become visible, checkpoints move.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    pub segment_ids: Vec<String>,
    pub checkpoints: Vec<CheckpointAdvance>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub source: String,
    pub topic: String,
    pub partition: i32,
    pub next_position: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub name: String,
    pub bus: Bus,
    pub created_at: i64,
}

/// Committed totals for one (source, topic).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicStats {
    pub source: String,
    pub topic: String,
    pub segments: i64,
    pub events: i64,
    pub bytes: i64,
    pub min_event_time: i64,
    pub max_event_time: i64,
    pub last_committed_at: i64,
}

/// Which committed segments a reader wants; every field narrows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentFilter {
    pub source: Option<String>,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    /// Segments holding events at or after this time.
    pub time_from: Option<i64>,
    /// Segments holding events before this time.
    pub time_to: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pool: AnyPool,
    backend: CatalogBackend,
}

pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

pub(crate) const SEGMENT_COLUMNS: &str = "id, uri, source, topic, partition_id, first_offset, \
     last_offset, min_event_time, max_event_time, row_count, byte_size, created_at, committed_at, \
     state, checksum, retired_at, compaction_level";

impl Catalog {
    /// Connects without migrating. `sqlite://path` (created when missing) or
    /// `postgres://user:password@host/db`.
    pub async fn connect(url: &str) -> Result<Catalog> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (CatalogBackend::Postgres, url.to_owned())
        } else if url.starts_with("sqlite:") {
            let separator = if url.contains('?') { '&' } else { '?' };
            let with_mode = if url.contains("mode=") {
                url.to_owned()
            } else {
                format!("{url}{separator}mode=rwc")
            };
            (CatalogBackend::Sqlite, with_mode)
        } else {
            return Err(Error::invalid_input(format!(
                "unsupported catalog url {:?}: use sqlite://path or postgres://…",
                crate::secret::redact_url(url)
            )));
        };
        if backend == CatalogBackend::Sqlite {
            create_sqlite_parent_directory(&url)?;
        }
        let options = AnyConnectOptions::from_str(&url).map_err(|error| {
            Error::with_source(ErrorKind::InvalidInput, "invalid catalog url", error)
        })?;
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30));
        if backend == CatalogBackend::Sqlite {
            pool_options = pool_options.after_connect(|connection, _| {
                Box::pin(async move {
                    // WAL for concurrent readers; FULL so that a commit the
                    // writer acknowledges survives a power cut.
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA busy_timeout = 10000",
                    ] {
                        sqlx::query(pragma).execute(&mut *connection).await?;
                    }
                    Ok(())
                })
            });
            // A connection that comes back still inside a transaction is
            // closed, not reused. After SQLITE_FULL, SQLite may already have
            // rolled the transaction back on its own, so sqlx's queued
            // ROLLBACK fails and its depth stays at 1. A reused connection
            // would then open a SAVEPOINT where it means BEGIN, hold the
            // write lock forever, and leave every other writer with
            // "database is locked" after the disk has room again. Closing the
            // connection ends whatever transaction it holds.
            pool_options = pool_options.after_release(|connection, _| {
                Box::pin(async move { Ok(!connection.is_in_transaction()) })
            });
        }
        let pool = pool_options.connect_with(options).await.map_err(|error| {
            Error::with_source(ErrorKind::Retryable, "cannot connect to the catalog", error)
        })?;
        Ok(Catalog { pool, backend })
    }

    /// Connects and applies every pending migration.
    pub async fn open(url: &str) -> Result<Catalog> {
        let catalog = Catalog::connect(url).await?;
        catalog.migrate().await?;
        Ok(catalog)
    }

    /// Applies pending migrations. PostgreSQL serializes concurrent migrators
    /// with an advisory lock; SQLite has none, so when two processes start on
    /// a fresh catalog at once the loser fails ("table already exists") and
    /// simply tries again, finding the winner's migration recorded.
    /// A SQLite catalog in `directory`, for unit tests.
    #[cfg(test)]
    pub(crate) async fn open_for_test(directory: &std::path::Path) -> Catalog {
        match Catalog::open(&format!("sqlite://{}/catalog.db", directory.display())).await {
            Ok(catalog) => catalog,
            Err(error) => panic!("cannot open a test catalog: {error}"),
        }
    }

    pub async fn migrate(&self) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match MIGRATOR.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(error) if attempt < 5 && self.backend == CatalogBackend::Sqlite => {
                    tracing::debug!(%error, attempt, "catalog migration raced another process; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(error) => {
                    return Err(Error::with_source(
                        ErrorKind::Internal,
                        "cannot migrate the catalog",
                        error,
                    ))
                }
            }
        }
    }

    pub fn backend(&self) -> CatalogBackend {
        self.backend
    }

    /// The connection pool, for the catalog's other tables (`replays.rs`).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs one SQL statement outside any transaction, unprepared. For
    /// administration (`CREATE DATABASE` in tests), never for user input.
    pub async fn execute_raw(&self, sql: &str) -> Result<()> {
        sqlx::raw_sql(sql).execute(&self.pool).await?;
        Ok(())
    }

    /// Cheap liveness probe.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Records a source; refuses a name already used by another bus.
    pub async fn register_source(&self, name: &str, bus: Bus) -> Result<()> {
        sqlx::query(
            "INSERT INTO sources (name, bus, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(bus.as_str())
        .bind(now_micros())
        .execute(&self.pool)
        .await?;
        let existing: String = sqlx::query_scalar("SELECT bus FROM sources WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        if existing != bus.as_str() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("source {name:?} is already registered as a {existing} source"),
            ));
        }
        Ok(())
    }

    pub async fn sources(&self) -> Result<Vec<SourceRecord>> {
        let rows = sqlx::query("SELECT name, bus, created_at FROM sources ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SourceRecord {
                    name: row.try_get("name")?,
                    bus: row.try_get::<String, _>("bus")?.parse()?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// The next position to archive for one partition, if any was committed.
    pub async fn checkpoint(
        &self,
        source: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT next_position FROM checkpoints \
             WHERE source = $1 AND topic = $2 AND partition_id = $3",
        )
        .bind(source)
        .bind(topic)
        .bind(i64::from(partition))
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn checkpoints(&self, source: &str) -> Result<Vec<Checkpoint>> {
        let rows = sqlx::query(
            "SELECT source, topic, partition_id, next_position, updated_at FROM checkpoints \
             WHERE source = $1 ORDER BY topic, partition_id",
        )
        .bind(source)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Checkpoint {
                    source: row.try_get("source")?,
                    topic: row.try_get("topic")?,
                    partition: partition_from(row.try_get("partition_id")?)?,
                    next_position: row.try_get("next_position")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Step 1 of a write: records segments as `pending`, before their objects exist.
    pub async fn stage_segments(&self, segments: &[NewSegment]) -> Result<()> {
        self.stage_segments_as(None, segments).await
    }

    /// [`Catalog::stage_segments`] under a writer's lease (`crate::lease`):
    /// the commit then renews that lease, and fails once it is released.
    pub async fn stage_segments_as(
        &self,
        writer: Option<&str>,
        segments: &[NewSegment],
    ) -> Result<()> {
        self.insert_pending(writer, segments, 0).await
    }

    /// Inserts `pending` rows of one compaction level, in one transaction.
    pub(crate) async fn insert_pending(
        &self,
        writer: Option<&str>,
        segments: &[NewSegment],
        compaction_level: i64,
    ) -> Result<()> {
        let mut transaction = self.pool.begin().await?;
        let created_at = now_micros();
        for segment in segments {
            sqlx::query(
                "INSERT INTO segments (id, uri, source, topic, partition_id, first_offset, \
                 last_offset, min_event_time, max_event_time, row_count, byte_size, created_at, \
                 committed_at, state, checksum, writer_id, compaction_level) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, 'pending', $13, \
                 $14, $15)",
            )
            .bind(&segment.id)
            .bind(&segment.uri)
            .bind(&segment.source)
            .bind(&segment.topic)
            .bind(i64::from(segment.partition))
            .bind(segment.first_offset)
            .bind(segment.last_offset)
            .bind(segment.min_event_time)
            .bind(segment.max_event_time)
            .bind(segment.rows)
            .bind(segment.bytes)
            .bind(created_at)
            .bind(segment.checksum.clone())
            .bind(writer.map(str::to_owned))
            .bind(compaction_level)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Step 3 of a write: atomically commits staged segments and advances
    /// checkpoints by compare-and-set. On [`ErrorKind::Conflict`] nothing changed.
    pub async fn commit(&self, commit: &Commit) -> Result<()> {
        for advance in &commit.checkpoints {
            if advance
                .expected
                .is_some_and(|expected| advance.next < expected)
            {
                return Err(Error::internal(format!(
                    "checkpoint of {}/{}/{} would move backwards",
                    advance.source, advance.topic, advance.partition
                )));
            }
        }
        let now = now_micros();
        let mut transaction = self.pool.begin().await?;
        for advance in &commit.checkpoints {
            let changed = match advance.expected {
                Some(expected) => sqlx::query(
                    "UPDATE checkpoints SET next_position = $1, updated_at = $2 \
                     WHERE source = $3 AND topic = $4 AND partition_id = $5 AND next_position = $6",
                )
                .bind(advance.next)
                .bind(now)
                .bind(&advance.source)
                .bind(&advance.topic)
                .bind(i64::from(advance.partition))
                .bind(expected)
                .execute(&mut *transaction)
                .await?
                .rows_affected(),
                None => sqlx::query(
                    "INSERT INTO checkpoints (source, topic, partition_id, next_position, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&advance.source)
                .bind(&advance.topic)
                .bind(i64::from(advance.partition))
                .bind(advance.next)
                .bind(now)
                .execute(&mut *transaction)
                .await?
                .rows_affected(),
            };
            if changed != 1 {
                transaction.rollback().await?;
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "checkpoint of {}/{}/{} is no longer at {}: another writer committed first",
                        advance.source,
                        advance.topic,
                        advance.partition,
                        advance
                            .expected
                            .map_or_else(|| "the start".to_owned(), |e| e.to_string()),
                    ),
                ));
            }
        }
        for id in &commit.segment_ids {
            if let Err(error) = mark_committed(&mut transaction, id, now).await {
                transaction.rollback().await?;
                return Err(error);
            }
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Removes pending rows (after their objects were deleted, or never written).
    pub async fn discard_pending(&self, ids: &[String]) -> Result<()> {
        let mut transaction = self.pool.begin().await?;
        for id in ids {
            sqlx::query("DELETE FROM segments WHERE id = $1 AND state = 'pending'")
                .bind(id)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Removes the rows of `ids` that are still pending; returns those it
    /// removed. A removed row can no longer be committed, so its object may
    /// be deleted; a row not removed was committed (or was gone already).
    pub async fn discard_if_pending(&self, ids: &[String]) -> Result<Vec<String>> {
        let mut transaction = self.pool.begin().await?;
        let mut discarded = Vec::new();
        for id in ids {
            let removed = sqlx::query("DELETE FROM segments WHERE id = $1 AND state = 'pending'")
                .bind(id)
                .execute(&mut *transaction)
                .await?
                .rows_affected();
            if removed == 1 {
                discarded.push(id.clone());
            }
        }
        transaction.commit().await?;
        Ok(discarded)
    }

    /// The pending segments recovery may remove: those of a released writer
    /// lease (at once), and those staged before `created_before` by no known
    /// writer (staged before leases existed). A live writer's are never listed.
    pub async fn recoverable_segments(
        &self,
        source: Option<&str>,
        created_before: i64,
    ) -> Result<Vec<SegmentRecord>> {
        let mut sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments WHERE state = 'pending' AND (\
             writer_id IN (SELECT id FROM writers WHERE released_at IS NOT NULL) \
             OR (created_at < $1 AND (writer_id IS NULL \
             OR writer_id NOT IN (SELECT id FROM writers))))"
        );
        let mut binds = vec![Bind::Int(created_before)];
        if let Some(source) = source {
            binds.push(Bind::Text(source.to_owned()));
            sql.push_str(&format!(" AND source = ${}", binds.len()));
        }
        sql.push_str(" ORDER BY created_at");
        self.fetch_segments(&sql, binds).await
    }

    /// Pending segments staged before `created_before`: left by a crashed writer.
    pub async fn abandoned_segments(
        &self,
        source: Option<&str>,
        created_before: i64,
    ) -> Result<Vec<SegmentRecord>> {
        let mut sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments WHERE state = 'pending' AND created_at < $1"
        );
        let mut binds = vec![Bind::Int(created_before)];
        if let Some(source) = source {
            binds.push(Bind::Text(source.to_owned()));
            sql.push_str(&format!(" AND source = ${}", binds.len()));
        }
        sql.push_str(" ORDER BY created_at");
        self.fetch_segments(&sql, binds).await
    }

    /// Live committed segments matching `filter` (retired ones left out),
    /// in (source, topic, partition, offset) order.
    pub async fn segments(&self, filter: &SegmentFilter) -> Result<Vec<SegmentRecord>> {
        let sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments WHERE state = 'committed' AND retired_at IS NULL"
        );
        self.filtered_segments(sql, Vec::new(), filter).await
    }

    /// The segments a reader saw at `snapshot`: committed by then and not
    /// yet retired then. A segment retired since carries, in `moved_to`,
    /// where its rows live now, so a replay planned before a compaction or
    /// an erasure reads the same rows (minus erased ones) after it.
    pub async fn segments_as_of(
        &self,
        filter: &SegmentFilter,
        snapshot: i64,
    ) -> Result<Vec<SegmentRecord>> {
        let (inner, binds) = narrowed(
            format!(
                "SELECT {SEGMENT_COLUMNS} FROM segments WHERE state = 'committed' \
                 AND committed_at <= $1 AND (retired_at IS NULL OR retired_at > $1)"
            ),
            vec![Bind::Int(snapshot)],
            filter,
        );
        // One query: each segment with its lineage, when it has any.
        let sql = format!(
            "SELECT s.*, l.live_id AS lineage_live_id, l.first_row AS lineage_first_row, \
             l.row_count AS lineage_rows, live.uri AS lineage_uri FROM ({inner}) s \
             LEFT JOIN segment_lineage l ON l.segment_id = s.id \
             LEFT JOIN segments live ON live.id = l.live_id AND live.retired_at IS NULL \
             ORDER BY s.source, s.topic, s.partition_id, s.first_offset"
        );
        let rows = self.fetch_rows(&sql, binds).await?;
        rows.iter()
            .map(|row| {
                let mut record = segment_from_row(row)?;
                let uri: Option<String> = row.try_get("lineage_uri")?;
                if let (Some(_), Some(uri)) = (record.retired_at, uri) {
                    record.moved_to = Some(RowSlice {
                        segment_id: row.try_get("lineage_live_id")?,
                        uri,
                        first_row: row.try_get("lineage_first_row")?,
                        rows: row.try_get("lineage_rows")?,
                    });
                }
                Ok(record)
            })
            .collect()
    }

    async fn filtered_segments(
        &self,
        sql: String,
        binds: Vec<Bind>,
        filter: &SegmentFilter,
    ) -> Result<Vec<SegmentRecord>> {
        let (mut sql, binds) = narrowed(sql, binds, filter);
        sql.push_str(" ORDER BY source, topic, partition_id, first_offset");
        self.fetch_segments(&sql, binds).await
    }

    pub(crate) async fn fetch_segments(
        &self,
        sql: &str,
        binds: Vec<Bind>,
    ) -> Result<Vec<SegmentRecord>> {
        let rows = self.fetch_rows(sql, binds).await?;
        rows.iter().map(segment_from_row).collect()
    }

    async fn fetch_rows(&self, sql: &str, binds: Vec<Bind>) -> Result<Vec<AnyRow>> {
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Int(number) => query.bind(number),
            };
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// Committed event counts, bytes and time span per (source, topic).
    pub async fn topic_stats(&self) -> Result<Vec<TopicStats>> {
        let rows = sqlx::query(
            "SELECT source, topic, COUNT(*) AS segments, \
             CAST(COALESCE(SUM(row_count), 0) AS BIGINT) AS events, \
             CAST(COALESCE(SUM(byte_size), 0) AS BIGINT) AS bytes, \
             MIN(min_event_time) AS min_event_time, MAX(max_event_time) AS max_event_time, \
             MAX(committed_at) AS last_committed_at \
             FROM segments WHERE state = 'committed' AND retired_at IS NULL \
             GROUP BY source, topic ORDER BY source, topic",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TopicStats {
                    source: row.try_get("source")?,
                    topic: row.try_get("topic")?,
                    segments: row.try_get("segments")?,
                    events: row.try_get("events")?,
                    bytes: row.try_get("bytes")?,
                    min_event_time: row.try_get("min_event_time")?,
                    max_event_time: row.try_get("max_event_time")?,
                    last_committed_at: row.try_get("last_committed_at")?,
                })
            })
            .collect()
    }
}

/// Inside a commit's transaction: renews the lease of the segment's writer
/// (a released lease, whose writer recovery judged dead, fails the commit)
/// and marks the pending segment committed; [`ErrorKind::Conflict`] when it
/// is not pending any more.
pub(crate) async fn mark_committed(
    connection: &mut sqlx::AnyConnection,
    id: &str,
    now: i64,
) -> Result<()> {
    crate::lease::renew_for_segment(connection, id, now).await?;
    let changed = sqlx::query(
        "UPDATE segments SET state = 'committed', committed_at = $1 \
         WHERE id = $2 AND state = 'pending'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *connection)
    .await?
    .rows_affected();
    if changed != 1 {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("segment {id} is not pending: it was discarded or already committed"),
        ));
    }
    Ok(())
}

/// `sql` (a `WHERE` clause already begun) narrowed by every field of
/// `filter`, with its binds.
fn narrowed(mut sql: String, mut binds: Vec<Bind>, filter: &SegmentFilter) -> (String, Vec<Bind>) {
    let mut narrow = |condition: &str, value: Bind| {
        binds.push(value);
        sql.push_str(&format!(" AND {condition} ${}", binds.len()));
    };
    if let Some(source) = &filter.source {
        narrow("source =", Bind::Text(source.clone()));
    }
    if let Some(topic) = &filter.topic {
        narrow("topic =", Bind::Text(topic.clone()));
    }
    if let Some(partition) = filter.partition {
        narrow("partition_id =", Bind::Int(i64::from(partition)));
    }
    if let Some(time_from) = filter.time_from {
        narrow("max_event_time >=", Bind::Int(time_from));
    }
    if let Some(time_to) = filter.time_to {
        narrow("min_event_time <", Bind::Int(time_to));
    }
    (sql, binds)
}

fn partition_from(value: i64) -> Result<i32> {
    i32::try_from(value).map_err(|_| Error::internal("catalog partition is out of range"))
}

pub(crate) fn segment_from_row(row: &AnyRow) -> Result<SegmentRecord> {
    let state: String = row.try_get("state")?;
    Ok(SegmentRecord {
        segment: NewSegment {
            id: row.try_get("id")?,
            uri: row.try_get("uri")?,
            source: row.try_get("source")?,
            topic: row.try_get("topic")?,
            partition: partition_from(row.try_get("partition_id")?)?,
            first_offset: row.try_get("first_offset")?,
            last_offset: row.try_get("last_offset")?,
            min_event_time: row.try_get("min_event_time")?,
            max_event_time: row.try_get("max_event_time")?,
            rows: row.try_get("row_count")?,
            bytes: row.try_get("byte_size")?,
            checksum: row.try_get("checksum")?,
        },
        created_at: row.try_get("created_at")?,
        committed_at: row.try_get("committed_at")?,
        state: match state.as_str() {
            "pending" => SegmentState::Pending,
            "committed" => SegmentState::Committed,
            other => return Err(Error::internal(format!("unknown segment state {other:?}"))),
        },
        retired_at: row.try_get("retired_at")?,
        compaction_level: row.try_get("compaction_level")?,
        moved_to: None,
    })
}

/// SQLite creates the database file but not its directory.
fn create_sqlite_parent_directory(url: &str) -> Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    Ok(())
}
