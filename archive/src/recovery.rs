//! Recovery: what crashed writers left behind (pending segments, staging
//! files), removed at start-up and by `hindsight repair`.

use std::collections::HashSet;
use std::time::Duration;

use object_store::path::Path;

use crate::catalog::Catalog;
use crate::error::Result;
use crate::event::now_micros;
use crate::store::ArchiveStore;

/// Removes what crashed writers left, in this order:
/// 1. releases the leases of dead writers (their process on this machine is
///    gone, or another machine's lease expired), which fences them: they can
///    no longer commit;
/// 2. removes pending segments (objects, then rows) of every released lease
///    at once, and those of no known writer staged more than `grace` ago;
///    a live writer's are left alone;
/// 3. removes local staging files of released writers at once, and those of
///    no live writer last modified more than `grace` ago.
///
/// Returns the number of pending segments removed.
pub async fn recover_abandoned(
    store: &ArchiveStore,
    catalog: &Catalog,
    source: Option<&str>,
    grace: Duration,
) -> Result<usize> {
    let released: HashSet<String> = catalog.release_dead_writers().await?.into_iter().collect();
    let grace_micros = i64::try_from(grace.as_micros()).unwrap_or(i64::MAX);
    let abandoned = catalog
        .recoverable_segments(source, now_micros().saturating_sub(grace_micros))
        .await?;
    for record in &abandoned {
        let path = Path::parse(&record.segment.uri)?;
        store.delete(&path).await?;
    }
    let ids: Vec<String> = abandoned.iter().map(|r| r.segment.id.clone()).collect();
    catalog.discard_pending(&ids).await?;
    let live: HashSet<String> = catalog.live_writers().await?.into_iter().collect();
    let staging_files = store.clean_staging_left_behind(grace, &released, &live)?;
    if !abandoned.is_empty() || staging_files > 0 {
        tracing::info!(
            segments = abandoned.len(),
            staging_files,
            "removed what crashed writers left"
        );
    }
    Ok(abandoned.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Commit, NewSegment, SegmentFilter};
    use crate::lease::WriterLease;
    use crate::writer::tests::open;
    use crate::ErrorKind;

    #[tokio::test]
    async fn recovery_removes_what_a_crash_between_publish_and_commit_left() {
        let directory = tempfile::tempdir().unwrap();
        let (store, catalog) = open(directory.path()).await;
        // What a writer does before it dies: stage, publish, no commit.
        let path = Path::parse("source=s/topic=t/date=2026-01-01/hour=00/0-0-0-x.parquet").unwrap();
        catalog
            .stage_segments(&[NewSegment {
                id: "x".into(),
                uri: path.to_string(),
                source: "s".into(),
                topic: "t".into(),
                partition: 0,
                first_offset: 0,
                last_offset: 0,
                min_event_time: 0,
                max_event_time: 0,
                rows: 1,
                bytes: 5,
                checksum: None,
            }])
            .await
            .unwrap();
        store
            .publish(&path, bytes::Bytes::from_static(b"whole"))
            .await
            .unwrap();
        std::fs::write(directory.path().join(".staging/left.tmp"), b"par").unwrap();

        // Within the grace period, another writer may still be working: untouched.
        let removed = recover_abandoned(&store, &catalog, None, Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(removed, 0);
        assert_eq!(store.list(None).await.unwrap(), vec![path.clone()]);

        let removed = recover_abandoned(&store, &catalog, Some("s"), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(removed, 1);
        assert!(store.list(None).await.unwrap().is_empty());
        assert!(catalog
            .abandoned_segments(None, i64::MAX)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            std::fs::read_dir(directory.path().join(".staging"))
                .unwrap()
                .count(),
            0
        );
        assert!(catalog
            .segments(&SegmentFilter::default())
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn recovery_removes_a_released_writers_segments_at_once_and_leaves_a_live_writers() {
        let directory = tempfile::tempdir().unwrap();
        let (store, catalog) = open(directory.path()).await;
        let live = WriterLease::acquire(&catalog).await.unwrap();
        let dead = WriterLease::acquire(&catalog).await.unwrap();
        let stage = |lease: &WriterLease, name: &str| {
            let (catalog, store, writer) = (catalog.clone(), store.clone(), lease.id());
            let name = name.to_owned();
            async move {
                let path = Path::parse(format!(
                    "source=s/topic=t/date=2026-01-01/hour=00/0-0-0-{name}.parquet"
                ))
                .unwrap();
                let segment = NewSegment {
                    id: name.clone(),
                    uri: path.to_string(),
                    source: "s".into(),
                    topic: "t".into(),
                    partition: 0,
                    first_offset: 0,
                    last_offset: 0,
                    min_event_time: 0,
                    max_event_time: 0,
                    rows: 1,
                    bytes: 5,
                    checksum: None,
                };
                catalog
                    .stage_segments_as(Some(&writer), &[segment])
                    .await
                    .unwrap();
                store
                    .publish_for(Some(&writer), &path, bytes::Bytes::from_static(b"whole"))
                    .await
                    .unwrap();
                path
            }
        };
        let live_path = stage(&live, "live").await;
        let dead_path = stage(&dead, "dead").await;
        let dead_staging = directory
            .path()
            .join(format!(".staging/{}-left.tmp", dead.id()));
        let live_staging = directory
            .path()
            .join(format!(".staging/{}-filling.tmp", live.id()));
        std::fs::write(&dead_staging, b"par").unwrap();
        std::fs::write(&live_staging, b"par").unwrap();

        // The dead writer's lease is released: its leftovers go at once,
        // with the default grace; even grace 0 leaves the live writer's alone.
        dead.release().await.unwrap();
        let removed = recover_abandoned(&store, &catalog, None, Duration::from_secs(900))
            .await
            .unwrap();
        assert_eq!(removed, 1);
        assert_eq!(
            recover_abandoned(&store, &catalog, None, Duration::ZERO)
                .await
                .unwrap(),
            0
        );
        assert_eq!(store.list(None).await.unwrap(), vec![live_path.clone()]);
        assert!(!dead_staging.exists());
        let pending = catalog.abandoned_segments(None, i64::MAX).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].segment.id, "live");
        assert!(!store.list(None).await.unwrap().contains(&dead_path));

        // A released writer can no longer commit what it staged.
        let late = stage(&dead, "late").await;
        let refused = catalog
            .commit(&Commit {
                segment_ids: vec!["late".into()],
                checkpoints: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Conflict);
        recover_abandoned(&store, &catalog, None, Duration::from_secs(900))
            .await
            .unwrap();
        assert!(!store.list(None).await.unwrap().contains(&late));

        // The live writer commits as usual.
        catalog
            .commit(&Commit {
                segment_ids: vec!["live".into()],
                checkpoints: vec![],
            })
            .await
            .unwrap();
        assert!(live_staging.exists());
    }
}
