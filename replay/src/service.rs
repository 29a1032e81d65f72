//! [`ReplayService`]: plans, audits, starts, resumes and controls replays.

use std::collections::BTreeMap;
use std::sync::Arc;

use hindsight_archive::event::now_micros;
use hindsight_archive::replays::{
    NewReplay, ReplayDetails, ReplayProgress, ReplayRequest, SkippedEvent, MAX_LISTED_OVERSIZED,
};
use hindsight_archive::Event;
use serde::Serialize;

use hindsight_query::events::EventView;
use hindsight_query::{Error, ErrorKind, QueryEngine, Result};

use crate::guard::LoopGuard;
use crate::publisher::{Connector, SizeExcess, SizeLimits, Target};
use crate::report::{DryRunReport, ReplayView, SampleEvent, Totals};
use crate::runner::{Dedup, ReplayRun};
use crate::selection::{self, Plan, Selection, SqlResult};
use crate::spec::{OversizedPolicy, ReplaySpec};

/// Plans, audits, runs and controls replays over one archive.
#[derive(Debug, Clone)]
pub struct ReplayService {
    pub(crate) engine: QueryEngine,
    pub(crate) guard: LoopGuard,
    pub(crate) connector: Arc<dyn Connector>,
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|error| Error::internal(format!("cannot encode the replay as JSON: {error}")))
}

impl ReplayService {
    /// `guard` holds the topics and exchanges of the configured sources; the
    /// catalog's archived topics are added at every start. `connector` opens
    /// publishers (the buses this build has).
    pub fn new(engine: QueryEngine, guard: LoopGuard, connector: Arc<dyn Connector>) -> Self {
        ReplayService {
            engine,
            guard,
            connector,
        }
    }

    /// The configured guard plus everything the catalog archived, now.
    async fn refresh_guard(&mut self) -> Result<()> {
        self.guard.add_archived(&self.engine).await?;
        Ok(())
    }

    /// The same service as `principal` reads: selecting only what its
    /// scope allows, dry-run samples masked for its role (the loop guard
    /// still knows every archived topic).
    pub fn for_principal(&self, principal: &hindsight_archive::access::Principal) -> ReplayService {
        ReplayService {
            engine: self.engine.for_principal(principal),
            ..self.clone()
        }
    }

    pub fn connector(&self) -> &Arc<dyn Connector> {
        &self.connector
    }

    pub fn engine(&self) -> &QueryEngine {
        &self.engine
    }

    async fn resolve(
        &self,
        spec: &ReplaySpec,
        snapshot_at: i64,
    ) -> Result<(Plan, Option<SqlResult>)> {
        spec.options.validate()?;
        let sql = match &spec.selection {
            Selection::Sql { sql } => Some(selection::run_sql_selection(&self.engine, sql).await?),
            Selection::Filter(_) => None,
        };
        let plan =
            selection::plan(&self.engine, &spec.selection, snapshot_at, sql.as_ref()).await?;
        Ok((plan, sql))
    }

    /// Where the plan's topics go, and what the loop guard says about them.
    fn check_targets(&self, spec: &ReplaySpec, plan: &Plan) -> Vec<String> {
        let mut problems = Vec::new();
        for (bus, topic) in plan.topics() {
            match spec.target.destination_of(bus, &topic, None) {
                Ok(destination) if !spec.options.allow_loop => {
                    if let Err(error) = self.guard.check(spec.target.bus(), &destination) {
                        problems.push(error.message().to_owned());
                    }
                }
                Ok(_) => {}
                Err(error) => problems.push(error.message().to_owned()),
            }
        }
        problems.sort();
        problems.dedup();
        problems
    }

    /// Counts what a replay would publish, per target, with a sample, and
    /// names the events too large for their target. Publishes nothing; of
    /// a Kafka target it only asks the topics' size limits. Recorded in the
    /// audit.
    pub async fn dry_run(&self, spec: &ReplaySpec) -> Result<DryRunReport> {
        let mut service = self.clone();
        service.refresh_guard().await?;
        service.dry_run_with_guard(spec).await
    }

