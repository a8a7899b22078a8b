//! `POST /v1/admin/keys/rotate` (operators): a new signing key becomes active at once; the old
//! one stays in the JWKS until every token it signed has expired.

use crate::error::ApiError;
use crate::routes::auth;
use crate::routes::containment::json_body;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use handoff_core::config::SigningAlgorithm;
use serde::Deserialize;
use serde_json::json;

/// The body, which may be empty: `{"algorithm": "ES256" | "EdDSA"}` (default: the active key's).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    algorithm: Option<String>,
}

pub async fn rotate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let handoff = state.handoff();
    let operator = auth::operator(&handoff, &headers)?;
    let body: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        json_body(&body)?
    };
    let algorithm = match body.algorithm.as_deref() {
        None => None,
        Some(name) => Some(SigningAlgorithm::from_jws_name(name).ok_or_else(|| {
            ApiError::invalid_request("`algorithm` must be `ES256` or `EdDSA`".to_owned())
        })?),
    };
    let report = handoff.rotate_keys(operator.name(), algorithm).await?;
    Ok(Json(json!({
        "kid": report.kid,
        "previous_kid": report.previous_kid,
        "algorithm": report.algorithm.jws_name(),
        "previous_published_until": report.previous_published_until.rfc3339(),
    }))
    .into_response())
}
