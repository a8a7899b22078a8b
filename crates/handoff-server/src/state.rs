//! What every handler can reach.

use axum::extract::FromRef;
use handoff_core::Handoff;
use handoff_core::live::Current;
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct AppState {
    /// The service new requests are served by (swapped by a reload); each handler takes it once.
    pub current: Arc<Current>,
    /// Woken when this node records a revocation, so streams send it at once.
    pub feed: Arc<Notify>,
}

impl AppState {
    /// The service this request is served by, start to end.
    pub fn handoff(&self) -> Arc<Handoff> {
        self.current.get()
    }
}

impl FromRef<AppState> for Arc<Handoff> {
    fn from_ref(state: &AppState) -> Self {
        state.handoff()
    }
}