    async fn dry_run_with_guard(&self, spec: &ReplaySpec) -> Result<DryRunReport> {
        let snapshot_at = now_micros();
        let (plan, _) = self.resolve(spec, snapshot_at).await?;
        let id = new_replay_id();
        self.engine
            .catalog()
            .create_replay(&NewReplay {
                id: id.clone(),
                dry_run: true,
                selection: to_json(&spec.selection)?,
                target: to_json(&spec.target)?,
                options: to_json(&spec.options)?,
                snapshot_at,
                planned: plan.planned,
                owner: None,
            })
            .await?;
        let mut problems = self.check_targets(spec, &plan);
        let mut totals = Totals::default();
        let mut by_target: BTreeMap<String, Totals> = BTreeMap::new();
        let mut sample = Vec::new();
        let mut dedup = Dedup::default();
        let mut duplicates = 0;
        let mut sizes = SizeCheck::new(self.connector.as_ref(), spec, &plan, &id).await?;
        let mut damaged_segments = Vec::new();
        for group in &plan.groups {
            let loaded = group
                .load_with(self.engine.store(), spec.options.skip_damaged)
                .await
                .map_err(with_skip_damaged_hint)?;
            damaged_segments.extend(loaded.damaged);
            dedup.enter(group);
            for event in loaded.events {
                if !plan.selects(&event) {
                    continue;
                }
                if spec.options.dedup && !dedup.first_copy(group.bus, &event) {
                    duplicates += 1;
                    continue;
                }
                let destination = match spec.target.destination(&event) {
                    Ok(destination) => {
                        if sizes.oversized(&event, &destination).await {
                            continue;
                        }
                        if !spec.options.allow_loop {
                            if let Err(error) = self.guard.check(spec.target.bus(), &destination) {
                                problems.push(error.message().to_owned());
                            }
                        }
                        by_target
                            .entry(destination.clone())
                            .or_default()
                            .add(&event);
                        Some(destination)
                    }
                    Err(error) => {
                        problems.push(error.message().to_owned());
                        None
                    }
                };
                totals.add(&event);
                if sample.len() < spec.options.sample {
                    sample.push(SampleEvent {
                        destination,
                        event: EventView::from(event),
                    });
                }
            }
        }
        if let Some(first) = sizes.listed.first() {
            if spec.options.oversized == OversizedPolicy::Stop {
                problems.push(format!(
                    "{} event(s) are larger than their target accepts: a run would stop before \
                     the first, {}; pass --oversized skip (\"oversized\": \"skip\") to leave \
                     them out, or raise the topic's max.message.bytes",
                    sizes.count,
                    describe_oversized(first)
                ));
            }
        }
        problems.sort();
        problems.dedup();
        let details = ReplayDetails {
            resume_at: None,
            oversized: sizes.listed.clone(),
            damaged_segments: damaged_segments.clone(),
        };
        self.engine
            .catalog()
            .finish_dry_run(
                &id,
                &ReplayProgress {
                    selected: totals.events + sizes.count,
                    bytes: totals.bytes,
                    duplicates_skipped: duplicates,
                    oversized_skipped: sizes.count,
                    ..Default::default()
                },
                &details,
            )
            .await?;
        Ok(DryRunReport {
            id,
            totals,
            by_target,
            duplicates_skipped: duplicates,
            segments: plan.groups.iter().map(|g| g.segments.len()).sum(),
            problems,
            oversized: sizes.listed,
            oversized_count: sizes.count,
            size_limits: sizes.sizes.map(|sizes| sizes.limits()).unwrap_or_default(),
            damaged_segments,
            sample,
        })
    }

    /// Plans and records a replay, refusing loops and events without a
    /// target. Nothing is published until [`ReplayRun::execute`].
    pub async fn start(&self, spec: ReplaySpec) -> Result<ReplayRun> {
        let mut service = self.clone();
        service.refresh_guard().await?;
        service.start_with_guard(spec).await
    }

