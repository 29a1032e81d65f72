//! Compaction, retention and erasure, end to end through the binary: every
//! event survives a compaction (and a SIGKILLed one), late events merge in,
//! a replay planned before a swap resumes after it, two compactors on one
//! PostgreSQL catalog compact each hour once, retention removes what its
//! dry run said, and an erased key is gone from SQL, search, replay and
//! every stored object.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hindsight_archive::catalog::{Catalog, SegmentFilter, SegmentRecord};
use hindsight_archive::segment::decode_segment;
use hindsight_archive::Event;
use serde_json::Value;

use crate::replay::{consume_kafka, replay_id, unique};
use crate::util::{
    duckdb_scalar, fresh_postgres_database, hindsight, http_get, kafka_brokers, parquet_files,
    run_ok, serve_data_dir, ChildGuard,
};

const HOUR: i64 = 3_600_000_000;

/// A demo archive under a temporary directory, with its configuration.
pub(crate) struct Archive {
    directory: tempfile::TempDir,
    pub(crate) config: PathBuf,
    pub(crate) catalog_url: String,
}

impl Archive {
    /// `demo --events N` with small flushes (many segments); `extra` is
    /// appended to the configuration. Hours close a minute after they end,
    /// and retired objects are deleted at the next pass (grace 0s).
    pub(crate) fn demo(
        events: u64,
        max_rows: u64,
        catalog_url: Option<String>,
        extra: &str,
    ) -> Archive {
        let directory = tempfile::tempdir().unwrap();
        let data = directory.path().join("data");
        let catalog_url =
            catalog_url.unwrap_or_else(|| format!("sqlite://{}/catalog.db", data.display()));
        let config = directory.path().join("hindsight.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {data:?}\n[catalog]\nurl = {catalog_url:?}\n[flush]\nmax_rows = {max_rows}\n\
                 [compaction]\nsettle = \"1m\"\ngrace = \"0s\"\nquiet_day_bytes = 0\n{extra}",
                data = data.display().to_string(),
            ),
        )
        .unwrap();
        let archive = Archive {
            directory,
            config,
            catalog_url,
        };
        archive.add_demo_events(events, 42);
        archive
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.directory.path().join("data")
    }

    pub(crate) fn command(&self) -> Command {
        let mut command = hindsight();
        command.arg("--config").arg(&self.config);
        command
    }

    /// More demo events: offsets continue, times fall in the same six hours.
    pub(crate) fn add_demo_events(&self, events: u64, seed: u64) {
        run_ok(self.command().args([
            "demo",
            "--no-serve",
            "--events",
            &events.to_string(),
            "--seed",
            &seed.to_string(),
        ]));
    }

    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let output = run_ok(self.command().args(args));
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "{args:?}: {error}: {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    fn compact(&self) -> Value {
        self.json(&["compact", "--json"])
    }

    async fn catalog(&self) -> Catalog {
        Catalog::connect(&self.catalog_url).await.unwrap()
    }

    async fn live_segments(&self) -> Vec<SegmentRecord> {
        let catalog = self.catalog().await;
        let segments = catalog.segments(&SegmentFilter::default()).await.unwrap();
        catalog.close().await;
        segments
    }

    /// Every live event, decoded from the segments the catalog lists.
    async fn live_events(&self) -> Vec<Event> {
        let mut events = Vec::new();
        for record in self.live_segments().await {
            let bytes = std::fs::read(self.data().join(&record.segment.uri)).unwrap();
            events.extend(decode_segment(bytes.into()).unwrap());
        }
        events
    }

    /// What must not change: every (topic, partition, offset) with its
    /// event id, sorted.
    async fn facts(&self) -> Vec<(String, i32, i64, String)> {
        let mut facts: Vec<_> = self
            .live_events()
            .await
            .into_iter()
            .map(|e| (e.topic, e.partition.unwrap(), e.offset.unwrap(), e.event_id))
            .collect();
        facts.sort();
        facts
    }

    fn count_sql(&self, sql: &str) -> i64 {
        let output = run_ok(self.command().args(["query", "--format", "ndjson", sql]));
        let row: Value = serde_json::from_slice(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        row.as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_i64()
            .unwrap()
    }
}

