//! One conformance suite for every catalog backend: SQLite (embedded) and
//! PostgreSQL (real server, a fresh database per test).

use std::any::Any;

use hindsight_archive::catalog::{
    Catalog, CatalogBackend, CheckpointAdvance, Commit, NewSegment, SegmentFilter,
};
use hindsight_archive::{Bus, ErrorKind};

/// A catalog URL plus whatever keeps its database alive.
struct TestDatabase {
    url: String,
    _guard: Box<dyn Any + Send>,
}

fn sqlite_database() -> TestDatabase {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/catalog.db", directory.path().display());
    TestDatabase {
        url,
        _guard: Box::new(directory),
    }
}

async fn postgres_database() -> TestDatabase {
    TestDatabase {
        url: crate::util::fresh_postgres_database("hindsight_conformance").await,
        _guard: Box::new(()),
    }
}

fn segment(id: &str, topic: &str, partition: i32, first: i64, last: i64, time: i64) -> NewSegment {
    NewSegment {
        id: id.to_owned(),
        uri: format!("source=s/topic={topic}/date=2026-01-01/hour=00/{partition}-{first}-{last}-{id}.parquet"),
        source: "s".to_owned(),
        topic: topic.to_owned(),
        partition,
        first_offset: first,
        last_offset: last,
        min_event_time: time,
        max_event_time: time + 1000,
        rows: last - first + 1,
        bytes: 4096,
        // Rows from before the checksum column have none: "b" stands for them.
        checksum: (id != "b").then(|| format!("blake3:{id}")),
    }
}

fn advance(partition: i32, expected: Option<i64>, next: i64) -> CheckpointAdvance {
    CheckpointAdvance {
        source: "s".to_owned(),
        topic: "orders".to_owned(),
        partition,
        expected,
        next,
    }
}

async fn migrations_are_idempotent(database: TestDatabase) {
    let first = Catalog::open(&database.url).await.unwrap();
    let second = Catalog::open(&database.url).await.unwrap();
    second.migrate().await.unwrap();
    assert!(first.sources().await.unwrap().is_empty());
}

async fn sources_keep_their_bus(database: TestDatabase) {
    let catalog = Catalog::open(&database.url).await.unwrap();
    catalog.register_source("s", Bus::Kafka).await.unwrap();
    catalog.register_source("s", Bus::Kafka).await.unwrap();
    let error = catalog.register_source("s", Bus::Amqp).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Conflict);
    let sources = catalog.sources().await.unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].bus, Bus::Kafka);
}

async fn commit_makes_staged_segments_visible(database: TestDatabase) {
    let catalog = Catalog::open(&database.url).await.unwrap();
    catalog
        .stage_segments(&[
            segment("a", "orders", 0, 0, 9, 1_000),
            segment("b", "orders", 0, 10, 19, 5_000),
        ])
        .await
        .unwrap();
    assert!(catalog
        .segments(&SegmentFilter::default())
        .await
        .unwrap()
        .is_empty());
    assert!(catalog.topic_stats().await.unwrap().is_empty());
    catalog
        .commit(&Commit {
            segment_ids: vec!["a".into(), "b".into()],
            checkpoints: vec![advance(0, None, 20)],
        })
        .await
        .unwrap();
    assert_eq!(
        catalog.checkpoint("s", "orders", 0).await.unwrap(),
        Some(20)
    );
    let all = catalog.segments(&SegmentFilter::default()).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|r| r.segment.id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(all[0].segment, segment("a", "orders", 0, 0, 9, 1_000));
    // The checksum round-trips, and a row without one reads back as none.
    assert_eq!(all[1].segment, segment("b", "orders", 0, 10, 19, 5_000));
    assert_eq!(all[1].segment.checksum, None);
    let late = catalog
        .segments(&SegmentFilter {
            time_from: Some(4_000),
            ..SegmentFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].segment.id, "b");
    let stats = catalog.topic_stats().await.unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].events, stats[0].bytes, stats[0].segments),
        (20, 8192, 2)
    );
    assert_eq!(
        (stats[0].min_event_time, stats[0].max_event_time),
        (1_000, 6_000)
    );
}

