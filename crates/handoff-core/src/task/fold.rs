//! The one fold of a permitted exchange into a task's facts (and its agent's counters): what an
//! exchange's commit applies, and what a replay applies again, record by record, to rebuild the
//! facts a recorded decision saw (`crate::replay`).

use crate::config::{ActionConfig, Config};
use crate::counters::{self, AgentFacts};
use crate::ids::SystemId;
use crate::policy::DetailValue;
use crate::task::TaskFacts;
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// One permitted exchange, as far as the facts are concerned.
pub struct Granted<'a> {
    pub system: &'a SystemId,
    pub actions: &'a [ActionConfig],
    pub details: &'a BTreeMap<String, DetailValue>,
    /// The minted token's expiry (for the live-token budget).
    pub expires_at_seconds: i64,
    pub at: Timestamp,
}

/// Folds `granted` into `facts` and `agent`; `true` when an agent counter changed (so the
/// agent's facts must be written with the grant).
pub fn fold_grant(
    config: &Config,
    granted: &Granted<'_>,
    facts: &mut TaskFacts,
    agent: &mut AgentFacts,
) -> bool {
    facts.record_grant(granted.system, granted.actions, granted.at);
    facts.record_token(granted.expires_at_seconds, granted.at.seconds());
    counters::record(
        config,
        granted.actions,
        granted.details,
        facts,
        agent,
        granted.at,
    )
}
