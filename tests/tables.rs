//! The archive as Iceberg tables, read by PyIceberg (an independent
//! implementation of the spec) through the SQL catalog in Hindsight's own
//! catalog database: every (source, topic) table holds exactly the events
//! `hindsight query` returns, byte for byte, for the demo, Kafka and
//! RabbitMQ; a time filter plans only its hours; `table sync` is
//! idempotent; under ingest and compaction the table never shows more
//! than is committed nor lags beyond `tables.max_lag`, and an old snapshot
//! keeps its count; retention and erasure are the next snapshot's deletes;
//! a SIGKILLed sync leaves tables that load; and all of it again with the
//! PostgreSQL catalog and the S3 store.
//!
//! Sizes are small by default; the acceptance figures come from
//! `HINDSIGHT_TABLES_KAFKA_EVENTS=1000000 HINDSIGHT_TABLES_KILLS=10`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hindsight_archive::catalog::{Catalog, SegmentFilter, TopicStats};
use hindsight_archive::event::now_micros;
use serde_json::{json, Value};

use crate::amqp::AmqpTestConfig;
use crate::compaction::{kafka_archive_config, Archive};
use crate::replay::unique;
use crate::store::{create_bucket, s3_endpoint};
use crate::util::{
    create_kafka_topic, fresh_postgres_database, hindsight, kafka_brokers, query_json,
    query_output, run_ok, start_archive_ready, terminate, wait_for_archived, ChildGuard,
    START_SERVICES,
};

const HOUR: i64 = 3_600_000_000;
const HOUR_MS: i64 = 3_600_000;
/// Events whose payload, key and headers are compared byte for byte.
const SAMPLE_SIZE: usize = 20;
const READER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/iceberg_read.py");
const PRODUCER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/kafka_produce.py"
);
const INSTALL_PYICEBERG: &str = "pip install \"pyiceberg[sql-sqlite,sql-postgres,pyarrow]\"";

