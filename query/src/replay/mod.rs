//! Replay: send a selection of archived events back onto Kafka or RabbitMQ.
//!
//! - [`selection`] says which events, in which order (per partition, by
//!   offset), as a [`selection::Plan`] over segments committed by a snapshot.
//! - [`publisher`] is the seam to the buses: the [`publisher::Publisher`]
//!   trait, [`kafka`] (idempotent, `acks=all`) and [`amqp`] (confirms,
//!   mandatory), targets and header rules.
//! - [`rate`] paces publishing.
//! - This module runs replays: dry-runs, the loop guard, windows of sends
//!   closed by a seal and a catalog checkpoint, control (pause, resume,
//!   cancel through the catalog), and resume after a crash.
//!
//! Windows are pipelined. Window N+1 is read and sent while the broker
//! confirms window N and its checkpoint is written, in a background task.
//! Before window N+1 is sealed and N+2 opened, window N must be confirmed and
//! checkpointed, so at most two windows are ever sent but not checkpointed.
//! Checkpoints are written in window order, each only after every message of
//! its window (and so of every window before it) was confirmed or counted as
//! failed; a window whose confirms end in an error (a lost channel, a
//! timeout) is never checkpointed, and the replay fails at the checkpoint
//! before it. After a crash, at most the last two windows (2 × `--window`
//! events, or two seconds of sending) can therefore be published twice, and
//! the provenance headers (`hindsight-event-id`) make those copies
//! detectable. A pause or cancel takes effect at the next window boundary,
//! once both windows in flight are checkpointed, so the recorded progress
//! is exactly what the broker holds.
//!
//! The plan's segment groups are read and decoded one group ahead of the
//! sender, by a task feeding a channel of one, so at most two groups are in
//! memory.

pub mod amqp;
pub mod http;
pub mod kafka;
pub mod publisher;
pub mod rate;
pub mod selection;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hindsight_archive::catalog::Catalog;
use hindsight_archive::event::{now_micros, rfc3339};
use hindsight_archive::replays::{
    NewReplay, ReplayDetails, ReplayProgress, ReplayRecord, ReplayRequest, ReplayStatus,
    ResumePoint, SkippedEvent, SkippedSegment, MAX_LISTED_OVERSIZED,
};
use hindsight_archive::store::ArchiveStore;
use hindsight_archive::{Bus, ErrorKind as ArchiveErrorKind, Event};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::{Error, ErrorKind, Result};
use crate::events::EventView;
use crate::sql::QueryEngine;
use publisher::{HeaderRules, PendingWindow, Publisher, SizeExcess, Target};
use rate::{Limiter, Pace};
use selection::{LoadedGroup, Plan, SegmentGroup, Selection, SqlResult};

/// The longest a window stays open before it is sealed and checkpointed.
pub const WINDOW_TIME: Duration = Duration::from_secs(1);
/// How often a paused replay looks for a resume or cancel.
const PAUSE_POLL: Duration = Duration::from_millis(500);

fn default_true() -> bool {
    true
}

fn default_window() -> usize {
    10_000
}

fn default_sample() -> usize {
    5
}

/// How a replay runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayOptions {
    /// Events per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Payload bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_rate: Option<f64>,
    /// Reproduce the original gaps between events, N times as fast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace: Option<f64>,
    /// Add the `hindsight-*` provenance headers (on by default).
    #[serde(default = "default_true")]
    pub provenance: bool,
    /// Header names to remove; a trailing `*` matches a prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strip_headers: Vec<String>,
    /// `name=value` headers to set (replacing any of that name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_headers: Vec<String>,
    /// Publish into topics or exchanges that this Hindsight archives.
    #[serde(default)]
    pub allow_loop: bool,
    /// Skip later copies of a RabbitMQ message (redeliveries), like `events_dedup`.
    #[serde(default = "default_true")]
    pub dedup: bool,
    /// Events per window: seal, then checkpoint once confirmed.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Events a dry-run shows.
    #[serde(default = "default_sample")]
    pub sample: usize,
    /// An event larger than its target accepts: stop the replay before it
    /// (the default), or skip it and list it in the record.
    #[serde(default)]
    pub oversized: OversizedPolicy,
    /// Leave out segments that cannot be read, and list them in the record,
    /// instead of failing the replay.
    #[serde(default)]
    pub skip_damaged: bool,
}

