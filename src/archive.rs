//! `hindsight archive`: runs every configured source until SIGTERM or Ctrl-C,
//! then flushes, commits and exits 0. When one source fails, all stop
//! cleanly (what is durable is committed) and the command exits non-zero.

use anyhow::{bail, Context};
use hindsight_archive::metrics;
use hindsight_archive::writer::{recover_abandoned, ArchiveWriter};
use hindsight_ingest::run_pipeline;
use hindsight_ingest::source::amqp::AmqpSource;
use hindsight_ingest::source::kafka::KafkaSource;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, SourceSection};

pub async fn run(
    config: &Config,
    metrics_listen: Option<&str>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    if config.sources.is_empty() {
        bail!("no sources configured: add [[sources]] to the configuration file");
    }
    if let Some(address) = metrics_listen {
        serve_metrics(address, cancel.clone()).await?;
    }
    let (store, catalog) = crate::open_archive(config).await?;
    let (lease, renewal) = crate::take_writer_lease(&catalog).await?;
    let writer = ArchiveWriter::new(store.clone(), catalog.clone(), config.segment_format())
        .with_lease(lease.clone());
    let defaults = config.flush.policy();
    let mut tasks = JoinSet::new();
    for source in &config.sources {
        let name = source.name().to_owned();
        recover_abandoned(&store, &catalog, Some(&name), config.catalog.pending_grace)
            .await
            .with_context(|| format!("cannot clean up after an earlier crash of source {name}"))?;
        let policy = source.flush_policy(defaults);
        match source.clone() {
            SourceSection::Kafka(kafka) => {
                let writer = writer.clone();
                let catalog = catalog.clone();
                let cancel = cancel.clone();
                let span = tracing::info_span!("source", name = %name);
                tasks.spawn(
                    async move {
                        let mut source = KafkaSource::start(kafka, catalog)?;
                        let result = run_pipeline(&mut source, &writer, policy, cancel).await;
                        source.stop().await;
                        result.map(|summary| (name, summary))
                    }
                    .instrument(span),
                );
            }
            SourceSection::Amqp(amqp) => {
                // Connect before spawning: a wrong URL or a missing queue fails the start.
                let mut source = AmqpSource::start(amqp, catalog.clone(), policy.max_rows)
                    .await
                    .with_context(|| format!("cannot start source {name}"))?;
                let writer = writer.clone();
                let cancel = cancel.clone();
                let span = tracing::info_span!("source", name = %name);
                tasks.spawn(
                    async move {
                        let result = run_pipeline(&mut source, &writer, policy, cancel).await;
                        source.stop().await;
                        result.map(|summary| (name, summary))
                    }
                    .instrument(span),
                );
            }
        }
    }
    println!(
        "archiving {} source(s); Ctrl-C or SIGTERM flushes, commits and stops",
        tasks.len()
    );
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
    crate::release_writer_lease(&lease, renewal).await;
    catalog.close().await;
    match failure {
        Some(error) => Err(error.context("archiving stopped")),
        None => Ok(()),
    }
}

/// `/metrics` and `/healthz` for an ingester, until `cancel` fires.
async fn serve_metrics(address: &str, cancel: CancellationToken) -> anyhow::Result<()> {
    use axum::http::header;
    use axum::routing::get;

    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for /metrics"))?;
    println!("metrics on http://{}/metrics", listener.local_addr()?);
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
                    metrics::render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the metrics listener failed");
        }
    });
    Ok(())
}