/// (namespace, table): (source, topic), never joined with a dot.
type TableName = (String, String);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A SQL string literal.
fn sql_text(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn table_name(source: &str, topic: &str) -> TableName {
    (source.to_owned(), topic.to_owned())
}

// ---- PyIceberg ---------------------------------------------------------------

/// PyIceberg's `SqlCatalog` over Hindsight's catalog database, through
/// tests/support/iceberg_read.py.
struct Iceberg {
    uri: String,
    s3: Vec<String>,
}

/// What `iceberg_read.py count` says about a table.
#[derive(Debug, Clone)]
struct TableCount {
    count: i64,
    snapshot_id: Option<i64>,
    /// Data files planned for a scan with no filter.
    files: i64,
    metadata_location: String,
}

impl Iceberg {
    /// The SQLAlchemy URI of Hindsight's `[catalog] url`: `sqlite://PATH`
    /// (PATH absolute) or `postgres://...`.
    fn for_catalog(catalog_url: &str) -> Iceberg {
        let uri = if let Some(path) = catalog_url.strip_prefix("sqlite://") {
            assert!(path.starts_with('/'), "not an absolute path: {catalog_url}");
            format!("sqlite:///{path}")
        } else if let Some(rest) = catalog_url
            .strip_prefix("postgres://")
            .or_else(|| catalog_url.strip_prefix("postgresql://"))
        {
            format!("postgresql+psycopg2://{rest}")
        } else {
            panic!("no SQLAlchemy URI for the catalog {catalog_url}")
        };
        Iceberg {
            uri,
            s3: Vec::new(),
        }
    }

    /// Reads objects from the S3 test server (the credentials of tests/store.rs).
    fn with_s3(mut self) -> Iceberg {
        let endpoint = s3_endpoint();
        self.s3 = [
            "--s3-endpoint",
            endpoint.as_str(),
            "--s3-key",
            "test",
            "--s3-secret",
            "test",
            "--s3-region",
            "us-east-1",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        self
    }

    /// Runs one command; its JSON, or its stderr.
    fn try_run(&self, args: &[&str]) -> Result<Value, String> {
        let output = Command::new("python3")
            .arg(READER)
            .args(["--uri", &self.uri])
            .args(&self.s3)
            .args(args)
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run python3 ({error}); set up with {START_SERVICES}")
            });
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        serde_json::from_slice(&output.stdout).map_err(|error| {
            format!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    fn run(&self, args: &[&str]) -> Value {
        self.try_run(args).unwrap_or_else(|error| {
            panic!(
                "iceberg_read.py {args:?} failed (PyIceberg missing? {INSTALL_PYICEBERG}, \
                 or {START_SERVICES}): {error}"
            )
        })
    }

    fn try_tables(&self) -> Result<BTreeSet<TableName>, String> {
        let listed = self.try_run(&["tables"])?;
        Ok(listed
            .as_array()
            .unwrap_or_else(|| panic!("tables: {listed}"))
            .iter()
            .map(|pair| {
                table_name(
                    pair[0].as_str().unwrap_or_else(|| panic!("{pair}")),
                    pair[1].as_str().unwrap_or_else(|| panic!("{pair}")),
                )
            })
            .collect())
    }

    fn tables(&self) -> BTreeSet<TableName> {
        self.try_tables()
            .unwrap_or_else(|error| panic!("iceberg_read.py tables failed: {error}"))
    }

    fn try_count(&self, table: &TableName, snapshot: Option<i64>) -> Result<TableCount, String> {
        let snapshot_text = snapshot.map(|id| id.to_string());
        let mut args = vec!["count", table.0.as_str(), table.1.as_str()];
        if let Some(id) = &snapshot_text {
            args.extend(["--snapshot", id.as_str()]);
        }
        let counted = self.try_run(&args)?;
        Ok(TableCount {
            count: counted["count"]
                .as_i64()
                .unwrap_or_else(|| panic!("{counted}")),
            snapshot_id: counted["snapshot_id"].as_i64(),
            files: counted["files"]
                .as_i64()
                .unwrap_or_else(|| panic!("{counted}")),
            metadata_location: counted["metadata_location"]
                .as_str()
                .unwrap_or_else(|| panic!("{counted}"))
                .to_owned(),
        })
    }

    fn count(&self, table: &TableName, snapshot: Option<i64>) -> TableCount {
        self.try_count(table, snapshot).unwrap_or_else(|error| {
            panic!("iceberg_read.py count {table:?} (snapshot {snapshot:?}) failed: {error}")
        })
    }

    /// The table's event ids, sorted.
    fn ids(&self, table: &TableName) -> Vec<String> {
        let file = tempfile::NamedTempFile::new().unwrap();
        let out = file.path().display().to_string();
        let written = self.run(&["ids", &table.0, &table.1, "--out", &out]);
        let ids: Vec<String> = std::fs::read_to_string(file.path())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            written["count"].as_u64(),
            Some(ids.len() as u64),
            "{written}"
        );
        ids
    }

    /// Payload, key and headers of these events, bytes as hex (as
    /// `hindsight query` writes them).
    fn sample(&self, table: &TableName, ids: &[String]) -> Value {
        let list = ids.join(",");
        self.run(&[
            "sample",
            &table.0,
            &table.1,
            "--ids",
            &list,
            "--encoding",
            "hex",
        ])
    }

    /// (files planned for `from_us <= event_time < to_us`, files planned in all).
    fn plan(&self, table: &TableName, from_us: i64, to_us: i64) -> (i64, i64) {
        let planned = self.run(&[
            "plan",
            &table.0,
            &table.1,
            "--from-us",
            &from_us.to_string(),
            "--to-us",
            &to_us.to_string(),
        ]);
        (
            planned["planned"]
                .as_i64()
                .unwrap_or_else(|| panic!("{planned}")),
            planned["total"]
                .as_i64()
                .unwrap_or_else(|| panic!("{planned}")),
        )
    }

    /// Every snapshot, oldest first.
    fn snapshots(&self, table: &TableName) -> Vec<Value> {
        let listed = self.run(&["snapshots", &table.0, &table.1]);
        listed
            .as_array()
            .unwrap_or_else(|| panic!("snapshots: {listed}"))
            .clone()
    }

    /// The current snapshot's manifests: path, spec and entries by status.
    fn manifests(&self, table: &TableName) -> Vec<Value> {
        let listed = self.run(&["manifests", &table.0, &table.1]);
        listed
            .as_array()
            .unwrap_or_else(|| panic!("manifests: {listed}"))
            .clone()
    }

    fn newest_snapshot(&self, table: &TableName) -> Value {
        self.snapshots(table)
            .pop()
            .unwrap_or_else(|| panic!("{table:?} has no snapshot"))
    }
}

/// A number of a snapshot summary (summary values are strings).
fn summary_number(snapshot: &Value, key: &str) -> Option<i64> {
    snapshot["summary"][key]
        .as_str()
        .and_then(|value| value.parse().ok())
}

// ---- Hindsight -----------------------------------------------------------------

/// The event ids of one (source, topic) as `hindsight query` returns them, sorted.
fn query_ids(config: &Path, table: &TableName) -> Vec<String> {
    let sql = format!(
        "SELECT event_id FROM events WHERE source = {} AND topic = {}",
        sql_text(&table.0),
        sql_text(&table.1)
    );
    let mut ids: Vec<String> = query_output(config, "csv", &sql)
        .lines()
        .skip(1) // the header
        .map(str::to_owned)
        .collect();
    ids.sort_unstable();
    ids
}

/// Payload, key and headers of these events as `hindsight query` returns
/// them: binary as hex, headers as `[name, value or null]`.
fn query_sample(config: &Path, table: &TableName, ids: &[String]) -> BTreeMap<String, Value> {
    let list: Vec<String> = ids.iter().map(|id| sql_text(id)).collect();
    let sql = format!(
        "SELECT event_id, payload, key, headers FROM events \
         WHERE source = {} AND topic = {} AND event_id IN ({})",
        sql_text(&table.0),
        sql_text(&table.1),
        list.join(", ")
    );
    let mut sample = BTreeMap::new();
    for row in query_json(config, &sql) {
        let headers: Vec<Value> = row["headers"]
            .as_array()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        json!([
                            header["name"],
                            header.get("value").cloned().unwrap_or(Value::Null)
                        ])
                    })
                    .collect()
            })
            .unwrap_or_default();
        let id = row["event_id"].as_str().unwrap().to_owned();
        // A redelivered copy: the first one stands for the id.
        sample.entry(id).or_insert_with(
            || json!({"payload": row["payload"], "key": row["key"], "headers": headers}),
        );
    }
    sample
}

