//! Handoff's HTTP interface: `app(handoff)` builds the axum router; each concern has its module.

mod error;
mod routes;

pub use error::ApiError;
pub use routes::app;