/// What a replay does with an event larger than its target accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OversizedPolicy {
    /// Fail the replay before the event; everything before it is published.
    #[default]
    Stop,
    /// Leave it out, count it and list it.
    Skip,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            rate: None,
            bytes_rate: None,
            pace: None,
            provenance: true,
            strip_headers: Vec::new(),
            set_headers: Vec::new(),
            allow_loop: false,
            dedup: true,
            window: default_window(),
            sample: default_sample(),
            oversized: OversizedPolicy::Stop,
            skip_damaged: false,
        }
    }
}

impl ReplayOptions {
    fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("rate", self.rate),
            ("bytes_rate", self.bytes_rate),
            ("pace", self.pace),
        ] {
            if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return Err(Error::invalid_input(format!(
                    "{name} must be a positive number"
                )));
            }
        }
        if self.window == 0 {
            return Err(Error::invalid_input("window must be at least 1 event"));
        }
        self.header_rules(None).map(|_| ())
    }

    fn pace(&self) -> Pace {
        Pace {
            events_per_second: self.rate,
            bytes_per_second: self.bytes_rate,
            original_speed: self.pace,
        }
    }

    fn header_rules(&self, replay_id: Option<&str>) -> Result<HeaderRules> {
        let set = self
            .set_headers
            .iter()
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
                _ => Err(Error::invalid_input(format!(
                    "set header {pair:?} must be name=value"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(HeaderRules {
            strip: self.strip_headers.clone(),
            set,
            provenance: if self.provenance {
                replay_id.map(str::to_owned)
            } else {
                None
            },
        })
    }
}

/// A whole replay request: what, where, how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySpec {
    pub selection: Selection,
    pub target: Target,
    #[serde(default)]
    pub options: ReplayOptions,
}

/// Topics and exchanges that this Hindsight archives: replaying into them
/// would archive the replayed events again.
#[derive(Debug, Clone, Default)]
pub struct LoopGuard {
    entries: Vec<(Bus, GuardName, String)>,
}

#[derive(Debug, Clone)]
enum GuardName {
    Exact(String),
    Pattern(regex::Regex),
}

impl LoopGuard {
    /// `source` archives `name` (a Kafka topic, or an AMQP exchange).
    pub fn add(&mut self, bus: Bus, name: &str, source: &str) {
        self.entries
            .push((bus, GuardName::Exact(name.to_owned()), source.to_owned()));
    }

    /// `source` archives the Kafka topics matching `pattern` (librdkafka's
    /// `^pattern` subscription).
    pub fn add_pattern(&mut self, pattern: &str, source: &str) -> Result<()> {
        let regex = regex::Regex::new(&format!("^(?:{pattern})")).map_err(|error| {
            Error::invalid_input(format!("invalid topic pattern {pattern:?}: {error}"))
        })?;
        self.entries
            .push((Bus::Kafka, GuardName::Pattern(regex), source.to_owned()));
        Ok(())
    }

    /// Adds every topic the catalog holds committed events of, with the bus
    /// of its source: whatever was archived may be archived again.
    pub async fn add_archived(&mut self, engine: &QueryEngine) -> Result<()> {
        let buses: BTreeMap<String, Bus> = engine
            .catalog()
            .sources()
            .await?
            .into_iter()
            .map(|s| (s.name, s.bus))
            .collect();
        for stats in engine.catalog().topic_stats().await? {
            if let Some(bus) = buses.get(&stats.source) {
                self.add(*bus, &stats.topic, &stats.source);
            }
        }
        Ok(())
    }

    /// Refuses `destination` on `bus` when a source archives it.
    pub fn check(&self, bus: Bus, destination: &str) -> Result<()> {
        for (guarded_bus, name, source) in &self.entries {
            let hit = *guarded_bus == bus
                && match name {
                    GuardName::Exact(exact) => exact == destination,
                    GuardName::Pattern(regex) => regex.is_match(destination),
                };
            if hit {
                let what = match bus {
                    Bus::Kafka => "topic",
                    Bus::Amqp => "exchange",
                };
                return Err(Error::invalid_input(format!(
                    "refusing to replay into {bus} {what} {destination:?}: source {source:?} \
                     archives it, so the replayed events would be archived again; \
                     pass --allow-loop (\"allow_loop\": true) if that is what you want"
                )));
            }
        }
        Ok(())
    }
}

/// Events, bytes and the first and last event time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub events: i64,
    pub bytes: i64,
    pub first_event_time: Option<String>,
    pub last_event_time: Option<String>,
    #[serde(skip)]
    span: Option<(i64, i64)>,
}

