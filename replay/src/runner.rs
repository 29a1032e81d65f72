//! [`ReplayRun`]: one run of a replay, from its checkpoint to its end.

use std::collections::HashSet;
use std::sync::Arc;

use hindsight_archive::replays::{
    ReplayDetails, ReplayProgress, ReplayRequest, ReplayStatus, SkippedSegment,
    MAX_LISTED_OVERSIZED,
};
use hindsight_archive::{Bus, Event};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use hindsight_query::{Error, ErrorKind, Result};

use crate::publisher::{PendingWindow, Publisher};
use crate::rate::Limiter;
use crate::report::{LiveProgress, ReplayView};
use crate::selection::{self, Plan};
use crate::service::{
    describe_oversized, plan_destinations, skipped_event, with_skip_damaged_hint, ReplayService,
};
use crate::spec::{OversizedPolicy, ReplaySpec, PAUSE_POLL, WINDOW_TIME};
use crate::window::{read_ahead, record_progress, resume_point, Checkpointed, Pipeline, Window};

/// Later copies of a RabbitMQ message within one (source, topic, partition).
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    pub(crate) partition: Option<(String, String, i32)>,
    pub(crate) seen: HashSet<String>,
}

impl Dedup {
    /// Returns true when the group starts a new partition (the set was cleared).
    pub(crate) fn enter(&mut self, group: &selection::SegmentGroup) -> bool {
        let key = (group.source.clone(), group.topic.clone(), group.partition);
        if self.partition.as_ref() != Some(&key) {
            self.partition = Some(key);
            self.seen.clear();
            return true;
        }
        false
    }

    pub(crate) fn first_copy(&mut self, bus: Bus, event: &Event) -> bool {
        bus != Bus::Amqp || self.seen.insert(event.event_id.clone())
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Completed,
    Cancelled,
    Interrupted,
}

/// A replay ready to run (new or resumed).
pub struct ReplayRun {
    pub(crate) service: ReplayService,
    pub(crate) id: String,
    pub(crate) owner: String,
    pub(crate) spec: ReplaySpec,
    pub(crate) plan: Plan,
    /// What the last checkpoint recorded.
    pub(crate) progress: ReplayProgress,
    pub(crate) details: ReplayDetails,
}

impl std::fmt::Debug for ReplayRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayRun").field("id", &self.id).finish()
    }
}

impl ReplayRun {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn planned(&self) -> i64 {
        self.plan.planned
    }

    /// Publishes the plan from its checkpoint until done, cancelled by the
    /// user (through the catalog), or interrupted by `cancel` (at a
    /// checkpoint: resumable). Returns the final record.
    pub async fn execute(
        mut self,
        cancel: CancellationToken,
        live: Option<watch::Sender<LiveProgress>>,
    ) -> Result<ReplayView> {
        let rules = self.spec.options.header_rules(Some(&self.id))?;
        let destinations = plan_destinations(&self.spec.target, &self.plan);
        let connected = self
            .service
            .connector()
            .publisher(&self.spec.target, rules, &destinations)
            .await;
        let outcome = match connected {
            Ok(mut publisher) => {
                let outcome = self
                    .publish_all(publisher.as_mut(), &cancel, live.as_ref())
                    .await;
                let closed = publisher.close().await;
                outcome.and_then(|stop| closed.map(|()| stop))
            }
            Err(error) => Err(error),
        };
        let catalog = self.service.engine.catalog().clone();
        match outcome {
            Ok(stop) => {
                let status = match stop {
                    Stop::Completed => ReplayStatus::Completed,
                    Stop::Cancelled => ReplayStatus::Cancelled,
                    Stop::Interrupted => ReplayStatus::Interrupted,
                };
                self.record(status).await?;
                self.report(live.as_ref(), status);
                tracing::info!(replay = %self.id, status = status.as_str(), published = self.progress.published, failed = self.progress.failed, "replay finished");
            }
            Err(error) => {
                tracing::error!(replay = %self.id, error = %error.full_message(), published = self.progress.published, resend_on_resume = self.progress.resend_on_resume, "replay failed");
                // The record is shown by the API: an internal error's details stay in the log.
                let recorded = if error.kind() == ErrorKind::Internal {
                    "internal error: the log of the process that ran the replay has the details"
                } else {
                    error.message()
                };
                let _ = catalog
                    .checkpoint_replay(
                        &self.id,
                        &self.owner,
                        ReplayStatus::Failed,
                        &self.progress,
                        &self.details,
                        Some(recorded),
                    )
                    .await;
                self.report(live.as_ref(), ReplayStatus::Failed);
                return Err(error);
            }
        }
        self.service.get(&self.id).await
    }

