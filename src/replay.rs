//! `hindsight replay`: run, dry-run, resume, list, show, pause and cancel
//! replays, with a progress bar (count, rate, ETA) on stderr.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use hindsight_archive::replays::{ReplayRequest, ReplayStatus};
use hindsight_archive::SecretUrl;
use hindsight_connectors::BusConnector;
use hindsight_query::filter::FilterSelection;
use hindsight_query::QueryEngine;
use hindsight_replay::publisher::{AmqpTarget, KafkaTarget, Partitioning, Target};
use hindsight_replay::{
    LiveProgress, LoopGuard, OversizedPolicy, ReplayOptions, ReplayRun, ReplayService, ReplaySpec,
    ReplayView, Selection,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// Publish a selection of archived events to Kafka or RabbitMQ.
    Run(Box<RunArgs>),
    /// Count what `run` would publish, per target, with a sample; publishes nothing.
    DryRun(Box<RunArgs>),
    /// Continue a replay from its checkpoint (after a crash, Ctrl-C or a failure).
    ///
    /// Credentials are never stored with a replay: a target that had some
    /// needs them again (`--amqp URL`, or the secret `--kafka-property` flags).
    Resume {
        id: String,
        /// Print the final record as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// The RabbitMQ target's URL again, with its password.
        #[arg(long)]
        amqp: Option<String>,
        /// The Kafka target's secret properties again (`sasl.password=…`).
        #[arg(long = "kafka-property")]
        kafka_properties: Vec<String>,
    },
    /// The latest replays, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One replay's record and progress, as JSON.
    Show { id: String },
    /// Ask a running replay to pause at its next checkpoint.
    Pause { id: String },
    /// Ask a paused replay to continue.
    Continue { id: String },
    /// Cancel a replay (it stops at its next checkpoint).
    Cancel { id: String },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    // Selection.
    /// Read-only SQL returning an event_id column (instead of the filters below).
    #[arg(long)]
    sql: Option<String>,
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    topic: Option<String>,
    #[arg(long)]
    partition: Option<i32>,
    /// Events at or after this time (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Events before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    key: Option<String>,
    /// NAME=VALUE: a header that must be present (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Text the payload must contain.
    #[arg(long)]
    contains: Option<String>,
    /// PATH=VALUE: a JSON field of the payload (repeatable).
    #[arg(long = "json-field")]
    json_fields: Vec<String>,

    // Target.
    /// Kafka bootstrap servers: replay to Kafka.
    #[arg(long, conflicts_with = "amqp")]
    kafka: Option<String>,
    /// RabbitMQ URL: replay to RabbitMQ.
    #[arg(long)]
    amqp: Option<String>,
    /// Kafka: send every event to this topic.
    #[arg(long)]
    to_topic: Option<String>,
    /// Kafka: FROM=TO topic mapping (repeatable).
    #[arg(long = "map-topic")]
    map_topic: Vec<String>,
    /// Kafka: preserve (source partition mod count, the default), same, or key.
    #[arg(long, default_value = "preserve")]
    partitioning: String,
    /// Kafka: keep the archived event time as the record timestamp.
    #[arg(long)]
    keep_timestamp: bool,
    /// Kafka: NAME=VALUE librdkafka producer property (repeatable).
    #[arg(long = "kafka-property")]
    kafka_properties: Vec<String>,
    /// RabbitMQ: send every event to this exchange.
    #[arg(long)]
    to_exchange: Option<String>,
    /// RabbitMQ: FROM=TO exchange mapping (repeatable).
    #[arg(long = "map-exchange")]
    map_exchange: Vec<String>,
    /// RabbitMQ: override every routing key.
    #[arg(long)]
    routing_key: Option<String>,

    // Options.
    /// Events per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Payload bytes per second.
    #[arg(long)]
    bytes_rate: Option<f64>,
    /// Reproduce the original gaps between events, N times as fast.
    #[arg(long)]
    pace: Option<f64>,
    /// Do not add the hindsight-* provenance headers.
    #[arg(long)]
    no_provenance: bool,
    /// Remove headers of this name; a trailing * matches a prefix (repeatable).
    #[arg(long = "strip-header")]
    strip_headers: Vec<String>,
    /// NAME=VALUE: set a header (repeatable).
    #[arg(long = "set-header")]
    set_headers: Vec<String>,
    /// Allow replaying into topics or exchanges that this Hindsight archives.
    #[arg(long)]
    allow_loop: bool,
    /// Keep redelivered copies of RabbitMQ messages.
    #[arg(long)]
    no_dedup: bool,
    /// Events per confirmed window (checkpoint interval).
    #[arg(long, default_value_t = 10_000)]
    window: usize,
    /// Events a dry-run shows.
    #[arg(long, default_value_t = 5)]
    sample: usize,
    /// An event larger than its target accepts: stop before it, or skip it
    /// (listed in the record).
    #[arg(long, default_value = "stop")]
    oversized: String,
    /// Leave out segments that cannot be read (listed in the record)
    /// instead of failing.
    #[arg(long)]
    skip_damaged: bool,
    /// Print the result as JSON on stdout (status lines go to stderr).
    #[arg(long)]
    json: bool,
}

