//! `hindsight migrate`: applies the catalog migrations and exits.

use anyhow::Context;
use hindsight_archive::catalog::Catalog;

use crate::config::Config;

pub async fn run(config: &Config) -> anyhow::Result<()> {
    let url = config.catalog_url();
    let catalog = Catalog::open(url.expose())
        .await
        .with_context(|| format!("cannot open the catalog at {url}"))?;
    println!("catalog at {url} is up to date");
    catalog.close().await;
    Ok(())
}