    /// Records `status` and the progress of the last checkpoint under this
    /// run's lease; returns what the user asks for now (run, pause or cancel).
    /// Only called while no window is pending or open, so it never races a
    /// checkpoint, and nothing was sent past the checkpoint.
    async fn record(&mut self, status: ReplayStatus) -> Result<ReplayRequest> {
        self.progress.resend_on_resume = 0;
        record_progress(
            self.service.engine.catalog(),
            &self.id,
            &self.owner,
            status,
            &self.progress,
            &self.details,
        )
        .await
    }

    fn report(&self, live: Option<&watch::Sender<LiveProgress>>, status: ReplayStatus) {
        if let Some(live) = live {
            live.send_replace(LiveProgress {
                planned: self.plan.planned,
                progress: self.progress,
                status: Some(status),
            });
        }
    }

    /// Waits for the sealed window's confirms and checkpoint, if one is
    /// pending, and takes its progress. Returns what the user asked for at
    /// that checkpoint (run when nothing was pending).
    async fn settle(
        &mut self,
        pipeline: &mut Pipeline,
        live: Option<&watch::Sender<LiveProgress>>,
    ) -> Result<ReplayRequest> {
        let Some(task) = pipeline.sealed.take() else {
            return Ok(ReplayRequest::Run);
        };
        let checkpointed = task
            .await
            .map_err(|error| Error::internal(format!("a replay checkpoint task panicked: {error}")))
            .and_then(|checkpointed| checkpointed);
        let checkpointed = match checkpointed {
            Ok(checkpointed) => checkpointed,
            Err(error) => {
                pipeline.confirms_lost = true;
                return Err(error);
            }
        };
        self.progress = checkpointed.progress;
        self.details = checkpointed.details;
        self.report(live, ReplayStatus::Running);
        Ok(checkpointed.request)
    }

    /// Waits in the background for the confirms of a sealed window, then
    /// checkpoints `progress` (the position after the window) plus what the
    /// broker confirmed.
    fn checkpoint_when_confirmed(
        &self,
        confirms: PendingWindow,
        mut progress: ReplayProgress,
        details: ReplayDetails,
    ) -> JoinHandle<Result<Checkpointed>> {
        let catalog = self.service.engine.catalog().clone();
        let id = self.id.clone();
        let owner = self.owner.clone();
        let span = tracing::info_span!("replay_checkpoint", replay = %id);
        tokio::spawn(
            async move {
                let outcome = confirms.await?;
                progress.published += outcome.delivered as i64;
                progress.failed += outcome.failed as i64;
                if let Some(failure) = &outcome.first_failure {
                    tracing::warn!(failed = outcome.failed, first = %failure, "events were not delivered");
                }
                let request = record_progress(
                    &catalog,
                    &id,
                    &owner,
                    ReplayStatus::Running,
                    &progress,
                    &details,
                )
                .await?;
                Ok(Checkpointed {
                    progress,
                    details,
                    request,
                })
            }
            .instrument(span),
        )
    }

