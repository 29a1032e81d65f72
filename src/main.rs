//! The `hindsight` binary: the CLI, configuration, the tokio runtime,
//! signals, and one module per command. Library crates return typed errors;
//! this crate adds context with `anyhow` and decides the exit code.

mod access;
mod archive;
mod check_config;
mod completions;
mod config;
mod demo;
mod maintenance;
mod migrate;
mod open;
mod process;
mod query;
mod repair;
mod replay;
mod schemas;
mod serve;
mod tables;
mod verify;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "hindsight",
    version,
    about = "Event archive and replay for Kafka and RabbitMQ"
)]
pub struct Cli {
    /// TOML configuration file. `HINDSIGHT__SECTION__KEY` variables override it.
    #[arg(long, global = true, env = "HINDSIGHT_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory for the local store and the SQLite catalog.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a realistic order flow, archive it, then serve the API and UI.
    Demo {
        /// How many events to generate.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Address to serve on (overrides http.listen).
        #[arg(long)]
        listen: Option<String>,
        /// Archive, print the summary and exit without serving.
        #[arg(long)]
        no_serve: bool,
        /// Seed of the generator; the same seed gives the same stream.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Archive every configured source until Ctrl-C or SIGTERM.
    Archive {
        /// Serve `/metrics` (Prometheus) and `/healthz` on this address.
        #[arg(long)]
        metrics_listen: Option<String>,
    },
    /// Serve the HTTP API and UI over the archive.
    Serve {
        /// Address to serve on (overrides http.listen).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run one read-only SQL query over the archive and print the result.
    ///
    /// Tables: events (with payload_text), events_dedup, events_raw, segments.
    Query {
        /// The SQL statement, e.g. "SELECT topic, count(*) FROM events GROUP BY topic",
        /// or `-` to read it from standard input.
        sql: String,
        /// Output: table (for people), json, ndjson, csv, parquet or arrow (for tools).
        #[arg(long, default_value = "table")]
        format: String,
        /// Print how many segments were scanned, rows and time to stderr.
        #[arg(long)]
        stats: bool,
    },
    /// Apply catalog migrations and exit.
    Migrate,
    /// Remove segments that crashed writers left pending, and staging files.
    Repair {
        /// Only what is older than this (e.g. `15m`); default: catalog.pending_grace.
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: Option<Duration>,
    },
    /// Check every committed segment in the store against the catalog (size,
    /// checksum, pages) and report each damaged or missing one. Exits non-zero
    /// when any is found.
    Verify {
        /// Only this source's segments.
        #[arg(long)]
        source: Option<String>,
        /// Only segments holding events at or after this time: RFC 3339, or a
        /// duration back from now (`24h`).
        #[arg(long, value_parser = verify::parse_since)]
        since: Option<i64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete retired segment objects past the grace, then merge the segments
    /// of closed hours (and quiet days) into few large ones at the cold zstd
    /// level; `hindsight archive` does both in the background.
    Compact(maintenance::CompactArgs),
    /// The archive as Iceberg tables (one per source and topic), read by
    /// Spark, Trino and PyIceberg through the SQL catalog in the catalog
    /// database.
    #[command(subcommand)]
    Table(tables::TableCommand),
    /// The schemas that decode Avro, Protobuf and JSON Schema payloads,
    /// kept in the catalog so events decode after their registry is gone.
    #[command(subcommand)]
    Schemas(schemas::SchemasCommand),
    /// API tokens: each has a name, a role (viewer, analyst, operator,
    /// admin) and a scope of sources and topics; only its hash is stored.
    #[command(subcommand)]
    Token(access::TokenCommand),
    /// The audit trail: every SQL statement, search, event fetch, replay
    /// and token change, with who, when, from where and how much.
    Audit(access::AuditArgs),
    /// Remove the segments older than the configured `[retention.SOURCE]`.
    Retention(maintenance::RetentionArgs),
    /// Erase events (a data-protection request): rewrites every segment
    /// holding them without them, and records who, when and the filter.
    Erase(maintenance::EraseArgs),
    /// Validate the configuration and print it as resolved (secrets redacted).
    CheckConfig {
        /// Instead, connect with each named connection (and each source's
        /// own brokers or URL) once and report, one line each; exits
        /// non-zero when one fails.
        #[arg(long)]
        connect: bool,
    },
    /// Replay archived events to Kafka or RabbitMQ: run, dry-run, resume, list, show, pause, cancel.
    #[command(subcommand)]
    Replay(replay::ReplayCommand),
    /// Print a shell completion script: `hindsight completions bash > /etc/bash_completion.d/hindsight`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn main() -> std::process::ExitCode {
    process::hold_shutdown_signals();
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        return match completions::print(shell) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: cannot write the completion script: {error}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if matches!(cli.command, Command::Archive { .. }) {
        process::tune_allocator_for_ingest();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("HINDSIGHT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: a log file or a pipe gets plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Blocking work still running (a broker client that will not close) must
    // not keep the process alive: everything durable is committed by now.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(data_dir) = cli.data_dir {
        config.data_dir = data_dir;
    }
    let problems = config.validate();
    if !problems.is_empty() {
        bail!("invalid configuration:\n  {}", problems.join("\n  "));
    }
    let cancel = process::shutdown_token();
    // Commands that read or change what the archive holds are audited like
    // their HTTP counterparts (`hindsight audit`).
    let audited = match &cli.command {
        Command::Query { .. } => Some("cli.query"),
        Command::Replay(_) => Some("cli.replay"),
        Command::Compact(_) => Some("cli.compact"),
        Command::Retention(_) => Some("cli.retention"),
        Command::Erase(_) => Some("cli.erase"),
        _ => None,
    };
    let result = dispatch(cli.command, &mut config, cancel).await;
    if let Some(action) = audited {
        access::audit_command(&config, action, result.is_ok()).await;
    }
    result
}

async fn dispatch(
    command: Command,
    config: &mut Config,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    match command {
        Command::Demo {
            events,
            listen,
            no_serve,
            seed,
        } => {
            if let Some(listen) = listen {
                config.http.listen = listen;
            }
            let options = demo::DemoOptions {
                events,
                seed,
                serve: !no_serve,
            };
            demo::run(config, options, cancel).await
        }
        Command::Archive { metrics_listen } => {
            archive::run(config, metrics_listen.as_deref(), cancel).await
        }
        Command::Serve { listen } => {
            if let Some(listen) = listen {
                config.http.listen = listen;
            }
            let (store, catalog) = open::open_archive(config).await?;
            serve::serve(config, store, catalog, cancel).await
        }
        Command::Query { sql, format, stats } => {
            query::run(config, &sql, &format, stats, cancel).await
        }
        Command::Migrate => migrate::run(config).await,
        Command::Repair { grace } => repair::run(config, grace).await,
        Command::Replay(command) => replay::run(config, command, cancel).await,
        Command::Verify {
            source,
            since,
            json,
        } => verify::run(config, source, since, json).await,
        Command::Compact(args) => maintenance::compact(config, args, cancel).await,
        Command::Retention(args) => maintenance::retention(config, args, cancel).await,
        Command::Table(command) => tables::run(config, command, cancel).await,
        Command::Schemas(command) => schemas::run(config, command).await,
        Command::Token(command) => access::token(config, command).await,
        Command::Audit(args) => access::audit(config, args).await,
        Command::Erase(args) => maintenance::erase(config, args, cancel).await,
        Command::CheckConfig { connect: false } => check_config::run(config),
        Command::CheckConfig { connect: true } => check_config::connect(config).await,
        Command::Completions { .. } => Ok(()),
    }
}
