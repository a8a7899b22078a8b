//! What every handler can reach.

use axum::extract::FromRef;
use handoff_core::Handoff;
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct AppState {
    pub handoff: Arc<Handoff>,
    /// Woken when this node records a revocation, so streams send it at once.
    pub feed: Arc<Notify>,
}

impl FromRef<AppState> for Arc<Handoff> {
    fn from_ref(state: &AppState) -> Self {
        state.handoff.clone()
    }
}
