//! What several commands open: the store and the catalog, and a writer's
//! lease in the catalog.

use anyhow::Context;
use hindsight_archive::catalog::Catalog;
use hindsight_archive::lease::WriterLease;
use hindsight_archive::store::ArchiveStore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Opens the store and the catalog (migrating it).
pub async fn open_archive(config: &Config) -> anyhow::Result<(ArchiveStore, Catalog)> {
    let store = ArchiveStore::open(&config.store_config())
        .with_context(|| format!("cannot open the store at {}", config.storage_url()))?;
    let catalog = Catalog::open(config.catalog_url().expose())
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
