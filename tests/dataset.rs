//! The segments root is a dataset that outside readers take as it is:
//! DuckDB, pyarrow and polars read `<data_dir>/segments` in one line (the
//! README's), count what `hindsight query` counts, and type the Hive
//! partitions the same way whatever hours an archive holds.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use hindsight_archive::catalog::Catalog;
use hindsight_archive::event::event_id;
use hindsight_archive::segment::SegmentFormat;
use hindsight_archive::store::{ArchiveStore, StoreConfig};
use hindsight_archive::writer::ArchiveWriter;
use hindsight_archive::{Bus, Event};
use hindsight_ingest::batch::{Batcher, FlushPolicy};

use crate::util::{archive_demo, catalog_url, query_rows, START_SERVICES};

/// The README's one-liners, each printing its count and the `hour` type.
const READERS: &str = r#"
import json, sys
import duckdb, polars as pl, pyarrow.dataset as ds
root = sys.argv[1]
out = {}
rows = f"read_parquet('{root}/**/*.parquet', hive_partitioning=true)"
count, hour_type = duckdb.connect().execute(f"SELECT count(*), any_value(typeof(hour)) FROM {rows}").fetchone()
out["duckdb"] = [count, hour_type]
dataset = ds.dataset(root, partitioning="hive")
out["pyarrow"] = [dataset.count_rows(), str(dataset.schema.field("hour").type)]
lazy = pl.scan_parquet(root)
out["polars"] = [lazy.select(pl.len()).collect().item(), str(lazy.collect_schema()["hour"])]
print(json.dumps(out))
"#;

/// Each reader's (count, type of `hour`) over `root`.
fn read_with_outside_readers(root: &Path) -> HashMap<String, (u64, String)> {
    let output = Command::new("python3")
        .args(["-c", READERS])
        .arg(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); run {START_SERVICES}"));
    assert!(
        output.status.success(),
        "an outside reader failed on {} (duckdb, pyarrow, polars from {START_SERVICES}): {}",
        root.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: HashMap<String, (u64, String)> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(parsed.len(), 3, "{parsed:?}");
    parsed
}

fn hindsight_count(data: &Path) -> u64 {
    let rows = query_rows(data, "SELECT count(*) AS n FROM events");
    rows[0]["n"].as_u64().unwrap()
}

#[test]
fn outside_readers_take_the_segments_root_in_one_line() {
    let data = tempfile::tempdir().unwrap();
    archive_demo(data.path(), 5000);
    assert!(
        data.path().join("catalog.db").exists(),
        "the catalog stays in the data directory"
    );
    let counted = read_with_outside_readers(&data.path().join("segments"));
    let ours = hindsight_count(data.path());
    assert_eq!(ours, 5000);
    for (reader, (count, _)) in &counted {
        assert_eq!(
            *count, ours,
            "{reader} counts differently from hindsight query"
        );
    }
}

fn event_at(offset: i64, event_time: i64) -> Event {
    Event {
        event_id: event_id::kafka("s", "orders", 0, offset),
        source: "s".into(),
        bus: Bus::Kafka,
        topic: "orders".into(),
        partition: Some(0),
        offset: Some(offset),
        payload: Some(b"{}".to_vec()),
        payload_size: 2,
        event_time,
        ingest_time: event_time,
        ..Event::default()
    }
}

/// Archives `count` events inside the UTC hour starting at `hour_micros`,
/// into `<directory>/data` (store and catalog, as `--data-dir` lays them out).
async fn archive_one_hour(directory: &Path, hour_micros: i64, count: i64) {
    let store = ArchiveStore::open(&StoreConfig {
        url: directory.join("data").display().to_string(),
        ..StoreConfig::default()
    })
    .unwrap();
    let catalog = Catalog::open(&catalog_url(directory)).await.unwrap();
    let writer = ArchiveWriter::new(store, catalog.clone(), SegmentFormat::default());
    let mut batcher = Batcher::new("s", FlushPolicy::default());
    for offset in 0..count {
        batcher.push(event_at(offset, hour_micros + offset * 1000));
    }
    writer
        .write_batch(&batcher.take(), &HashMap::new())
        .await
        .unwrap();
    catalog.close().await;
}

#[tokio::test]
async fn partition_types_do_not_depend_on_the_hours_an_archive_holds() {
    // 2026-11-21T00:00Z and 21:00Z: DuckDB typed `hour=00` as VARCHAR and
    // `hour=21` as BIGINT, so the same column changed type between archives.
    let midnight = 1_795_219_200_000_000i64;
    let mut types: Vec<HashMap<String, (u64, String)>> = Vec::new();
    for hour in [0, 21] {
        let directory = tempfile::tempdir().unwrap();
        archive_one_hour(directory.path(), midnight + hour * 3_600_000_000, 10).await;
        let root = directory.path().join("data");
        assert_eq!(hindsight_count(&root), 10);
        let read = read_with_outside_readers(&root.join("segments"));
        for (reader, (count, _)) in &read {
            assert_eq!(*count, 10, "{reader}");
        }
        types.push(read);
    }
    for reader in ["duckdb", "pyarrow", "polars"] {
        assert_eq!(
            types[0][reader].1, types[1][reader].1,
            "{reader} types hour differently in an archive of hour 0 and one of hour 21"
        );
    }
    assert_eq!(types[0]["duckdb"].1, "BIGINT");
}
