//! Handoff's pure core: identities, tasks, request-time decisions, permits, minting and the audit chain.
//!
//! Nothing here speaks HTTP or SQL. Storage, time, keys and randomness come in through traits
//! ([`store::Store`], [`clock::Clock`], [`random::Randomness`]) so every rule can be tested alone.

pub mod admission;
pub mod approval;
pub mod approvals;
pub mod audit;
pub mod budget;
pub mod cache;
pub mod clock;
pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod containment;
pub mod counters;
pub mod delegation;
pub mod delegations;
pub mod error;
pub mod evidence;
pub mod hash;
pub mod identity;
pub mod ids;
pub mod json;
pub mod keys;
pub mod notify;
pub mod policy;
pub mod policy_test;
pub mod random;
pub mod revocation;
pub mod service;
pub mod store;
pub mod task;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod text;
pub mod time;
pub mod token;

pub use error::ServiceError;
pub use service::Handoff;
