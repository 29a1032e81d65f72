//! The `hindsight` binary: configuration, the tokio runtime, signals, and the
//! commands. Library crates return typed errors; this crate adds context with
//! `anyhow` and decides the exit code.

mod archive;
mod config;
mod demo;
mod query;
mod replay;
mod verify;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hindsight_archive::catalog::Catalog;
use hindsight_archive::lease::WriterLease;
use hindsight_archive::store::ArchiveStore;
use hindsight_archive::writer::recover_abandoned;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The glibc malloc settings `hindsight archive` runs with, unless the
/// environment sets `GLIBC_TUNABLES`: at most two arenas, allocations from
/// 256 KiB up mapped on their own (returned to the OS when freed), and the
/// heap trimmed when 4 MiB at its top are free. An ingester frees a whole
/// batch every few seconds; with the defaults that memory stayed resident
/// (BENCHMARKS.md, P8: 310 MiB peak RSS on the P1 data, 177 MiB with these,
/// for about 15% more CPU per event). Queries keep the defaults.
const INGEST_MALLOC_TUNABLES: &str =
    "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=262144:glibc.malloc.trim_threshold=4194304";

/// glibc reads its tunables from the environment once, at start-up, so the
/// process sets them and executes itself again (same pid, same arguments).
/// `execve` keeps the signal mask and pending signals, so a SIGTERM that
/// arrives meanwhile waits for the handlers (see [`hold_shutdown_signals`]);
/// `std::process::Command` would reset the mask and let it kill the process.
/// When the re-execution fails, Hindsight runs with the default settings.
fn tune_allocator_for_ingest() {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt as _;
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let Ok(executable) = std::env::current_exe() else {
        return;
    };
    let text = |bytes: &[u8]| CString::new(bytes).ok();
    let arguments: Option<Vec<CString>> = std::env::args_os()
        .map(|argument| text(argument.as_bytes()))
        .collect();
    let environment: Option<Vec<CString>> = std::env::vars_os()
        .map(|(name, value)| text(&[name.as_bytes(), &b"="[..], value.as_bytes()].concat()))
        .chain(std::iter::once(text(
            format!("GLIBC_TUNABLES={INGEST_MALLOC_TUNABLES}").as_bytes(),
        )))
        .collect();
    let (Some(path), Some(arguments), Some(environment)) = (
        text(executable.as_os_str().as_bytes()),
        arguments,
        environment,
    ) else {
        return;
    };
    // `execve` returns only when it failed.
    let Err(error) = nix::unistd::execve(&path, &arguments, &environment);
    eprintln!("warning: running with the default malloc settings: {error}");
}

/// SIGTERM and SIGINT, blocked from the first instruction of `main` until
/// [`shutdown_token`] has installed their handlers: one that arrives during
/// start-up (or the allocator's re-execution) stays pending and then cancels
/// cleanly, instead of killing the process with the default action.
fn shutdown_signals() -> nix::sys::signal::SigSet {
    let mut signals = nix::sys::signal::SigSet::empty();
    signals.add(nix::sys::signal::Signal::SIGTERM);
    signals.add(nix::sys::signal::Signal::SIGINT);
    signals
}

/// Blocks the shutdown signals in the main thread before any other thread
/// exists, so every thread inherits the mask; only the main thread unblocks
/// them, once the handlers exist. Child processes start with a clean mask
/// (`std::process::Command` resets it).
fn hold_shutdown_signals() {
    if let Err(error) = shutdown_signals().thread_block() {
        eprintln!("warning: cannot hold SIGTERM during start-up: {error}");
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "hindsight",
    version,
    about = "Event archive and replay for Kafka and RabbitMQ"
)]
struct Cli {
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
        /// Only pending segments older than this (e.g. `15m`); default: catalog.pending_grace.
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
    /// Validate the configuration and print it as resolved.
    CheckConfig,
    /// Replay archived events to Kafka or RabbitMQ: run, dry-run, resume, list, show, pause, cancel.
    #[command(subcommand)]
    Replay(replay::ReplayCommand),
}

