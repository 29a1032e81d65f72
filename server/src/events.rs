//! The event routes: search (`GET /api/v1/events`), counts per time bucket
//! (`/api/v1/events/histogram`), the filter as SQL text
//! (`/api/v1/events/sql`) and fetch by id. All four read the same filter
//! parameters into the one `EventFilter` (`hindsight_query::filter`).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hindsight_archive::event::rfc3339;
use hindsight_query::events::{Cursor, EventSearch, DEFAULT_PAGE, MAX_PAGE};
use hindsight_query::filter::{EventFilter, FilterSelection};
use serde::Serialize;

use crate::access::AuditSlot;
use crate::error::ApiError;
use crate::params::{parse_number, query_pairs, single};
use crate::AppState;
use axum::http::StatusCode;
use axum::Extension;
use hindsight_archive::access::{Principal, Role};

/// The filter parameters every event route takes.
const FILTER_PARAMETERS: [&str; 10] = [
    "source",
    "topic",
    "partition",
    "from",
    "to",
    "key",
    "header",
    "contains",
    "correlation_id",
    "json",
];

fn allowed(extra: &[&'static str]) -> Vec<&'static str> {
    FILTER_PARAMETERS.iter().chain(extra).copied().collect()
}

/// The filter of a query string: `topic`, `header` and `json` may repeat.
fn filter_of(pairs: &[(String, String)]) -> Result<EventFilter, ApiError> {
    let all = |name: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect()
    };
    let selection = FilterSelection {
        source: single(pairs, "source")?,
        topic: None,
        topics: all("topic"),
        partition: parse_number("partition", single(pairs, "partition")?)?,
        from: single(pairs, "from")?,
        to: single(pairs, "to")?,
        key: single(pairs, "key")?,
        headers: all("header"),
        contains: single(pairs, "contains")?,
        correlation_id: single(pairs, "correlation_id")?,
        json: all("json"),
    };
    Ok(selection.compile()?)
}

/// What a viewer may not see of an event: its payload in any form.
const PAYLOAD_FIELDS: [&str; 5] = [
    "payload_text",
    "payload_base64",
    "decoded",
    "decoded_preview",
    "decode_error",
];

/// A viewer's copy of an event (JSON object): payload fields, the key and
/// header values nulled, and `payload_redacted` says so.
fn redact_for_viewer(event: &mut serde_json::Value) {
    if let Some(object) = event.as_object_mut() {
        for field in PAYLOAD_FIELDS.iter().chain(&["key", "key_base64"]) {
            if object.contains_key(*field) {
                object.insert((*field).to_owned(), serde_json::Value::Null);
            }
        }
        if let Some(headers) = object.get_mut("headers").and_then(|h| h.as_array_mut()) {
            for header in headers {
                header["value"] = serde_json::Value::Null;
            }
        }
        if let Some(amqp) = object.get_mut("amqp").and_then(|a| a.as_object_mut()) {
            amqp.insert("headers_table".to_owned(), serde_json::Value::Null);
        }
        object.insert("payload_redacted".to_owned(), serde_json::Value::Bool(true));
    }
}

/// Viewers search by metadata only: a payload condition would tell them
/// what the payload holds.
fn check_viewer_filter(principal: &Principal, pairs: &[(String, String)]) -> Result<(), ApiError> {
    if principal.can(Role::Analyst) {
        return Ok(());
    }
    if let Some((name, _)) = pairs
        .iter()
        .find(|(name, _)| ["contains", "json", "key", "header"].contains(&name.as_str()))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the {name:?} filter looks into payloads, keys or header values, which the viewer role does not see"),
        ));
    }
    Ok(())
}

fn audit_detail(audit: Option<&Extension<AuditSlot>>, raw: Option<&str>) {
    if let Some(Extension(slot)) = audit {
        slot.detail(
            raw.unwrap_or_default()
                .chars()
                .take(10_000)
                .collect::<String>(),
        );
    }
}

