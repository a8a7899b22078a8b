//! The router: one module per concern.

pub(crate) mod approvals;
mod audit;
mod auth;
pub(crate) mod containment;
pub(crate) mod delegations;
mod discovery;
mod evidence;
pub(crate) mod form;
mod keys;
mod no_store;
mod records;
mod reload;
pub(crate) mod tasks;
pub(crate) mod token;

use crate::state::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use handoff_core::Handoff;
use handoff_core::live::Current;
use std::sync::Arc;
use tokio::sync::Notify;

/// Largest request body accepted anywhere (authorization details included).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The router over a service that is never reloaded.
pub fn app(handoff: Arc<Handoff>) -> Router {
    app_live(Current::fixed(handoff))
}

/// The router over `current`: each request is served by the service current when it arrived,
/// and `POST /v1/admin/reload` swaps it.
pub fn app_live(current: Arc<Current>) -> Router {
    let state = AppState {
        current,
        feed: Arc::new(Notify::new()),
    };
    Router::new()
        .route("/.well-known/jwks.json", get(discovery::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::metadata),
        )
        .route("/healthz", get(discovery::health))
        .route("/readyz", get(discovery::ready))
        .route("/metrics", get(crate::metrics::render))
        .route("/oauth/token", post(token::token))
        .route("/v1/tasks", post(tasks::open))
        .route("/v1/tasks/{id}/end", post(tasks::end))
        .route("/v1/delegations", post(delegations::delegate))
        .route("/v1/evidence", post(evidence::report))
        .route("/oauth/introspect", post(containment::introspect))
        .route("/oauth/revoke", post(containment::revoke_token))
        .route("/v1/admin/revoke", post(containment::revoke))
        .route("/v1/admin/freeze", post(containment::freeze))
        .route("/v1/admin/unfreeze", post(containment::unfreeze))
        .route("/v1/admin/credentials", post(containment::credential))
        .route("/v1/admin/reload", post(reload::reload))
        .route("/v1/admin/keys/rotate", post(keys::rotate))
        .route("/v1/admin/tasks/{id}/records", get(records::task_records))
        .route("/v1/tasks/{id}/trace", get(records::task_trace))
        .route("/v1/audit/checkpoints", post(audit::checkpoint))
        .route("/v1/audit/records", get(audit::records))
        .route("/v1/admin/audit/chain", get(audit::chain))
        .route("/v1/admin/audit/checkpoints", get(audit::checkpoints))
        .route("/v1/revocations", get(containment::feed))
        .route("/v1/revocations/stream", get(containment::stream))
        .route("/v1/approvals", get(approvals::list))
        .route("/v1/approvals/{id}", get(approvals::show))
        .route("/v1/approvals/{id}/approve", post(approvals::approve))
        .route("/v1/approvals/{id}/deny", post(approvals::deny))
        .route("/v1/approvals/{id}/cancel", post(approvals::cancel))
        .fallback(discovery::not_found)
        // One stack, outermost first (see `listener::serve`).
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::middleware::from_fn(|request, next| {
                    crate::refusal::declared_length(MAX_BODY_BYTES, request, next)
                }))
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .with_state(state)
}