fn pairs(flag: &str, values: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    values
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((from, to)) if !from.is_empty() && !to.is_empty() => {
                Ok((from.to_owned(), to.to_owned()))
            }
            _ => bail!("--{flag} {pair:?} must be FROM=TO"),
        })
        .collect()
}

impl RunArgs {
    fn spec(&self) -> anyhow::Result<ReplaySpec> {
        let selection = match &self.sql {
            Some(sql) => Selection::Sql { sql: sql.clone() },
            None => Selection::Filter(FilterSelection {
                source: self.source.clone(),
                topic: self.topic.clone(),
                topics: Vec::new(),
                partition: self.partition,
                from: self.from.clone(),
                to: self.to.clone(),
                key: self.key.clone(),
                headers: self.headers.clone(),
                contains: self.contains.clone(),
                json: self.json_fields.clone(),
            }),
        };
        let target = match (&self.kafka, &self.amqp) {
            (Some(brokers), None) => Target::Kafka(KafkaTarget {
                brokers: brokers.clone(),
                topic: self.to_topic.clone(),
                topic_map: pairs("map-topic", &self.map_topic)?,
                partitioning: match self.partitioning.as_str() {
                    "preserve" => Partitioning::Preserve,
                    "same" => Partitioning::Same,
                    "key" => Partitioning::Key,
                    other => bail!("--partitioning {other:?}: use preserve, same or key"),
                },
                keep_timestamp: self.keep_timestamp,
                client: pairs("kafka-property", &self.kafka_properties)?
                    .into_iter()
                    .collect(),
            }),
            (None, Some(url)) => Target::Amqp(AmqpTarget {
                url: SecretUrl::new(url.clone()),
                exchange: self.to_exchange.clone(),
                exchange_map: pairs("map-exchange", &self.map_exchange)?,
                routing_key: self.routing_key.clone(),
            }),
            _ => bail!("give a target: --kafka BROKERS or --amqp URL"),
        };
        Ok(ReplaySpec {
            selection,
            target,
            options: ReplayOptions {
                rate: self.rate,
                bytes_rate: self.bytes_rate,
                pace: self.pace,
                provenance: !self.no_provenance,
                strip_headers: self.strip_headers.clone(),
                set_headers: self.set_headers.clone(),
                allow_loop: self.allow_loop,
                dedup: !self.no_dedup,
                window: self.window,
                sample: self.sample,
                oversized: match self.oversized.as_str() {
                    "stop" => OversizedPolicy::Stop,
                    "skip" => OversizedPolicy::Skip,
                    other => bail!("--oversized {other:?}: use stop or skip"),
                },
                skip_damaged: self.skip_damaged,
            },
        })
    }
}

/// The topics and exchanges the configured sources archive.
pub fn configured_guard(config: &Config) -> anyhow::Result<LoopGuard> {
    let mut guard = LoopGuard::default();
    for section in &config.sources {
        let source = section.config();
        let (names, pattern) = source.archived_names();
        for name in &names {
            guard.add(source.bus(), name, source.name());
        }
        if let Some(pattern) = &pattern {
            guard.add_pattern(pattern, source.name())?;
        }
    }
    Ok(guard)
}