/// `hindsight table sync --json`: the report of each table.
fn table_sync(config: &Path) -> BTreeMap<TableName, Value> {
    let output = run_ok(
        hindsight()
            .arg("--config")
            .arg(config)
            .args(["table", "sync", "--json"]),
    );
    let reports: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "table sync --json: {error}: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    reports
        .into_iter()
        .map(|report| {
            let name = table_name(
                report["namespace"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{report}")),
                report["table"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{report}")),
            );
            (name, report)
        })
        .collect()
}

/// The catalog's committed live events and segments per (source, topic).
async fn catalog_stats(catalog_url: &str) -> BTreeMap<TableName, TopicStats> {
    let catalog = Catalog::connect(catalog_url).await.unwrap();
    let stats = catalog.topic_stats().await.unwrap();
    catalog.close().await;
    stats
        .into_iter()
        .map(|topic| (table_name(&topic.source, &topic.topic), topic))
        .collect()
}

/// Committed live events of one table; `None` while the catalog cannot answer.
async fn committed_events(catalog: &Catalog, table: &TableName) -> Option<i64> {
    let stats = catalog.topic_stats().await.ok()?;
    Some(
        stats
            .iter()
            .filter(|topic| topic.source == table.0 && topic.topic == table.1)
            .map(|topic| topic.events)
            .sum(),
    )
}

/// `tests/support/kafka_produce.py BROKERS TOPIC FIRST COUNT RATE`.
fn kafka_producer(topic: &str, first: u64, count: u64, rate: u64) -> Command {
    let mut command = Command::new("python3");
    command.args([
        PRODUCER,
        &kafka_brokers(),
        topic,
        &first.to_string(),
        &count.to_string(),
        &rate.to_string(),
    ]);
    command
}

// ---- checks ----------------------------------------------------------------------

/// A table that PyIceberg and `hindsight query` agree on.
struct Checked {
    stats: TopicStats,
    /// Its event ids, sorted.
    ids: Vec<String>,
}

/// Without printing a million ids: how many each side has, and a few of
/// the differences.
fn assert_same_ids(table: &TableName, from_table: &[String], from_query: &[String]) {
    if from_table == from_query {
        return;
    }
    let table_set: BTreeSet<&String> = from_table.iter().collect();
    let query_set: BTreeSet<&String> = from_query.iter().collect();
    let missing: Vec<&&String> = query_set.difference(&table_set).take(5).collect();
    let extra: Vec<&&String> = table_set.difference(&query_set).take(5).collect();
    panic!(
        "{table:?}: PyIceberg read {} ids ({} distinct), hindsight query {} ({} distinct); \
         missing from the table: {missing:?}; not in the archive: {extra:?}",
        from_table.len(),
        table_set.len(),
        from_query.len(),
        query_set.len()
    );
}

/// Every (source, topic) of the catalog is one table, and no other table
/// exists; each table's event ids, read by PyIceberg, are exactly those
/// `hindsight query` returns; its scan plans one file per live segment.
async fn assert_tables_match_query(
    config: &Path,
    catalog_url: &str,
    iceberg: &Iceberg,
) -> BTreeMap<TableName, Checked> {
    let stats = catalog_stats(catalog_url).await;
    assert!(!stats.is_empty(), "the archive is empty");
    assert_eq!(
        iceberg.tables(),
        stats.keys().cloned().collect::<BTreeSet<_>>(),
        "one table per (source, topic), and nothing else"
    );
    let mut checked = BTreeMap::new();
    for (table, topic) in stats {
        let from_query = query_ids(config, &table);
        assert_eq!(
            from_query.len() as i64,
            topic.events,
            "{table:?}: hindsight query against the catalog"
        );
        let from_table = iceberg.ids(&table);
        assert_same_ids(&table, &from_table, &from_query);
        let counted = iceberg.count(&table, None);
        assert_eq!(counted.count, topic.events, "{table:?}");
        assert_eq!(
            counted.files, topic.segments,
            "{table:?}: one data file per live segment"
        );
        eprintln!(
            "{table:?}: {} events in {} files, equal in PyIceberg and hindsight query",
            topic.events, topic.segments
        );
        checked.insert(
            table,
            Checked {
                stats: topic,
                ids: from_table,
            },
        );
    }
    checked
}

/// `table sync --json` reported every table, with the catalog's totals.
fn assert_reports_match(
    reports: &BTreeMap<TableName, Value>,
    checked: &BTreeMap<TableName, Checked>,
) {
    assert_eq!(
        reports.keys().collect::<Vec<_>>(),
        checked.keys().collect::<Vec<_>>(),
        "table sync reports every table"
    );
    for (table, report) in reports {
        let stats = &checked[table].stats;
        assert_eq!(
            report["total_records"].as_i64(),
            Some(stats.events),
            "{table:?}: {report}"
        );
        assert_eq!(
            report["total_files"].as_i64(),
            Some(stats.segments),
            "{table:?}: {report}"
        );
    }
}

/// Payload, key and headers of `SAMPLE_SIZE` events spread over the
/// table are byte-identical in PyIceberg and `hindsight query`.
fn assert_sample_identical(config: &Path, iceberg: &Iceberg, table: &TableName, ids: &[String]) {
    let step = (ids.len() / SAMPLE_SIZE).max(1);
    let mut sample: Vec<String> = ids
        .iter()
        .step_by(step)
        .take(SAMPLE_SIZE)
        .cloned()
        .collect();
    sample.dedup();
    assert!(!sample.is_empty(), "{table:?} is empty");
    let expected = query_sample(config, table, &sample);
    assert_eq!(
        expected.len(),
        sample.len(),
        "hindsight query found the sample"
    );
    let read = iceberg.sample(table, &sample);
    for id in &sample {
        assert_eq!(
            read[id.as_str()],
            expected[id],
            "{table:?} event {id}: payload, key and headers (hex), PyIceberg left, hindsight query right"
        );
    }
}

/// `table sync` on an archive of one (source, topic) holding `total`
/// events, then the checks every table gets; returns the catalog URL, the
/// reader and the table.
async fn sync_and_check_the_one_table(
    config: &Path,
    directory: &Path,
    source: &str,
    topic: &str,
    total: u64,
) -> (String, Iceberg, TableName) {
    let reports = table_sync(config);
    let catalog = crate::util::catalog_url(directory);
    let iceberg = Iceberg::for_catalog(&catalog);
    let checked = assert_tables_match_query(config, &catalog, &iceberg).await;
    let table = table_name(source, topic);
    assert_eq!(checked.keys().collect::<Vec<_>>(), vec![&table]);
    assert_eq!(checked[&table].stats.events, total as i64);
    assert_reports_match(&reports, &checked);
    assert_sample_identical(config, &iceberg, &table, &checked[&table].ids);
    (catalog, iceberg, table)
}

/// A filter on one hour of event time plans some files, but fewer than all.
fn assert_time_filter_prunes(iceberg: &Iceberg, table: &TableName, hour_start_us: i64) {
    let (planned, total) = iceberg.plan(table, hour_start_us, hour_start_us + HOUR);
    eprintln!("{table:?}: one hour of event time plans {planned} of {total} files");
    assert!(
        planned > 0 && planned < total,
        "{table:?}: the hour from {hour_start_us} planned {planned} of {total} files"
    );
}

/// The newest snapshot records the catalog's checkpoints of its topic
/// (`hindsight.commit-metadata`).
async fn assert_commit_metadata_matches_checkpoints(
    catalog_url: &str,
    iceberg: &Iceberg,
    table: &TableName,
) {
    let newest = iceberg.newest_snapshot(table);
    let text = newest["summary"]["hindsight.commit-metadata"]
        .as_str()
        .unwrap_or_else(|| panic!("{table:?}: no hindsight.commit-metadata in {newest}"));
    let metadata: Value =
        serde_json::from_str(text).unwrap_or_else(|error| panic!("{text}: {error}"));
    assert_eq!(metadata["source"], table.0, "{metadata}");
    assert_eq!(metadata["topic"], table.1, "{metadata}");
    let recorded: BTreeSet<(i64, i64)> = metadata["checkpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("{metadata}"))
        .iter()
        .map(|checkpoint| {
            (
                checkpoint["partition"].as_i64().unwrap(),
                checkpoint["next"].as_i64().unwrap(),
            )
        })
        .collect();
    let catalog = Catalog::connect(catalog_url).await.unwrap();
    let expected: BTreeSet<(i64, i64)> = catalog
        .checkpoints(&table.0)
        .await
        .unwrap()
        .into_iter()
        .filter(|checkpoint| checkpoint.topic == table.1)
        .map(|checkpoint| (i64::from(checkpoint.partition), checkpoint.next_position))
        .collect();
    catalog.close().await;
    assert!(!expected.is_empty(), "{table:?} has no checkpoints");
    assert_eq!(
        recorded, expected,
        "{table:?}: the snapshot is complete up to the catalog's checkpoints"
    );
}

/// Retention, then a sync: each table's newest snapshot is a `delete`
/// whose deleted records are what retention removed from that topic, and
/// PyIceberg's count dropped by exactly that.
async fn assert_retention_is_a_delete(archive: &Archive, iceberg: &Iceberg) {
    let before = catalog_stats(&archive.catalog_url).await;
    let counts_before: BTreeMap<TableName, TableCount> = before
        .keys()
        .map(|table| (table.clone(), iceberg.count(table, None)))
        .collect();
    for (table, counted) in &counts_before {
        assert_eq!(
            counted.count, before[table].events,
            "{table:?} before retention"
        );
    }
    let report = archive.json(&["retention", "--json"]);
    let removed = report["rows"]
        .as_i64()
        .unwrap_or_else(|| panic!("{report}"));
    assert!(removed > 0, "retention removed nothing: {report}");
    table_sync(&archive.config);
    let after = catalog_stats(&archive.catalog_url).await;
    let mut deleted_in_all = 0;
    for (table, counted_before) in &counts_before {
        let removed_here = before[table].events - after.get(table).map_or(0, |topic| topic.events);
        assert!(
            removed_here > 0,
            "{table:?}: retention removed none of its old hours"
        );
        let newest = iceberg.newest_snapshot(table);
        assert_eq!(newest["operation"], "delete", "{table:?}: {newest}");
        assert_eq!(
            newest["parent_id"].as_i64(),
            counted_before.snapshot_id,
            "{table:?}: one snapshot after the one before retention: {newest}"
        );
        let deleted = summary_number(&newest, "deleted-records")
            .unwrap_or_else(|| panic!("{table:?}: no deleted-records in {newest}"));
        assert_eq!(deleted, removed_here, "{table:?}: {newest}");
        let counted = iceberg.count(table, None);
        assert_eq!(counted.count, counted_before.count - deleted, "{table:?}");
        assert_eq!(counted.snapshot_id, newest["snapshot_id"].as_i64());
        deleted_in_all += deleted;
    }
    assert_eq!(deleted_in_all, removed, "what retention removed: {report}");
}

// ---- tests -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn demo_archive_tables_read_by_pyiceberg_equal_hindsight_query_and_sync_is_idempotent() {
    let archive = Archive::demo(20_000, 500, None, "");
    let iceberg = Iceberg::for_catalog(&archive.catalog_url);
    let reports = table_sync(&archive.config);
    let checked = assert_tables_match_query(&archive.config, &archive.catalog_url, &iceberg).await;
    assert_eq!(checked.len(), 3, "orders, payments and shipments");
    assert_reports_match(&reports, &checked);
    // Demo events span the six hours before now; this one is in the middle.
    let hour = (now_micros() - 3 * HOUR).div_euclid(HOUR) * HOUR;
    let local_root = format!("file://{}/", archive.data().display());
    for (table, facts) in &checked {
        assert_sample_identical(&archive.config, &iceberg, table, &facts.ids);
        assert_time_filter_prunes(&iceberg, table, hour);
        assert_commit_metadata_matches_checkpoints(&archive.catalog_url, &iceberg, table).await;
        let counted = iceberg.count(table, None);
        assert!(
            counted.metadata_location.starts_with(&local_root),
            "{table:?}: metadata {} is not in the store {local_root}",
            counted.metadata_location
        );
        assert_eq!(counted.snapshot_id, reports[table]["snapshot_id"].as_i64());
    }
    // Nothing changed: a second sync changes nothing.
    let again = table_sync(&archive.config);
    assert_eq!(
        again.keys().collect::<Vec<_>>(),
        reports.keys().collect::<Vec<_>>()
    );
    for (table, report) in &again {
        assert_eq!(report["changed"], false, "{table:?}: {report}");
        assert_eq!(report["added_files"], 0, "{table:?}: {report}");
        assert_eq!(report["removed_files"], 0, "{table:?}: {report}");
        assert_eq!(
            report["snapshot_id"], reports[table]["snapshot_id"],
            "{table:?}: the same snapshot"
        );
    }
}

/// A Kafka archive: 6 partitions, events dated over three hours, and a
/// dot in the topic name (the table is named after the topic verbatim).
/// `HINDSIGHT_TABLES_KAFKA_EVENTS=1000000` is the acceptance run.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_archive_as_a_table_equals_hindsight_query_byte_for_byte() {
    let total = env_u64("HINDSIGHT_TABLES_KAFKA_EVENTS", 30_000);
    let topic = create_kafka_topic(&unique("hs.tables"), 6);
    let now_ms = now_micros() / 1_000;
    // A third of the events three, two and one hour(s) ago.
    let mut first = 0;
    for (index, hours_ago) in [3, 2, 1].into_iter().enumerate() {
        let count = if index == 2 { total - first } else { total / 3 };
        let status = kafka_producer(&topic, first, count, 0)
            .env(
                "HINDSIGHT_TEST_TIMESTAMP_MS",
                (now_ms - hours_ago * HOUR_MS).to_string(),
            )
            .status()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e}); set up with {START_SERVICES}"));
        assert!(status.success(), "producing to {topic} failed");
        first += count;
    }
    let directory = tempfile::tempdir().unwrap();
    let config = crate::kafka::write_config(
        directory.path(),
        &format!("topics = [{topic:?}]"),
        &unique("hs-tables"),
        "",
        "15m",
    );
    let (mut archive, _stdout) = start_archive_ready(&config);
    wait_for_archived(
        directory.path(),
        total as i64,
        Duration::from_secs(300 + total / 2_000),
    )
    .await;
    let status = terminate(&mut archive.0);
    assert!(status.success(), "archive did not stop cleanly: {status:?}");

    let (catalog, iceberg, table) =
        sync_and_check_the_one_table(&config, directory.path(), "kafka-test", &topic, total).await;
    let middle_hour = ((now_ms - 2 * HOUR_MS) * 1_000).div_euclid(HOUR) * HOUR;
    assert_time_filter_prunes(&iceberg, &table, middle_hour);
    assert_commit_metadata_matches_checkpoints(&catalog, &iceberg, &table).await;
}

