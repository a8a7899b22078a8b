//! Tasks: one unit of delegated work, and the facts policy sees of its past.

use crate::config::ActionConfig;
use crate::ids::{ActionName, AgentId, Purpose, SystemId, TaskId, UserId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Open,
    Ended,
    Revoked,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Ended => "ended",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(Self::Open),
            "ended" => Some(Self::Ended),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    /// The issuer that vouched for the agent; the same agent id from another issuer is another agent.
    pub agent_issuer: String,
    pub agent: AgentId,
    pub user: UserId,
    pub purpose: Purpose,
    /// The original request, verbatim.
    pub intent: String,
    pub plan: BTreeSet<SystemId>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub state: TaskState,
}

impl Task {
    /// The store key of the facts its agent keeps across tasks ([`crate::counters::agent_key`]).
    pub fn agent_key(&self) -> String {
        crate::counters::agent_key(&self.agent_issuer, self.agent.as_str())
    }
}

/// How often an action was granted in a task, and when last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrantCount {
    pub count: u64,
    pub last: Timestamp,
    /// The task's exchange number (1, 2, ...) at the last grant: order without clock ties.
    pub seq: u64,
}

impl Default for Timestamp {
    fn default() -> Self {
        Self::from_millis(0)
    }
}

/// What policy sees of a task's past, kept up to date on every grant rather than rebuilt from the
/// history, so a decision costs the same at the thousandth exchange as at the first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskFacts {
    pub granted: BTreeMap<ActionName, GrantCount>,
    pub systems: BTreeSet<SystemId>,
    /// Sticky: a label gathered once stays for the task's life.
    pub labels: BTreeSet<String>,
    /// Permitted exchanges so far.
    pub exchanges: u64,
    /// Granted actions labelled `write` so far.
    pub writes: u64,
    /// The expiries (in seconds) of the tokens minted and not yet expired when last looked at:
    /// the live-token budget counts them. Facts written before the ids were dropped from this
    /// list (`[jti, exp]` pairs, 70% of the facts' bytes, never read) load as their expiries.
    #[serde(deserialize_with = "live_expiries")]
    pub live: Vec<i64>,
    /// Signed evidence other systems reported, keyed `system:kind`.
    pub evidence: BTreeMap<String, EvidenceFact>,
    /// Task-scoped windowed counters, by counter name.
    pub windows: BTreeMap<String, crate::counters::WindowLog>,
}

/// What policy sees of one kind of evidence: how often and when last it was reported, and every
/// value each declared field has carried (a set, so "tests passed for *this* commit" is a lookup).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvidenceFact {
    pub count: u64,
    pub last: Timestamp,
    pub values: BTreeMap<String, BTreeSet<String>>,
}

/// Distinct values kept per evidence field; more are refused rather than growing the facts.
pub const MAX_EVIDENCE_VALUES: usize = 256;

impl TaskFacts {
    /// Folds one piece of verified evidence into the facts; `false` when a field already holds
    /// as many distinct values as are kept.
    pub fn record_evidence(
        &mut self,
        key: &str,
        fields: &BTreeMap<String, String>,
        at: Timestamp,
    ) -> bool {
        let fact = self.evidence.entry(key.to_owned()).or_default();
        let full = fields.iter().any(|(field, value)| {
            fact.values
                .get(field)
                .is_some_and(|v| v.len() >= MAX_EVIDENCE_VALUES && !v.contains(value))
        });
        if full {
            return false;
        }
        for (field, value) in fields {
            fact.values
                .entry(field.clone())
                .or_default()
                .insert(value.clone());
        }
        fact.count = fact.count.saturating_add(1);
        fact.last = at;
        true
    }
}

impl TaskFacts {
    /// Folds one permitted exchange into the facts.
    pub fn record_grant(&mut self, system: &SystemId, actions: &[ActionConfig], at: Timestamp) {
        for action in actions {
            let entry = self.granted.entry(action.name.clone()).or_default();
            entry.count = entry.count.saturating_add(1);
            entry.last = at;
            entry.seq = self.exchanges.saturating_add(1);
            self.labels.extend(action.labels.iter().cloned());
        }
        self.systems.insert(system.clone());
        self.exchanges = self.exchanges.saturating_add(1);
        let writes = actions
            .iter()
            .filter(|a| a.labels.contains("write"))
            .count();
        self.writes = self
            .writes
            .saturating_add(u64::try_from(writes).unwrap_or(u64::MAX));
    }

    /// Remembers a minted token's expiry until it passes (for the live-token budget).
    pub fn record_token(&mut self, expires_at_seconds: i64, now_seconds: i64) {
        self.prune_live(now_seconds);
        self.live.push(expires_at_seconds);
    }

    /// Forgets tokens that have expired.
    pub fn prune_live(&mut self, now_seconds: i64) {
        self.live.retain(|exp| *exp > now_seconds);
    }

    /// Where these facts stand in the task's history: permitted exchanges and accepted pieces
    /// of evidence folded in so far (each fold adds one to exactly one of them).
    pub fn position(&self) -> (u64, u64) {
        let evidence = self
            .evidence
            .values()
            .fold(0_u64, |sum, fact| sum.saturating_add(fact.count));
        (self.exchanges, evidence)
    }

    /// Tokens still live at `now_seconds`.
    pub fn live_tokens(&self, now_seconds: i64) -> u64 {
        u64::try_from(self.live.iter().filter(|exp| **exp > now_seconds).count())
            .unwrap_or(u64::MAX)
    }
}

/// `live` as written now (expiries) or before (`[jti, exp]` pairs).
fn live_expiries<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Live {
        Expiry(i64),
        Named(serde::de::IgnoredAny, i64),
    }
    let entries = Vec::<Live>::deserialize(deserializer)?;
    Ok(entries
        .into_iter()
        .map(|entry| match entry {
            Live::Expiry(exp) | Live::Named(_, exp) => exp,
        })
        .collect())
}

/// A task as loaded for a decision, with the version its facts were read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSnapshot {
    pub task: Task,
    pub facts: TaskFacts,
    /// Bumped on every change; a commit names the version it decided on (optimistic concurrency).
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::TaskFacts;

    #[test]
    fn live_tokens_are_kept_as_expiries_and_facts_written_with_their_ids_still_load() {
        let mut facts = TaskFacts::default();
        facts.record_token(1_000, 900);
        facts.record_token(1_100, 950);
        let written = serde_json::to_value(&facts).unwrap_or_default();
        assert_eq!(written["live"], serde_json::json!([1_000, 1_100]));

        let before: Result<TaskFacts, _> =
            serde_json::from_str(r#"{"exchanges":2,"live":[["tok_a",1000],["tok_b",1100]]}"#);
        let before = before.unwrap_or_default();
        assert_eq!(before.exchanges, 2);
        assert_eq!(before.live, vec![1_000, 1_100]);
        assert_eq!(before.live_tokens(1_050), 1);
        assert_eq!(before.live_tokens(999), 2);
        let broken: Result<TaskFacts, _> = serde_json::from_str(r#"{"live":[["tok_a"]]}"#);
        assert!(broken.is_err());
    }
}