    async fn start_with_guard(&self, spec: ReplaySpec) -> Result<ReplayRun> {
        let snapshot_at = now_micros();
        let (plan, sql) = self.resolve(&spec, snapshot_at).await?;
        if let Some(problem) = self.check_targets(&spec, &plan).into_iter().next() {
            return Err(Error::invalid_input(problem));
        }
        let id = new_replay_id();
        let owner = uuid::Uuid::new_v4().simple().to_string();
        if let Some(sql) = &sql {
            self.engine
                .catalog()
                .store_replay_selection(&id, &sql.ids)
                .await?;
        }
        self.engine
            .catalog()
            .create_replay(&NewReplay {
                id: id.clone(),
                dry_run: false,
                selection: to_json(&spec.selection)?,
                target: to_json(&spec.target)?,
                options: to_json(&spec.options)?,
                snapshot_at,
                planned: plan.planned,
                owner: Some(owner.clone()),
            })
            .await?;
        tracing::info!(replay = %id, planned = plan.planned, groups = plan.groups.len(), "replay created");
        Ok(ReplayRun {
            service: self.clone(),
            id,
            owner,
            spec,
            plan,
            progress: ReplayProgress::default(),
            details: ReplayDetails::default(),
        })
    }

    /// The target a replay's record holds (without credentials).
    pub async fn stored_target(&self, id: &str) -> Result<Target> {
        let record = self.engine.catalog().replay(id).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("no replay {id}: list them with hindsight replay list"),
            )
        })?;
        parse_json(&record.target, "target")
    }

    /// Takes a replay over from its checkpoint: after a crash, an interrupt,
    /// a failure, or from another process (which is fenced off).
    ///
    /// Credentials are never stored with a replay, so a target that had
    /// some needs them again: `credentials` is the same target, given again
    /// with them.
    pub async fn resume(&self, id: &str, credentials: Option<&Target>) -> Result<ReplayRun> {
        let mut service = self.clone();
        service.refresh_guard().await?;
        service.resume_with_guard(id, credentials).await
    }

    async fn resume_with_guard(&self, id: &str, credentials: Option<&Target>) -> Result<ReplayRun> {
        let catalog = self.engine.catalog();
        let record = catalog.replay(id).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("no replay {id}: list them with hindsight replay list"),
            )
        })?;
        if record.status.is_final() {
            return Err(Error::invalid_input(format!(
                "replay {id} is {}: only running, paused, failed or interrupted replays resume",
                record.status.as_str()
            )));
        }
        let stored: Target = parse_json(&record.target, "target")?;
        let target = match credentials {
            Some(given) => stored.with_credentials_of(given)?,
            None if stored.lacks_credentials() => {
                return Err(Error::invalid_input(format!(
                    "replay {id} sends to a target with credentials, and credentials are \
                     never stored: resume it with its target again (hindsight replay resume \
                     {id} --amqp URL or --kafka BROKERS with its --kafka-property flags)"
                )))
            }
            None => stored,
        };
        let spec = ReplaySpec {
            selection: parse_json(&record.selection, "selection")?,
            target,
            options: parse_json(&record.options, "options")?,
        };
        let sql = match &spec.selection {
            Selection::Sql { .. } => Some(SqlResult {
                ids: catalog.replay_selection(id).await?,
                topics: None,
            }),
            Selection::Filter(_) => None,
        };
        let plan = selection::plan(
            &self.engine,
            &spec.selection,
            record.snapshot_at,
            sql.as_ref(),
        )
        .await?;
        let owner = uuid::Uuid::new_v4().simple().to_string();
        catalog
            .claim_replay(id, record.owner.as_deref(), &owner)
            .await
            .map_err(Error::from)?;
        tracing::info!(replay = %id, position_group = record.progress.position_group, position_row = record.progress.position_row, "replay resumed");
        Ok(ReplayRun {
            service: self.clone(),
            id: id.to_owned(),
            owner,
            spec,
            plan,
            progress: record.progress,
            details: record.details,
        })
    }

    pub async fn get(&self, id: &str) -> Result<ReplayView> {
        self.engine
            .catalog()
            .replay(id)
            .await?
            .map(ReplayView::from)
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no replay {id}")))
    }

    pub async fn list(&self, limit: i64) -> Result<Vec<ReplayView>> {
        Ok(self
            .engine
            .catalog()
            .replays(limit)
            .await?
            .into_iter()
            .map(ReplayView::from)
            .collect())
    }

    /// Asks the process running a replay to pause, run on or cancel; it
    /// acts at its next checkpoint (within a second).
    pub async fn request(&self, id: &str, request: ReplayRequest) -> Result<ReplayView> {
        Ok(ReplayView::from(
            self.engine.catalog().request_replay(id, request).await?,
        ))
    }
}

