//! `hindsight check-config`: the configuration as resolved (defaults, file,
//! environment), as JSON. Secrets print as `[redacted]`; the configuration
//! was validated before this runs. With `--connect`, each connection is
//! tried once instead, and reported on one line.

use anyhow::bail;
use hindsight_connectors::Connection;

use crate::config::Config;

pub fn run(config: &Config) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(config)?);
    Ok(())
}

/// Tries every named connection, then every source that has its own
/// address, one after the other; prints `ok` or `FAILED` with the cause.
pub async fn connect(config: &Config) -> anyhow::Result<()> {
    let mut tried: Vec<(String, String, Connection)> = config
        .connections
        .iter()
        .map(|(name, connection)| {
            (
                name.clone(),
                format!("connection {name:?}"),
                connection.clone(),
            )
        })
        .collect();
    for source in &config.sources {
        if let Some(connection) = source.own_connection() {
            let name = source.config().name();
            tried.push((name.to_owned(), format!("source {name:?}"), connection));
        }
    }
    if tried.is_empty() {
        println!("no connections or sources configured");
        return Ok(());
    }
    let mut failed = 0;
    for (name, what, connection) in &tried {
        let info = connection.info(name);
        match connection.probe(what).await {
            Ok(seen) => println!(
                "ok      {what} ({}, {}, {}): {seen}",
                info.bus, info.addresses, info.security
            ),
            Err(error) => {
                failed += 1;
                println!("FAILED  {}", error.message());
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} connection(s) failed", tried.len());
    }
    Ok(())
}
