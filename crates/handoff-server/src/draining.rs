//! [`Draining`]: the signal [`crate::serve`] gives every request when shutdown starts, so answers
//! that would never end by themselves (the revocation stream) end and the drain can finish.

use tokio::sync::watch;

/// A request extension: resolves [`Draining::started`] once the listener stops accepting.
#[derive(Clone, Debug)]
pub struct Draining(watch::Receiver<bool>);

impl Draining {
    /// The signal and its switch; `true` on the switch starts the drain.
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (switch, signal) = watch::channel(false);
        (switch, Self(signal))
    }

    /// Completes when shutdown starts (or the listener is gone).
    pub async fn started(mut self) {
        let _ = self.0.wait_for(|draining| *draining).await;
    }
}
