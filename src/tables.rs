//! `hindsight table sync`, and the background pass of `hindsight archive`
//! that keeps the Iceberg tables in step every `tables.max_lag`.

use anyhow::Context;
use clap::Subcommand;
use hindsight_archive::catalog::Catalog;
use hindsight_archive::lease::WriterLease;
use hindsight_archive::store::ArchiveStore;
use hindsight_archive::tables::{SyncProgress, TableSync};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::maintenance::Bar;

#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Bring every table (namespace = source, table = topic) in step with
    /// the catalog: one snapshot per table that changed. Idempotent.
    Sync {
        /// Only this source's tables.
        #[arg(long)]
        source: Option<String>,
        /// Print one JSON object per table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(
    config: &Config,
    command: TableCommand,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let TableCommand::Sync { source, json } = command;
    let (store, catalog) = crate::open::open_archive(config).await?;
    let (lease, renewal) = crate::open::take_writer_lease(&catalog).await?;
    let sync = TableSync::new(store, catalog.clone(), config.table_settings(), lease.id());
    let bar = Bar::new();
    let mut progress = |state: SyncProgress| {
        let extra = format!("tables, {}/{} footers", state.files_done, state.files);
        bar.show("syncing tables", state.tables_done, state.tables, &extra);
    };
    let result = tokio::select! {
        result = sync.sync(source.as_deref(), &mut progress) => Some(result),
        () = cancel.cancelled() => None,
    };
    crate::open::release_writer_lease(&lease, renewal).await;
    catalog.close().await;
    let Some(result) = result else {
        anyhow::bail!("table sync interrupted; every table is at its last commit, run it again");
    };
    let reports = result.context("table sync failed")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    if reports.is_empty() {
        println!("no tables: the archive holds no committed segments yet");
    }
    for report in &reports {
        let state = if report.skipped {
            "skipped: another process is syncing it".to_owned()
        } else if report.changed {
            format!(
                "snapshot {} (+{} -{} files)",
                report.snapshot_id.unwrap_or_default(),
                report.added_files,
                report.removed_files
            )
        } else {
            "unchanged".to_owned()
        };
        println!(
            "{}.{}: {state}; {} files, {} events",
            report.namespace, report.table, report.total_files, report.total_records
        );
    }
    Ok(())
}

/// Syncs every table every half `tables.max_lag`, so a table lags the
/// catalog by at most about `max_lag`. Stops when `cancel` fires (a sync
/// cut short leaves every table at its last commit).
pub fn spawn_background(
    config: &Config,
    store: ArchiveStore,
    catalog: Catalog,
    lease: &WriterLease,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let interval = config.tables.max_lag / 2;
    let sync = TableSync::new(store, catalog, config.table_settings(), lease.id());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
            let mut quiet = |_: SyncProgress| {};
            let pass = sync.sync(None, &mut quiet);
            let result = tokio::select! {
                result = pass => result,
                () = cancel.cancelled() => break,
            };
            match result {
                Ok(reports) => {
                    for report in reports.iter().filter(|report| report.changed) {
                        tracing::info!(
                            namespace = %report.namespace,
                            table = %report.table,
                            snapshot_id = report.snapshot_id,
                            added_files = report.added_files,
                            removed_files = report.removed_files,
                            "table snapshot committed"
                        );
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error.full_message(), "table sync failed; it runs again next pass")
                }
            }
        }
    })
}
