//! Compaction, retention and erasure: keeping years of archive fast, cheap
//! and answerable to erasure requests, without ever showing a reader a
//! partial change.
//!
//! Every change follows one protocol, the writer's with one more step:
//! 1. the new segment is merged (`merge.rs`, streaming, bounded memory) and
//!    proven to hold exactly its inputs' rows (minus erased ones);
//! 2. it is staged `pending` under the process's writer lease and published;
//! 3. one catalog transaction ([`Catalog::swap_segments`]) commits it and
//!    retires its inputs, recording where their rows went (lineage), so a
//!    reader sees the inputs or the output, never both, never neither, and a
//!    replay planned before the swap reads the same rows after it;
//! 4. after the grace period, [`sweep`] deletes retired objects
//!    (idempotently) and forgets rows nothing can ask for any more.
//!
//! A crash before 3 leaves a pending output, which recovery removes like any
//! writer's. A lease per bucket (`maintenance_leases`) keeps two processes
//! sharing a catalog from compacting the same partition-hour, and the swap
//! itself refuses inputs that are no longer live.

pub mod catalog;
pub mod copy;
pub mod erase;
pub mod merge;
pub mod plan;
pub mod retention;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::catalog::{Catalog, NewSegment, SegmentFilter, SegmentRecord};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{now_micros, Event};
use crate::layout::{sibling_object_path, NamePart, SegmentLocation};
use crate::lease::WriterLease;
use crate::metrics::{global, MaintenanceLabels, MaintenanceOutcomeLabels};
use crate::segment::SegmentFormat;
use crate::store::ArchiveStore;

pub use catalog::{InputPlacement, MaintenanceRun, Swap};
pub use merge::RowDigest;
pub use plan::{Bucket, CompactionJob, PackPolicy};

/// How compaction encodes and packs, and how long retired objects stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionSettings {
    /// Input bytes per output segment, at most.
    pub target_bytes: u64,
    /// A partition's day with less than this is merged into one segment.
    pub quiet_day_bytes: u64,
    /// The cold zstd level of compacted segments.
    pub zstd_level: i32,
    pub row_group_rows: usize,
    /// An hour is closed (compactable) this long after it ends.
    pub settle: Duration,
    /// Retired objects are deleted this long after their swap.
    pub grace: Duration,
    /// Copy encoded column chunks instead of re-encoding (`copy.rs`): far
    /// cheaper, but keeps the inputs' zstd level and row groups.
    pub column_copy: bool,
    /// Keep a retired object while a kept snapshot of an Iceberg table
    /// lists it (`table_files`); off when tables are turned off.
    pub keep_for_tables: bool,
}

impl CompactionSettings {
    fn policy(&self) -> PackPolicy {
        PackPolicy {
            target_bytes: i64::try_from(self.target_bytes).unwrap_or(i64::MAX),
            quiet_day_bytes: i64::try_from(self.quiet_day_bytes).unwrap_or(i64::MAX),
            settle_micros: micros(self.settle),
        }
    }

    fn format(&self) -> SegmentFormat {
        SegmentFormat {
            row_group_rows: self.row_group_rows,
            zstd_level: self.zstd_level,
        }
    }
}

pub(crate) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Which segments a run covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub source: Option<String>,
    pub topic: Option<String>,
    /// Only buckets that end before this instant (microseconds).
    pub before: Option<i64>,
}

impl Scope {
    fn segment_filter(&self) -> SegmentFilter {
        SegmentFilter {
            source: self.source.clone(),
            topic: self.topic.clone(),
            ..SegmentFilter::default()
        }
    }

    fn describe(&self) -> String {
        serde_json::json!({
            "source": self.source,
            "topic": self.topic,
            "before": self.before,
        })
        .to_string()
    }
}

/// Progress of a run, for a progress bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub jobs_done: u64,
    pub jobs: u64,
    pub bytes_done: u64,
    pub bytes: u64,
}