impl Totals {
    fn add(&mut self, event: &Event) {
        self.events += 1;
        self.bytes += event.payload_bytes().len() as i64;
        let (low, high) = self.span.unwrap_or((event.event_time, event.event_time));
        let span = (low.min(event.event_time), high.max(event.event_time));
        self.span = Some(span);
        self.first_event_time = rfc3339(span.0);
        self.last_event_time = rfc3339(span.1);
    }
}

/// One sampled event and where it would go.
#[derive(Debug, Serialize)]
pub struct SampleEvent {
    pub destination: Option<String>,
    pub event: EventView,
}

/// What a dry-run found. Nothing was published.
#[derive(Debug, Serialize)]
pub struct DryRunReport {
    pub id: String,
    pub totals: Totals,
    /// Per target topic or exchange.
    pub by_target: BTreeMap<String, Totals>,
    pub duplicates_skipped: i64,
    pub segments: usize,
    /// Why a run would be refused or stop (loop guard, events without a
    /// target, events too large for their target).
    pub problems: Vec<String>,
    /// Events larger than their target accepts (the first 1000), and how
    /// many there are. Not counted in the totals: a run stops before the
    /// first, or skips them all.
    pub oversized: Vec<SkippedEvent>,
    pub oversized_count: i64,
    /// What each Kafka target topic accepts, and who said so.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub size_limits: BTreeMap<String, kafka::SizeLimit>,
    /// Unreadable segments left out (`skip_damaged`).
    pub damaged_segments: Vec<SkippedSegment>,
    pub sample: Vec<SampleEvent>,
}

/// A replay as the API shows it: the audit record, the target without secrets.
#[derive(Debug, Serialize)]
pub struct ReplayView {
    pub id: String,
    pub status: ReplayStatus,
    pub requested: ReplayRequest,
    pub dry_run: bool,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub finished_at: Option<String>,
    pub snapshot_at: Option<String>,
    pub selection: serde_json::Value,
    pub target: serde_json::Value,
    pub options: serde_json::Value,
    pub planned: i64,
    pub progress: ReplayProgress,
    /// Where a resume starts, and what was skipped.
    pub details: ReplayDetails,
    pub error: Option<String>,
}

impl From<ReplayRecord> for ReplayView {
    fn from(record: ReplayRecord) -> Self {
        let json = |text: &str| serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
        let target = serde_json::from_str::<Target>(&record.target)
            .ok()
            .and_then(|target| serde_json::to_value(target.redacted()).ok())
            .unwrap_or(serde_json::Value::Null);
        ReplayView {
            id: record.id,
            status: record.status,
            requested: record.requested,
            dry_run: record.dry_run,
            created_at: rfc3339(record.created_at),
            updated_at: rfc3339(record.updated_at),
            finished_at: record.finished_at.and_then(rfc3339),
            snapshot_at: rfc3339(record.snapshot_at),
            selection: json(&record.selection),
            target,
            options: json(&record.options),
            planned: record.planned,
            progress: record.progress,
            details: record.details,
            error: record.error,
        }
    }
}

/// Live progress of a running replay, for progress bars.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveProgress {
    pub planned: i64,
    pub progress: ReplayProgress,
    pub status: Option<ReplayStatus>,
}

/// Plans, audits, runs and controls replays over one archive.
#[derive(Debug, Clone)]
pub struct ReplayService {
    engine: QueryEngine,
    guard: LoopGuard,
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|error| Error::internal(format!("cannot encode the replay as JSON: {error}")))
}

fn conflict_or(error: hindsight_archive::Error) -> Error {
    if error.kind() == ArchiveErrorKind::Conflict {
        Error::new(ErrorKind::InvalidInput, error.full_message())
    } else {
        Error::from(error)
    }
}

/// The configured sources of this process, for the loop guard of replays
/// started over HTTP (set once by the binary).
static CONFIGURED_SOURCES: std::sync::OnceLock<LoopGuard> = std::sync::OnceLock::new();

/// Registers the topics and exchanges the configured sources archive.
pub fn register_configured_sources(guard: LoopGuard) {
    let _ = CONFIGURED_SOURCES.set(guard);
}

