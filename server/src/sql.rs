//! `POST /api/v1/sql`: read-only SQL, streamed in the format asked for.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use hindsight_query::format::{Encoder, OutputFormat};
use hindsight_query::{Error, QueryOutput};
use serde::Deserialize;

use crate::access::AuditSlot;
use crate::error::ApiError;
use crate::layers::media_type;
use crate::params::{query_pairs, single};
use crate::AppState;
use axum::Extension;
use hindsight_archive::access::Principal;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

pub(crate) async fn sql(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    audit: Option<Extension<AuditSlot>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_input"
        };
        ApiError::new(status, kind, rejection.body_text())
    })?;
    let pairs = query_pairs(raw.as_deref(), &["format"])?;
    let format =
        match single(&pairs, "format")? {
            Some(name) => match name.parse::<OutputFormat>()? {
                OutputFormat::Table => return Err(ApiError::bad_request(
                    "format table is for the command line: use ndjson, json, csv, arrow or parquet",
                )),
                other => other,
            },
            None => {
                let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
                OutputFormat::from_accept(accept).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_ACCEPTABLE,
                        "not_acceptable",
                        "Accept must allow application/x-ndjson, application/json, text/csv, \
                     application/vnd.apache.arrow.stream or application/vnd.apache.parquet",
                    )
                })?
            }
        };
    // No content type and text/plain never get here: `refuse_foreign_requests`.
    let text = match media_type(&headers).as_deref() {
        Some("application/json") => {
            let request: SqlRequest = serde_json::from_slice(&body).map_err(|error| {
                ApiError::bad_request(format!("the body must be {{\"sql\": \"…\"}}: {error}"))
            })?;
            request.sql
        }
        Some("application/sql" | "text/sql") => String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::bad_request("the SQL text is not valid UTF-8"))?,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "Content-Type {} is not one /api/v1/sql takes: send the SQL as \
                     application/sql, or as application/json {{\"sql\": \"…\"}}",
                    other.unwrap_or("(none)")
                ),
            ))
        }
    };
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("the SQL statement is empty"));
    }
    let audit = audit.map(|Extension(slot)| slot);
    if let Some(slot) = &audit {
        slot.detail(text.chars().take(10_000).collect::<String>());
    }
    let output = state.engine.for_principal(&principal).sql(&text).await?;
    stream_output(output, format, audit).await
}

/// Streams a started query. An error before the first batch is a JSON
/// error with its status; an error later cuts the body short (the client
/// sees an incomplete chunked response).
async fn stream_output(
    output: QueryOutput,
    format: OutputFormat,
    audit: Option<AuditSlot>,
) -> Result<Response, ApiError> {
    let QueryOutput {
        schema,
        mut stream,
        stats,
    } = output;
    let first = match stream.next().await {
        Some(Ok(batch)) => Some(batch),
        Some(Err(error)) => return Err(Error::from(error).into()),
        None => None,
    };
    let mut encoder = Encoder::new(format, &schema)?;
    let head = match &first {
        Some(batch) => encoder.batch(batch)?,
        None => Vec::new(),
    };
    // The audit record counts the rows sent, and is written when the body ends.
    if let Some(slot) = &audit {
        slot.add_count(first.as_ref().map_or(0, |batch| batch.num_rows() as u64));
    }
    let rest = futures::stream::unfold(
        Some((stream, encoder, schema, audit)),
        |state| async move {
            let (mut stream, mut encoder, schema, audit) = state?;
            match stream.next().await {
                Some(Ok(batch)) => {
                    if let Some(slot) = &audit {
                        slot.add_count(batch.num_rows() as u64);
                    }
                    let bytes = encoder.batch(&batch).map_err(std::io::Error::other);
                    Some((
                        bytes.map(Bytes::from),
                        Some((stream, encoder, schema, audit)),
                    ))
                }
                Some(Err(error)) => {
                    let error = Error::from(error);
                    tracing::warn!(kind = %error.kind(), error = %error, "query failed while streaming");
                    Some((Err(std::io::Error::other(error)), None))
                }
                None => {
                    let bytes = encoder.finish(&schema).map_err(std::io::Error::other);
                    Some((bytes.map(Bytes::from), None))
                }
            }
        },
    );
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) })
        .chain(rest)
        .filter(|chunk| futures::future::ready(!matches!(chunk, Ok(bytes) if bytes.is_empty())));
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(
        "x-hindsight-segments-scanned",
        HeaderValue::from(stats.segments_scanned),
    );
    headers.insert(
        "x-hindsight-segments-from-catalog",
        HeaderValue::from(stats.segments_from_catalog),
    );
    Ok(response)
}
