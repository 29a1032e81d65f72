//! `hindsight serve` (and the end of `hindsight demo`): the HTTP API and
//! UI, with replays supervised until shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hindsight_archive::catalog::Catalog;
use hindsight_archive::store::ArchiveStore;
use hindsight_connectors::BusConnector;
use hindsight_query::QueryEngine;
use hindsight_replay::ReplayService;
use hindsight_server::{AppState, Supervisor};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// How long a shutdown waits for running replays to reach a checkpoint.
const REPLAY_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves the HTTP API until `cancel` fires, then stops every replay it
/// runs at a checkpoint (recorded `interrupted`, resumable) and returns.
pub async fn serve(
    config: &Config,
    store: ArchiveStore,
    catalog: Catalog,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let address = config.listen_address()?;
    let jwt = match config.http.jwt.clone() {
        Some(settings) => Some(
            hindsight_server::jwt::JwtVerifier::load(settings)
                .await
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let has_tokens = !config.http.config_tokens().is_empty()
        || jwt.is_some()
        || catalog
            .has_tokens()
            .await
            .context("cannot read the catalog's API tokens")?;
    if !has_tokens && !address.ip().is_loopback() && !config.http.allow_unauthenticated {
        anyhow::bail!(
            "http.listen {address}: no API token is configured, so the server would answer anyone \
             who can reach {}; listen on loopback (127.0.0.1), create a token (`hindsight token \
             create NAME --role admin`, or [[http.tokens]]), or set http.allow_unauthenticated = true",
            address.ip()
        );
    }
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
    let schemas = crate::schemas::open(config, &catalog).await?;
    schemas.spawn_persister(cancel.child_token());
    let engine = QueryEngine::with_schemas(store, catalog.clone(), config.query.limits(), schemas)
        .and_then(|engine| engine.with_redaction(config.redaction.clone()))
        .context("cannot start the query engine")?;
    let replays = ReplayService::new(
        engine,
        crate::replay::configured_guard(config)?,
        Arc::new(BusConnector::new(config.connections.clone())),
    );
    let supervisor = Supervisor::new(&cancel);
    let mut options = config.http.options();
    options.allow_adhoc_targets = config.replay.allow_adhoc_targets;
    options.maintenance = config.maintenance_policy();
    options.table_catalog = config.tables.catalog_name.clone();
    let state = AppState::new(replays, supervisor.clone(), options).with_jwt(jwt);
    let served = hindsight_server::serve(listener, state, cancel).await;
    if supervisor.running() > 0 {
        println!(
            "stopping {} replay(s) at a checkpoint; resume them with POST /api/v1/replays/ID/resume",
            supervisor.running()
        );
    }
    if !supervisor.shutdown(REPLAY_SHUTDOWN_GRACE).await {
        tracing::warn!(
            "some replays did not reach a checkpoint in {REPLAY_SHUTDOWN_GRACE:?}; they resume from their last one"
        );
    }
    catalog.close().await;
    served?;
    Ok(())
}
