//! `hindsight check-config`: the configuration as resolved (defaults, file,
//! environment), as JSON. Secrets print as `[redacted]`; the configuration
//! was validated before this runs. With `--connect`, each connection and
//! schema registry is tried once instead, and reported on one line.

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
    let registries = &config.schemas.registries;
    if tried.is_empty() && registries.is_empty() {
        println!("no connections, sources or schema registries configured");
        return Ok(());
    }
    let mut failed = 0;
    for (name, registry) in registries {
        let answer = match hindsight_schemas::registry::RegistryClient::new(name, registry) {
            Ok(client) => client
                .probe()
                .await
                .map(|types| (client.shown_url(), types))
                .map_err(|error| error.to_string()),
            Err(error) => Err(error),
        };
        match answer {
            Ok((url, types)) => println!(
                "ok      schema registry {name:?} ({url}): serves {}",
                types.join(", ")
            ),
            Err(error) => {
                failed += 1;
                println!("FAILED  {error}");
            }
        }
    }
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
        bail!(
            "{failed} of {} connection(s) and registries failed",
            tried.len() + registries.len()
        );
    }
    Ok(())
}
