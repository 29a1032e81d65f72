//! A read-only Iceberg REST catalog of the archive's tables, at
//! `/iceberg` (`/iceberg/v1/config`, `/iceberg/v1/namespaces…`), so an
//! engine reaches the tables with a Hindsight token instead of the catalog
//! database's credentials, and sees only what the token may read.
//!
//! Namespaces are sources and tables are topics, as in the SQL catalog
//! (`hindsight_archive::tables`). Loading a table answers its current
//! metadata file; the engine then reads the data files from the store with
//! its own storage credentials (none are vended). Reading a table gives
//! every payload byte, so the routes need the analyst role, list only the
//! tables of topics in the token's scope, and hide a table a redaction
//! policy masks for the token's role: the files hold the values unmasked.
//! A table that is hidden is answered 404, as one that does not exist.
//! Writes are not served: `config` lists the read endpoints only, and an
//! engine refuses the others itself.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use hindsight_archive::access::Principal;
use hindsight_archive::tables::catalog::TableId;
use serde_json::{json, Value};

use crate::access::AuditSlot;
use crate::error::ApiError;
use crate::params::{query_pairs, single};
use crate::AppState;

/// The endpoints `config` declares, in the REST specification's notation.
const ENDPOINTS: [&str; 6] = [
    "GET /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
];

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/iceberg/v1/config", get(config))
        .route("/iceberg/v1/namespaces", get(list_namespaces))
        .route("/iceberg/v1/namespaces/{namespace}", get(load_namespace))
        .route(
            "/iceberg/v1/namespaces/{namespace}/tables",
            get(list_tables),
        )
        .route(
            "/iceberg/v1/namespaces/{namespace}/tables/{table}",
            get(load_table),
        )
}

/// An error in the REST specification's shape:
/// `{"error": {"message", "type", "code"}}`.
pub(crate) struct IcebergError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl IcebergError {
    fn no_namespace(namespace: &str) -> Self {
        IcebergError {
            status: StatusCode::NOT_FOUND,
            kind: "NoSuchNamespaceException",
            message: format!("no namespace {namespace:?} (or not in this token's scope)"),
        }
    }

    fn no_table(namespace: &str, table: &str) -> Self {
        IcebergError {
            status: StatusCode::NOT_FOUND,
            kind: "NoSuchTableException",
            message: format!(
                "no table {namespace:?}.{table:?} (or not readable with this token: out of \
                 its scope, or masked by a redaction policy)"
            ),
        }
    }
}

impl From<ApiError> for IcebergError {
    fn from(error: ApiError) -> Self {
        let kind = match error.status {
            StatusCode::BAD_REQUEST => "BadRequestException",
            StatusCode::NOT_FOUND => "NotFoundException",
            StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailableException",
            _ => "ServerErrorException",
        };
        IcebergError {
            status: error.status,
            kind,
            message: error.message,
        }
    }
}

impl From<hindsight_archive::Error> for IcebergError {
    fn from(error: hindsight_archive::Error) -> Self {
        ApiError::from(error).into()
    }
}

impl IntoResponse for IcebergError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "code": self.status.as_u16(),
        }});
        (self.status, Json(body)).into_response()
    }
}

