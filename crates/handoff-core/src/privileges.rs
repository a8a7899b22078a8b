//! The least-privilege report (`handoff report privileges`): per agent and purpose, what the
//! deployment may allow (the policy set read statically by `PolicyEngine::may_permit`, then the
//! purpose's budgets as `budget::check` applies them to a fresh task) against what the agent
//! asked for, was granted, and used through the gateway (`use` records); grants never used are
//! candidates to remove, and denials that recur candidates to review. Pure: the caller feeds the
//! records in chain order.

use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::budget;
use crate::config::Config;
use crate::ids::{AgentId, Purpose, SystemId, TaskId, UserId};
use crate::policy::PolicyEngine;
use crate::task::{Task, TaskFacts, TaskState};
use crate::time::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A denial is worth reviewing once it happened this often (same agent, system, action, reason).
pub const RECURRING: u64 = 2;

/// One token granted by an exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GrantSeen {
    pub jti: String,
    pub seq: u64,
    pub at: Timestamp,
    pub task: Option<String>,
    pub system: String,
    pub actions: Vec<String>,
    pub decision_id: Option<String>,
    /// Calls the gateway recorded under this token.
    pub uses: u64,
}

/// What one agent did for one purpose, and what it could have done.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScopeReport {
    pub agent: String,
    pub purpose: String,
    /// Declared actions the policy set and the purpose's budgets may allow.
    pub allowed: BTreeSet<String>,
    /// Times each action was asked for (granted or not).
    pub requested: BTreeMap<String, u64>,
    pub granted: BTreeMap<String, u64>,
    /// Calls through the gateway per action.
    pub used: BTreeMap<String, u64>,
    /// Allowed, and never asked for: candidates to take out of policy.
    pub never_requested: BTreeSet<String>,
    /// Tokens for a system behind the gateway that no call ever used: candidates to remove.
    pub unused_grants: Vec<GrantSeen>,
    /// Tokens the gateway saw used.
    pub used_grants: Vec<GrantSeen>,
    /// Tokens for systems without a gateway: their use is not recorded, so not judged.
    pub unobserved_grants: u64,
}

/// The same denial, again and again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecurringDenial {
    pub agent: String,
    pub system: String,
    pub action: String,
    pub reason: String,
    pub count: u64,
    pub first: Timestamp,
    pub last: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrivilegeReport {
    pub since: Option<Timestamp>,
    pub scopes: Vec<ScopeReport>,
    /// Denials seen at least [`RECURRING`] times: candidates to review.
    pub recurring_denials: Vec<RecurringDenial>,
}

#[derive(Default)]
struct Seen {
    requested: BTreeMap<String, u64>,
    granted: BTreeMap<String, u64>,
    used: BTreeMap<String, u64>,
    grants: Vec<GrantSeen>,
}

/// Records folded one at a time, in chain order.
#[derive(Default)]
pub struct PrivilegeLedger {
    since: Option<Timestamp>,
    /// Each task's purpose, from any record that names it (even before `since`).
    purposes: BTreeMap<String, String>,
    scopes: BTreeMap<(String, String), Seen>,
    /// jti -> (agent, purpose, index into its grants).
    grants: BTreeMap<String, (String, String, usize)>,
    denials: BTreeMap<DenialKey, DenialSeen>,
}

/// What makes two denials the same.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct DenialKey {
    agent: String,
    system: String,
    action: String,
    reason: String,
}

struct DenialSeen {
    count: u64,
    first: Timestamp,
    last: Timestamp,
}

impl PrivilegeLedger {
    /// A ledger that counts records written at or after `since` (all when `None`).
    pub fn new(since: Option<Timestamp>) -> Self {
        Self {
            since,
            ..Self::default()
        }
    }