/// A RabbitMQ archive (an archive queue bound to a topic exchange).
#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_archive_as_a_table_equals_hindsight_query_byte_for_byte() {
    let total = env_u64("HINDSIGHT_TABLES_AMQP_EVENTS", 10_000);
    let directory = tempfile::tempdir().unwrap();
    let (_connection, channel) = crate::amqp::connect().await;
    let exchange = crate::amqp::declare_topic_exchange(&channel).await;
    let queue = unique("hs-tables");
    let config = crate::amqp::write_config(
        directory.path(),
        &AmqpTestConfig {
            mode: "archive_queue",
            queue: &queue,
            exchange: &exchange,
            max_rows: 2_000,
            storage: "",
        },
    );
    let (mut archive, _stdout) = start_archive_ready(&config);
    crate::amqp::publish(&channel, &exchange, 0..total, 0).await;
    wait_for_archived(directory.path(), total as i64, Duration::from_secs(300)).await;
    let status = terminate(&mut archive.0);
    assert!(status.success(), "archive did not stop cleanly: {status:?}");

    let (_, iceberg, table) =
        sync_and_check_the_one_table(&config, directory.path(), "amqp-test", &exchange, total)
            .await;
    // Event times are the messages' timestamps, 1_700_000_000 + seq
    // seconds: about three hours from 22:13 UTC. The second of them:
    let second_hour = (1_700_000_000 * 1_000_000_i64).div_euclid(HOUR) * HOUR + HOUR;
    assert_time_filter_prunes(&iceberg, &table, second_hour);
}

