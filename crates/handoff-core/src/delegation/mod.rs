//! Delegation: the record and its actor chain ([`model`]), and handing part of a task to another
//! workload ([`delegate`]).

pub mod delegate;
pub mod model;

pub use delegate::{DelegateRequest, Delegated};
pub use model::Delegation;
