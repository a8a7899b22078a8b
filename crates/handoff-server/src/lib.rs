//! Handoff's HTTP interface: `app(handoff)` builds the axum router; each concern has its module.

mod error;
mod routes;
mod state;

pub use error::ApiError;
pub use routes::app;
