//! `GET /v1/admin/tasks/{id}/records` (operators): every record about one task, in order, as
//! stored (what `handoff trace --server` prints).

use super::no_store::token_response;
use crate::error::ApiError;
use crate::routes::auth;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use handoff_core::ServiceError;
use handoff_core::ids::TaskId;
use serde_json::json;

pub async fn task_records(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let handoff = state.handoff();
    auth::operator(&handoff, &headers)?;
    handoff_core::text::check_identifier("task", &id)?;
    let records = handoff
        .store()
        .task_records(&TaskId::new(id.as_str()))
        .await
        .map_err(ServiceError::from)?;
    let records: Vec<_> = records
        .iter()
        .map(|r| json!({ "seq": r.seq, "at": r.at, "body": r.body, "hash": r.hash, "prev_hash": r.prev_hash }))
        .collect();
    Ok(token_response(
        StatusCode::OK,
        json!({ "task": id, "records": records }),
    ))
}