/// A configuration archiving `topic` from the test broker into
/// `directory/data`, flushing every `max_rows` (or second), with
/// `compaction` as the `[compaction]` section.
pub(crate) fn kafka_archive_config(
    directory: &std::path::Path,
    topic: &str,
    max_rows: u64,
    compaction: &str,
) -> PathBuf {
    let config = directory.join("hindsight.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n[flush]\nmax_rows = {max_rows}\nmax_age = \"1s\"\n\
             [compaction]\n{compaction}\
             [[sources]]\ntype = \"kafka\"\nname = \"kafka\"\nbrokers = [{brokers:?}]\n\
             topics = [{topic:?}]\ngroup_id = {group:?}\nstart = \"earliest\"\n",
            data = directory.join("data").display().to_string(),
            brokers = kafka_brokers(),
            group = unique("hs-compact"),
        ),
    )
    .unwrap();
    config
}

/// Live segments per (topic, partition, hour) of the hours that have closed.
fn per_closed_hour(
    segments: &[SegmentRecord],
) -> BTreeMap<(String, i32, i64), Vec<&SegmentRecord>> {
    let closed_before = hindsight_archive::event::now_micros() - HOUR - 60_000_000;
    let mut hours: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for record in segments {
        let hour = record.segment.min_event_time.div_euclid(HOUR) * HOUR;
        if hour + HOUR <= closed_before {
            hours
                .entry((record.segment.topic.clone(), record.segment.partition, hour))
                .or_default()
                .push(record);
        }
    }
    hours
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_merges_closed_hours_losslessly_and_merges_late_events_next_pass() {
    let archive = Archive::demo(40_000, 200, None, "");
    let before = archive.facts().await;
    assert_eq!(before.len(), 40_000);
    let segments_before = archive.live_segments().await.len();
    let files_before = parquet_files(&archive.data()).len();
    assert_eq!(files_before, segments_before);

    let dry = archive.json(&["compact", "--dry-run", "--json"]);
    assert!(dry["jobs"].as_u64().unwrap() > 0, "{dry}");
    assert_eq!(
        parquet_files(&archive.data()).len(),
        files_before,
        "a dry run changes nothing"
    );

    let report = archive.compact();
    eprintln!("compaction: {report}");
    assert_eq!(
        report["segments_in"], dry["segments_in"],
        "the pass did what its dry run said"
    );
    assert_eq!(report["jobs_failed"], 0);
    assert_eq!(
        archive.facts().await,
        before,
        "every event, in its place, once"
    );
    let live = archive.live_segments().await;
    assert!(
        live.len() <= segments_before / 2,
        "{} of {segments_before} segments left",
        live.len()
    );
    for ((topic, partition, hour), records) in per_closed_hour(&live) {
        assert_eq!(
            records.len(),
            1,
            "{topic}/{partition} hour {hour}: {records:?}"
        );
        assert_eq!(records[0].compaction_level, 1);
    }
    // Retired objects stay until the next pass (grace 0s), then go.
    assert!(parquet_files(&archive.data()).len() > live.len());
    let again = archive.compact();
    assert_eq!(again["jobs"], 0, "nothing left to compact: {again}");
    assert_eq!(
        parquet_files(&archive.data()).len(),
        live.len(),
        "retired objects deleted"
    );
    let glob = format!("{}/segments/**/*.parquet", archive.data().display());
    assert_eq!(
        duckdb_scalar(&format!(
            "SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true)"
        )),
        "40000",
        "a reader of the directory sees every event once"
    );
    // The merged segments keep the page index, the bloom filters and zstd.
    let merged = live.iter().find(|r| r.compaction_level == 1).unwrap();
    let bytes =
        bytes::Bytes::from(std::fs::read(archive.data().join(&merged.segment.uri)).unwrap());
    let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required)
        .parse_and_finish(&bytes)
        .unwrap();
    assert!(metadata.column_index().is_some() && metadata.offset_index().is_some());
    let columns = metadata.row_group(0).columns();
    let event_id = columns
        .iter()
        .find(|c| c.column_path().string() == "event_id")
        .unwrap();
    assert!(
        event_id.bloom_filter_offset().is_some(),
        "event_id keeps its bloom filter"
    );
    assert!(matches!(
        event_id.compression(),
        parquet::basic::Compression::ZSTD(_)
    ));

    // Late events for compacted hours arrive as small segments ...
    archive.add_demo_events(5_000, 7);
    let with_late = archive.facts().await;
    assert_eq!(with_late.len(), 45_000);
    assert!(per_closed_hour(&archive.live_segments().await)
        .values()
        .any(|r| r.len() > 1));
    // ... and the next pass merges them in.
    let report = archive.compact();
    assert_eq!(report["jobs_failed"], 0);
    assert_eq!(archive.facts().await, with_late);
    for ((topic, partition, hour), records) in per_closed_hour(&archive.live_segments().await) {
        assert_eq!(
            records.len(),
            1,
            "{topic}/{partition} hour {hour} after the late events"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_killed_before_a_compaction_resumes_after_it_losing_nothing() {
    let archive = Archive::demo(20_000, 200, None, "");
    let orders: BTreeSet<String> = archive
        .live_events()
        .await
        .into_iter()
        .filter(|e| e.topic == "orders")
        .map(|e| e.event_id)
        .collect();
    let target = crate::util::create_kafka_topic(&unique("hs-compact-replay"), 3);
    let mut child = ChildGuard(
        archive
            .command()
            .args([
                "replay", "run", "--source", "demo", "--topic", "orders", "--kafka",
            ])
            .arg(kafka_brokers())
            .args(["--to-topic", &target, "--rate", "1500", "--window", "500"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let id = replay_id(line.as_bytes());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the replay ended before the kill"
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // The swap, then the deletion of every object the replay planned with.
    let report = archive.compact();
    assert!(report["segments_in"].as_u64().unwrap() > 0, "{report}");
    archive.compact();
    let catalog = archive.catalog().await;
    let record = catalog.replay(&id).await.unwrap().unwrap();
    assert!(record.progress.published > 0 && record.progress.published < orders.len() as i64);
    catalog.close().await;
    run_ok(archive.command().args(["replay", "resume", &id]));
    let consumed = consume_kafka(&target, orders.len() as u64 + 1_000, 10);
    let mut copies: HashMap<String, u32> = HashMap::new();
    for message in &consumed {
        *copies
            .entry(message.header("hindsight-event-id").unwrap())
            .or_default() += 1;
    }
    let replayed: BTreeSet<String> = copies.keys().cloned().collect();
    assert_eq!(
        replayed, orders,
        "every planned event, and nothing else, after the swap"
    );
    let duplicates = consumed.len() - copies.len();
    assert!(
        duplicates <= 1_000,
        "{duplicates} duplicates: more than the two windows a kill may resend"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_compactors_on_one_postgres_catalog_compact_each_hour_once() {
    let url = fresh_postgres_database("hindsight_compact").await;
    let archive = Archive::demo(20_000, 200, Some(url), "");
    let before = archive.facts().await;
    let dry = archive.json(&["compact", "--dry-run", "--json"]);
    let planned = dry["segments_in"].as_u64().unwrap();
    assert!(planned > 0);
    let spawn = || {
        archive
            .command()
            .args(["compact", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let reports: Vec<Value> = [first, second]
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success());
            serde_json::from_slice(&output.stdout).unwrap()
        })
        .collect();
    eprintln!("two compactors: {reports:?}");
    let merged: u64 = reports
        .iter()
        .map(|r| r["segments_in"].as_u64().unwrap())
        .sum();
    assert_eq!(
        merged, planned,
        "every planned input merged by exactly one of them"
    );
    assert_eq!(archive.facts().await, before);
    let catalog = archive.catalog().await;
    let runs = catalog
        .maintenance_runs(Some("compaction"), 10)
        .await
        .unwrap();
    assert_eq!(
        runs.iter().map(|r| r.segments_in as u64).sum::<u64>(),
        planned
    );
    catalog.close().await;
    for ((topic, partition, hour), records) in per_closed_hour(&archive.live_segments().await) {
        assert_eq!(records.len(), 1, "{topic}/{partition} hour {hour}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_removes_exactly_the_old_hours_as_its_dry_run_said() {
    let archive = Archive::demo(20_000, 1_000, None, "[retention.demo]\nkeep = \"2h\"\n");
    let before = archive.live_segments().await;
    let started = hindsight_archive::event::now_micros();
    let dry = archive.json(&["retention", "--dry-run", "--json"]);
    let real = archive.json(&["retention", "--json"]);
    let finished = hindsight_archive::event::now_micros();
    let list = |report: &Value| -> BTreeSet<String> {
        report["segment_uris"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_owned())
            .collect()
    };
    let (would, did) = (list(&dry), list(&real));
    assert!(
        !did.is_empty() && did.len() < before.len(),
        "{} of {}",
        did.len(),
        before.len()
    );
    // Only a segment whose newest event crossed the cutoff between the two
    // runs may differ.
    let by_uri: HashMap<&str, &SegmentRecord> =
        before.iter().map(|r| (r.segment.uri.as_str(), r)).collect();
    for uri in would.symmetric_difference(&did) {
        let newest = by_uri[uri.as_str()].segment.max_event_time;
        assert!(
            newest >= started - 2 * HOUR && newest < finished - 2 * HOUR,
            "{uri}"
        );
    }
    for record in &before {
        let removed = did.contains(&record.segment.uri);
        let newest = record.segment.max_event_time;
        if removed {
            assert!(
                newest < finished - 2 * HOUR,
                "{} was too young",
                record.segment.uri
            );
        } else {
            assert!(
                newest >= started - 2 * HOUR,
                "{} was too old",
                record.segment.uri
            );
        }
    }
    let kept: i64 = before
        .iter()
        .filter(|r| !did.contains(&r.segment.uri))
        .map(|r| r.segment.rows)
        .sum();
    assert_eq!(archive.count_sql("SELECT count(*) FROM events"), kept);
    assert!(
        archive
            .count_sql("SELECT count(*) FROM events WHERE event_time < now() - INTERVAL '3 hours'")
            == 0
    );
    let catalog = archive.catalog().await;
    let runs = catalog
        .maintenance_runs(Some("retention"), 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 2, "the dry run is recorded too");
    assert!(runs.iter().any(|r| r.dry_run) && runs.iter().any(|r| !r.dry_run));
    catalog.close().await;
    // After the grace (0s), the next pass deletes the objects.
    archive.compact();
    let files: BTreeSet<String> = parquet_files(&archive.data()).into_iter().collect();
    assert!(
        did.iter().all(|uri| !files.contains(uri)),
        "expired objects deleted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn erasing_a_key_removes_it_from_sql_search_replay_and_every_stored_object() {
    let archive = Archive::demo(100_000, 2_000, None, "");
    archive.compact();
    let events = archive.live_events().await;
    let mut by_key: HashMap<Vec<u8>, usize> = HashMap::new();
    for event in &events {
        *by_key
            .entry(event.key.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let (key, matching) = by_key.into_iter().max_by_key(|(_, n)| *n).unwrap();
    let key = String::from_utf8(key).unwrap();
    let erased_ids: BTreeSet<String> = events
        .iter()
        .filter(|e| e.key.as_deref() == Some(key.as_bytes()))
        .map(|e| e.event_id.clone())
        .collect();
    let erased_payload = events
        .iter()
        .find(|e| e.key.as_deref() == Some(key.as_bytes()))
        .and_then(|e| e.payload.clone())
        .unwrap();
    let before = archive.facts().await;

    let dry = archive.json(&[
        "erase",
        "--source",
        "demo",
        "--key",
        &key,
        "--dry-run",
        "--json",
    ]);
    assert_eq!(dry["events"].as_u64().unwrap() as usize, matching);
    let refused = archive
        .command()
        .args(["erase", "--source", "demo", "--key", &key])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "erase without --yes or --dry-run is refused"
    );
    let report = archive.json(&[
        "erase", "--source", "demo", "--key", &key, "--yes", "--json",
    ]);
    assert_eq!(report["events"].as_u64().unwrap() as usize, matching);

    let key_sql = format!("SELECT count(*) FROM events WHERE arrow_cast(key, 'Utf8') = '{key}'");
    assert_eq!(archive.count_sql(&key_sql), 0, "SQL");
    assert_eq!(
        archive.count_sql("SELECT count(*) FROM events"),
        (100_000 - matching) as i64
    );
    assert_eq!(
        archive.count_sql("SELECT count(*) FROM events_dedup"),
        (100_000 - matching) as i64
    );
    let expected: Vec<_> = before
        .into_iter()
        .filter(|f| !erased_ids.contains(&f.3))
        .collect();
    assert_eq!(
        archive.facts().await,
        expected,
        "every other event unchanged"
    );
    let dry_replay = archive.json(&[
        "replay",
        "dry-run",
        "--source",
        "demo",
        "--key",
        &key,
        "--kafka",
        "127.0.0.1:1",
        "--to-topic",
        "x",
        "--json",
    ]);
    assert_eq!(dry_replay["totals"]["events"], 0, "replay: {dry_replay}");
    {
        let (server, address) = serve_data_dir(&archive.data());
        let _server = ChildGuard(server);
        let (status, body) = http_get(&address, &format!("/api/v1/events?key={key}&limit=10"));
        assert_eq!(status, 200, "{body}");
        let found: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            found["events"].as_array().map(Vec::len),
            Some(0),
            "search: {body}"
        );
    }
    // After the grace (0s) the next pass deletes the old objects; then no
    // object anywhere under the store holds an event with the key.
    archive.compact();
    for file in parquet_files(&archive.data()) {
        let bytes = std::fs::read(archive.data().join(&file)).unwrap();
        for event in decode_segment(bytes.into()).unwrap() {
            assert_ne!(
                event.key.as_deref(),
                Some(key.as_bytes()),
                "{file} still holds the key"
            );
        }
    }
    let catalog = archive.catalog().await;
    let runs = catalog.maintenance_runs(Some("erasure"), 10).await.unwrap();
    let run = runs.iter().find(|r| !r.dry_run).unwrap();
    assert_eq!(run.rows_in as usize, matching);
    assert!(
        run.actor.is_some() && run.scope.contains(&key),
        "who and the filter: {run:?}"
    );
    let recorded = format!("{run:?}");
    let payload_text = String::from_utf8_lossy(&erased_payload);
    assert!(
        !recorded.contains(payload_text.as_ref()),
        "the audit row holds no erased content"
    );
    catalog.close().await;
}

/// R11, short: SIGKILL the compactor at random moments; a reader counting
/// all along never sees another number, and nothing changes. Longer runs:
/// `HINDSIGHT_R11_KILLS=20 HINDSIGHT_R11_EVENTS=1000000` (scripts/bench --only r11).
#[tokio::test(flavor = "multi_thread")]
async fn compaction_killed_at_random_moments_loses_and_changes_nothing() {
    let kills: u32 = std::env::var("HINDSIGHT_R11_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let events: u64 = std::env::var("HINDSIGHT_R11_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let archive = Archive::demo(events, 100, None, "");
    let before = archive.facts().await;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        let config = archive.config.clone();
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) && reads < 10_000 {
                let output = run_ok(hindsight().arg("--config").arg(&config).args([
                    "query",
                    "--format",
                    "csv",
                    "SELECT count(*) FROM events",
                ]));
                seen.insert(
                    String::from_utf8_lossy(&output.stdout)
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .to_owned(),
                );
                reads += 1;
            }
            (seen, reads)
        })
    };
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for kill in 0..kills {
        let mut child = ChildGuard(
            archive
                .command()
                .args(["compact"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = Duration::from_millis(300 + state % 2_500);
        let deadline = Instant::now() + delay;
        while Instant::now() < deadline && child.0.try_wait().unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let finished = child.0.try_wait().unwrap().is_some();
        let _ = child.0.kill();
        let _ = child.0.wait();
        eprintln!(
            "kill {kill} after {delay:?}{}",
            if finished { " (it had finished)" } else { "" }
        );
        assert_eq!(archive.facts().await, before, "after kill {kill}");
    }
    let report = archive.compact();
    assert_eq!(report["jobs_failed"], 0);
    let last = archive.compact();
    assert_eq!(last["jobs"], 0);
    stop.store(true, Ordering::Relaxed);
    let (seen, reads) = reader.join().unwrap();
    assert_eq!(archive.facts().await, before);
    assert_eq!(seen, BTreeSet::from([events.to_string()]), "{reads} reads");
    assert!(reads > 3, "the reader ran throughout ({reads} reads)");
    // Nothing a killed compactor left behind survives the last passes.
    let live: BTreeSet<String> = archive
        .live_segments()
        .await
        .into_iter()
        .map(|r| r.segment.uri)
        .collect();
    let files: BTreeSet<String> = parquet_files(&archive.data()).into_iter().collect();
    assert_eq!(files, live, "no orphaned or retired object is left");
}

/// `hindsight archive` compacts a closed hour in the background while it
/// ingests live traffic for the current one, and counts it in `/metrics`.
#[tokio::test(flavor = "multi_thread")]
async fn archive_compacts_closed_hours_in_the_background() {
    const EVENTS: u64 = 3_000;
    let topic = crate::util::create_kafka_topic(&unique("hs-compact-bg"), 2);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/kafka_produce.py"
    );
    let produced = Command::new("python3")
        .args([script, &kafka_brokers(), &topic, "0", &EVENTS.to_string()])
        .env(
            "HINDSIGHT_TEST_TIMESTAMP_AGO_MS",
            (3 * 3_600_000).to_string(),
        )
        .status()
        .unwrap();
    assert!(produced.success(), "producing to {topic} failed");
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let config = kafka_archive_config(
        directory.path(),
        &topic,
        200,
        "interval = \"1s\"\nsettle = \"1m\"\ngrace = \"0s\"\nquiet_day_bytes = 0\n",
    );
    let metrics_address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let mut archive = ChildGuard(
        hindsight()
            .arg("--config")
            .arg(&config)
            .args(["archive", "--metrics-listen", &metrics_address])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    // Live traffic for the current hour while the closed one is compacted.
    let mut live_producer = ChildGuard(
        Command::new("python3")
            .args([
                script,
                &kafka_brokers(),
                &topic,
                &EVENTS.to_string(),
                &EVENTS.to_string(),
                "500",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let catalog_url = format!("sqlite://{}/catalog.db", data.display());
    let hour_ago = hindsight_archive::event::now_micros() - HOUR;
    let deadline = Instant::now() + Duration::from_secs(120);
    let live = loop {
        assert!(
            Instant::now() < deadline,
            "the archive did not compact in the background"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(catalog) = Catalog::connect(&catalog_url).await else {
            continue;
        };
        let Ok(live) = catalog.segments(&SegmentFilter::default()).await else {
            catalog.close().await;
            continue;
        };
        catalog.close().await;
        let rows: i64 = live.iter().map(|r| r.segment.rows).sum();
        let (old, current): (Vec<_>, Vec<_>) = live
            .iter()
            .partition(|r| r.segment.max_event_time < hour_ago);
        if rows == 2 * EVENTS as i64
            && old.len() == 2
            && old.iter().all(|r| r.compaction_level == 1)
        {
            // The open hour is left as ingest wrote it.
            assert!(
                current.iter().all(|r| r.compaction_level == 0),
                "{current:?}"
            );
            break live;
        }
    };
    assert!(live_producer.0.wait().unwrap().success());
    let (status, metrics) = http_get(&metrics_address, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            "hindsight_maintenance_jobs_total{kind=\"compaction\",outcome=\"succeeded\"}"
        ),
        "{metrics}"
    );
    let status = crate::util::terminate(&mut archive.0);
    assert!(status.success(), "archive did not stop cleanly: {status:?}");
    let mut offsets = BTreeSet::new();
    for record in &live {
        let bytes = std::fs::read(data.join(&record.segment.uri)).unwrap();
        for event in decode_segment(bytes.into()).unwrap() {
            assert!(
                offsets.insert((event.partition, event.offset)),
                "{event:?} twice"
            );
        }
    }
    assert_eq!(
        offsets.len() as u64,
        2 * EVENTS,
        "every offset once, old hour and live traffic"
    );
}

/// `compaction.column_copy`: the encoded column chunks are copied instead of
/// re-encoded; every event stays, and outside readers read the result.
#[tokio::test(flavor = "multi_thread")]
async fn column_copy_compaction_keeps_every_event_and_readers_read_it() {
    let archive = Archive::demo(20_000, 200, None, "column_copy = true\n");
    let before = archive.facts().await;
    let report = archive.compact();
    assert!(report["segments_in"].as_u64().unwrap() > report["segments_out"].as_u64().unwrap());
    assert_eq!(report["jobs_failed"], 0);
    assert_eq!(archive.facts().await, before);
    archive.compact();
    let glob = format!("{}/segments/**/*.parquet", archive.data().display());
    assert_eq!(
        duckdb_scalar(&format!(
            "SELECT count(DISTINCT event_id) FROM read_parquet('{glob}', hive_partitioning=true)"
        )),
        "20000"
    );
    assert!(archive.count_sql("SELECT count(*) FROM events WHERE payload_text LIKE '%order%'") > 0);
}

/// A quiet partition's closed day becomes one file under `hour=all`, which
/// Hindsight and DuckDB over the tree both read whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_closed_day_becomes_one_file_that_outside_readers_read() {
    const DAY_MS: i64 = 24 * 3_600_000;
    let now_ms = hindsight_archive::event::now_micros() / 1_000;
    // Two hours of a day that ended at least two days ago.
    let day_ms = (now_ms / DAY_MS - 3) * DAY_MS;
    let topic = crate::util::create_kafka_topic(&unique("hs-compact-quiet"), 1);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/kafka_produce.py"
    );
    for (first, hour) in [(0u64, 2i64), (500, 9)] {
        let produced = Command::new("python3")
            .args([script, &kafka_brokers(), &topic, &first.to_string(), "500"])
            .env(
                "HINDSIGHT_TEST_TIMESTAMP_MS",
                (day_ms + hour * 3_600_000).to_string(),
            )
            .status()
            .unwrap();
        assert!(produced.success(), "producing to {topic} failed");
    }
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let config = kafka_archive_config(
        directory.path(),
        &topic,
        100,
        "enabled = false\ngrace = \"0s\"\n",
    );
    let (mut archive, _stdout) = crate::util::start_archive_ready(&config);
    crate::util::wait_for_archived(directory.path(), 1_000, Duration::from_secs(120)).await;
    assert!(crate::util::terminate(&mut archive.0).success());
    let run = |args: &[&str]| -> Value {
        let output = run_ok(hindsight().arg("--config").arg(&config).args(args));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let report = run(&["compact", "--json"]);
    assert_eq!(report["segments_out"], 1, "{report}");
    assert!(
        report["segments_in"].as_u64().unwrap() >= 2,
        "two hours, one file: {report}"
    );
    run(&["compact", "--json"]);
    let files = parquet_files(&data);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].contains("/hour=all/"), "{files:?}");
    let glob = format!("{}/segments/**/*.parquet", data.display());
    assert_eq!(
        duckdb_scalar(&format!(
            "SELECT count(DISTINCT \"offset\") FROM read_parquet('{glob}', hive_partitioning=true)"
        )),
        "1000"
    );
    let output = run_ok(hindsight().arg("--config").arg(&config).args([
        "query",
        "--format",
        "csv",
        "SELECT count(*) FROM events",
    ]));
    assert!(String::from_utf8_lossy(&output.stdout).contains("1000"));
}
