//! A writer killed with SIGKILL at any instant leaves no visible partial
//! file, no committed row without its file, and nothing untracked: every
//! visible segment is either committed or pending (and removed by repair).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use hindsight_archive::catalog::{Catalog, SegmentFilter};
use hindsight_archive::segment::decode_segment;

use crate::util::{
    archive_demo, duckdb_scalar, hindsight, parquet_files, read_until, run_ok, spawn_with_stdout,
};

fn pseudo_random_delays(count: usize) -> Vec<Duration> {
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill delays seed: {seed}");
    (0..count)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            Duration::from_millis(150 + seed % 2500)
        })
        .collect()
}

/// Polls the staging directory; true once a segment file is being written there.
fn wait_for_segment_being_written(data: &Path, timeout: Duration) -> bool {
    let staging = data.join(".staging");
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if std::fs::read_dir(&staging).is_ok_and(|mut entries| entries.next().is_some()) {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

async fn check_archive(data: &Path, after_repair: bool) -> (u64, usize) {
    let catalog = Catalog::connect(&format!("sqlite://{}/catalog.db", data.display()))
        .await
        .unwrap();
    let committed = catalog.segments(&SegmentFilter::default()).await.unwrap();
    let pending = catalog.abandoned_segments(None, i64::MAX).await.unwrap();
    let visible = parquet_files(data);

    let mut rows = 0;
    for record in &committed {
        let bytes = std::fs::read(data.join(&record.segment.uri))
            .unwrap_or_else(|e| panic!("committed segment {} is missing: {e}", record.segment.uri));
        let events = decode_segment(bytes.into()).unwrap();
        assert_eq!(
            events.len() as i64,
            record.segment.rows,
            "{}",
            record.segment.uri
        );
        rows += events.len() as u64;
    }
    for file in &visible {
        let tracked = committed
            .iter()
            .chain(&pending)
            .any(|r| &r.segment.uri == file);
        assert!(tracked, "visible file {file} is in no catalog row");
        // Whole or absent: every visible file decodes completely.
        decode_segment(std::fs::read(data.join(file)).unwrap().into())
            .unwrap_or_else(|e| panic!("visible file {file} is partial: {}", e.full_message()));
    }
    if after_repair {
        assert!(pending.is_empty(), "repair left pending rows");
        assert_eq!(
            visible.len(),
            committed.len(),
            "repair left untracked files"
        );
        let staging = data.join(".staging");
        let leftovers = std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 0, "repair left staging files");
    }

    // Committed offsets per partition: contiguous from 0, no overlap, and the
    // checkpoint is exactly one past the end.
    let mut ranges: BTreeMap<(String, i32), Vec<(i64, i64)>> = BTreeMap::new();
    for record in &committed {
        let s = &record.segment;
        ranges
            .entry((s.topic.clone(), s.partition))
            .or_default()
            .push((s.first_offset, s.last_offset));
    }
    for ((topic, partition), mut spans) in ranges {
        spans.sort();
        let mut next = 0;
        for (first, last) in spans {
            assert_eq!(
                first, next,
                "{topic}/{partition}: gap or overlap at {first}"
            );
            next = last + 1;
        }
        let checkpoint = catalog.checkpoint("demo", &topic, partition).await.unwrap();
        assert_eq!(checkpoint, Some(next), "{topic}/{partition}");
    }
    catalog.close().await;
    (rows, pending.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_write_leaves_no_partial_file_and_no_untracked_row() {
    let data = tempfile::tempdir().unwrap();
    let mut kills = 0;
    let mut pending_seen = 0;
    let mut killed_mid_segment = 0;
    for (round, delay) in pseudo_random_delays(12).into_iter().enumerate() {
        let (mut child, mut stdout) = spawn_with_stdout(
            hindsight()
                .args(["demo", "--events", "3000000", "--no-serve", "--data-dir"])
                .arg(data.path())
                // Small, frequent flushes so that kills land in every phase.
                .env("HINDSIGHT__FLUSH__MAX_ROWS", "10000"),
        );
        read_until(&mut stdout, "archiving", Duration::from_secs(120));
        if round % 2 == 0 {
            tokio::time::sleep(delay).await;
        } else if wait_for_segment_being_written(data.path(), Duration::from_secs(60)) {
            // Even rounds kill at random; odd rounds kill while a segment file is
            // being written into the staging directory.
            killed_mid_segment += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let (_, pending) = check_archive(data.path(), false).await;
        pending_seen += pending;
        run_ok(
            hindsight()
                .args(["repair", "--grace", "0s", "--data-dir"])
                .arg(data.path()),
        );
        check_archive(data.path(), true).await;
    }
    println!(
        "{kills} kills ({killed_mid_segment} while a segment was being written); \
         {pending_seen} pending segment(s) found and repaired"
    );
    assert!(
        killed_mid_segment >= 3,
        "too few kills landed mid-segment to prove anything"
    );
    // The archive keeps working after all that.
    archive_demo(data.path(), 1000);
    let (rows, _) = check_archive(data.path(), true).await;
    assert!(rows >= 1000);
}

/// Pending segment rows in the catalog under `data`.
async fn pending_rows(data: &Path) -> usize {
    let catalog = Catalog::connect(&format!("sqlite://{}/catalog.db", data.display()))
        .await
        .unwrap();
    let pending = catalog.abandoned_segments(None, i64::MAX).await.unwrap();
    catalog.close().await;
    pending.len()
}

async fn committed_events(data: &Path) -> i64 {
    let catalog = Catalog::connect(&format!("sqlite://{}/catalog.db", data.display()))
        .await
        .unwrap();
    let stats = catalog.topic_stats().await.unwrap();
    catalog.close().await;
    stats.iter().map(|s| s.events).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_kills_between_publish_and_commit_leave_directory_readers_no_duplicate() {
    use std::os::unix::process::ExitStatusExt as _;
    let data = tempfile::tempdir().unwrap();
    let glob = format!("{}/**/*.parquet", data.path().display());
    for round in 0..20 {
        // Each run is killed right after publishing its first batch, before
        // the commit; the next run's start-up recovery must clean it up. (How
        // many batches a run writes depends on timing: the pipeline keeps
        // polling while a write is in flight, so a later crash point may
        // never be reached.)
        let crash_after = 1;
        let output = hindsight()
            .args(["demo", "--no-serve", "--events", "5000", "--data-dir"])
            .arg(data.path())
            .env("HINDSIGHT__FLUSH__MAX_ROWS", "500")
            .env("HINDSIGHT_CRASH_AFTER_PUBLISH", crash_after.to_string())
            .output()
            .unwrap();
        assert_eq!(
            output.status.signal(),
            Some(9),
            "round {round}: not killed by its crash point: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            pending_rows(data.path()).await > 0,
            "round {round}: the kill left no published, uncommitted segment"
        );
    }
    // The restart after the last kill, with default settings, runs to the end.
    archive_demo(data.path(), 5000);
    let committed = committed_events(data.path()).await;
    let read_by_duckdb: i64 =
        duckdb_scalar(&format!("SELECT count(*) FROM read_parquet('{glob}')"))
            .parse()
            .unwrap();
    println!("committed {committed} events; DuckDB over the directory reads {read_by_duckdb}");
    assert_eq!(
        read_by_duckdb, committed,
        "directory readers see uncommitted copies"
    );
    assert_eq!(pending_rows(data.path()).await, 0);
    let repeated_offsets = duckdb_scalar(&format!(
        "SELECT count(*) FROM (SELECT topic, \"partition\", \"offset\" FROM read_parquet('{glob}') \
         GROUP BY ALL HAVING count(*) > 1)"
    ));
    assert_eq!(repeated_offsets, "0");
    check_archive(data.path(), true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn repair_with_the_default_grace_removes_old_staging_files_and_keeps_young_ones() {
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), 1000);
    let staging = data.path().join(".staging");
    std::fs::create_dir_all(&staging).unwrap();
    let old = staging.join("0190aaaaaaaaaaaaaaaaaaaaaaaaaaaa.tmp");
    let young = staging.join("0190bbbbbbbbbbbbbbbbbbbbbbbbbbbb.tmp");
    std::fs::write(&old, b"PAR1 half a segment").unwrap();
    std::fs::write(&young, b"PAR1 a segment being written").unwrap();
    // Older than the default grace (15 minutes), by modification time.
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(20 * 60))
        .unwrap();
    run_ok(hindsight().args(["repair", "--data-dir"]).arg(data.path()));
    assert!(
        !old.exists(),
        "repair left a staging file older than the grace"
    );
    assert!(
        young.exists(),
        "repair removed a staging file a writer may be filling"
    );
}
