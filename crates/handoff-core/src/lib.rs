//! Handoff's pure core: identities, tasks, request-time decisions, permits, minting and the audit chain.
//!
//! Nothing here speaks HTTP or SQL. Storage, time, keys and randomness come in through traits
//! ([`store::Store`], [`clock::Clock`], [`random::Randomness`]) so every rule can be tested alone.
//!
//! [`Handoff`] ([`handoff`]) holds what a request needs; each operation lives with its concept:
//! [`exchange`] (one handoff, top to bottom), [`task`], [`approval`], [`delegation`],
//! [`containment`], [`evidence`]. [`refusal`] records every refusal of a known caller.

pub mod approval;
pub mod audit;
pub mod audit_query;
pub mod budget;
pub mod cache;
mod caller;
pub mod checkpoint;
pub mod clock;
pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod containment;
pub mod counters;
pub mod delegation;
pub mod error;
pub mod evidence;
pub mod exchange;
pub mod handoff;
pub mod hash;
pub mod identity;
pub mod ids;
pub mod issuer_keys;
pub mod json;
pub mod key_sealing;
pub mod keys;
pub mod limits;
pub mod live;
pub mod notify;
pub mod ocsf;
pub mod policy;
pub mod privileges;
pub mod random;
pub mod readiness;
mod refusal;
pub mod replay;
pub mod rotation;
pub mod store;
pub mod task;
pub mod template;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod text;
pub mod time;
pub mod token;
pub mod trace;
pub mod usage;

pub use error::ServiceError;
pub use handoff::Handoff;
