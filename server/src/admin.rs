//! Who am I (`/api/v1/whoami`), tokens (`/api/v1/tokens`, admin) and the
//! audit trail (`/api/v1/audit`, admin).

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hindsight_archive::access::{Principal, Role, Scope};
use hindsight_archive::audit::AuditQuery;
use hindsight_archive::event::rfc3339;
use serde::Deserialize;

use crate::access::AuditSlot;
use crate::error::ApiError;
use crate::params::{parse_number, query_pairs, single};
use crate::AppState;

pub(crate) async fn whoami(Extension(principal): Extension<Principal>) -> Response {
    Json(principal).into_response()
}

pub(crate) async fn list_tokens(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut tokens: Vec<serde_json::Value> = state
        .authenticator
        .config_tokens()
        .map(|token| {
            serde_json::json!({
                "name": token.name, "role": token.role, "scope": token.scope,
                "defined_in": "config", "revoked_at": null,
            })
        })
        .collect();
    for token in state.engine.catalog().tokens().await? {
        tokens.push(serde_json::json!({
            "name": token.name, "role": token.role, "scope": token.scope,
            "defined_in": "catalog",
            "created_at": rfc3339(token.created_at), "created_by": token.created_by,
            "revoked_at": token.revoked_at.and_then(rfc3339), "revoked_by": token.revoked_by,
        }));
    }
    Ok(Json(tokens).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    name: String,
    role: Role,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    topics: Vec<String>,
}

pub(crate) async fn create_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    audit: Option<Extension<AuditSlot>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: NewToken = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(format!(
            "the body must be {{\"name\", \"role\", \"sources\"?, \"topics\"?}}: {error}"
        ))
    })?;
    let scope = Scope {
        sources: request.sources,
        topics: request.topics,
    };
    if let Some(problem) = scope.problems().into_iter().next() {
        return Err(ApiError::bad_request(problem));
    }
    if let Some(Extension(slot)) = &audit {
        slot.detail(format!(
            "token {:?} role {} scope {}",
            request.name,
            request.role,
            scope.describe()
        ));
    }
    if state
        .authenticator
        .config_tokens()
        .any(|token| token.name == request.name)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("the configuration defines a token named {:?}", request.name),
        ));
    }
    let token = state
        .engine
        .catalog()
        .create_token(&request.name, request.role, &scope, &principal.name)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "name": request.name, "role": request.role, "scope": scope,
            "token": token,
            "note": "the token is shown this once; only its hash is stored",
        })),
    )
        .into_response())
}

pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    audit: Option<Extension<AuditSlot>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = path.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    if let Some(Extension(slot)) = &audit {
        slot.detail(format!("token {name:?}"));
    }
    state
        .engine
        .catalog()
        .revoke_token(&name, &principal.name)
        .await?;
    Ok(Json(serde_json::json!({"name": name, "revoked": true})).into_response())
}

pub(crate) async fn audit_trail(
    State(state): State<AppState>,
    audit: Option<Extension<AuditSlot>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(
        raw.as_deref(),
        &["since", "until", "principal", "action", "limit"],
    )?;
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        single(&pairs, name)?
            .map(|text| {
                chrono::DateTime::parse_from_rfc3339(&text)
                    .map(|time| time.timestamp_micros())
                    .map_err(|error| {
                        ApiError::bad_request(format!(
                            "query parameter {name:?} is not an RFC 3339 time: {error}"
                        ))
                    })
            })
            .transpose()
    };
    let limit = parse_number::<i64>("limit", single(&pairs, "limit")?)?
        .unwrap_or(1000)
        .clamp(1, 100_000);
    let query = AuditQuery {
        since: time("since")?,
        until: time("until")?,
        principal: single(&pairs, "principal")?,
        action: single(&pairs, "action")?,
        limit: Some(limit),
    };
    let records = state.engine.catalog().audit(&query).await?;
    if let Some(Extension(slot)) = &audit {
        slot.detail(raw.unwrap_or_default());
        slot.add_count(records.len() as u64);
    }
    let records: Vec<serde_json::Value> = records
        .into_iter()
        .map(|record| {
            let mut value = serde_json::to_value(&record).unwrap_or_default();
            value["at"] = serde_json::json!(rfc3339(record.at));
            value
        })
        .collect();
    Ok(Json(records).into_response())
}