/// The topics (or exchanges) the plan sends to.
pub(crate) fn plan_destinations(target: &Target, plan: &Plan) -> Vec<String> {
    let mut destinations: Vec<String> = plan
        .topics()
        .into_iter()
        .filter_map(|(bus, topic)| target.destination_of(bus, &topic, None).ok())
        .collect();
    destinations.sort();
    destinations.dedup();
    destinations
}

/// The dry-run's size check: what a Kafka target accepts, against each
/// event, judged as the publisher will judge it.
struct SizeCheck {
    sizes: Option<Box<dyn SizeLimits>>,
    listed: Vec<SkippedEvent>,
    count: i64,
}

impl SizeCheck {
    async fn new(
        connector: &dyn Connector,
        spec: &ReplaySpec,
        plan: &Plan,
        replay_id: &str,
    ) -> Result<Self> {
        let sizes = connector
            .size_limits(
                &spec.target,
                spec.options.header_rules(Some(replay_id))?,
                &plan_destinations(&spec.target, plan),
            )
            .await?;
        Ok(SizeCheck {
            sizes,
            listed: Vec::new(),
            count: 0,
        })
    }

    /// True, and counted, when `event` is larger than `destination` accepts.
    async fn oversized(&mut self, event: &Event, destination: &str) -> bool {
        let Some(sizes) = &mut self.sizes else {
            return false;
        };
        let Some(excess) = sizes.excess(event, destination).await else {
            return false;
        };
        self.count += 1;
        if self.listed.len() < MAX_LISTED_OVERSIZED {
            self.listed.push(skipped_event(event, destination, excess));
        }
        true
    }
}

pub(crate) fn skipped_event(event: &Event, destination: &str, excess: SizeExcess) -> SkippedEvent {
    SkippedEvent {
        event_id: event.event_id.clone(),
        source: event.source.clone(),
        topic: event.topic.clone(),
        partition: event.partition,
        offset: event.offset,
        destination: destination.to_owned(),
        size: excess.size,
        limit: excess.limit,
        limit_from: excess.limit_from,
    }
}

/// "event … (source s, topic t, partition p, offset o) is N bytes, and … accepts at most M bytes (…)".
pub(crate) fn describe_oversized(skipped: &SkippedEvent) -> String {
    let mut place = format!("source {:?}, topic {:?}", skipped.source, skipped.topic);
    if let Some(partition) = skipped.partition {
        place.push_str(&format!(", partition {partition}"));
    }
    if let Some(offset) = skipped.offset {
        place.push_str(&format!(", offset {offset}"));
    }
    format!(
        "event {} ({place}) is {} bytes as a record, and {:?} accepts at most {} bytes ({})",
        skipped.event_id, skipped.size, skipped.destination, skipped.limit, skipped.limit_from
    )
}

/// Adds to an unreadable-segment error how to replay without the segment.
pub(crate) fn with_skip_damaged_hint(error: Error) -> Error {
    if error.kind() != ErrorKind::SegmentUnreadable {
        return error;
    }
    Error::new(
        ErrorKind::SegmentUnreadable,
        format!(
            "{}: pass --skip-damaged (\"skip_damaged\": true) to replay the rest without it",
            error.message()
        ),
    )
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|error| {
        Error::internal(format!(
            "the recorded {what} of a replay is unreadable: {error}"
        ))
    })
}

/// Time-ordered, so `replay list` and ids sort alike.
pub(crate) fn new_replay_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
