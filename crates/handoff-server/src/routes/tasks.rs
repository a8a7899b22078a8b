//! Tasks as a small JSON API: open one (getting its Transaction Token) and end it.

use super::no_store::token_response;
use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use handoff_core::Handoff;
use handoff_core::ids::TaskId;
use handoff_core::task::{OpenTaskRequest, OpenedTask};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The body of `POST /v1/tasks` (and a txn_token request's `request_details`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    pub intent: String,
    pub purpose: Option<String>,
    pub user: String,
    #[serde(default)]
    pub plan: Vec<String>,
    pub lifetime_seconds: Option<u32>,
}

impl OpenBody {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid_request(format!("the body does not parse: {e}")))
    }

    pub fn into_request(self) -> OpenTaskRequest {
        OpenTaskRequest {
            intent: self.intent,
            purpose: self.purpose.unwrap_or_default(),
            user: self.user,
            plan: self.plan,
            lifetime_seconds: self.lifetime_seconds,
        }
    }
}

/// The agent's identity token (`Authorization: Bearer`).
pub(super) fn identity_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    super::auth::bearer(
        headers,
        "an `Authorization: Bearer` agent identity is required",
    )
}

pub fn opened_json(
    handoff: &Handoff,
    opened: &OpenedTask,
) -> serde_json::Map<String, serde_json::Value> {
    let task = &opened.task;
    let value = json!({
        "task_id": task.id.as_str(),
        "txn_token": opened.txn_token,
        "purpose": task.purpose.as_str(),
        "user": task.user.as_str(),
        "plan": task.plan.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "expires_at": task.expires_at.rfc3339(),
        "expires_in": (task.expires_at.seconds() - handoff.now().seconds()).max(0),
        "decision_id": opened.decision_id.as_str(),
    });
    match value {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

pub async fn open(
    State(handoff): State<Arc<Handoff>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let identity = handoff.authenticate(identity_token(&headers)?)?;
    let body = OpenBody::parse(&body)?;
    let opened = handoff.open_task(&identity, body.into_request()).await?;
    Ok(token_response(
        StatusCode::CREATED,
        serde_json::Value::Object(opened_json(&handoff, &opened)),
    ))
}

pub async fn end(
    State(handoff): State<Arc<Handoff>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let identity = handoff.authenticate(identity_token(&headers)?)?;
    let task = handoff.end_task(&identity, &TaskId::new(id)).await?;
    Ok(Json(
        json!({ "task_id": task.id.as_str(), "state": task.state.as_str() }),
    ))
}
