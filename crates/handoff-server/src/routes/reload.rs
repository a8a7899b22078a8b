//! `POST /v1/admin/reload` (operators): read the deployment again and swap it in, or refuse it
//! with every problem listed (400 `invalid_deployment`, `problems`) while the old one serves.

use crate::error::ApiError;
use crate::routes::auth;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub async fn reload(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let operator = auth::operator(&state.handoff(), &headers)?;
    let report = state.current.reload(operator.name()).await?;
    Ok(Json(json!({
        "policy_set": report.policy_set,
        "previous_policy_set": report.previous_policy_set,
    }))
    .into_response())
}
