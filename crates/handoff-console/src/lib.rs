//! The web console at `/console`: a door for people. Approvers sign in (a one-time link from
//! `handoff approver login`), see the pending approvals of their groups and decide them;
//! operators (members of `[console] operator_group`) read a task's timeline and revoke, freeze
//! or unfreeze. Every decision goes through the same core calls as the HTTP API
//! (`Handoff::list_approvals`, `approval_view`, `decide_approval`, `revoke`), with the signed-in
//! person as the approver: the page hides nothing the server would allow, and allows nothing
//! the server would refuse.
//!
//! Every asset is embedded (`include_str!`), served under a strict Content-Security-Policy.

mod approvals;
mod assets;
mod error;
mod oidc;
mod operator;
mod session;

pub use session::Sessions;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use handoff_core::live::Current;
use std::sync::Arc;

/// Where the console is served.
pub const PREFIX: &str = "/console";

/// Largest request body the console accepts (a reason, a sign-in link request).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What every console handler reaches: the service current when the request arrived, and the
/// console's own sign-in links and sessions (kept in this process, never in the store).
#[derive(Clone)]
pub struct ConsoleState {
    current: Arc<Current>,
    sessions: Arc<Sessions>,
}

impl ConsoleState {
    fn handoff(&self) -> Arc<handoff_core::Handoff> {
        self.current.get()
    }
}

/// The console's router (no fallback: it merges into the server's router, which has one).
pub fn router(current: Arc<Current>) -> Router {
    router_with(current, Arc::new(Sessions::default()))
}

/// [`router`] over the given sessions.
pub fn router_with(current: Arc<Current>, sessions: Arc<Sessions>) -> Router {
    let state = ConsoleState { current, sessions };
    Router::new()
        .route("/console", get(assets::to_index))
        .route("/console/", get(assets::index))
        .route("/console/assets/console.js", get(assets::script))
        .route("/console/assets/console.css", get(assets::style))
        .route("/console/assets/icon.svg", get(assets::icon))
        .route("/console/sign-in", get(session::sign_in))
        .route("/console/oidc/start", get(oidc::start))
        .route("/console/oidc/callback", get(oidc::callback))
        .route(
            "/console/api/sign-in-options",
            get(session::sign_in_options),
        )
        .route("/console/api/sign-out", post(session::sign_out))
        .route("/console/api/me", get(session::me))
        .route(
            "/console/api/admin/sign-in-links",
            post(session::create_link),
        )
        .route("/console/api/approvals", get(approvals::inbox))
        .route("/console/api/approvals/{id}", get(approvals::show))
        .route(
            "/console/api/approvals/{id}/approve",
            post(approvals::approve),
        )
        .route("/console/api/approvals/{id}/deny", post(approvals::deny))
        .route("/console/api/events", get(approvals::events))
        .route("/console/api/live", get(operator::live))
        .route("/console/api/tasks/{id}", get(operator::task))
        .route("/console/api/revoke", post(operator::revoke))
        .route("/console/api/freeze", post(operator::freeze))
        .route("/console/api/unfreeze", post(operator::unfreeze))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(assets::security_headers))
        .with_state(state)
}