/// `hindsight archive` with `tables.max_lag = 3s` and compaction every 2 s
/// while late events keep arriving for a closed hour (so every pass
/// replaces files): PyIceberg's count of the current snapshot never
/// exceeds the committed count, never lags it by more than max_lag (plus
/// the slack of one sync pass and of sampling), and a snapshot read early
/// still returns its count at the end.
#[tokio::test(flavor = "multi_thread")]
async fn under_ingest_and_compaction_the_table_never_leads_the_catalog_nor_lags_beyond_max_lag() {
    const MAX_LAG: Duration = Duration::from_secs(3);
    const SLACK: Duration = Duration::from_secs(5);
    const RATE: u64 = 300;
    const OLD_EVENTS: u64 = 3_000;
    let seconds = env_u64("HINDSIGHT_TABLES_LOAD_SECONDS", 40);
    let topic = create_kafka_topic(&unique("hs-tables-load"), 2);
    let three_hours_ago = (3 * HOUR_MS).to_string();
    let status = kafka_producer(&topic, 0, OLD_EVENTS, 0)
        .env("HINDSIGHT_TEST_TIMESTAMP_AGO_MS", &three_hours_ago)
        .status()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); set up with {START_SERVICES}"));
    assert!(status.success(), "producing to {topic} failed");
    let directory = tempfile::tempdir().unwrap();
    let config = kafka_archive_config(
        directory.path(),
        &topic,
        200,
        "interval = \"2s\"\nsettle = \"1m\"\ngrace = \"0s\"\nquiet_day_bytes = 0\n\
         [tables]\nmax_lag = \"3s\"\n",
    );
    let catalog_url = crate::util::catalog_url(directory.path());
    let table = table_name("kafka", &topic);
    let iceberg = Iceberg::for_catalog(&catalog_url);
    let archive_started = Instant::now();
    let (mut archive, _stdout) = start_archive_ready(&config);
    // Late events for the closed hour, all along.
    let _producer = ChildGuard(
        kafka_producer(&topic, OLD_EVENTS, RATE * (seconds + 30), RATE)
            .env("HINDSIGHT_TEST_TIMESTAMP_AGO_MS", &three_hours_ago)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e}); set up with {START_SERVICES}")),
    );

    // (when, committed events): each count was committed by then.
    let samples: Arc<Mutex<Vec<(Instant, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, stop, url, table) = (
            Arc::clone(&samples),
            Arc::clone(&stop),
            catalog_url.clone(),
            table.clone(),
        );
        tokio::spawn(async move {
            let catalog = Catalog::connect(&url).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                if let Some(committed) = committed_events(&catalog, &table).await {
                    samples.lock().unwrap().push((Instant::now(), committed));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            catalog.close().await;
        })
    };
    let catalog = Catalog::connect(&catalog_url).await.unwrap();
    let started = Instant::now();
    let mut early: Option<(i64, i64)> = None;
    let mut snapshots_read = BTreeSet::new();
    let mut reads = 0;
    let mut worst_lag = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(seconds) {
        let before = Instant::now();
        let read = iceberg.try_count(&table, None);
        let committed_after = committed_events(&catalog, &table)
            .await
            .expect("the catalog answers");
        samples
            .lock()
            .unwrap()
            .push((Instant::now(), committed_after));
        let counted = match read {
            Ok(counted) => counted,
            Err(error) => {
                assert!(
                    snapshots_read.is_empty(),
                    "the table stopped loading after {reads} reads: {error}"
                );
                assert!(
                    started.elapsed() < MAX_LAG + Duration::from_secs(30),
                    "no table {table:?} after {:?}: {error}",
                    started.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        reads += 1;
        assert!(
            counted.count <= committed_after,
            "read {reads}: PyIceberg counts {} events, the catalog had committed {committed_after}",
            counted.count
        );
        // The first moment the catalog held more than the table shows.
        let overtaken = samples
            .lock()
            .unwrap()
            .iter()
            .find(|(_, committed)| *committed > counted.count)
            .map(|(at, _)| *at);
        if let Some(at) = overtaken.filter(|at| *at < before) {
            let lag = before - at;
            worst_lag = worst_lag.max(lag);
            assert!(
                lag <= MAX_LAG + SLACK,
                "read {reads}: PyIceberg counts {} events, and more had been committed {lag:?} before",
                counted.count
            );
        }
        if let Some(id) = counted.snapshot_id {
            snapshots_read.insert(id);
            if early.is_none() && counted.count > 0 {
                early = Some((id, counted.count));
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let status = terminate(&mut archive.0);
    let archive_ran = archive_started.elapsed();
    assert!(status.success(), "archive did not stop cleanly: {status:?}");
    eprintln!(
        "{reads} reads of {} snapshots; worst lag seen {worst_lag:?}",
        snapshots_read.len()
    );
    assert!(reads >= 5, "only {reads} reads");
    assert!(
        snapshots_read.len() >= 3,
        "the table moved on while it was read: {snapshots_read:?}"
    );
    let live = catalog
        .segments(&SegmentFilter {
            topic: Some(topic.clone()),
            ..SegmentFilter::default()
        })
        .await
        .unwrap();
    assert!(
        live.iter().any(|record| record.compaction_level == 1),
        "compaction ran during the test"
    );
    let snapshots = iceberg.snapshots(&table);
    assert!(
        snapshots
            .iter()
            .any(|snapshot| summary_number(snapshot, "deleted-data-files").unwrap_or(0) > 0),
        "a snapshot replaced compacted segments: {snapshots:?}"
    );
    // New rows arrive in one `append` snapshot per sync pass (every half
    // max_lag), not one per flush (1.5 a second: 200 rows at 300/s);
    // maintenance adds its own snapshot to a pass.
    let passes = archive_ran.as_secs_f64() / (MAX_LAG.as_secs_f64() / 2.0);
    let appends = snapshots
        .iter()
        .filter(|snapshot| snapshot["operation"] == "append")
        .count();
    assert!(
        (appends as f64) <= passes + 5.0,
        "{appends} append snapshots in {archive_ran:?} with max_lag {MAX_LAG:?}"
    );
    let (early_id, early_count) = early.expect("PyIceberg read a snapshot with events");
    assert_eq!(
        iceberg.count(&table, Some(early_id)).count,
        early_count,
        "snapshot {early_id}, read early, still returns its count"
    );
    table_sync(&config);
    let committed = committed_events(&catalog, &table).await.unwrap();
    catalog.close().await;
    assert_eq!(
        iceberg.count(&table, None).count,
        committed,
        "after the last sync"
    );
}

/// Retention is a `delete` snapshot; erasing a key is an `overwrite` of
/// the tables that held it, after which PyIceberg reads none of its
/// events, while the snapshot before still counts them.
#[tokio::test(flavor = "multi_thread")]
async fn retention_and_erasure_show_up_as_deletes_in_the_next_snapshot() {
    let archive = Archive::demo(20_000, 1_000, None, "[retention.demo]\nkeep = \"2h\"\n");
    let iceberg = Iceberg::for_catalog(&archive.catalog_url);
    table_sync(&archive.config);
    assert_retention_is_a_delete(&archive, &iceberg).await;

    // The busiest customer key: it is the key of `orders` events only.
    let busiest = query_json(
        &archive.config,
        "SELECT arrow_cast(key, 'Utf8') AS customer, count(*) AS matching FROM events \
         WHERE source = 'demo' AND topic = 'orders' \
         GROUP BY arrow_cast(key, 'Utf8') ORDER BY matching DESC, customer LIMIT 1",
    );
    let key = busiest[0]["customer"]
        .as_str()
        .unwrap_or_else(|| panic!("{busiest:?}"))
        .to_owned();
    let holders = query_json(
        &archive.config,
        &format!(
            "SELECT event_id, topic FROM events WHERE source = 'demo' AND arrow_cast(key, 'Utf8') = {}",
            sql_text(&key)
        ),
    );
    let erased: BTreeSet<String> = holders
        .iter()
        .map(|row| row["event_id"].as_str().unwrap().to_owned())
        .collect();
    let erased_from: BTreeSet<TableName> = holders
        .iter()
        .map(|row| table_name("demo", row["topic"].as_str().unwrap()))
        .collect();
    assert!(!erased.is_empty());
    let tables = iceberg.tables();
    let before: BTreeMap<TableName, (TableCount, Vec<String>)> = tables
        .iter()
        .map(|table| {
            (
                table.clone(),
                (iceberg.count(table, None), iceberg.ids(table)),
            )
        })
        .collect();

    let report = archive.json(&[
        "erase", "--source", "demo", "--key", &key, "--yes", "--json",
    ]);
    assert_eq!(
        report["events"].as_u64(),
        Some(erased.len() as u64),
        "{report}"
    );
    let reports = table_sync(&archive.config);
    for (table, (counted_before, ids_before)) in &before {
        if !erased_from.contains(table) {
            assert_eq!(
                reports[table]["changed"], false,
                "{table:?}: {}",
                reports[table]
            );
            assert_eq!(
                iceberg.count(table, None).snapshot_id,
                counted_before.snapshot_id
            );
            continue;
        }
        let newest = iceberg.newest_snapshot(table);
        assert_eq!(newest["operation"], "overwrite", "{table:?}: {newest}");
        assert_eq!(
            newest["parent_id"].as_i64(),
            counted_before.snapshot_id,
            "{table:?}: {newest}"
        );
        let expected: Vec<String> = ids_before
            .iter()
            .filter(|id| !erased.contains(*id))
            .cloned()
            .collect();
        assert!(expected.len() < ids_before.len(), "{table:?} held the key");
        let ids_after = iceberg.ids(table);
        assert_same_ids(table, &ids_after, &expected);
        assert_eq!(
            summary_number(&newest, "total-records"),
            Some(expected.len() as i64),
            "{table:?}: {newest}"
        );
        let old = iceberg.count(
            table,
            Some(
                counted_before
                    .snapshot_id
                    .expect("a snapshot before the erasure"),
            ),
        );
        assert_eq!(
            old.count, counted_before.count,
            "{table:?}: the snapshot before the erasure still counts the old total"
        );
    }
}

/// SIGKILL of `table sync` at random moments within its duration: every
/// table PyIceberg lists loads, and never counts more than the catalog
/// holds; once listed, a table stays; after a clean sync every table
/// equals the catalog. `HINDSIGHT_TABLES_KILLS=10` is the acceptance run.
#[tokio::test(flavor = "multi_thread")]
async fn table_sync_killed_at_random_moments_leaves_tables_that_load() {
    const EVENTS: u64 = 30_000;
    const MAX_ROWS: u64 = 100;
    let kills = env_u64("HINDSIGHT_TABLES_KILLS", 3);
    // The duration of the syncs the kills hit (all but the first: a quarter
    // more events each), process start included, measured on an archive
    // like theirs.
    let full_sync = {
        let probe = Archive::demo(EVENTS, MAX_ROWS, None, "");
        table_sync(&probe.config);
        probe.add_demo_events(EVENTS / 4, 99);
        let started = Instant::now();
        table_sync(&probe.config);
        started.elapsed()
    };
    eprintln!(
        "a sync of {} more demo events in {MAX_ROWS}-row segments: {full_sync:?}",
        EVENTS / 4
    );
    let archive = Archive::demo(EVENTS, MAX_ROWS, None, "");
    let iceberg = Iceberg::for_catalog(&archive.catalog_url);
    let full_ms = full_sync.as_millis() as u64;
    // The second half: start-up (opening the catalog) takes the first.
    let (shortest, longest) = ((full_ms / 2).max(20), full_ms.max(40));
    let mut state = u64::from(std::process::id()).wrapping_mul(2_654_435_761) | 1;
    let mut landed_mid_sync = 0;
    // Kills after the run had written table objects but before every table
    // was committed: the moments that matter most.
    let mut landed_mid_write = 0;
    let table_objects = |archive: &Archive| -> usize {
        fn count(directory: &Path) -> usize {
            std::fs::read_dir(directory).map_or(0, |entries| {
                entries
                    .flatten()
                    .map(|entry| {
                        let path = entry.path();
                        if path.is_dir() {
                            count(&path)
                        } else {
                            1
                        }
                    })
                    .sum()
            })
        }
        count(&archive.data().join("tables"))
    };
    let mut listed: BTreeSet<TableName> = BTreeSet::new();
    for kill in 0..kills {
        let objects_before = table_objects(&archive);
        let mut child = ChildGuard(
            archive
                .command()
                .args(["table", "sync"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = Duration::from_millis(shortest + state % (longest - shortest + 1));
        let deadline = Instant::now() + delay;
        while Instant::now() < deadline && child.0.try_wait().unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let finished = child.0.try_wait().unwrap().is_some();
        let _ = child.0.kill();
        let _ = child.0.wait();
        landed_mid_sync += u64::from(!finished);
        eprintln!(
            "kill {kill} after {delay:?}{}",
            if finished { " (it had finished)" } else { "" }
        );
        let stats = catalog_stats(&archive.catalog_url).await;
        let tables = match iceberg.try_tables() {
            Ok(tables) => tables,
            // Killed before the catalog tables existed: nothing to load yet.
            Err(error) if listed.is_empty() && error.contains("iceberg_") => {
                eprintln!("after kill {kill}: no Iceberg catalog tables yet ({error})");
                BTreeSet::new()
            }
            Err(error) => panic!("after kill {kill}, PyIceberg cannot list the tables: {error}"),
        };
        assert!(
            listed.is_subset(&tables),
            "after kill {kill}, a table disappeared: {listed:?} then {tables:?}"
        );
        for table in &tables {
            let counted = iceberg.try_count(table, None).unwrap_or_else(|error| {
                panic!("after kill {kill}, {table:?} is listed but does not load: {error}")
            });
            let committed = stats.get(table).map_or(0, |topic| topic.events);
            assert!(
                counted.count <= committed,
                "after kill {kill}, {table:?} counts {} of {committed} committed events",
                counted.count
            );
        }
        let written = table_objects(&archive) - objects_before;
        let behind = tables
            .iter()
            .filter(|table| {
                iceberg.count(table, None).count < stats.get(*table).map_or(0, |topic| topic.events)
            })
            .count();
        if written > 0 && behind > 0 {
            landed_mid_write += 1;
        }
        eprintln!("after kill {kill}: {written} table objects written, {behind} table(s) behind");
        listed = tables;
        // Work for the next sync to be killed in.
        archive.add_demo_events(EVENTS / 4, 100 + kill);
    }
    eprintln!("{landed_mid_write} of {kills} kills landed after objects were written and before every table was committed");
    assert!(
        landed_mid_sync > 0,
        "no kill landed during a sync (a full sync takes {full_sync:?})"
    );
    let reports = table_sync(&archive.config);
    let checked = assert_tables_match_query(&archive.config, &archive.catalog_url, &iceberg).await;
    assert_reports_match(&reports, &checked);
    for (table, report) in table_sync(&archive.config) {
        assert_eq!(report["changed"], false, "{table:?}: {report}");
    }
}

/// The same tables with the PostgreSQL catalog and the S3 store (moto):
/// counts, ids and a sample equal `hindsight query`, metadata lives in the
/// bucket, and retention is a `delete` snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_catalog_and_an_s3_store_publish_the_same_tables() {
    let bucket = create_bucket();
    let catalog_url = fresh_postgres_database("hindsight_tables").await;
    let extra = format!(
        "[storage]\nurl = \"s3://{bucket}/archive\"\nendpoint = {endpoint:?}\n\
         region = \"us-east-1\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n\
         allow_http = true\n[retention.demo]\nkeep = \"2h\"\n",
        endpoint = s3_endpoint(),
    );
    let archive = Archive::demo(20_000, 1_000, Some(catalog_url.clone()), &extra);
    let iceberg = Iceberg::for_catalog(&catalog_url).with_s3();
    let reports = table_sync(&archive.config);
    let checked = assert_tables_match_query(&archive.config, &catalog_url, &iceberg).await;
    assert_eq!(checked.len(), 3, "orders, payments and shipments");
    assert_reports_match(&reports, &checked);
    let bucket_root = format!("s3://{bucket}/archive/");
    for table in checked.keys() {
        let counted = iceberg.count(table, None);
        assert!(
            counted.metadata_location.starts_with(&bucket_root),
            "{table:?}: metadata {} is not in the bucket {bucket_root}",
            counted.metadata_location
        );
    }
    assert!(
        !archive.data().exists() || crate::util::parquet_files(&archive.data()).is_empty(),
        "nothing is written locally"
    );
    let orders = table_name("demo", "orders");
    assert_sample_identical(&archive.config, &iceberg, &orders, &checked[&orders].ids);
    assert_retention_is_a_delete(&archive, &iceberg).await;
}

/// Segments written before field ids (schema version 4 and older) are read
/// through the table's name mapping: PyIceberg finds every column, the
/// nested headers included, by name.
#[tokio::test(flavor = "multi_thread")]
async fn segments_written_before_field_ids_read_through_the_name_mapping() {
    let archive = Archive::demo(5_000, 1_000, None, "");
    let catalog = Catalog::connect(&archive.catalog_url).await.unwrap();
    let orders = catalog
        .segments(&SegmentFilter {
            topic: Some("orders".to_owned()),
            ..SegmentFilter::default()
        })
        .await
        .unwrap();
    assert!(orders.len() > 1, "orders has several segments");
    for record in &orders {
        let path = archive.data().join(&record.segment.uri);
        let bytes = without_field_ids(std::fs::read(&path).unwrap());
        std::fs::write(&path, &bytes).unwrap();
        catalog
            .execute_raw(&format!(
                "UPDATE segments SET byte_size = {} WHERE id = '{}'",
                bytes.len(),
                record.segment.id
            ))
            .await
            .unwrap();
    }
    catalog.close().await;
    table_sync(&archive.config);
    let iceberg = Iceberg::for_catalog(&archive.catalog_url);
    let checked = assert_tables_match_query(&archive.config, &archive.catalog_url, &iceberg).await;
    let table = table_name("demo", "orders");
    assert_sample_identical(&archive.config, &iceberg, &table, &checked[&table].ids);
}

/// The same rows as version 4 wrote them: every column and nested field
/// without its `PARQUET:field_id`.
fn without_field_ids(bytes: Vec<u8>) -> Vec<u8> {
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    fn strip(field: &Field) -> Field {
        let data_type = match field.data_type() {
            DataType::List(element) => DataType::List(Arc::new(strip(element))),
            DataType::Struct(fields) => {
                DataType::Struct(fields.iter().map(|field| strip(field)).collect())
            }
            other => other.clone(),
        };
        Field::new(field.name(), data_type, field.is_nullable())
    }
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<arrow::array::RecordBatch> = reader.map(|batch| batch.unwrap()).collect();
    let schema = Arc::new(Schema::new(
        batches[0]
            .schema()
            .fields()
            .iter()
            .map(|field| strip(field))
            .collect::<Vec<_>>(),
    ));
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            "hindsight.schema_version".to_owned(),
            "4".to_owned(),
        )]))
        .build();
    let mut out = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut out, Arc::clone(&schema), Some(properties))
            .unwrap();
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| arrow::compute::cast(column, field.data_type()).unwrap())
            .collect();
        let batch = arrow::array::RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
        writer.write(&batch).unwrap();
    }
    writer.close().unwrap();
    let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&bytes::Bytes::from(out.clone()))
        .unwrap();
    let parquet_schema = metadata.file_metadata().schema_descr();
    assert!(
        (0..parquet_schema.num_columns()).all(|index| !parquet_schema
            .column(index)
            .self_type()
            .get_basic_info()
            .has_id()),
        "the rewritten segment still carries field ids"
    );
    out
}

