//! Handoff's HTTP interface: `app(handoff)` builds the axum router; each concern has its module.

mod draining;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod listener;
pub mod metrics;
mod refusal;
mod request_log;
mod routes;
mod state;

pub use draining::Draining;
pub use error::ApiError;
pub use listener::serve;
pub use routes::{app, app_live};
