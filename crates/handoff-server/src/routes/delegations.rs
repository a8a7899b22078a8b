//! `POST /v1/delegations`: a task's agent (or a delegate, within the configured depth) hands part
//! of the task to another workload and gets the delegate's child Transaction Token.

use super::no_store::token_response;
use super::tasks::identity_token;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use handoff_core::Handoff;
use handoff_core::delegation::DelegateRequest;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegateBody {
    /// The delegator's Transaction Token.
    txn_token: String,
    delegate: String,
    delegate_issuer: Option<String>,
    /// `system:action` items.
    scope: Vec<String>,
    lifetime_seconds: Option<u32>,
}

/// The delegation a `POST /v1/delegations` body asks for, by the workload holding `actor_token`.
pub fn delegate_request(actor_token: String, body: &[u8]) -> Result<DelegateRequest, ApiError> {
    let body: DelegateBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("the body does not parse: {e}")))?;
    Ok(DelegateRequest {
        actor_token,
        subject_token: body.txn_token,
        delegate: body.delegate,
        delegate_issuer: body.delegate_issuer,
        scope: body.scope,
        lifetime_seconds: body.lifetime_seconds,
    })
}

pub async fn delegate(
    State(handoff): State<Arc<Handoff>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor_token = identity_token(&headers)?.to_owned();
    let delegated = handoff
        .delegate(delegate_request(actor_token, &body)?)
        .await?;
    let delegation = &delegated.delegation;
    Ok(token_response(
        StatusCode::CREATED,
        json!({
            "delegation_id": delegation.id,
            "task_id": delegation.task.as_str(),
            "txn_token": delegated.txn_token,
            "delegate": delegation.delegate.as_str(),
            "scope": delegation.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            "depth": delegation.depth,
            "expires_at": delegation.expires_at.rfc3339(),
            "expires_in": (delegation.expires_at.seconds() - handoff.now().seconds()).max(0),
        }),
    ))
}