fn main() -> std::process::ExitCode {
    hold_shutdown_signals();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Archive { .. }) {
        tune_allocator_for_ingest();
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
    let cancel = shutdown_token();
    match cli.command {
        Command::Demo {
            events,
            listen,
            no_serve,
            seed,
        } => {
            if let Some(listen) = listen {
                config.http.listen = listen;
            }
            demo::run(
                &config,
                demo::DemoOptions {
                    events,
                    seed,
                    serve: !no_serve,
                },
                cancel,
            )
            .await
        }
        Command::Archive { metrics_listen } => {
            archive::run(&config, metrics_listen.as_deref(), cancel).await
        }
        Command::Serve { listen } => {
            if let Some(listen) = listen {
                config.http.listen = listen;
            }
            let (store, catalog) = open_archive(&config).await?;
            serve(&config, store, catalog, cancel).await
        }
        Command::Query { sql, format, stats } => {
            query::run(&config, &sql, &format, stats, cancel).await
        }
        Command::Migrate => {
            let catalog = Catalog::open(&config.catalog_url())
                .await
                .context("cannot open the catalog")?;
            println!("catalog at {} is up to date", config.catalog_url());
            catalog.close().await;
            Ok(())
        }
        Command::Repair { grace } => {
            let (store, catalog) = open_archive(&config).await?;
            let grace = grace.unwrap_or(config.catalog.pending_grace);
            let removed = recover_abandoned(&store, &catalog, None, grace).await?;
            println!("removed {removed} abandoned segment(s)");
            Ok(())
        }
        Command::Replay(command) => replay::run(&config, command, cancel).await,
        Command::Verify {
            source,
            since,
            json,
        } => verify::run(&config, source, since, json).await,
        Command::CheckConfig => {
            println!("{}", serde_json::to_string_pretty(&config)?);
            Ok(())
        }
    }
}

/// Opens the store and the catalog (migrating it).
pub async fn open_archive(config: &Config) -> anyhow::Result<(ArchiveStore, Catalog)> {
    let store = ArchiveStore::open(&config.store_config())
        .with_context(|| format!("cannot open the store at {}", config.storage_url()))?;
    let catalog = Catalog::open(&config.catalog_url())
        .await
        .with_context(|| format!("cannot open the catalog at {}", config.catalog_url()))?;
    Ok((store, catalog))
}

/// Takes a writer lease in the catalog and keeps it renewed until
/// [`release_writer_lease`] (the renewal task stops with it).
pub async fn take_writer_lease(
    catalog: &Catalog,
) -> anyhow::Result<(
    WriterLease,
    (CancellationToken, tokio::task::JoinHandle<()>),
)> {
    let lease = WriterLease::acquire(catalog)
        .await
        .context("cannot take a writer lease in the catalog")?;
    let stop = CancellationToken::new();
    let renewing = lease.clone();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        renewing
            .keep_alive(async move { stopped.cancelled().await })
            .await;
    });
    Ok((lease, (stop, task)))
}

/// Stops renewing and releases the lease: the next recovery may remove at
/// once anything this writer left pending.
pub async fn release_writer_lease(
    lease: &WriterLease,
    (stop, task): (CancellationToken, tokio::task::JoinHandle<()>),
) {
    stop.cancel();
    let _ = task.await;
    if let Err(error) = lease.release().await {
        tracing::warn!(error = %error.full_message(), "cannot release the writer lease; it expires on its own");
    }
}

/// Serves the HTTP API until `cancel` fires.
pub async fn serve(
    config: &Config,
    store: ArchiveStore,
    catalog: Catalog,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let address = config.listen_address()?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let local = listener.local_addr()?;
    println!("serving the API and UI on http://{local}/ (Ctrl-C to stop)");
    if local.ip().is_unspecified() && config.http.allowed_hosts.is_empty() {
        println!(
            "listening on every address: requests must name this server by an IP address or \
             localhost; list its other names (DNS, a proxy's) in http.allowed_hosts"
        );
    }
    let engine = hindsight_query::QueryEngine::new(store, catalog, config.query.limits())
        .context("cannot start the query engine")?;
    hindsight_query::replay::register_configured_sources(replay::configured_guard(config)?);
    let state = hindsight_query::http::AppState::new(engine, config.http.options());
    hindsight_query::http::serve(listener, state, cancel).await?;
    Ok(())
}

/// A token cancelled on Ctrl-C or SIGTERM. The handlers are installed before
/// it returns, and only then are the signals held since `main` let through:
/// one that arrived during start-up cancels the token at once.
fn shutdown_token() -> CancellationToken {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let cancel = token.clone();
    let handlers = signal(SignalKind::interrupt())
        .and_then(|interrupt| Ok((interrupt, signal(SignalKind::terminate())?)));
    match handlers {
        Ok((mut interrupt, mut terminate)) => {
            tokio::spawn(async move {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                tracing::info!("shutting down");
                cancel.cancel();
            });
        }
        Err(error) => tracing::error!(%error, "cannot listen for SIGTERM and Ctrl-C"),
    }
    if let Err(error) = shutdown_signals().thread_unblock() {
        tracing::error!(%error, "cannot let SIGTERM and Ctrl-C through");
    }
    token
}
