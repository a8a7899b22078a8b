//! A task's records for operators: `GET /v1/tasks/{id}/trace`, the task as a tree (what
//! `handoff trace --server` prints), and `GET /v1/admin/tasks/{id}/records`, every record about
//! it in order, as stored.

use super::no_store::token_response;
use crate::error::ApiError;
use crate::routes::auth;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use handoff_core::ServiceError;
use handoff_core::ids::TaskId;
use handoff_core::task::trace::MAX_TRACE_RECORDS;
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

/// `GET /v1/tasks/{id}/trace` (operators): the task's story as a tree (core's `TaskTrace`): its
/// steps in order, each use under its grant, each delegation under its parent with its
/// delegate's steps.
pub async fn task_trace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let handoff = state.handoff();
    auth::operator(&handoff, &headers)?;
    handoff_core::text::check_identifier("task", &id)?;
    let trace = handoff
        .task_trace(&TaskId::new(id.as_str()), MAX_TRACE_RECORDS)
        .await?;
    Ok(token_response(StatusCode::OK, trace))
}
