//! The router: one module per concern.

mod discovery;
mod form;
mod tasks;
mod token;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use handoff_core::Handoff;
use std::sync::Arc;

/// Largest request body accepted anywhere (authorization details included).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn app(handoff: Arc<Handoff>) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(discovery::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::metadata),
        )
        .route("/healthz", get(discovery::health))
        .route("/oauth/token", post(token::token))
        .route("/v1/tasks", post(tasks::open))
        .route("/v1/tasks/{id}/end", post(tasks::end))
        .fallback(discovery::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(handoff)
}