pub async fn run(
    config: &Config,
    command: ReplayCommand,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let (store, catalog) = crate::open::open_archive(config).await?;
    let engine = QueryEngine::new(store, catalog, config.query.limits())
        .context("cannot start the query engine")?;
    let service = ReplayService::new(engine, configured_guard(config)?, Arc::new(BusConnector));
    match command {
        ReplayCommand::DryRun(args) => {
            let report = service.dry_run(&args.spec()?).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "dry-run {}: {} events, {} bytes, {} to {}, from {} segment(s); nothing was published",
                    report.id,
                    report.totals.events,
                    report.totals.bytes,
                    report.totals.first_event_time.as_deref().unwrap_or("-"),
                    report.totals.last_event_time.as_deref().unwrap_or("-"),
                    report.segments,
                );
                for (target, totals) in &report.by_target {
                    println!(
                        "  -> {target}: {} events, {} bytes",
                        totals.events, totals.bytes
                    );
                }
                if report.duplicates_skipped > 0 {
                    println!("  {} redelivered copies skipped", report.duplicates_skipped);
                }
                for (topic, limit) in &report.size_limits {
                    println!("  {topic} accepts {} bytes ({})", limit.bytes, limit.from);
                }
                if report.oversized_count > 0 {
                    println!(
                        "  {} event(s) too large for their target (not counted above)",
                        report.oversized_count
                    );
                }
                for event in &report.oversized {
                    println!(
                        "  too large: event {} ({} bytes) for {} (at most {} bytes)",
                        event.event_id, event.size, event.destination, event.limit
                    );
                }
                for segment in &report.damaged_segments {
                    println!(
                        "  damaged segment skipped: {} ({} rows): {}",
                        segment.uri, segment.rows, segment.error
                    );
                }
                for problem in &report.problems {
                    println!("  refused: {problem}");
                }
                for sample in &report.sample {
                    println!("  sample: {}", serde_json::to_string(sample)?);
                }
            }
            Ok(())
        }
        ReplayCommand::Run(args) => {
            let run = service.start(args.spec()?).await?;
            status_line(args.json, &format!("replay {} started", run.id()));
            execute(&service, run, cancel, args.json).await
        }
        ReplayCommand::Resume {
            id,
            json,
            amqp,
            kafka_properties,
        } => {
            let credentials = credentials(&service, &id, amqp, &kafka_properties).await?;
            let run = service.resume(&id, credentials.as_ref()).await?;
            status_line(json, &format!("replay {} resumed", run.id()));
            execute(&service, run, cancel, json).await
        }
        ReplayCommand::List { limit } => {
            for view in service.list(limit).await? {
                println!(
                    "{}  {:<11} {}  planned {:>9}  published {:>9}  failed {:>6}",
                    view.id,
                    serde_json::to_value(view.status)?
                        .as_str()
                        .unwrap_or_default(),
                    view.created_at.as_deref().unwrap_or("-"),
                    view.planned,
                    view.progress.published,
                    view.progress.failed,
                );
            }
            Ok(())
        }
        ReplayCommand::Show { id } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&service.get(&id).await?)?
            );
            Ok(())
        }
        ReplayCommand::Pause { id } => control(&service, &id, ReplayRequest::Pause).await,
        ReplayCommand::Continue { id } => control(&service, &id, ReplayRequest::Run).await,
        ReplayCommand::Cancel { id } => control(&service, &id, ReplayRequest::Cancel).await,
    }
}

/// The replay's stored target with the credentials given on the command
/// line; `None` when none were given.
async fn credentials(
    service: &ReplayService,
    id: &str,
    amqp: Option<String>,
    kafka_properties: &[String],
) -> anyhow::Result<Option<Target>> {
    if amqp.is_none() && kafka_properties.is_empty() {
        return Ok(None);
    }
    let mut target = service.stored_target(id).await?;
    match (&mut target, amqp) {
        (Target::Amqp(stored), Some(url)) if kafka_properties.is_empty() => {
            stored.url = SecretUrl::new(url);
        }
        (Target::Kafka(stored), None) => {
            stored
                .client
                .extend(pairs("kafka-property", kafka_properties)?);
        }
        (Target::Amqp(_), _) => bail!("replay {id} sends to RabbitMQ: give its URL with --amqp"),
        (Target::Kafka(_), Some(_)) => {
            bail!("replay {id} sends to Kafka: give its secret properties with --kafka-property")
        }
    }
    Ok(Some(target))
}

async fn control(service: &ReplayService, id: &str, request: ReplayRequest) -> anyhow::Result<()> {
    let view = service.request(id, request).await?;
    println!(
        "replay {id}: {} requested (status {})",
        request.as_str(),
        serde_json::to_value(view.status)?
            .as_str()
            .unwrap_or_default()
    );
    Ok(())
}

/// A status line: on stdout, or on stderr when stdout holds JSON.
fn status_line(json: bool, line: &str) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// What was skipped, and where a resume starts, as lines for people.
fn accounting_lines(view: &ReplayView) -> Vec<String> {
    let progress = &view.progress;
    let mut lines = Vec::new();
    if progress.oversized_skipped > 0 {
        lines.push(format!(
            "{} event(s) too large for the target skipped",
            progress.oversized_skipped
        ));
    }
    for event in &view.details.oversized {
        lines.push(format!(
            "  skipped event {} ({} bytes; {} accepts {})",
            event.event_id, event.size, event.destination, event.limit
        ));
    }
    if progress.damaged_segments_skipped > 0 {
        lines.push(format!(
            "{} damaged segment(s) skipped, {} rows",
            progress.damaged_segments_skipped, progress.damaged_rows_skipped
        ));
    }
    for segment in &view.details.damaged_segments {
        lines.push(format!(
            "  skipped segment {} ({} rows)",
            segment.uri, segment.rows
        ));
    }
    if view.status != ReplayStatus::Completed && view.status != ReplayStatus::Cancelled {
        let at = match &view.details.resume_at {
            Some(point) => {
                let mut at = format!(
                    "source {:?}, topic {:?}, partition {}",
                    point.source, point.topic, point.partition
                );
                if let Some(offset) = point.offset {
                    at.push_str(&format!(", offset {offset}"));
                }
                if let Some(event_id) = &point.event_id {
                    at.push_str(&format!(", event {event_id}"));
                }
                at
            }
            None if progress.position_group == 0 && progress.position_row == 0 => {
                "the beginning".to_owned()
            }
            None => "the end".to_owned(),
        };
        lines.push(format!(
            "{} published, {} refused; hindsight replay resume {} starts at {at}, \
             and may send {} event(s) a second time",
            progress.published, progress.failed, view.id, progress.resend_on_resume
        ));
    }
    lines
}

