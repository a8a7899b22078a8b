//! Keys and metadata clients discover Handoff by (RFC 7517, RFC 8414).

use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use handoff_core::Handoff;
use handoff_core::token::{GRANT_TOKEN_EXCHANGE, TYPE_ACCESS_TOKEN, TYPE_JWT, TYPE_TXN_TOKEN};
use serde_json::json;
use std::sync::Arc;

pub async fn jwks(State(handoff): State<Arc<Handoff>>) -> Response {
    let mut response = Json(handoff.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

pub async fn metadata(State(handoff): State<Arc<Handoff>>) -> Json<serde_json::Value> {
    let issuer = handoff.config().issuer();
    Json(json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": [GRANT_TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": [],
        "token_exchange_subject_token_types_supported": [TYPE_TXN_TOKEN, TYPE_JWT],
        "token_exchange_requested_token_types_supported": [TYPE_ACCESS_TOKEN, TYPE_TXN_TOKEN],
        "token_exchange_actor_token_types_supported": [TYPE_JWT],
        // RFC 9396 §10: each system's details are of its own type, its id.
        "authorization_details_types_supported": handoff.config().systems.keys()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        "scopes_supported": handoff.config().systems.values()
            .flat_map(|s| s.actions.values().map(|a| a.name.to_string()))
            .collect::<Vec<_>>(),
        "handoff_tasks_endpoint": format!("{issuer}/v1/tasks"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic"],
        "handoff_revocation_feed": format!("{issuer}/v1/revocations"),
    }))
}

pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the store answers and keys and policies are loaded; 503 naming the
/// first failing check otherwise (a load balancer takes the node out of rotation).
pub async fn ready(State(handoff): State<Arc<Handoff>>) -> Response {
    let readiness = handoff.readiness().await;
    let checks: serde_json::Map<String, serde_json::Value> = readiness
        .checks
        .iter()
        .map(|c| {
            let value = c
                .problem
                .as_deref()
                .map_or_else(|| json!("ok"), |p| json!(p));
            (c.name.to_owned(), value)
        })
        .collect();
    let (status, body) = match readiness.failing() {
        None => (
            axum::http::StatusCode::OK,
            json!({ "status": "ready", "checks": checks }),
        ),
        Some(failing) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "status": "unavailable",
                "failing": failing.name,
                "error": failing.problem,
                "checks": checks,
            }),
        ),
    };
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
