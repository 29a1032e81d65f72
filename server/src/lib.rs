//! The HTTP API and the embedded UI.
//!
//! Routes ([`ROUTES`], described by [`crate::openapi::document`]):
//! `/healthz`, `/readyz`, `/metrics`, `/api/v1/openapi.json`,
//! `/api/v1/topics`, `/api/v1/connections`, `/api/v1/sources`, `/api/v1/segments`,
//! `/api/v1/maintenance`, `POST /api/v1/sql`,
//! `/api/v1/events`, `/api/v1/events/histogram`, `/api/v1/events/sql`,
//! `/api/v1/events/{event_id}`, the replay routes
//! (`/api/v1/replays…`, in [`replays`]), the access routes (`/api/v1/whoami`,
//! `/api/v1/tokens…`, `/api/v1/audit`), the read-only Iceberg REST catalog
//! (`/iceberg/v1/…`, in `iceberg.rs`), and the UI at `/`.
//!
//! Every error is JSON `{"error", "message"}` (the Iceberg routes' own errors
//! use the REST specification's model), including unknown routes, wrong
//! methods, oversized bodies and bad parameters (axum's own plain-text
//! rejections are rewritten by [`layers::json_errors`]). With a bearer token
//! configured, the API routes and `/metrics` need it; the token is compared in
//! constant time (both sides hashed with blake3, then compared with `subtle`).
//!
//! One layer, [`layers::refuse_foreign_requests`], stops other web sites from using
//! the API through a visitor's browser: a `Host` the server does not answer
//! to (DNS rebinding, see [`crate::allowed_hosts`]) is refused with 403, and
//! a state-changing request (any method but GET, HEAD and OPTIONS) needs a
//! `Content-Type` that a page on another origin cannot send without the
//! server's CORS consent, which this server never gives: `text/plain`, form
//! types and no content type at all are refused with 415.

// The OpenAPI document is one `json!` literal, deeper than the default limit.
#![recursion_limit = "256"]

//!
//! Errors reach clients through one mapping, [`error`]: each [`ErrorKind`]
//! has one status code on every route, and an internal error's details go
//! to the log, never to the client. Replays started here run under the
//! [`supervisor`]: on shutdown they stop at a checkpoint, are recorded
//! `interrupted`, and resume over HTTP.
//!
//! [`ErrorKind`]: hindsight_archive::ErrorKind

pub mod access;
mod admin;
pub mod allowed_hosts;
mod catalog;
pub mod error;
mod events;
mod iceberg;
pub mod jwt;
mod layers;
pub mod maintenance;
pub mod openapi;
mod params;
pub mod replays;
mod sql;
pub mod supervisor;
mod ui;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use hindsight_archive::audit::AuditLog;
use hindsight_query::QueryEngine;
use hindsight_replay::ReplayService;
use tokio_util::sync::CancellationToken;

pub use crate::access::{route_access, Access, ConfigToken};
use crate::allowed_hosts::AllowedHosts;
pub use crate::supervisor::Supervisor;

/// Every route the router serves, as (method, path). The OpenAPI document
/// describes exactly these.
pub const ROUTES: [(&str, &str); 30] = [
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/topics"),
    ("get", "/api/v1/connections"),
    ("get", "/api/v1/sources"),
    ("get", "/api/v1/segments"),
    ("get", "/api/v1/maintenance"),
    ("post", "/api/v1/sql"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/events/histogram"),
    ("get", "/api/v1/events/sql"),
    ("get", "/api/v1/events/{event_id}"),
    ("post", "/api/v1/replays"),
    ("get", "/api/v1/replays"),
    ("get", "/api/v1/replays/{id}"),
    ("post", "/api/v1/replays/{id}/pause"),
    ("post", "/api/v1/replays/{id}/resume"),
    ("post", "/api/v1/replays/{id}/cancel"),
    ("get", "/api/v1/whoami"),
    ("get", "/api/v1/tokens"),
    ("post", "/api/v1/tokens"),
    ("post", "/api/v1/tokens/{name}/revoke"),
    ("get", "/api/v1/audit"),
    ("get", "/iceberg/v1/config"),
    ("get", "/iceberg/v1/namespaces"),
    ("get", "/iceberg/v1/namespaces/{namespace}"),
    ("get", "/iceberg/v1/namespaces/{namespace}/tables"),
    ("get", "/iceberg/v1/namespaces/{namespace}/tables/{table}"),
];

/// HTTP settings beyond the listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// The tokens of the configuration (`[[http.tokens]]`, and the older
    /// `http.auth_token` as an admin). With none here and none in the
    /// catalog, every request is the anonymous admin.
    pub tokens: Vec<ConfigToken>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Host names accepted in the `Host` header besides the listen address
    /// and, on loopback or every address, `localhost` (see
    /// [`crate::allowed_hosts`]); `"*"` accepts any.
    pub allowed_hosts: Vec<String>,
    /// Let replay targets name an address instead of a named connection.
    pub allow_adhoc_targets: bool,
    /// The compaction and retention policy, shown by `/api/v1/maintenance`.
    pub maintenance: maintenance::MaintenancePolicy,
    /// The Iceberg catalog name (`tables.catalog_name`) whose tables the
    /// REST catalog at `/iceberg` serves.
    pub table_catalog: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            tokens: Vec::new(),
            max_body_bytes: 1024 * 1024,
            allowed_hosts: Vec::new(),
            allow_adhoc_targets: false,
            maintenance: maintenance::MaintenancePolicy::default(),
            table_catalog: "hindsight".to_owned(),
        }
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub engine: QueryEngine,
    pub replays: ReplayService,
    pub supervisor: Supervisor,
    max_body_bytes: usize,
    allow_adhoc_targets: bool,
    authenticator: Arc<access::Authenticator>,
    /// Where requests are audited (set by [`serve`]).
    audit: Option<AuditLog>,
    allowed_hosts: Arc<AllowedHosts>,
    maintenance: Arc<maintenance::MaintenancePolicy>,
    table_catalog: Arc<str>,
}