async fn stale_checkpoints_are_refused_and_change_nothing(database: TestDatabase) {
    let catalog = Catalog::open(&database.url).await.unwrap();
    catalog
        .stage_segments(&[segment("a", "orders", 0, 0, 9, 0)])
        .await
        .unwrap();
    catalog
        .commit(&Commit {
            segment_ids: vec!["a".into()],
            checkpoints: vec![advance(0, None, 10)],
        })
        .await
        .unwrap();
    catalog
        .stage_segments(&[
            segment("b", "orders", 0, 10, 19, 0),
            segment("c", "orders", 1, 0, 4, 0),
        ])
        .await
        .unwrap();
    // Partition 1 is fine, partition 0 is stale: the whole commit is refused.
    let error = catalog
        .commit(&Commit {
            segment_ids: vec!["b".into(), "c".into()],
            checkpoints: vec![advance(1, None, 5), advance(0, Some(5), 20)],
        })
        .await
        .unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::Conflict,
        "{}",
        error.full_message()
    );
    assert_eq!(
        catalog.checkpoint("s", "orders", 0).await.unwrap(),
        Some(10)
    );
    assert_eq!(catalog.checkpoint("s", "orders", 1).await.unwrap(), None);
    assert_eq!(
        catalog
            .segments(&SegmentFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    // A writer that thinks the partition is new is refused too.
    let error = catalog
        .commit(&Commit {
            segment_ids: vec!["b".into()],
            checkpoints: vec![advance(0, None, 20)],
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Conflict);
    // Pending segments of refused commits are abandoned and can be discarded.
    let pending = catalog
        .abandoned_segments(Some("s"), i64::MAX)
        .await
        .unwrap();
    assert_eq!(pending.len(), 2);
    catalog
        .discard_pending(&["b".into(), "c".into()])
        .await
        .unwrap();
    assert!(catalog
        .abandoned_segments(None, i64::MAX)
        .await
        .unwrap()
        .is_empty());
    // A discarded segment cannot be committed later.
    let error = catalog
        .commit(&Commit {
            segment_ids: vec!["b".into()],
            checkpoints: vec![advance(0, Some(10), 20)],
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Conflict);
    assert_eq!(
        catalog.checkpoint("s", "orders", 0).await.unwrap(),
        Some(10)
    );
}

async fn two_writers_race_and_exactly_one_wins(database: TestDatabase) {
    // Two independent connections pools, as two processes would have.
    let writer_a = Catalog::open(&database.url).await.unwrap();
    let writer_b = Catalog::connect(&database.url).await.unwrap();
    let mut expected = None;
    let mut next = 0;
    for round in 0..25 {
        let ids = [format!("a{round}"), format!("b{round}")];
        writer_a
            .stage_segments(&[segment(&ids[0], "orders", 0, next, next + 9, 0)])
            .await
            .unwrap();
        writer_b
            .stage_segments(&[segment(&ids[1], "orders", 0, next, next + 9, 0)])
            .await
            .unwrap();
        let commit = |id: &str| Commit {
            segment_ids: vec![id.to_owned()],
            checkpoints: vec![advance(0, expected, next + 10)],
        };
        let (commit_a, commit_b) = (commit(&ids[0]), commit(&ids[1]));
        let (result_a, result_b) =
            tokio::join!(writer_a.commit(&commit_a), writer_b.commit(&commit_b));
        let wins = [&result_a, &result_b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {result_a:?} / {result_b:?}");
        for result in [&result_a, &result_b] {
            if let Err(error) = result {
                assert_eq!(
                    error.kind(),
                    ErrorKind::Conflict,
                    "{}",
                    error.full_message()
                );
            }
        }
        next += 10;
        expected = Some(next);
        assert_eq!(
            writer_a.checkpoint("s", "orders", 0).await.unwrap(),
            Some(next)
        );
    }
    let committed = writer_a.segments(&SegmentFilter::default()).await.unwrap();
    assert_eq!(committed.len(), 25, "exactly one segment per round");
    assert_eq!(
        writer_a
            .abandoned_segments(None, i64::MAX)
            .await
            .unwrap()
            .len(),
        25
    );
}

async fn checkpoints_never_move_backwards(database: TestDatabase) {
    let catalog = Catalog::open(&database.url).await.unwrap();
    catalog
        .commit(&Commit {
            segment_ids: vec![],
            checkpoints: vec![advance(0, None, 10)],
        })
        .await
        .unwrap();
    let error = catalog
        .commit(&Commit {
            segment_ids: vec![],
            checkpoints: vec![advance(0, Some(10), 5)],
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Internal);
    assert_eq!(catalog.checkpoints("s").await.unwrap()[0].next_position, 10);
}

/// The swap retires inputs and commits outputs at once; lineage says where
/// the rows went and moves when the output is replaced again; a swap whose
/// input is no longer live changes nothing; bucket leases exclude.
async fn swaps_are_atomic_and_keep_lineage(database: TestDatabase) {
    use hindsight_archive::maintenance::{InputPlacement, Swap};
    let catalog = Catalog::open(&database.url).await.unwrap();
    catalog
        .stage_segments(&[
            segment("a", "orders", 0, 0, 9, 1_000),
            segment("b", "orders", 0, 10, 19, 2_000),
        ])
        .await
        .unwrap();
    catalog
        .commit(&Commit {
            segment_ids: vec!["a".into(), "b".into()],
            checkpoints: vec![advance(0, None, 20)],
        })
        .await
        .unwrap();
    let snapshot = hindsight_archive::event::now_micros();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    catalog
        .stage_compacted(None, &[segment("ab", "orders", 0, 0, 19, 1_000)])
        .await
        .unwrap();
    let placement = |input: &str, output: &str, first_row: i64| InputPlacement {
        input_id: input.to_owned(),
        output_id: output.to_owned(),
        first_row,
        erased_rows: Vec::new(),
        input_rows: 10,
    };
    catalog
        .swap_segments(&Swap {
            run_id: "r1".to_owned(),
            outputs: vec!["ab".to_owned()],
            inputs: vec![placement("a", "ab", 0), placement("b", "ab", 10)],
        })
        .await
        .unwrap();
    let live: Vec<String> = catalog
        .segments(&SegmentFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.segment.id)
        .collect();
    assert_eq!(live, ["ab"]);
    assert_eq!(catalog.topic_stats().await.unwrap()[0].events, 20);
    // A reader of the earlier snapshot sees a and b, read from ab.
    let then = catalog
        .segments_as_of(&SegmentFilter::default(), snapshot)
        .await
        .unwrap();
    let moved: Vec<(String, String, i64, i64)> = then
        .iter()
        .map(|r| {
            let slice = r.moved_to.clone().unwrap();
            (
                r.segment.id.clone(),
                slice.segment_id,
                slice.first_row,
                slice.rows,
            )
        })
        .collect();
    assert_eq!(
        moved,
        [
            ("a".to_owned(), "ab".to_owned(), 0, 10),
            ("b".to_owned(), "ab".to_owned(), 10, 10)
        ]
    );
    // A second swap of a (no longer live) changes nothing.
    catalog
        .stage_compacted(None, &[segment("a2", "orders", 0, 0, 9, 1_000)])
        .await
        .unwrap();
    let error = catalog
        .swap_segments(&Swap {
            run_id: "r2".to_owned(),
            outputs: vec!["a2".to_owned()],
            inputs: vec![placement("a", "a2", 0)],
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Conflict);
    assert_eq!(
        catalog
            .segments(&SegmentFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    // ab rewritten without rows 3 and 12: lineage follows, flat.
    catalog
        .stage_compacted(None, &[segment("ab2", "orders", 0, 0, 19, 1_000)])
        .await
        .unwrap();
    catalog
        .swap_segments(&Swap {
            run_id: "r3".to_owned(),
            outputs: vec!["ab2".to_owned()],
            inputs: vec![InputPlacement {
                input_id: "ab".to_owned(),
                output_id: "ab2".to_owned(),
                first_row: 0,
                erased_rows: vec![3, 12],
                input_rows: 20,
            }],
        })
        .await
        .unwrap();
    let then = catalog
        .segments_as_of(&SegmentFilter::default(), snapshot)
        .await
        .unwrap();
    let slices: Vec<(String, i64, i64)> = then
        .iter()
        .map(|r| {
            let slice = r.moved_to.clone().unwrap();
            (slice.segment_id, slice.first_row, slice.rows)
        })
        .collect();
    assert_eq!(slices, [("ab2".to_owned(), 0, 9), ("ab2".to_owned(), 9, 9)]);
    // One owner per bucket until it releases.
    assert!(catalog
        .take_bucket_lease("k", "one", 60_000_000)
        .await
        .unwrap());
    assert!(!catalog
        .take_bucket_lease("k", "two", 60_000_000)
        .await
        .unwrap());
    catalog.release_bucket_lease("k", "one").await.unwrap();
    assert!(catalog
        .take_bucket_lease("k", "two", 60_000_000)
        .await
        .unwrap());
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let database = super::sqlite_database();
                    let catalog = hindsight_archive::catalog::Catalog::connect(&database.url).await.unwrap();
                    assert_eq!(catalog.backend(), super::CatalogBackend::Sqlite);
                    super::$name(database).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let database = super::postgres_database().await;
                    let catalog = hindsight_archive::catalog::Catalog::connect(&database.url).await.unwrap();
                    assert_eq!(catalog.backend(), super::CatalogBackend::Postgres);
                    super::$name(database).await;
                }
            )*
        }
    };
}

conformance!(
    migrations_are_idempotent,
    sources_keep_their_bus,
    commit_makes_staged_segments_visible,
    stale_checkpoints_are_refused_and_change_nothing,
    two_writers_race_and_exactly_one_wins,
    checkpoints_never_move_backwards,
    swaps_are_atomic_and_keep_lineage,
);

/// Many processes opening one fresh SQLite catalog at once all succeed.
#[test]
fn concurrent_first_opens_of_a_sqlite_catalog_all_succeed() {
    let data = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            crate::util::hindsight()
                .args(["migrate", "--data-dir"])
                .arg(data.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
