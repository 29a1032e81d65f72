//! `hindsight archive`: runs every configured source until SIGTERM or Ctrl-C,
//! then flushes, commits and exits 0. When one source fails, all stop
//! cleanly (what is durable is committed) and the command exits non-zero.

use std::sync::Arc;

use anyhow::{bail, Context};
use hindsight_archive::maintenance::Maintenance;
use hindsight_archive::recovery::recover_abandoned;
use hindsight_archive::writer::ArchiveWriter;
use hindsight_ingest::{run_pipeline_observed, EventObserver};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;

pub async fn run(
    config: &Config,
    metrics_listen: Option<&str>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    if config.sources.is_empty() {
        bail!("no sources configured: add [[sources]] to the configuration file");
    }
    if let Some(address) = metrics_listen {
        hindsight_server::serve_metrics(address, cancel.clone())
            .await
            .with_context(|| format!("cannot listen on {address} for /metrics"))?;
    }
    let (store, catalog) = crate::open::open_archive(config).await?;
    let (lease, renewal) = crate::open::take_writer_lease(&catalog).await?;
    let writer = ArchiveWriter::new(store.clone(), catalog.clone(), config.segment_format())
        .with_lease(lease.clone());
    let defaults = config.flush.policy();
    let schemas = crate::schemas::open(config, &catalog).await?;
    // A registry that cannot be asked does not stop archiving (events are
    // kept raw and decode once it answers), but it is said at once.
    let probing = Arc::clone(&schemas);
    tokio::spawn(async move {
        for (_, answer) in probing.probe_registries().await {
            if let Err(error) = answer {
                tracing::warn!("{error}; payloads archive as they are and decode once it answers");
            }
        }
    });
    let capture: Option<Arc<dyn EventObserver>> =
        crate::schemas::SchemaCapture::spawn(&schemas, cancel.child_token())
            .map(|capture| capture as Arc<dyn EventObserver>);
    let mut tasks = JoinSet::new();
    for section in &config.sources {
        let source_config = section.config();
        let name = source_config.name().to_owned();
        recover_abandoned(&store, &catalog, Some(&name), config.catalog.pending_grace)
            .await
            .with_context(|| format!("cannot clean up after an earlier crash of source {name}"))?;
        let policy = source_config.flush_policy(defaults);
        // Connect before spawning: a wrong address or a missing queue fails the start.
        let mut source = source_config
            .open(catalog.clone(), policy)
            .await
            .with_context(|| format!("cannot start source {name}"))?;
        let writer = writer.clone();
        let cancel = cancel.clone();
        let capture = capture.clone();
        let span = tracing::info_span!("source", name = %name);
        tasks.spawn(
            async move {
                let result =
                    run_pipeline_observed(source.as_mut(), &writer, policy, capture, cancel).await;
                source.close().await;
                result.map(|summary| (name, summary))
            }
            .instrument(span),
        );
    }
    println!(
        "archiving {} source(s); Ctrl-C or SIGTERM flushes, commits and stops",
        tasks.len()
    );
    // Compaction and retention in the background, under this process's
    // writer lease; they stop at the next input on shutdown.
    let maintenance_stop = cancel.child_token();
    let maintenance = (config.compaction.enabled || !config.retention.is_empty()).then(|| {
        crate::maintenance::spawn_background(
            config,
            Maintenance::new(
                store.clone(),
                catalog.clone(),
                lease.clone(),
                config.compaction_settings(),
            ),
            maintenance_stop.clone(),
        )
    });
    let tables = config.tables.enabled.then(|| {
        crate::tables::spawn_background(
            config,
            store.clone(),
            catalog.clone(),
            &lease,
            maintenance_stop.clone(),
        )
    });
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok((name, summary))) => println!(
                "source {name}: archived {} events in {} segments ({} already archived, skipped)",
                summary.events, summary.segments, summary.already_archived
            ),
            Ok(Err(error)) => {
                tracing::error!(error = %error.full_message(), "source failed; stopping every source");
                cancel.cancel();
                failure.get_or_insert(anyhow::Error::new(error));
            }
            Err(join_error) => {
                cancel.cancel();
                failure.get_or_insert(anyhow::anyhow!("a source task panicked: {join_error}"));
            }
        }
    }
    maintenance_stop.cancel();
    for task in [maintenance, tables].into_iter().flatten() {
        if let Err(error) = task.await {
            tracing::warn!(%error, "a background maintenance task panicked");
        }
    }
    crate::open::release_writer_lease(&lease, renewal).await;
    catalog.close().await;
    match failure {
        Some(error) => Err(error.context("archiving stopped")),
        None => Ok(()),
    }
}
