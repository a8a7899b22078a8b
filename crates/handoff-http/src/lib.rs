//! What every Handoff door (the server's JSON API and token endpoint, the gateway, the MCP
//! endpoint, the use-report endpoint) shares on the wire: one parser of the `Authorization`
//! credential and one JSON error body.
//!
//! It sits beside `handoff-core`, not inside it: the core speaks no HTTP (`STYLE.md` rule 1),
//! and both `handoff-server` and `handoff-gateway` depend on this crate, never on each other.

pub mod credential;
pub mod error_body;

/// The HTTP types the parser and the body are built on (for callers without axum of their own).
pub use axum::http;
pub use credential::{Credential, CredentialError, authorization, bearer, credential};
pub use error_body::{ErrorBody, Refusal};
