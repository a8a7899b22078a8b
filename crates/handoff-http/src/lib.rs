//! What every Handoff door (the server's JSON API and token endpoint, the gateway, the MCP
//! endpoint, the use-report endpoint) shares on the wire: one parser of the `Authorization`
//! credential and one JSON error body; and the facts a handler leaves on its answer for the
//! request log and the metrics (`facts.rs`); the W3C trace context every door continues and the
//! gateway passes on (`trace.rs`).
//!
//! It sits beside `handoff-core`, not inside it: the core speaks no HTTP (`STYLE.md` rule 1),
//! and both `handoff-server` and `handoff-gateway` depend on this crate, never on each other.

pub mod credential;
pub mod error_body;
pub mod facts;
pub mod trace;

/// The HTTP types the parser and the body are built on (for callers without axum of their own).
pub use axum::http;
pub use credential::{Credential, CredentialError, authorization, bearer, credential};
pub use error_body::{ErrorBody, Refusal};
pub use facts::{ExchangeFacts, ForwardFacts, ToolCallFacts};