/// Metadata stays bounded over many snapshots: with `max_manifests = 3`,
/// `min_snapshots = 2` and `keep_snapshots = "1s"`, rounds of new events and
/// a compaction keep the current snapshot at 3 manifests or fewer, deleted
/// entries only in the snapshot that deleted their files, 2 snapshots, and
/// on disk only the manifest lists and manifests those snapshots name;
/// PyIceberg counts what the catalog holds after every round.
#[tokio::test(flavor = "multi_thread")]
async fn manifests_merge_and_snapshots_expire_so_metadata_stays_bounded() {
    let archive = Archive::demo(
        2_000,
        200,
        None,
        "[tables]\nmax_manifests = 3\nmin_snapshots = 2\nkeep_snapshots = \"1s\"\n",
    );
    let iceberg = Iceberg::for_catalog(&archive.catalog_url);
    let table = table_name("demo", "orders");
    let metadata = archive.data().join("tables/demo/orders/metadata");
    let mut operations = Vec::new();
    for round in 0..6u64 {
        archive.add_demo_events(1_000, 10 + round);
        if round == 3 {
            // The new events first, so the compaction is a snapshot of its own.
            table_sync(&archive.config);
            run_ok(archive.command().args(["compact"]));
        }
        // Older snapshots age past keep_snapshots.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        table_sync(&archive.config);
        let stats = catalog_stats(&archive.catalog_url).await;
        assert_eq!(
            iceberg.count(&table, None).count,
            stats[&table].events,
            "round {round}"
        );
        let manifests = iceberg.manifests(&table);
        assert!(
            !manifests.is_empty() && manifests.len() <= 3,
            "round {round}: {manifests:?}"
        );
        let newest = iceberg.newest_snapshot(&table);
        let operation = newest["operation"].as_str().unwrap().to_owned();
        if operation == "append" {
            assert!(
                manifests.iter().all(|m| m["deleted"] == 0),
                "round {round}: an append carries no deleted entry: {manifests:?}"
            );
        }
        operations.push(operation);
        let snapshots = iceberg.snapshots(&table);
        assert_eq!(snapshots.len().min(2), snapshots.len(), "round {round}");
        let files: Vec<String> = std::fs::read_dir(&metadata)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let lists = files
            .iter()
            .filter(|name| name.starts_with("snap-"))
            .count();
        let manifest_files = files.iter().filter(|name| name.contains("-m")).count();
        assert!(lists <= 2, "round {round}: {files:?}");
        assert!(manifest_files <= 2 * 3, "round {round}: {files:?}");
    }
    assert!(
        operations.iter().any(|operation| operation == "replace"),
        "the compaction was a replace snapshot: {operations:?}"
    );
}