    /// Folds record `seq`, written `at`, into the ledger.
    pub fn add(&mut self, seq: u64, at: Timestamp, event: &AuditEvent) {
        if let (Some(task), Some(purpose)) = (&event.task, &event.purpose) {
            self.purposes.insert(task.clone(), purpose.clone());
        }
        if self.since.is_some_and(|since| at < since) {
            return;
        }
        let Some(agent) = event.agent.clone() else {
            return;
        };
        let purpose = event
            .purpose
            .clone()
            .or_else(|| {
                event
                    .task
                    .as_ref()
                    .and_then(|t| self.purposes.get(t).cloned())
            })
            .unwrap_or_else(|| "-".to_owned());
        match (event.kind, event.outcome) {
            (Some(EventKind::Exchange), outcome) => {
                let system = event.system.clone().unwrap_or_else(|| "-".to_owned());
                let seen = self
                    .scopes
                    .entry((agent.clone(), purpose.clone()))
                    .or_default();
                for action in &event.actions {
                    *seen.requested.entry(action.clone()).or_default() += 1;
                }
                match (outcome, &event.token) {
                    (Some(Outcome::Permit), Some(token)) => {
                        for action in &event.actions {
                            *seen.granted.entry(action.clone()).or_default() += 1;
                        }
                        self.grants.insert(
                            token.jti.clone(),
                            (agent.clone(), purpose.clone(), seen.grants.len()),
                        );
                        seen.grants.push(GrantSeen {
                            jti: token.jti.clone(),
                            seq,
                            at,
                            task: event.task.clone(),
                            system,
                            actions: event.actions.clone(),
                            decision_id: event.decision_id.clone(),
                            uses: 0,
                        });
                    }
                    (Some(Outcome::Deny), _) => {
                        let reason = event.reason.clone().unwrap_or_else(|| "-".to_owned());
                        for action in &event.actions {
                            let key = DenialKey {
                                agent: agent.clone(),
                                system: system.clone(),
                                action: action.clone(),
                                reason: reason.clone(),
                            };
                            let seen = self.denials.entry(key).or_insert(DenialSeen {
                                count: 0,
                                first: at,
                                last: at,
                            });
                            seen.count += 1;
                            seen.last = at;
                        }
                    }
                    _ => {}
                }
            }
            (Some(EventKind::Use), Some(Outcome::Permit)) => {
                // A use is counted with the grant it was made under (its agent and purpose).
                let grant = event
                    .token
                    .as_ref()
                    .and_then(|token| self.grants.get(&token.jti))
                    .cloned();
                let (owner, index) = match grant {
                    Some((agent, purpose, index)) => ((agent, purpose), Some(index)),
                    None => ((agent, purpose), None),
                };
                let seen = self.scopes.entry(owner).or_default();
                for action in &event.actions {
                    *seen.used.entry(action.clone()).or_default() += 1;
                }
                if let Some(grant) = index.and_then(|i| seen.grants.get_mut(i)) {
                    grant.uses += 1;
                }
            }
            _ => {}
        }
    }

    /// The report: what was seen, against what `engine` and `config` may allow.
    pub fn report(self, config: &Config, engine: &PolicyEngine, now: Timestamp) -> PrivilegeReport {
        let gateway: BTreeSet<&str> = config
            .systems
            .values()
            .filter(|s| s.gateway.is_some())
            .map(|s| s.id.as_str())
            .collect();
        let scopes = self
            .scopes
            .into_iter()
            .map(|((agent, purpose), seen)| {
                let allowed = allowed(config, engine, &agent, &purpose, now);
                let never_requested = allowed
                    .iter()
                    .filter(|a| !seen.requested.contains_key(*a))
                    .cloned()
                    .collect();
                let mut report = ScopeReport {
                    agent,
                    purpose,
                    allowed,
                    requested: seen.requested,
                    granted: seen.granted,
                    used: seen.used,
                    never_requested,
                    ..ScopeReport::default()
                };
                for grant in seen.grants {
                    if !gateway.contains(grant.system.as_str()) {
                        report.unobserved_grants += 1;
                    } else if grant.uses == 0 {
                        report.unused_grants.push(grant);
                    } else {
                        report.used_grants.push(grant);
                    }
                }
                report
            })
            .collect();
        let recurring_denials = self
            .denials
            .into_iter()
            .filter(|(_, seen)| seen.count >= RECURRING)
            .map(|(key, seen)| RecurringDenial {
                agent: key.agent,
                system: key.system,
                action: key.action,
                reason: key.reason,
                count: seen.count,
                first: seen.first,
                last: seen.last,
            })
            .collect();
        PrivilegeReport {
            since: self.since,
            scopes,
            recurring_denials,
        }
    }
}

/// What policy may permit `agent` for `purpose`, less what the purpose's budgets refuse a fresh
/// task (`max_writes = 0` refuses every write, `max_exchanges = 0` everything). An undeclared
/// purpose allows nothing.
fn allowed(
    config: &Config,
    engine: &PolicyEngine,
    agent: &str,
    purpose: &str,
    now: Timestamp,
) -> BTreeSet<String> {
    let purpose_id = Purpose::new(purpose);
    let Some(purpose_config) = config.purposes.get(&purpose_id) else {
        return BTreeSet::new();
    };
    let task = Task {
        id: TaskId::new("privilege-report"),
        agent_issuer: String::new(),
        agent: AgentId::new(agent),
        user: UserId::new("privilege-report"),
        purpose: purpose_id.clone(),
        intent: String::new(),
        plan: BTreeSet::<SystemId>::new(),
        created_at: now,
        expires_at: now,
        state: TaskState::Open,
    };
    let facts = TaskFacts::default();
    let permitted = engine.may_permit(config, &task.agent, &purpose_id);
    config
        .systems
        .values()
        .flat_map(|system| system.actions.values().map(move |action| (system, action)))
        .filter(|(_, action)| permitted.contains(action.name.as_str()))
        .filter(|(system, action)| {
            budget::check(
                purpose_config,
                &task,
                &facts,
                system,
                std::slice::from_ref(*action),
                now.seconds(),
            )
            .is_ok()
        })
        .map(|(_, action)| action.name.to_string())
        .collect()
}