pub(crate) async fn search_events(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    audit: Option<Extension<AuditSlot>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    audit_detail(audit.as_ref(), raw.as_deref());
    let pairs = query_pairs(raw.as_deref(), &allowed(&["limit", "cursor"]))?;
    check_viewer_filter(&principal, &pairs)?;
    let limit = parse_number::<usize>("limit", single(&pairs, "limit")?)?.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "query parameter \"limit\" must be between 1 and {MAX_PAGE}"
        )));
    }
    let search = EventSearch {
        filter: filter_of(&pairs)?,
        limit,
        cursor: single(&pairs, "cursor")?
            .map(|text| Cursor::decode(&text))
            .transpose()?,
    };
    let page =
        hindsight_query::events::search(&state.engine.for_principal(&principal), &search).await?;
    if let Some(Extension(slot)) = &audit {
        slot.add_count(page.events.len() as u64);
    }
    if principal.can(Role::Analyst) {
        return Ok(Json(page).into_response());
    }
    let mut page = serde_json::to_value(&page)
        .map_err(|error| ApiError::internal(format!("cannot encode a page: {error}")))?;
    if let Some(events) = page["events"].as_array_mut() {
        events.iter_mut().for_each(redact_for_viewer);
    }
    Ok(Json(page).into_response())
}

#[derive(Debug, Serialize)]
struct Bucket {
    start: Option<String>,
    count: u64,
}

#[derive(Debug, Serialize)]
struct Histogram {
    step_ms: i64,
    buckets: Vec<Bucket>,
}

pub(crate) async fn histogram(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    audit: Option<Extension<AuditSlot>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    audit_detail(audit.as_ref(), raw.as_deref());
    let pairs = query_pairs(raw.as_deref(), &allowed(&["step_ms"]))?;
    check_viewer_filter(&principal, &pairs)?;
    let step_ms = parse_number::<i64>("step_ms", single(&pairs, "step_ms")?)?
        .ok_or_else(|| ApiError::bad_request("query parameter \"step_ms\" is required"))?;
    let filter = filter_of(&pairs)?;
    let buckets = hindsight_query::events::histogram(
        &state.engine.for_principal(&principal),
        &filter,
        step_ms.saturating_mul(1000),
    )
    .await?;
    if let Some(Extension(slot)) = &audit {
        slot.add_count(buckets.iter().map(|(_, count)| *count).sum());
    }
    Ok(Json(Histogram {
        step_ms,
        buckets: buckets
            .into_iter()
            .map(|(start, count)| Bucket {
                start: rfc3339(start),
                count,
            })
            .collect(),
    })
    .into_response())
}

#[derive(Debug, Serialize)]
struct FilterSql {
    /// The filter as a condition over the `events` view.
    #[serde(rename = "where")]
    condition: String,
    /// A query selecting the filter's events, as a replay's SQL selection.
    sql: String,
}

pub(crate) async fn filter_sql(
    audit: Option<Extension<AuditSlot>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    audit_detail(audit.as_ref(), raw.as_deref());
    let pairs = query_pairs(raw.as_deref(), &allowed(&[]))?;
    let condition = filter_of(&pairs)?.to_sql();
    Ok(Json(FilterSql {
        sql: format!("SELECT event_id, source, topic FROM events WHERE {condition}"),
        condition,
    })
    .into_response())
}

pub(crate) async fn get_event(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    audit: Option<Extension<AuditSlot>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(event_id) = path.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    audit_detail(audit.as_ref(), Some(&event_id));
    let engine = state.engine.for_principal(&principal);
    match hindsight_query::events::fetch(&engine, &event_id).await? {
        Some(detail) => {
            if let Some(Extension(slot)) = &audit {
                slot.add_count(1);
            }
            if principal.can(Role::Analyst) {
                return Ok(Json(detail).into_response());
            }
            let mut detail = serde_json::to_value(&detail)
                .map_err(|error| ApiError::internal(format!("cannot encode an event: {error}")))?;
            redact_for_viewer(&mut detail);
            Ok(Json(detail).into_response())
        }
        None => Err(ApiError::not_found(format!(
            "no event {event_id} in the archive"
        ))),
    }
}
