//! Human approval: the model ([`model`]: an approval bound to the canonical hash of one exact
//! request), the gate on the exchange path ([`gate`]), the owners' operations ([`console`]) and
//! the background sweep that expires and escalates ([`sweep`]).

pub mod console;
mod gate;
pub mod model;
mod sweep;

pub use console::{ApprovalView, Canceller, HistoryItem, MAX_HISTORY, MAX_LIST, Viewer};
pub use model::{Approval, ApprovalStatus, canonical_json, request_hash};
pub use sweep::Swept;
