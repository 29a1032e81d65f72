//! `hindsight compact`, `hindsight retention` and `hindsight erase`, and the
//! background pass of `hindsight archive` (sweep, retention, compaction).

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use hindsight_archive::maintenance::erase::ErasureRequest;
use hindsight_archive::maintenance::{Maintenance, Progress, Scope};
use hindsight_archive::recovery::recover_abandoned;
use hindsight_query::filter::FilterSelection;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Print the jobs a pass would run, and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    topic: Option<String>,
    /// Only hours that ended before this time: RFC 3339, or a duration back
    /// from now (`2h`).
    #[arg(long, value_parser = crate::verify::parse_since)]
    before: Option<i64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Print what the configured retention would remove, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Only this source's rules.
    #[arg(long)]
    source: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct EraseArgs {
    #[arg(long)]
    source: String,
    #[arg(long)]
    topic: Option<String>,
    /// Erase the events with this key (UTF-8).
    #[arg(long)]
    key: Option<String>,
    /// NAME=VALUE: a header the events carry (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Only events with this correlation id.
    #[arg(long)]
    correlation_id: Option<String>,
    /// PATH=VALUE: a JSON field of the payload (repeatable).
    #[arg(long = "json-field")]
    json_fields: Vec<String>,
    /// Text the payload contains.
    #[arg(long)]
    contains: Option<String>,
    /// Count what would be erased, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Erase for real (it cannot be undone).
    #[arg(long)]
    yes: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Who runs a command, for the run records: `user@host`.
pub fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{user}@{host}")
}

/// Opens the archive for maintenance: a writer lease (outputs are staged
/// under it), and recovery of what a killed run left pending.
async fn open(
    config: &Config,
    cancel: &CancellationToken,
) -> anyhow::Result<(
    Maintenance,
    (CancellationToken, tokio::task::JoinHandle<()>),
)> {
    let (store, catalog) = crate::open::open_archive(config).await?;
    let (lease, renewal) = crate::open::take_writer_lease(&catalog).await?;
    recover_abandoned(&store, &catalog, None, config.catalog.pending_grace)
        .await
        .context("cannot clean up after an earlier crash")?;
    let maintenance = Maintenance::new(store, catalog, lease, config.compaction_settings());
    stop_on_cancel(&maintenance, cancel);
    Ok((maintenance, renewal))
}

/// A shutdown stops maintenance at the next input it reads.
fn stop_on_cancel(maintenance: &Maintenance, cancel: &CancellationToken) {
    let stop = Arc::clone(&maintenance.stop);
    let cancel = cancel.clone();
    tokio::spawn(async move {
        cancel.cancelled().await;
        stop.store(true, Ordering::Relaxed);
    });
}

async fn close(
    maintenance: Maintenance,
    renewal: (CancellationToken, tokio::task::JoinHandle<()>),
) {
    crate::open::release_writer_lease(&maintenance.lease, renewal).await;
    maintenance.catalog.close().await;
}

/// A one-line progress bar on stderr, when stderr is a terminal.
pub struct Bar {
    started: Instant,
    terminal: bool,
}

