//! Who is asking ([`authenticate`]), whether their role may use the route
//! ([`route_access`]), and the audit record of the request ([`audit`]).
//!
//! A request's principal comes from its bearer token: a token of the
//! configuration (`[[http.tokens]]`, or the older `http.auth_token` as an
//! admin), else a live token of the catalog (`hindsight token create`; a
//! revoked one is refused from the next request on). A server with no token
//! anywhere treats every request (whatever token it presents) as the
//! anonymous admin; it listens on loopback only unless
//! `http.allow_unauthenticated` (checked by `serve`).
//! Tokens are looked up by their blake3 hash, so what is compared is never
//! the token itself.
//!
//! Every route has a decision in [`route_access`]: public, or the least
//! role that may use it. The audit layer records every request to a
//! non-public route (but `/metrics`), refused ones included, with the
//! principal, address, route, what it named and how many rows it returned.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hindsight_archive::access::{token_hash, Principal, PrincipalKind, Role, Scope};
use hindsight_archive::audit::{AuditLog, AuditRecord};
use hindsight_archive::Secret;

use crate::error::ApiError;
use crate::AppState;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token (health, readiness, the API document).
    Public,
    /// This role and the ones above it.
    Least(Role),
}

/// The decision for each route of [`crate::ROUTES`], and the action its
/// audit records name (`None`: not audited). A route missing here is
/// refused to everyone; the matrix test fails on it.
pub fn route_access(method: &str, path: &str) -> Option<(Access, Option<&'static str>)> {
    use Access::{Least, Public};
    let viewer = Least(Role::Viewer);
    // axum answers HEAD on every GET route.
    let method = if method == "head" { "get" } else { method };
    Some(match (method, path) {
        ("get", "/healthz" | "/readyz" | "/api/v1/openapi.json") => (Public, None),
        ("get", "/metrics") => (viewer, None),
        ("get", "/api/v1/whoami") => (viewer, Some("whoami")),
        ("get", "/api/v1/topics") => (viewer, Some("topics.list")),
        ("get", "/api/v1/connections") => (viewer, Some("connections.list")),
        ("get", "/api/v1/sources") => (viewer, Some("sources.list")),
        ("get", "/api/v1/segments") => (viewer, Some("segments.list")),
        ("get", "/api/v1/maintenance") => (viewer, Some("maintenance.show")),
        ("get", "/api/v1/events") => (viewer, Some("events.search")),
        ("get", "/api/v1/events/histogram") => (viewer, Some("events.histogram")),
        ("get", "/api/v1/events/sql") => (viewer, Some("events.sql")),
        ("get", "/api/v1/events/{event_id}") => (viewer, Some("event.fetch")),
        ("get", "/api/v1/replays") => (viewer, Some("replays.list")),
        ("get", "/api/v1/replays/{id}") => (viewer, Some("replay.show")),
        ("post", "/api/v1/sql") => (Least(Role::Analyst), Some("sql")),
        ("post", "/api/v1/replays") => (Least(Role::Operator), Some("replay.start")),
        ("post", "/api/v1/replays/{id}/pause") => (Least(Role::Operator), Some("replay.pause")),
        ("post", "/api/v1/replays/{id}/resume") => (Least(Role::Operator), Some("replay.resume")),
        ("post", "/api/v1/replays/{id}/cancel") => (Least(Role::Operator), Some("replay.cancel")),
        ("get", "/api/v1/tokens") => (Least(Role::Admin), Some("tokens.list")),
        ("post", "/api/v1/tokens") => (Least(Role::Admin), Some("token.create")),
        ("post", "/api/v1/tokens/{name}/revoke") => (Least(Role::Admin), Some("token.revoke")),
        ("get", "/api/v1/audit") => (Least(Role::Admin), Some("audit.read")),
        // A table's files hold every payload byte unmasked.
        ("get", "/iceberg/v1/config") => (Least(Role::Analyst), Some("iceberg.config")),
        ("get", "/iceberg/v1/namespaces") => (Least(Role::Analyst), Some("iceberg.namespaces")),
        ("get", "/iceberg/v1/namespaces/{namespace}") => {
            (Least(Role::Analyst), Some("iceberg.namespace"))
        }
        ("get", "/iceberg/v1/namespaces/{namespace}/tables") => {
            (Least(Role::Analyst), Some("iceberg.tables"))
        }
        ("get", "/iceberg/v1/namespaces/{namespace}/tables/{table}") => {
            (Least(Role::Analyst), Some("iceberg.table.load"))
        }
        _ => return None,
    })
}

/// A token of the configuration, by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigToken {
    pub name: String,
    /// blake3 of the token, hex.
    pub hash: String,
    pub role: Role,
    pub scope: Scope,
}

impl ConfigToken {
    /// The older single `http.auth_token`: an admin of everything.
    pub fn from_secret(token: &Secret) -> ConfigToken {
        ConfigToken {
            name: "http.auth_token".to_owned(),
            hash: token_hash(token.expose()),
            role: Role::Admin,
            scope: Scope::all(),
        }
    }
}

/// The tokens a server knows without asking the catalog.
#[derive(Debug, Default)]
pub(crate) struct Authenticator {
    by_hash: HashMap<String, ConfigToken>,
    pub(crate) jwt: Option<crate::jwt::JwtVerifier>,
}

impl Authenticator {
    pub(crate) fn new(tokens: &[ConfigToken]) -> Self {
        Authenticator {
            by_hash: tokens
                .iter()
                .map(|token| (token.hash.to_ascii_lowercase(), token.clone()))
                .collect(),
            jwt: None,
        }
    }

    /// Whether the configuration alone makes tokens necessary.
    pub(crate) fn has_config_tokens(&self) -> bool {
        !self.by_hash.is_empty() || self.jwt.is_some()
    }

