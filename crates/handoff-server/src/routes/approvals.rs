//! Approvals for people: list, show, approve, deny, cancel. Approvers authenticate with a
//! person's token (Bearer) from a trusted approver issuer; operators may list, show and cancel.

use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use handoff_core::Handoff;
use handoff_core::approval::{Approval, ApprovalStatus};
use handoff_core::approval::{ApprovalView, Canceller, Viewer};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    super::auth::bearer(
        headers,
        "an approver's or operator's bearer token is required",
    )
}

fn viewer(handoff: &Handoff, headers: &HeaderMap) -> Result<Viewer, ApiError> {
    let token = bearer(headers)?;
    if let Ok(operator) = handoff.authenticate_operator(token) {
        return Ok(Viewer::Operator(operator));
    }
    Ok(Viewer::Person(handoff.authenticate_approver(token)?))
}

pub fn approval_json(approval: &Approval, status: ApprovalStatus) -> Value {
    json!({
        "id": approval.id,
        "status": status.as_str(),
        "task": approval.task.as_str(),
        "agent": approval.agent.as_str(),
        "user": approval.user.as_str(),
        "system": approval.system.as_str(),
        "risk": approval.risk,
        "actions": approval.actions,
        "resource": approval.resource,
        "authorization_details": approval.details,
        "request_hash": approval.request_hash,
        "approver_group": approval.group,
        "created_at": approval.created_at.rfc3339(),
        "expires_at": approval.expires_at.rfc3339(),
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at.map(|t| t.rfc3339()),
        "reason": approval.reason,
        "used_by_token": approval.consumed_by,
        "escalated": approval.escalated,
    })
}

fn view_json(view: &ApprovalView) -> Value {
    let mut value = approval_json(&view.approval, view.status);
    if let Value::Object(map) = &mut value {
        map.insert(
            "task_context".to_owned(),
            json!({ "intent": view.intent, "purpose": view.purpose, "state": view.task_state, "history": view.history }),
        );
    }
    value
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    system: Option<String>,
}

pub async fn list(
    State(handoff): State<Arc<Handoff>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let viewer = viewer(&handoff, &headers)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(ApprovalStatus::parse(text).ok_or_else(|| {
            ApiError::invalid_request(
                "status must be pending, approved, denied, expired or cancelled".to_owned(),
            )
        })?),
    };
    let approvals = handoff
        .list_approvals(&viewer, status, query.system.as_deref())
        .await?;
    Ok(Json(
        json!({ "approvals": approvals.iter().map(|a| approval_json(a, a.status)).collect::<Vec<_>>() }),
    ))
}

pub async fn show(
    State(handoff): State<Arc<Handoff>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let viewer = viewer(&handoff, &headers)?;
    Ok(Json(view_json(&handoff.approval_view(&viewer, &id).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    reason: String,
}

pub(crate) fn reason(body: &[u8]) -> Result<String, ApiError> {
    let body: ReasonBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_request(format!("the body must be {{\"reason\": ...}}: {e}"))
    })?;
    Ok(body.reason)
}

async fn decide(
    handoff: &Handoff,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
    approve: bool,
) -> Result<Json<Value>, ApiError> {
    let person = handoff.authenticate_approver(bearer(headers)?)?;
    let decided = handoff
        .decide_approval(&person, id, approve, &reason(body)?)
        .await?;
    let outcome = if approve { "approved" } else { "denied" };
    metrics::counter!(crate::metrics::APPROVALS, "outcome" => outcome).increment(1);
    Ok(Json(approval_json(&decided, decided.status)))
}

pub async fn approve(
    State(handoff): State<Arc<Handoff>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    decide(&handoff, &headers, &id, &body, true).await
}

pub async fn deny(
    State(handoff): State<Arc<Handoff>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    decide(&handoff, &headers, &id, &body, false).await
}

pub async fn cancel(
    State(handoff): State<Arc<Handoff>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let token = bearer(&headers)?;
    let canceller = match handoff.authenticate_operator(token) {
        Ok(operator) => Canceller::Operator(operator),
        Err(_) => Canceller::Agent(handoff.authenticate(token)?),
    };
    let cancelled = handoff
        .cancel_approval(&canceller, &id, &reason(&body)?)
        .await?;
    metrics::counter!(crate::metrics::APPROVALS, "outcome" => "cancelled").increment(1);
    Ok(Json(approval_json(&cancelled, cancelled.status)))
}