impl ReplayService {
    /// `guard` holds the configured sources (the registered ones when
    /// `None`); the catalog's archived topics are added at every start.
    pub fn new(engine: QueryEngine, guard: Option<LoopGuard>) -> Self {
        let guard = guard
            .or_else(|| CONFIGURED_SOURCES.get().cloned())
            .unwrap_or_default();
        ReplayService { engine, guard }
    }

    /// The configured guard plus everything the catalog archived, now.
    async fn refresh_guard(&mut self) -> Result<()> {
        let mut guard = CONFIGURED_SOURCES.get().cloned().unwrap_or_default();
        guard.entries.extend(self.guard.entries.iter().cloned());
        guard.add_archived(&self.engine).await?;
        self.guard = guard;
        Ok(())
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
        let mut sizes = SizeCheck::new(spec, &plan, &id).await?;
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
            size_limits: sizes.sizes.map(|sizes| sizes.limits).unwrap_or_default(),
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

    /// Takes a replay over from its checkpoint: after a crash, an interrupt,
    /// a failure, or from another process (which is fenced off).
    pub async fn resume(&self, id: &str) -> Result<ReplayRun> {
        let mut service = self.clone();
        service.refresh_guard().await?;
        service.resume_with_guard(id).await
    }

    async fn resume_with_guard(&self, id: &str) -> Result<ReplayRun> {
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
        let spec = ReplaySpec {
            selection: parse_json(&record.selection, "selection")?,
            target: parse_json(&record.target, "target")?,
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
            .map_err(conflict_or)?;
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
fn plan_destinations(target: &Target, plan: &Plan) -> Vec<String> {
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
    sizes: Option<kafka::TopicSizes>,
    listed: Vec<SkippedEvent>,
    count: i64,
}

impl SizeCheck {
    async fn new(spec: &ReplaySpec, plan: &Plan, replay_id: &str) -> Result<Self> {
        let sizes = match &spec.target {
            Target::Kafka(target) => Some(
                kafka::TopicSizes::ask(
                    target,
                    spec.options.header_rules(Some(replay_id))?,
                    &plan_destinations(&spec.target, plan),
                )
                .await?,
            ),
            Target::Amqp(_) => None,
        };
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

fn skipped_event(event: &Event, destination: &str, excess: SizeExcess) -> SkippedEvent {
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
fn describe_oversized(skipped: &SkippedEvent) -> String {
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
fn with_skip_damaged_hint(error: Error) -> Error {
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

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|error| {
        Error::internal(format!(
            "the recorded {what} of a replay is unreadable: {error}"
        ))
    })
}

/// Time-ordered, so `replay list` and ids sort alike.
fn new_replay_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Later copies of a RabbitMQ message within one (source, topic, partition).
#[derive(Debug, Default)]
struct Dedup {
    partition: Option<(String, String, i32)>,
    seen: HashSet<String>,
}

impl Dedup {
    /// Returns true when the group starts a new partition (the set was cleared).
    fn enter(&mut self, group: &selection::SegmentGroup) -> bool {
        let key = (group.source.clone(), group.topic.clone(), group.partition);
        if self.partition.as_ref() != Some(&key) {
            self.partition = Some(key);
            self.seen.clear();
            return true;
        }
        false
    }

    fn first_copy(&mut self, bus: Bus, event: &Event) -> bool {
        bus != Bus::Amqp || self.seen.insert(event.event_id.clone())
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Completed,
    Cancelled,
    Interrupted,
}

/// A replay ready to run (new or resumed).
pub struct ReplayRun {
    service: ReplayService,
    id: String,
    owner: String,
    spec: ReplaySpec,
    plan: Plan,
    /// What the last checkpoint recorded.
    progress: ReplayProgress,
    details: ReplayDetails,
}

impl std::fmt::Debug for ReplayRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayRun").field("id", &self.id).finish()
    }
}

/// The window being sent.
struct Window {
    sent: usize,
    opened: Instant,
}

impl Window {
    fn open() -> Self {
        Window {
            sent: 0,
            opened: Instant::now(),
        }
    }
}

/// What a checkpoint recorded, and what the user asked for at that moment.
struct Checkpointed {
    progress: ReplayProgress,
    details: ReplayDetails,
    request: ReplayRequest,
}

/// The sending side of a run. `sent` and `details` run ahead of the
/// checkpoints: they count what was sent or skipped, while the run's
/// `progress` is what the last checkpoint recorded. `sealed` is the one
/// window whose confirms and checkpoint may still be pending while `window`
/// is sent. `position` is the row being handled: everything before it was
/// sent or skipped.
struct Pipeline {
    window: Window,
    sent: ReplayProgress,
    details: ReplayDetails,
    sealed: Option<JoinHandle<Result<Checkpointed>>>,
    position: (i64, i64),
    /// The group being sent, for describing positions inside it.
    current: Option<(usize, Arc<Vec<Event>>)>,
    /// A window's confirms ended in an error: its events' fate is unknown.
    confirms_lost: bool,
}

impl Pipeline {
    /// Events handed to the publisher so far (skipped ones are not).
    fn handed_over(progress: &ReplayProgress) -> i64 {
        progress.selected - progress.oversized_skipped
    }
}

/// Records `status` and `progress` under the run's lease (`owner`); returns
/// what the user asks for now (run, pause or cancel).
async fn record_progress(
    catalog: &Catalog,
    id: &str,
    owner: &str,
    status: ReplayStatus,
    progress: &ReplayProgress,
    details: &ReplayDetails,
) -> Result<ReplayRequest> {
    catalog
        .checkpoint_replay(id, owner, status, progress, details, None)
        .await
        .map_err(conflict_or)
}

/// Reads the plan's groups from `first` on, ahead of the sender, through a
/// channel of one: the sender publishes one group while the next is read and
/// decoded, so at most two groups are in memory. Stops at the first error,
/// which it passes on, or when the receiver is dropped.
fn read_ahead(
    store: ArchiveStore,
    groups: Vec<SegmentGroup>,
    first: usize,
    skip_damaged: bool,
) -> mpsc::Receiver<(usize, Result<LoadedGroup>)> {
    let (sender, receiver) = mpsc::channel(1);
    let span = tracing::info_span!("replay_read_ahead");
    tokio::spawn(
        async move {
            for (index, group) in groups.iter().enumerate().skip(first) {
                // Wait for the slot before reading, so that a read group
                // never waits in memory for one.
                let Ok(slot) = sender.reserve().await else {
                    return;
                };
                let loaded = group.load_with(&store, skip_damaged).await;
                let failed = loaded.is_err();
                slot.send((index, loaded));
                if failed {
                    return;
                }
            }
        }
        .instrument(span),
    );
    receiver
}

/// Where a resume at `position` starts: the event there when it is in
/// `current`, else the start of the group there; `None` past the end.
fn resume_point(
    groups: &[SegmentGroup],
    current: Option<&(usize, Arc<Vec<Event>>)>,
    position: (i64, i64),
) -> Option<ResumePoint> {
    let group_index = usize::try_from(position.0).ok()?;
    let row = usize::try_from(position.1).unwrap_or(0);
    if let Some((current_index, events)) = current {
        if *current_index == group_index {
            if let Some(event) = events.get(row) {
                return Some(ResumePoint {
                    source: event.source.clone(),
                    topic: event.topic.clone(),
                    partition: event.partition.unwrap_or(0),
                    offset: event.offset,
                    event_id: Some(event.event_id.clone()),
                });
            }
            return resume_point(groups, None, (position.0 + 1, 0));
        }
    }
    let group = groups.get(group_index)?;
    Some(ResumePoint {
        source: group.source.clone(),
        topic: group.topic.clone(),
        partition: group.partition,
        offset: match group.bus {
            Bus::Kafka => group
                .segments
                .first()
                .map(|record| record.segment.first_offset),
            Bus::Amqp => None,
        },
        event_id: None,
    })
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
        let connected: Result<Box<dyn Publisher>> = match &self.spec.target {
            Target::Kafka(kafka) => {
                let destinations = plan_destinations(&self.spec.target, &self.plan);
                kafka::KafkaPublisher::connect(kafka, rules, &destinations)
                    .await
                    .map(|p| Box::new(p) as Box<dyn Publisher>)
            }
            Target::Amqp(target) => amqp::AmqpPublisher::connect(target, rules)
                .await
                .map(|p| Box::new(p) as Box<dyn Publisher>),
        };
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
                tracing::error!(replay = %self.id, error = %error.message(), published = self.progress.published, resend_on_resume = self.progress.resend_on_resume, "replay failed");
                let _ = catalog
                    .checkpoint_replay(
                        &self.id,
                        &self.owner,
                        ReplayStatus::Failed,
                        &self.progress,
                        &self.details,
                        Some(error.message()),
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