    pub(crate) fn config_tokens(&self) -> impl Iterator<Item = &ConfigToken> {
        self.by_hash.values()
    }
}

fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Resolves the request's principal (or refuses it with 401), then checks
/// its role against the route (403). The principal is left in the
/// request's extensions for the handlers, and in its audit record.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = bearer(&request).map(str::to_owned);
    let principal = match resolve(&state, presented.as_deref()).await {
        Ok(principal) => principal,
        Err(error) => return error.into_response(),
    };
    if let Some(slot) = request.extensions().get::<AuditSlot>() {
        slot.set_principal(&principal);
    }
    let method = request.method().as_str().to_ascii_lowercase();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_default();
    let needed = match route_access(&method, &path) {
        Some((Access::Public, _)) => None,
        Some((Access::Least(role), _)) => Some(role),
        None => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{method} {path} has no access decision"),
            )
            .into_response()
        }
    };
    if let Some(role) = needed {
        if role == Role::Admin && !principal.scope.is_everything() {
            // Tokens and the audit trail span every topic: a scoped admin
            // could otherwise mint an unscoped token or read other topics' SQL.
            return ApiError::forbidden(format!(
                "{} {path} needs an admin token without a scope; {:?} is scoped to {}",
                method.to_uppercase(),
                principal.name,
                principal.scope.describe()
            ))
            .into_response();
        }
        if !principal.can(role) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{} {path} needs the {role} role; {:?} is {}",
                    method.to_uppercase(),
                    principal.name,
                    principal.role
                ),
            )
            .into_response();
        }
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

async fn resolve(state: &AppState, presented: Option<&str>) -> Result<Principal, ApiError> {
    let catalog = state.engine.catalog();
    // No token anywhere: every request is the anonymous admin, whatever it
    // presents (PyIceberg sends `Bearer None` when given no token).
    let open = || async {
        Ok::<_, ApiError>(
            !state.authenticator.has_config_tokens()
                && !catalog.has_tokens().await.map_err(ApiError::from)?,
        )
    };
    let Some(presented) = presented else {
        return if open().await? {
            Ok(Principal::anonymous())
        } else {
            Err(ApiError::unauthorized(
                "this route needs an Authorization: Bearer <token> header",
            ))
        };
    };
    if let Some(verifier) = &state.authenticator.jwt {
        if crate::jwt::JwtVerifier::looks_like_jwt(presented) {
            return verifier
                .verify(presented)
                .await
                .map_err(ApiError::unauthorized);
        }
    }
    let hash = token_hash(presented);
    if let Some(token) = state.authenticator.by_hash.get(&hash) {
        return Ok(Principal {
            name: token.name.clone(),
            role: token.role,
            scope: token.scope.clone(),
            kind: PrincipalKind::Config,
        });
    }
    match catalog.token_by_hash(&hash).await.map_err(ApiError::from)? {
        Some(token) => Ok(Principal {
            name: token.name,
            role: token.role,
            scope: token.scope,
            kind: PrincipalKind::Catalog,
        }),
        None if open().await? => Ok(Principal::anonymous()),
        None => Err(ApiError::unauthorized(
            "the bearer token is not valid (unknown or revoked)",
        )),
    }
}

/// The audit record of one request, shared by the audit layer and the
/// handler (and a streamed body): written when the last holder drops it.
#[derive(Debug, Clone)]
pub struct AuditSlot(Arc<SlotInner>);

#[derive(Debug)]
struct SlotInner {
    log: AuditLog,
    record: Mutex<Option<AuditRecord>>,
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        let record = self
            .record
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(record) = record {
            self.log.record(record);
        }
    }
}

impl AuditSlot {
    fn with(&self, change: impl FnOnce(&mut AuditRecord)) {
        let mut record = self.0.record.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(record) = record.as_mut() {
            change(record);
        }
    }

    fn set_principal(&self, principal: &Principal) {
        self.with(|record| {
            record.principal = principal.name.clone();
            record.role = principal.role.as_str().to_owned();
        });
    }

    /// What the request named: the SQL text, the filter, the target.
    pub fn detail(&self, detail: impl Into<String>) {
        let detail = detail.into();
        self.with(|record| record.detail = Some(detail));
    }

    /// A more precise action (`replay.dry_run` for a dry run).
    pub fn action(&self, action: &str) {
        self.with(|record| record.action = action.to_owned());
    }

    /// Rows or events returned (adds up, for streamed bodies).
    pub fn add_count(&self, count: u64) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.with(|record| record.count = Some(record.count.unwrap_or(0).saturating_add(count)));
    }

    fn status(&self, status: StatusCode) {
        self.with(|record| record.status = i32::from(status.as_u16()));
    }
}

/// Opens the request's audit record (routes with an action only); the
/// record is written once the response, and any body it streams, is done.
pub(crate) async fn audit(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_ascii_lowercase();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let action = path
        .as_deref()
        .and_then(|path| route_access(&method, path))
        .and_then(|(_, action)| action);
    let (Some(action), Some(log)) = (action, state.audit.clone()) else {
        return next.run(request).await;
    };
    let mut record = AuditRecord::new(
        &Principal {
            name: "unauthenticated".to_owned(),
            role: Role::Viewer,
            scope: Scope::all(),
            kind: PrincipalKind::Anonymous,
        },
        action,
    );
    record.role = "none".to_owned();
    record.method = Some(method.to_uppercase());
    record.route = Some(request.uri().path().chars().take(255).collect());
    record.address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip().to_string());
    let slot = AuditSlot(Arc::new(SlotInner {
        log,
        record: Mutex::new(Some(record)),
    }));
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    slot.status(response.status());
    response
}