/// The tables `principal` may read, with their metadata locations.
async fn readable(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<(TableId, String)>, IcebergError> {
    let engine = state.engine.for_principal(principal);
    let tables = engine
        .catalog()
        .iceberg_tables(&state.table_catalog)
        .await?;
    Ok(tables
        .into_iter()
        .filter(|(table, _)| {
            principal.scope.allows(&table.namespace, &table.name)
                && !engine.masks_values_of(&table.namespace, &table.name)
        })
        .collect())
}

/// A namespace from the path: one level (sources do not nest).
fn namespace_of(path: Result<Path<String>, PathRejection>) -> Result<String, IcebergError> {
    let Path(namespace) = path.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    if namespace.contains('\u{1f}') {
        return Err(IcebergError::no_namespace(&namespace));
    }
    Ok(namespace)
}

fn audit_detail(audit: Option<&Extension<AuditSlot>>, detail: String, count: u64) {
    if let Some(Extension(slot)) = audit {
        slot.detail(detail);
        slot.add_count(count);
    }
}

/// The query parameters of the REST specification a route takes (paging
/// is accepted and not needed: every answer is whole).
fn parameters(
    raw: Option<String>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, IcebergError> {
    Ok(query_pairs(raw.as_deref(), allowed)?)
}

const PAGING: [&str; 2] = ["pageToken", "pageSize"];

async fn config(RawQuery(raw): RawQuery) -> Result<Json<Value>, IcebergError> {
    parameters(raw, &["warehouse"])?;
    Ok(Json(
        json!({"defaults": {}, "overrides": {}, "endpoints": ENDPOINTS}),
    ))
}

async fn list_namespaces(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    audit: Option<Extension<AuditSlot>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, IcebergError> {
    let pairs = parameters(raw, &["parent", PAGING[0], PAGING[1]])?;
    let parent = single(&pairs, "parent")?;
    let tables = readable(&state, &principal).await?;
    let mut namespaces: Vec<&str> = tables.iter().map(|(t, _)| t.namespace.as_str()).collect();
    namespaces.dedup();
    let listed: Vec<Value> = match parent.as_deref().filter(|p| !p.is_empty()) {
        None => namespaces.iter().map(|n| json!([n])).collect(),
        // Sources do not nest: a known parent has no children.
        Some(parent) if namespaces.contains(&parent) => Vec::new(),
        Some(parent) => return Err(IcebergError::no_namespace(parent)),
    };
    audit_detail(audit.as_ref(), "namespaces".to_owned(), listed.len() as u64);
    Ok(Json(json!({ "namespaces": listed })))
}

async fn load_namespace(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    audit: Option<Extension<AuditSlot>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, IcebergError> {
    let namespace = namespace_of(path)?;
    parameters(raw, &[])?;
    audit_detail(audit.as_ref(), format!("namespace {namespace}"), 0);
    let tables = readable(&state, &principal).await?;
    if !tables.iter().any(|(t, _)| t.namespace == namespace) {
        return Err(IcebergError::no_namespace(&namespace));
    }
    Ok(Json(json!({"namespace": [namespace], "properties": {}})))
}

async fn list_tables(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    audit: Option<Extension<AuditSlot>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, IcebergError> {
    let namespace = namespace_of(path)?;
    parameters(raw, &PAGING)?;
    let tables = readable(&state, &principal).await?;
    let identifiers: Vec<Value> = tables
        .iter()
        .filter(|(t, _)| t.namespace == namespace)
        .map(|(t, _)| json!({"namespace": [t.namespace], "name": t.name}))
        .collect();
    if identifiers.is_empty() {
        return Err(IcebergError::no_namespace(&namespace));
    }
    audit_detail(
        audit.as_ref(),
        format!("tables of {namespace}"),
        identifiers.len() as u64,
    );
    Ok(Json(json!({ "identifiers": identifiers })))
}

async fn load_table(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    audit: Option<Extension<AuditSlot>>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, IcebergError> {
    let Path((namespace, table)) =
        path.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    // `snapshots=all|refs`: every snapshot is in the metadata either way.
    parameters(raw, &["snapshots"])?;
    audit_detail(audit.as_ref(), format!("table {namespace}.{table}"), 0);
    let tables = readable(&state, &principal).await?;
    let Some((_, location)) = tables
        .iter()
        .find(|(t, _)| t.namespace == namespace && t.name == table)
    else {
        return Err(IcebergError::no_table(&namespace, &table));
    };
    let bytes = hindsight_archive::tables::metadata_bytes(state.engine.store(), location).await?;
    let metadata: Value = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::internal(format!("table metadata {location} is not JSON: {error}"))
    })?;
    if let Some(Extension(slot)) = &audit {
        slot.add_count(1);
    }
    Ok(Json(json!({
        "metadata-location": location,
        "metadata": metadata,
        "config": {},
    })))
}
