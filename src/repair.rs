//! `hindsight repair`: removes what crashed writers left (pending segments,
//! staging files) older than the grace period, and anything of a writer
//! whose lease is gone at once.

use std::time::Duration;

use hindsight_archive::recovery::recover_abandoned;

use crate::config::Config;

pub async fn run(config: &Config, grace: Option<Duration>) -> anyhow::Result<()> {
    let (store, catalog) = crate::open::open_archive(config).await?;
    let grace = grace.unwrap_or(config.catalog.pending_grace);
    let removed = recover_abandoned(&store, &catalog, None, grace).await?;
    println!("removed {removed} abandoned segment(s)");
    catalog.close().await;
    Ok(())
}
