//! Handoff's HTTP interface: `app(handoff)` builds the axum router; each concern has its module.

mod error;
#[doc(hidden)]
pub mod fuzzing;
mod listener;
mod refusal;
mod routes;
mod state;

pub use error::ApiError;
pub use listener::serve;
pub use routes::{app, app_live};