    /// Seals the window that ends at `position` and hands its confirms and
    /// checkpoint to the background, after settling the window before it:
    /// so at most two windows are ever sent but not checkpointed. When the
    /// user asks for a pause or a cancel, or `cancel` fires, it stops
    /// sending, settles the window just sealed too, and obeys. Returns a stop
    /// when the replay must end here.
    async fn close_window(
        &mut self,
        publisher: &mut dyn Publisher,
        pipeline: &mut Pipeline,
        position: (i64, i64),
        limiter: &mut Limiter,
        cancel: &CancellationToken,
        live: Option<&watch::Sender<LiveProgress>>,
    ) -> Result<Option<Stop>> {
        let confirms = publisher.seal();
        let mut progress = pipeline.sent;
        progress.position_group = position.0;
        progress.position_row = position.1;
        // While the run goes on, two windows at most are past a checkpoint.
        progress.resend_on_resume = 2 * self.spec.options.window as i64;
        let mut details = pipeline.details.clone();
        details.resume_at = resume_point(&self.plan.groups, pipeline.current.as_ref(), position);
        pipeline.window = Window::open();
        let request = self.settle(pipeline, live).await?;
        // Counts from the checkpoint just settled; this window's are added to them.
        progress.published = self.progress.published;
        progress.failed = self.progress.failed;
        pipeline.sealed = Some(self.checkpoint_when_confirmed(confirms, progress, details));
        if request == ReplayRequest::Run && !cancel.is_cancelled() {
            return Ok(None);
        }
        let mut request = self.settle(pipeline, live).await?;
        if cancel.is_cancelled() {
            return Ok(Some(Stop::Interrupted));
        }
        if request == ReplayRequest::Pause {
            tracing::info!(replay = %self.id, "replay paused");
            self.record(ReplayStatus::Paused).await?;
            self.report(live, ReplayStatus::Paused);
            while request == ReplayRequest::Pause {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(Some(Stop::Interrupted)),
                    _ = tokio::time::sleep(PAUSE_POLL) => {}
                }
                request = self.record(ReplayStatus::Paused).await?;
            }
            limiter.reset();
            if request == ReplayRequest::Run {
                tracing::info!(replay = %self.id, "replay resumed");
                self.record(ReplayStatus::Running).await?;
                self.report(live, ReplayStatus::Running);
            }
        }
        if request == ReplayRequest::Cancel {
            return Ok(Some(Stop::Cancelled));
        }
        Ok(None)
    }

    /// Publishes from the checkpoint on. Whatever ends it, no checkpoint is
    /// still being written when it returns. When it fails, what the broker
    /// confirmed is still counted, and `progress` says where a resume starts
    /// and how many events it would send again.
    async fn publish_all(
        &mut self,
        publisher: &mut dyn Publisher,
        cancel: &CancellationToken,
        live: Option<&watch::Sender<LiveProgress>>,
    ) -> Result<Stop> {
        let mut pipeline = Pipeline {
            window: Window::open(),
            sent: self.progress,
            details: self.details.clone(),
            sealed: None,
            position: (self.progress.position_group, self.progress.position_row),
            current: None,
            confirms_lost: false,
        };
        let result = self
            .publish_windows(publisher, &mut pipeline, cancel, live)
            .await;
        if result.is_err() {
            self.account_after_failure(publisher, &mut pipeline, live)
                .await;
        }
        result
    }

    /// After a failure: waits for the confirms of the windows still open or
    /// sealed, and counts them. When every event sent has its answer, the
    /// resume position moves to the failure, and nothing would be sent
    /// twice; otherwise it stays at the last checkpoint, and the events sent
    /// past it that were not refused may be sent twice.
    async fn account_after_failure(
        &mut self,
        publisher: &mut dyn Publisher,
        pipeline: &mut Pipeline,
        live: Option<&watch::Sender<LiveProgress>>,
    ) {
        let open_window = publisher.seal();
        // The sealed window gets its checkpoint if the broker confirms it.
        let _ = self.settle(pipeline, live).await;
        let past_checkpoint =
            Pipeline::handed_over(&pipeline.sent) - Pipeline::handed_over(&self.progress);
        match open_window.await {
            Ok(outcome) if !pipeline.confirms_lost => {
                let published = self.progress.published + outcome.delivered as i64;
                let failed = self.progress.failed + outcome.failed as i64;
                self.progress = pipeline.sent;
                self.progress.published = published;
                self.progress.failed = failed;
                self.progress.position_group = pipeline.position.0;
                self.progress.position_row = pipeline.position.1;
                self.progress.resend_on_resume = 0;
                self.details = pipeline.details.clone();
                self.details.resume_at = resume_point(
                    &self.plan.groups,
                    pipeline.current.as_ref(),
                    pipeline.position,
                );
            }
            Ok(outcome) => {
                self.progress.published += outcome.delivered as i64;
                self.progress.failed += outcome.failed as i64;
                self.progress.resend_on_resume = past_checkpoint - outcome.failed as i64;
            }
            Err(error) => {
                tracing::warn!(error = %error.message(), "the confirms of the last window were lost");
                self.progress.resend_on_resume = past_checkpoint;
            }
        }
    }

    async fn publish_windows(
        &mut self,
        publisher: &mut dyn Publisher,
        pipeline: &mut Pipeline,
        cancel: &CancellationToken,
        live: Option<&watch::Sender<LiveProgress>>,
    ) -> Result<Stop> {
        let store = self.service.engine.store().clone();
        let options = self.spec.options.clone();
        let mut limiter = Limiter::new(options.pace());
        let start_group = usize::try_from(self.progress.position_group).unwrap_or(usize::MAX);
        let start_row = usize::try_from(self.progress.position_row).unwrap_or(0);
        let mut dedup = Dedup::default();
        let groups = self.plan.groups.clone();
        let mut loaded_groups = read_ahead(
            store.clone(),
            groups.clone(),
            start_group,
            options.skip_damaged,
        );
        let mut next_group = start_group;
        while let Some((group_index, loaded)) = loaded_groups.recv().await {
            pipeline.position = (group_index as i64, 0);
            let loaded = loaded.map_err(with_skip_damaged_hint)?;
            self.note_damaged(pipeline, loaded.damaged);
            let events = Arc::new(loaded.events);
            pipeline.current = Some((group_index, Arc::clone(&events)));
            next_group = group_index + 1;
            let group = &groups[group_index];
            let first_row = if group_index == start_group {
                start_row
            } else {
                0
            };
            if dedup.enter(group) && options.dedup && group.bus == Bus::Amqp {
                // Resuming inside a partition: remember the copies already replayed.
                for earlier in groups[..group_index].iter().rev() {
                    if (&earlier.source, &earlier.topic, earlier.partition)
                        != (&group.source, &group.topic, group.partition)
                    {
                        break;
                    }
                    let earlier_events = earlier
                        .load_with(&store, options.skip_damaged)
                        .await
                        .map_err(with_skip_damaged_hint)?
                        .events;
                    for event in earlier_events {
                        if self.plan.selects(&event) {
                            dedup.first_copy(group.bus, &event);
                        }
                    }
                }
                for event in events.iter().take(first_row) {
                    if self.plan.selects(event) {
                        dedup.first_copy(group.bus, event);
                    }
                }
            }
            for (row, event) in events.iter().enumerate().skip(first_row) {
                pipeline.position = (group_index as i64, row as i64);
                if !self.plan.selects(event) {
                    continue;
                }
                if options.dedup && !dedup.first_copy(group.bus, event) {
                    pipeline.sent.duplicates_skipped += 1;
                    continue;
                }
                let destination = self.spec.target.destination(event)?;
                if !options.allow_loop {
                    self.service
                        .guard
                        .check(self.spec.target.bus(), &destination)?;
                }
                if let Some(excess) = publisher.oversized(event, &destination).await? {
                    let skipped = skipped_event(event, &destination, excess);
                    if options.oversized == OversizedPolicy::Stop {
                        return Err(Error::invalid_input(format!(
                            "replay stopped before {}: pass --oversized skip (\"oversized\": \
                             \"skip\") to leave such events out, or raise the topic's \
                             max.message.bytes, then run it again",
                            describe_oversized(&skipped)
                        )));
                    }
                    tracing::warn!(event = %skipped.event_id, size = skipped.size, limit = skipped.limit, "skipping an event too large for its target");
                    pipeline.sent.selected += 1;
                    pipeline.sent.oversized_skipped += 1;
                    if pipeline.details.oversized.len() < MAX_LISTED_OVERSIZED {
                        pipeline.details.oversized.push(skipped);
                    }
                    continue;
                }
                let delay = limiter.delay(
                    Instant::now(),
                    event.payload_bytes().len(),
                    event.event_time,
                );
                if !delay.is_zero() {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                if cancel.is_cancelled() {
                    // Everything before this row is sent: checkpoint there.
                    let position = (group_index as i64, row as i64);
                    self.close_window(publisher, pipeline, position, &mut limiter, cancel, live)
                        .await?;
                    return Ok(Stop::Interrupted);
                }
                publisher.send(event, &destination).await?;
                pipeline.sent.selected += 1;
                pipeline.sent.bytes += event.payload_bytes().len() as i64;
                pipeline.window.sent += 1;
                if pipeline.window.sent >= options.window
                    || pipeline.window.opened.elapsed() >= WINDOW_TIME
                {
                    let position = (group_index as i64, row as i64 + 1);
                    if let Some(stop) = self
                        .close_window(publisher, pipeline, position, &mut limiter, cancel, live)
                        .await?
                    {
                        return Ok(stop);
                    }
                }
            }
            pipeline.position = (group_index as i64 + 1, 0);
            // The group is done: the next checkpoint may point past it.
            if pipeline.window.opened.elapsed() >= WINDOW_TIME || cancel.is_cancelled() {
                let position = (group_index as i64 + 1, 0);
                if let Some(stop) = self
                    .close_window(publisher, pipeline, position, &mut limiter, cancel, live)
                    .await?
                {
                    return Ok(stop);
                }
            }
        }
        if next_group < groups.len() {
            // The reader ended without an error it could send (it panicked):
            // the rest of the plan was never read, so the replay is not done.
            return Err(Error::internal(format!(
                "the segment reader stopped at group {next_group} of {}",
                groups.len()
            )));
        }
        let end = (groups.len() as i64, 0);
        if let Some(stop) = self
            .close_window(publisher, pipeline, end, &mut limiter, cancel, live)
            .await?
        {
            if stop == Stop::Cancelled {
                return Ok(stop);
            }
        }
        self.settle(pipeline, live).await?;
        Ok(Stop::Completed)
    }

    /// Counts the damaged segments a group left out, each once (a resume
    /// reads the group again).
    fn note_damaged(&self, pipeline: &mut Pipeline, damaged: Vec<SkippedSegment>) {
        for segment in damaged {
            let known = pipeline
                .details
                .damaged_segments
                .iter()
                .any(|listed| listed.uri == segment.uri);
            if !known {
                pipeline.sent.damaged_segments_skipped += 1;
                pipeline.sent.damaged_rows_skipped += segment.rows;
                pipeline.details.damaged_segments.push(segment);
            }
        }
    }
}