impl Bar {
    pub fn new() -> Self {
        Bar {
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    pub fn show(&self, what: &str, done: u64, total: u64, extra: &str) {
        if !self.terminal || total == 0 {
            return;
        }
        let width = 30;
        let filled = (done.min(total) * width / total) as usize;
        let mut stderr = std::io::stderr();
        let _ = write!(
            stderr,
            "\r{what} [{}{}] {done}/{total} {extra} {:.0}s\x1b[K",
            "#".repeat(filled),
            "-".repeat(width as usize - filled),
            self.started.elapsed().as_secs_f64()
        );
        if done >= total {
            let _ = writeln!(stderr);
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub async fn compact(
    config: &Config,
    args: CompactArgs,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let (maintenance, renewal) = open(config, &cancel).await?;
    let scope = Scope {
        source: args.source,
        topic: args.topic,
        before: args.before,
    };
    let bar = Bar::new();
    let mut progress = |state: Progress| {
        let extra = format!(
            "jobs, {:.1}/{:.1} MiB",
            mib(state.bytes_done),
            mib(state.bytes)
        );
        bar.show("compacting", state.jobs_done, state.jobs, &extra);
    };
    if !args.dry_run {
        let deleted = maintenance
            .sweep()
            .await
            .context("cannot delete retired segments")?;
        if deleted > 0 && !args.json {
            println!("deleted {deleted} retired segment object(s) past compaction.grace");
        }
    }
    let result = match maintenance.plan_compaction(&scope).await {
        Ok(jobs) => {
            if args.dry_run && !args.json {
                for job in &jobs {
                    let bucket = &job.bucket;
                    println!(
                        "would merge {} segment(s) ({} events, {:.1} MiB) of {}/{} partition {} {} starting {}",
                        job.inputs.len(),
                        job.rows(),
                        mib(job.bytes() as u64),
                        bucket.source,
                        bucket.topic,
                        bucket.partition,
                        if bucket.is_day() { "day" } else { "hour" },
                        rfc3339(bucket.start),
                    );
                }
            }
            maintenance
                .compact_planned(&scope, jobs, args.dry_run, Some(actor()), &mut progress)
                .await
        }
        Err(error) => Err(error),
    };
    close(maintenance, renewal).await;
    let report = result.context("compaction failed")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.dry_run {
        println!(
            "dry run: {} job(s) would merge {} segments ({} events, {:.1} MiB)",
            report.jobs,
            report.segments_in,
            report.rows,
            mib(report.bytes_in)
        );
    } else {
        println!(
            "compacted {} segments ({} events, {:.1} MiB) into {} ({:.1} MiB) in {:.1} s; {} job(s) left to another process, {} failed",
            report.segments_in,
            report.rows,
            mib(report.bytes_in),
            report.segments_out,
            mib(report.bytes_out),
            report.seconds,
            report.jobs_skipped,
            report.jobs_failed,
        );
    }
    if report.jobs_failed > 0 {
        bail!(
            "{} compaction job(s) failed; their inputs are kept (see the log)",
            report.jobs_failed
        );
    }
    Ok(())
}

pub async fn retention(
    config: &Config,
    args: RetentionArgs,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let rules = config.retention_rules();
    if rules.is_empty() {
        bail!("no retention is configured: add [retention.SOURCE] keep = \"400d\" to the configuration");
    }
    let (maintenance, renewal) = open(config, &cancel).await?;
    let result = maintenance
        .apply_retention(&rules, args.source.as_deref(), args.dry_run, Some(actor()))
        .await;
    close(maintenance, renewal).await;
    let report = result.context("retention failed")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    for uri in &report.segment_uris {
        println!(
            "{} {uri}",
            if report.dry_run {
                "would remove"
            } else {
                "removed"
            }
        );
    }
    println!(
        "{}{} segment(s), {} events, {:.1} MiB{}",
        if report.dry_run {
            "dry run: would remove "
        } else {
            "removed "
        },
        report.segments,
        report.rows,
        mib(report.bytes),
        if report.dry_run {
            ""
        } else {
            "; their objects are deleted after compaction.grace"
        },
    );
    Ok(())
}

pub async fn erase(
    config: &Config,
    args: EraseArgs,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    if !args.dry_run && !args.yes {
        bail!(
            "erase cannot be undone: run it with --dry-run to see what it removes, then with --yes"
        );
    }
    let selection = FilterSelection {
        source: Some(args.source.clone()),
        topic: args.topic.clone(),
        key: args.key.clone(),
        headers: args.headers.clone(),
        contains: args.contains.clone(),
        correlation_id: args.correlation_id.clone(),
        json: args.json_fields.clone(),
        ..FilterSelection::default()
    };
    if selection.key.is_none()
        && selection.headers.is_empty()
        && selection.contains.is_none()
        && selection.correlation_id.is_none()
        && selection.json.is_empty()
    {
        bail!("say which events to erase: --key, --header, --json-field, --correlation-id or --contains");
    }
    let filter = selection
        .compile()
        .map_err(|error| anyhow::anyhow!("{}", error.message()))?;
    let description = filter.to_sql();
    let request = ErasureRequest {
        source: args.source.clone(),
        topic: args.topic.clone(),
        description,
        matches: Arc::new(move |event| filter.matches(event)),
    };
    let (maintenance, renewal) = open(config, &cancel).await?;
    let bar = Bar::new();
    let mut progress = |done: u64, total: u64| bar.show("scanning", done, total, "segments");
    let result = maintenance
        .erase(&request, args.dry_run, Some(actor()), &mut progress)
        .await;
    close(maintenance, renewal).await;
    let report = result.context("erasure failed; every segment it did not finish is unchanged")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} {} event(s) in {} of {} segment(s){}",
        if report.dry_run {
            "dry run: would erase"
        } else {
            "erased"
        },
        report.events,
        report.segments.len(),
        report.segments_scanned,
        if report.dry_run {
            String::new()
        } else {
            format!(
                "; run {} is recorded; the old objects are deleted after compaction.grace ({})",
                report.run_id,
                humantime::format_duration(config.compaction.grace)
            )
        },
    );
    Ok(())
}

fn rfc3339(micros: i64) -> String {
    let since_epoch = std::time::Duration::from_micros(u64::try_from(micros).unwrap_or(0));
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + since_epoch).to_string()
}

/// The background pass of `hindsight archive`: every `compaction.interval`,
/// delete retired objects past the grace, apply retention, then compact
/// (one job at a time). Stops at the next input when `cancel` fires.
pub fn spawn_background(
    config: &Config,
    maintenance: Maintenance,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    stop_on_cancel(&maintenance, &cancel);
    let interval = config.compaction.interval;
    let compaction = config.compaction.enabled;
    let rules = config.retention_rules();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(error) = maintenance.sweep().await {
                tracing::warn!(error = %error.full_message(), "cannot delete retired segments yet");
            }
            if !rules.is_empty() {
                match maintenance
                    .apply_retention(&rules, None, false, Some("hindsight archive".to_owned()))
                    .await
                {
                    Ok(report) if report.segments > 0 => {
                        tracing::info!(
                            segments = report.segments,
                            events = report.rows,
                            "retention removed expired segments"
                        );
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(error = %error.full_message(), "retention failed; it runs again next pass")
                    }
                }
            }
            if compaction && !cancel.is_cancelled() {
                match maintenance
                    .compact(
                        &Scope::default(),
                        false,
                        Some("hindsight archive".to_owned()),
                        &mut |_| {},
                    )
                    .await
                {
                    Ok(report) if report.segments_in > 0 => tracing::info!(
                        segments_in = report.segments_in,
                        segments_out = report.segments_out,
                        bytes_in = report.bytes_in,
                        bytes_out = report.bytes_out,
                        seconds = report.seconds,
                        "compacted closed hours"
                    ),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(error = %error.full_message(), "compaction pass failed; it runs again next pass")
                    }
                }
            }
        }
    })
}