async fn execute(
    service: &ReplayService,
    run: ReplayRun,
    cancel: CancellationToken,
    json: bool,
) -> anyhow::Result<()> {
    let id = run.id().to_owned();
    let (sender, receiver) = watch::channel(LiveProgress {
        planned: run.planned(),
        ..Default::default()
    });
    let started = Instant::now();
    let bar = tokio::spawn(progress_bar(receiver, started));
    let result = run.execute(cancel, Some(sender)).await;
    let _ = bar.await;
    let view: ReplayView = match result {
        Ok(view) => view,
        Err(error) => {
            // The record counts what the broker confirmed before the failure.
            if let Ok(view) = service.get(&id).await {
                if json {
                    println!("{}", serde_json::to_string_pretty(&view)?);
                }
                for line in accounting_lines(&view) {
                    eprintln!("{line}");
                }
            }
            return Err(error.into());
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    }
    for line in accounting_lines(&view) {
        status_line(json, &line);
    }
    let progress = view.progress;
    let seconds = started.elapsed().as_secs_f64().max(0.001);
    match view.status {
        ReplayStatus::Completed if progress.failed == 0 => {
            status_line(
                json,
                &format!(
                    "replay {id} completed: {} published, {} bytes, in {seconds:.1} s",
                    progress.published, progress.bytes
                ),
            );
            Ok(())
        }
        ReplayStatus::Completed => bail!(
            "replay {id} completed, but {} of {} events were not delivered: {}",
            progress.failed,
            progress.selected,
            view.error.as_deref().unwrap_or("see the log")
        ),
        ReplayStatus::Cancelled => {
            status_line(
                json,
                &format!("replay {id} cancelled after {} events", progress.published),
            );
            Ok(())
        }
        ReplayStatus::Interrupted => bail!(
            "replay {id} interrupted after {} events; continue it with: hindsight replay resume {id}",
            progress.published
        ),
        other => bail!("replay {id} ended as {}", other.as_str()),
    }
}

/// Count, rate and ETA on stderr: redrawn on a terminal, a line every 5 s otherwise.
async fn progress_bar(mut receiver: watch::Receiver<LiveProgress>, started: Instant) {
    let terminal = std::io::stderr().is_terminal();
    let interval = if terminal {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(5)
    };
    let mut first_published: Option<i64> = None;
    loop {
        let changed = tokio::time::timeout(interval, receiver.changed()).await;
        let live = *receiver.borrow();
        let done = matches!(changed, Ok(Err(_)))
            || live
                .status
                .is_some_and(|s| s != ReplayStatus::Running && s != ReplayStatus::Paused);
        let published = live.progress.published;
        let base = *first_published.get_or_insert(published);
        let elapsed = started.elapsed().as_secs_f64().max(0.001);
        let rate = (published - base) as f64 / elapsed;
        let remaining =
            (live.planned - live.progress.selected - live.progress.duplicates_skipped).max(0);
        let eta = if rate > 0.0 {
            format!("{:.0}s", remaining as f64 / rate)
        } else {
            "-".to_owned()
        };
        let fraction = if live.planned > 0 {
            (published as f64 / live.planned as f64).clamp(0.0, 1.0)
        } else {
            1.0
        };
        let filled = (fraction * 30.0) as usize;
        let paused = if live.status == Some(ReplayStatus::Paused) {
            " paused"
        } else {
            ""
        };
        let line = format!(
            "[{}{}] {published}/{} {rate:.0}/s ETA {eta}{paused}",
            "#".repeat(filled),
            ".".repeat(30 - filled),
            live.planned,
        );
        let mut stderr = std::io::stderr();
        if terminal {
            let _ = write!(stderr, "\r{line}\x1b[K");
            if done {
                let _ = writeln!(stderr);
            }
        } else if changed.is_err() || done {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
        if done {
            return;
        }
    }
}
