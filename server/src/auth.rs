//! The bearer-token check: both sides hashed with blake3, then compared in
//! constant time with `subtle`.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &state.token_hash else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(presented) = presented else {
        return ApiError::unauthorized("this route needs an Authorization: Bearer <token> header")
            .into_response();
    };
    let presented_hash = blake3::hash(presented.as_bytes());
    if bool::from(presented_hash.as_bytes().ct_eq(expected.as_ref())) {
        next.run(request).await
    } else {
        ApiError::unauthorized("the bearer token is not valid").into_response()
    }
}
