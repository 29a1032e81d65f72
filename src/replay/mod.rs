//! `hindsight replay`: run, dry-run, resume, list, show, pause and cancel
//! replays, with a progress bar (count, rate, ETA) on stderr.

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Subcommand;
use hindsight_archive::replays::ReplayRequest;
use hindsight_archive::SecretUrl;
use hindsight_connectors::BusConnector;
use hindsight_query::QueryEngine;
use hindsight_replay::publisher::Target;
use hindsight_replay::{LoopGuard, ReplayService};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

mod args;
mod progress;

use args::pairs;
pub use args::RunArgs;
use progress::{execute, status_line};

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
    // Selections by a decoded field (`--json-field`, `--contains`) decode
    // schema-framed payloads as search does.
    let schemas = crate::schemas::open(config, &catalog).await?;
    let engine = QueryEngine::with_schemas(store, catalog, config.query.limits(), schemas)
        .context("cannot start the query engine")?;
    let service = ReplayService::new(
        engine,
        configured_guard(config)?,
        Arc::new(BusConnector::new(config.connections.clone())),
    );
    match command {
        ReplayCommand::DryRun(args) => {
            let report = service.dry_run(&args.spec(&config.connections)?).await?;
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
            let run = service.start(args.spec(&config.connections)?).await?;
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