impl AppState {
    /// The state of a server bound to loopback until [`serve`] learns the
    /// listen address.
    ///
    /// Replays run under `supervisor`; `replays` plans and records them.
    pub fn new(replays: ReplayService, supervisor: Supervisor, options: HttpOptions) -> Self {
        AppState {
            engine: replays.engine().clone(),
            replays,
            supervisor,
            max_body_bytes: options.max_body_bytes,
            allow_adhoc_targets: options.allow_adhoc_targets,
            allowed_hosts: Arc::new(AllowedHosts::new(&options.allowed_hosts)),
            maintenance: Arc::new(options.maintenance),
            table_catalog: options.table_catalog.into(),
            authenticator: Arc::new(access::Authenticator::new(&options.tokens)),
            audit: None,
        }
    }
}

impl AppState {
    /// JWT bearer tokens verified against `verifier`'s key set.
    pub fn with_jwt(self, verifier: Option<jwt::JwtVerifier>) -> Self {
        let tokens: Vec<ConfigToken> = self.authenticator.config_tokens().cloned().collect();
        let mut authenticator = access::Authenticator::new(&tokens);
        authenticator.jwt = verifier;
        AppState {
            authenticator: Arc::new(authenticator),
            ..self
        }
    }

    pub fn allow_adhoc_targets(&self) -> bool {
        self.allow_adhoc_targets
    }
}

pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/metrics", get(catalog::metrics))
        .route("/api/v1/topics", get(catalog::topics))
        .route("/api/v1/connections", get(replays::connections))
        .route("/api/v1/sources", get(catalog::sources))
        .route("/api/v1/segments", get(catalog::segments))
        .route("/api/v1/maintenance", get(maintenance::maintenance))
        .route("/api/v1/sql", post(sql::sql))
        .route("/api/v1/events", get(events::search_events))
        .route("/api/v1/events/histogram", get(events::histogram))
        .route("/api/v1/events/sql", get(events::filter_sql))
        .route("/api/v1/events/{event_id}", get(events::get_event))
        .route("/api/v1/whoami", get(admin::whoami))
        .route(
            "/api/v1/tokens",
            get(admin::list_tokens).post(admin::create_token),
        )
        .route("/api/v1/tokens/{name}/revoke", post(admin::revoke_token))
        .route("/api/v1/audit", get(admin::audit_trail))
        .merge(replays::routes())
        .merge(iceberg::routes())
        // Outermost last: the audit record opens before authentication, so
        // refused requests are recorded too.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            access::authenticate,
        ))
        .route_layer(middleware::from_fn_with_state(state.clone(), access::audit));
    Router::new()
        .route("/healthz", get(catalog::healthz))
        .route("/readyz", get(catalog::readyz))
        .route("/api/v1/openapi.json", get(catalog::openapi))
        .merge(protected)
        .fallback(ui::static_or_not_found)
        .method_not_allowed_fallback(ui::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            layers::refuse_foreign_requests,
        ))
        .layer(middleware::from_fn(layers::json_errors))
        .layer(middleware::from_fn(layers::count_requests))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

/// Serves until `cancel` fires, then finishes in-flight requests. Replays
/// running under the state's supervisor are the caller's to wait for
/// ([`Supervisor::shutdown`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let listen = listener.local_addr()?.ip();
    let (audit, audit_writer) = AuditLog::start(state.engine.catalog().clone());
    let state = AppState {
        allowed_hosts: Arc::new(state.allowed_hosts.as_ref().clone().listening_on(listen)),
        audit: Some(audit),
        ..state
    };
    let served = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { cancel.cancelled().await })
    .await;
    // Every sender is gone with the router: the writer drains and stops.
    if tokio::time::timeout(std::time::Duration::from_secs(60), audit_writer)
        .await
        .is_err()
    {
        tracing::error!("the audit writer did not finish within 60 s of shutdown");
    }
    served
}

/// `/metrics` and `/healthz` for an ingester (`hindsight archive
/// --metrics-listen`), until `cancel` fires. Binds before it returns, so a
/// wrong address fails the start.
pub async fn serve_metrics(address: &str, cancel: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("metrics on http://{}/metrics", listener.local_addr()?);
    let router = Router::new()
        .route("/metrics", get(catalog::metrics))
        .route("/healthz", get(catalog::healthz));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_exactly_the_routes() {
        let document = crate::openapi::document(true);
        let mut documented: Vec<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(|method| (method.clone(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        documented.sort();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
    }
}