/// What a compaction pass did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CompactionReport {
    pub run_id: String,
    pub dry_run: bool,
    pub jobs: u64,
    pub jobs_skipped: u64,
    pub jobs_failed: u64,
    pub segments_in: u64,
    pub segments_out: u64,
    pub rows: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub seconds: f64,
}

/// Everything maintenance needs: the store, the catalog, and the writer
/// lease its outputs are staged under.
#[derive(Debug, Clone)]
pub struct Maintenance {
    pub store: ArchiveStore,
    pub catalog: Catalog,
    pub lease: WriterLease,
    pub settings: CompactionSettings,
    /// Set to stop at the next input (a shutdown).
    pub stop: Arc<AtomicBool>,
}

/// True for the events an erasure removes.
pub type EventPredicate = Arc<dyn Fn(&Event) -> bool + Send + Sync>;

/// The object key of an output, from its id and offsets.
type KeyFor = Box<dyn Fn(&str, i64, i64) -> Result<object_store::path::Path> + Send>;

/// A proven rewrite, ready to stage.
struct Rewrite {
    output: Option<(NewSegment, Bytes)>,
    placements: Vec<InputPlacement>,
    digest: RowDigest,
    bytes_in: u64,
}

impl Maintenance {
    pub fn new(
        store: ArchiveStore,
        catalog: Catalog,
        lease: WriterLease,
        settings: CompactionSettings,
    ) -> Self {
        Maintenance {
            store,
            catalog,
            lease,
            settings,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The compaction jobs for `scope` as of now.
    pub async fn plan_compaction(&self, scope: &Scope) -> Result<Vec<CompactionJob>> {
        let segments = self.catalog.segments(&scope.segment_filter()).await?;
        Ok(plan::plan_jobs(
            segments,
            self.settings.policy(),
            now_micros(),
            scope.before,
        ))
    }

    /// One compaction pass: plans, then runs the jobs one at a time (each
    /// under its bucket's lease), recording the run. A job that fails is
    /// reported and its inputs kept; the pass goes on with the next.
    pub async fn compact(
        &self,
        scope: &Scope,
        dry_run: bool,
        actor: Option<String>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<CompactionReport> {
        let jobs = self.plan_compaction(scope).await?;
        self.compact_planned(scope, jobs, dry_run, actor, progress)
            .await
    }

    /// [`Maintenance::compact`] with the jobs already planned (a dry run
    /// that lists them reports on the same plan).
    pub async fn compact_planned(
        &self,
        scope: &Scope,
        jobs: Vec<CompactionJob>,
        dry_run: bool,
        actor: Option<String>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<CompactionReport> {
        let started = Instant::now();
        let mut run = MaintenanceRun::start("compaction", dry_run, actor, scope.describe());
        let mut report = CompactionReport {
            run_id: run.id.clone(),
            dry_run,
            jobs: jobs.len() as u64,
            ..CompactionReport::default()
        };
        let total_bytes: i64 = jobs.iter().map(CompactionJob::bytes).sum();
        let mut state = Progress {
            jobs: jobs.len() as u64,
            bytes: total_bytes as u64,
            ..Progress::default()
        };
        progress(state);
        if dry_run {
            for job in &jobs {
                report.segments_in += job.inputs.len() as u64;
                report.rows += job.rows() as u64;
                report.bytes_in += job.bytes() as u64;
            }
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
        if jobs.is_empty() {
            return Ok(report);
        }
        self.catalog.record_run(&run).await?;
        let mut errors = Vec::new();
        for job in &jobs {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            match self.compact_job(&run.id, job).await {
                Ok(Some(outcome)) => {
                    report.segments_in += job.inputs.len() as u64;
                    report.segments_out += u64::from(outcome.output.is_some());
                    report.rows += outcome.digest.rows;
                    report.bytes_in += outcome.bytes_in;
                    report.bytes_out += outcome.output.as_ref().map_or(0, |o| o.0.bytes as u64);
                }
                Ok(None) => report.jobs_skipped += 1,
                Err(error) => {
                    report.jobs_failed += 1;
                    tracing::warn!(bucket = %job.bucket.key().replace('\u{1f}', "/"), error = %error.full_message(), "a compaction job failed; its inputs are kept");
                    errors.push(error.full_message());
                }
            }
            state.jobs_done += 1;
            state.bytes_done += job.bytes() as u64;
            progress(state);
        }
        report.seconds = started.elapsed().as_secs_f64();
        run.status = if errors.is_empty() {
            "succeeded"
        } else {
            "failed"
        }
        .to_owned();
        run.segments_in = report.segments_in as i64;
        run.segments_out = report.segments_out as i64;
        run.rows_in = report.rows as i64;
        run.rows_out = report.rows as i64;
        run.bytes_in = report.bytes_in as i64;
        run.bytes_out = report.bytes_out as i64;
        run.error = (!errors.is_empty()).then(|| errors.join("; "));
        run.finished_at = Some(now_micros());
        self.catalog.record_run(&run).await?;
        Ok(report)
    }

    /// Runs one job under its bucket's lease; `None` when another process
    /// holds the lease.
    async fn compact_job(&self, run_id: &str, job: &CompactionJob) -> Result<Option<Rewrite>> {
        let owner = self.lease.id();
        let key = job.bucket.key();
        let ttl = micros(Duration::from_secs(600));
        if !self.catalog.take_bucket_lease(&key, &owner, ttl).await? {
            return Ok(None);
        }
        // The plan may be stale: another process compacted this bucket
        // between the plan and the lease.
        let ids: Vec<String> = job.inputs.iter().map(|r| r.segment.id.clone()).collect();
        if !self.catalog.all_live(&ids).await? {
            self.catalog.release_bucket_lease(&key, &owner).await?;
            return Ok(None);
        }
        let started = Instant::now();
        let result = async {
            let first = &job.inputs[0].segment;
            let location = SegmentLocation {
                source: NamePart::encode("source", &first.source)?,
                topic: NamePart::encode("topic", &first.topic)?,
                partition: first.partition,
                first_offset: 0,
                last_offset: 0,
                hour_micros: job.bucket.start,
            };
            let day = job.bucket.is_day();
            let key_for = move |id: &str, first: i64, last: i64| {
                let location = SegmentLocation {
                    first_offset: first,
                    last_offset: last,
                    ..location.clone()
                };
                if day {
                    location.day_object_path(id)
                } else {
                    location.object_path(id)
                }
            };
            let rewrite = self
                .rewrite(job.inputs.clone(), None, Box::new(key_for))
                .await?;
            self.swap_in(run_id, rewrite).await
        }
        .await;
        if let Err(error) = self.catalog.release_bucket_lease(&key, &owner).await {
            tracing::debug!(error = %error.full_message(), "cannot release a compaction lease; it expires");
        }
        match result {
            // Retention or an erasure changed an input meanwhile: the
            // output was removed, and the next pass plans again.
            Err(error) if error.kind() == ErrorKind::Conflict => {
                tracing::debug!(error = %error.full_message(), "a compaction input changed; skipped");
                Ok(None)
            }
            result => {
                self.record_job("compaction", started, &result);
                result.map(Some)
            }
        }
    }

    fn record_job(&self, kind: &str, started: Instant, result: &Result<Rewrite>) {
        let metrics = global();
        let labels = MaintenanceLabels {
            kind: kind.to_owned(),
        };
        let outcome = match result {
            Ok(rewrite) => {
                metrics
                    .maintenance_bytes_in
                    .get_or_create(&labels)
                    .inc_by(rewrite.bytes_in);
                let out = rewrite.output.as_ref().map_or(0, |o| o.0.bytes as u64);
                metrics
                    .maintenance_bytes_out
                    .get_or_create(&labels)
                    .inc_by(out);
                metrics
                    .maintenance_segments_retired
                    .get_or_create(&labels)
                    .inc_by(rewrite.placements.len() as u64);
                "succeeded"
            }
            Err(error) if error.message().contains("does not hold exactly") => "aborted",
            Err(_) => "failed",
        };
        metrics
            .maintenance_jobs
            .get_or_create(&MaintenanceOutcomeLabels {
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        metrics
            .maintenance_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }

    /// Merges `inputs` (leaving out what `erase` selects) on one thread of
    /// its own: a job never takes more than one core from ingest.
    async fn rewrite(
        &self,
        inputs: Vec<SegmentRecord>,
        erase: Option<EventPredicate>,
        key_for: KeyFor,
    ) -> Result<Rewrite> {
        let store = self.store.clone();
        let stop = Arc::clone(&self.stop);
        let format = self.settings.format();
        let column_copy = self.settings.column_copy && erase.is_none();
        let runtime = tokio::runtime::Handle::current();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("compaction".to_owned())
            .spawn(move || {
                let mut fetch = |record: &SegmentRecord| -> Result<Bytes> {
                    if stop.load(Ordering::Relaxed) {
                        return Err(Error::new(ErrorKind::Retryable, "stopped by shutdown"));
                    }
                    runtime.block_on(store.get_key(&record.segment.uri))
                };
                let copied = if column_copy {
                    copy::copy_segments(&inputs, &mut fetch, format)
                } else {
                    Ok(None)
                };
                let merged = match copied {
                    Ok(Some(merged)) => Ok(merged),
                    // Not copyable (another schema version): re-encode.
                    Ok(None) => merge::merge_segments(
                        &inputs,
                        &mut fetch,
                        format,
                        erase.as_deref().map(|f| f as _),
                    ),
                    Err(error) => Err(error),
                };
                let result = merged.and_then(|merged| {
                    let id = uuid::Uuid::now_v7().simple().to_string();
                    let output = match merged.output {
                        None => None,
                        Some(encoded) => {
                            let path = key_for(&id, encoded.first_offset, encoded.last_offset)?;
                            let first = &inputs[0].segment;
                            let record = encoded.record(
                                id.clone(),
                                path.to_string(),
                                &first.source,
                                &first.topic,
                                first.partition,
                            );
                            Some((record, encoded.bytes))
                        }
                    };
                    let output_id = output.as_ref().map(|o| o.0.id.clone()).unwrap_or_default();
                    let placements = inputs
                        .iter()
                        .zip(merged.inputs)
                        .map(|(record, outcome)| InputPlacement {
                            input_id: record.segment.id.clone(),
                            output_id: output_id.clone(),
                            first_row: outcome.first_row,
                            erased_rows: outcome.erased_rows,
                            input_rows: outcome.rows,
                        })
                        .collect();
                    Ok(Rewrite {
                        output,
                        placements,
                        digest: merged.digest,
                        bytes_in: merged.bytes_in,
                    })
                });
                let _ = sender.send(result);
            })
            .map_err(|error| {
                Error::with_source(
                    ErrorKind::Internal,
                    "cannot start the compaction thread",
                    error,
                )
            })?;
        receiver
            .await
            .map_err(|_| Error::internal("the compaction thread panicked"))?
    }

    /// Stages and publishes the output, then swaps it in; on any failure
    /// removes what it staged (row first, then object) and keeps the inputs.
    async fn swap_in(&self, run_id: &str, rewrite: Rewrite) -> Result<Rewrite> {
        let writer = self.lease.id();
        let swap = Swap {
            run_id: run_id.to_owned(),
            outputs: rewrite.output.iter().map(|o| o.0.id.clone()).collect(),
            inputs: rewrite.placements.clone(),
        };
        let Some((record, bytes)) = &rewrite.output else {
            self.catalog.swap_segments(&swap).await?;
            return Ok(rewrite);
        };
        self.catalog
            .stage_compacted(Some(&writer), std::slice::from_ref(record))
            .await?;
        let path = object_store::path::Path::parse(&record.uri)?;
        let published = self
            .store
            .publish_for(Some(&writer), &path, bytes.clone())
            .await;
        let swapped = match published {
            Ok(()) => self.catalog.swap_segments(&swap).await,
            Err(error) => Err(error),
        };
        if let Err(error) = swapped {
            match self
                .catalog
                .discard_if_pending(std::slice::from_ref(&record.id))
                .await
            {
                Ok(discarded) if !discarded.is_empty() => {
                    if let Err(delete) = self.store.delete(&path).await {
                        tracing::warn!(segment = %record.uri, error = %delete.full_message(), "cannot delete an output that was not swapped in; recovery removes it");
                    }
                }
                Ok(_) => {}
                Err(discard) => {
                    tracing::warn!(segment = %record.uri, error = %discard.full_message(), "cannot discard an output that was not swapped in; recovery removes it");
                }
            }
            return Err(error);
        }
        Ok(rewrite)
    }

    /// Deletes the objects of segments retired more than the grace period
    /// ago (a delete of a missing object succeeds), then forgets the rows
    /// nothing can ask for. Returns how many objects it deleted.
    pub async fn sweep(&self) -> Result<u64> {
        let cutoff = now_micros() - micros(self.settings.grace);
        let mut deleted = 0;
        for record in self
            .catalog
            .retired_objects(cutoff, self.settings.keep_for_tables)
            .await?
        {
            let path = object_store::path::Path::parse(&record.segment.uri)?;
            self.store.delete(&path).await?;
            self.catalog.mark_object_deleted(&record.segment.id).await?;
            deleted += 1;
        }
        global().retired_objects_deleted.inc_by(deleted);
        let forgotten = self.catalog.forget_retired().await?;
        if deleted > 0 || forgotten > 0 {
            tracing::info!(deleted, forgotten, "removed retired segments");
        }
        Ok(deleted)
    }

    /// Rewrites one segment without the events `erase` selects (an erasure).
    async fn rewrite_without(
        &self,
        run_id: &str,
        record: &SegmentRecord,
        erase: EventPredicate,
    ) -> Result<Rewrite> {
        let started = Instant::now();
        let existing = record.segment.uri.clone();
        let partition = record.segment.partition;
        let key_for = move |id: &str, first: i64, last: i64| {
            sibling_object_path(&existing, partition, first, last, id)
        };
        let result = async {
            let rewrite = self
                .rewrite(vec![record.clone()], Some(erase), Box::new(key_for))
                .await?;
            self.swap_in(run_id, rewrite).await
        }
        .await;
        self.record_job("erasure", started, &result);
        result
    }
}

/// A Kafka event of `src`/`orders` at `offset`, for the unit tests.
#[cfg(test)]
pub(crate) fn test_event(partition: i32, offset: i64) -> crate::event::Event {
    use crate::event::{event_id, Bus, Event};
    Event {
        event_id: event_id::kafka("src", "orders", partition, offset),
        source: "src".to_owned(),
        bus: Bus::Kafka,
        topic: "orders".to_owned(),
        partition: Some(partition),
        offset: Some(offset),
        key: Some(format!("k{}", offset % 7).into_bytes()),
        payload: Some(format!("{{\"n\":{offset}}}").into_bytes()),
        payload_size: 8,
        event_time: 1_000_000 + offset,
        ingest_time: 2_000_000 + offset,
        ..Event::default()
    }
}

/// A live, committed catalog row for `segment`, for the unit tests.
#[cfg(test)]
pub(crate) fn live_record(segment: NewSegment, compaction_level: i64) -> SegmentRecord {
    SegmentRecord {
        segment,
        created_at: 0,
        committed_at: Some(0),
        state: crate::catalog::SegmentState::Committed,
        retired_at: None,
        compaction_level,
        moved_to: None,
    }
}
