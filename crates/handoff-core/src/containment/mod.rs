//! Containment: introspection (RFC 7662), revocation (RFC 7009 and beyond), freezes, system
//! credentials and the revocation feed. Every change is recorded in the audit chain with who
//! did it and why, and takes effect for the next exchange or introspection.
//!
//! - [`revocation`]: what can be cut (`RevocationKind`), feed entries, a token's status.
//! - [`callers`]: operators, systems and token callers.
//! - [`introspect`]: introspection and `why_inactive`.
//! - [`revoke`]: revoking, freezing and the feed.

pub mod callers;
pub mod introspect;
pub mod revocation;
pub mod revoke;

pub use callers::{Operator, SystemCaller, TokenCaller};
pub use introspect::{Inactive, Introspection};
pub use revocation::{Revocation, RevocationEntry, RevocationKind, TokenStatus};
pub use revoke::{MAX_FEED_PAGE, RevokeReport};
