//! Replaying recorded decisions. A decision's record pins what decided it: the policy set's
//! content hash (`policy_set`, whose files the store keeps: [`keep`]) and `decided_on` (where
//! the task's facts stood, the token lifetime and the counters the policy context saw); with the
//! request the record names and the task's earlier records, the decision's whole input is
//! rebuilt ([`facts`]) and decided again by the pipeline the exchange runs: containment's
//! [`crate::budget::check`], then [`PolicyEngine::decide`] and its approval gate. Under the
//! pinned set that is `handoff audit replay`; under a candidate set, `handoff policy diff`
//! ([`diff`]).

pub mod diff;
pub mod facts;
mod keep;

use crate::audit::{AuditEvent, EventKind, Outcome, SealedRecord};
use crate::config::Config;
use crate::ids::{DecisionId, TaskId};
use crate::policy::{Decision, DenyReason, Grant, PolicyEngine, RequestFacts};
use crate::store::{Store, StoreError};
use serde::Serialize;
use std::collections::HashMap;

/// A decision, as recorded or as decided again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Ruling {
    /// Permitted, by these policies.
    Allow { policies: Vec<String> },
    /// Permitted by these policies, behind an approval (`@approval` or `require_approval`).
    Gate { policies: Vec<String> },
    /// Denied by policy: `no_permit`, `forbidden` or `policy_error`.
    Deny {
        reason: String,
        policies: Vec<String>,
    },
    /// Refused by containment before policy: the plan or a budget (`outside_plan`,
    /// `budget_*`).
    Breach { reason: String },
}

impl Ruling {
    /// `allow`, `gate` or `deny` (a breach is a deny): what a policy change can flip.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Allow { .. } => "allow",
            Self::Gate { .. } => "gate",
            Self::Deny { .. } | Self::Breach { .. } => "deny",
        }
    }

    /// The determining policies.
    pub fn policies(&self) -> &[String] {
        match self {
            Self::Allow { policies } | Self::Gate { policies } | Self::Deny { policies, .. } => {
                policies
            }
            Self::Breach { .. } => &[],
        }
    }

    /// One line: `deny (no_permit) by [p, q]`.
    pub fn describe(&self) -> String {
        let by = |policies: &[String]| {
            if policies.is_empty() {
                String::new()
            } else {
                format!(" by {}", policies.join(", "))
            }
        };
        match self {
            Self::Allow { policies } => format!("allow{}", by(policies)),
            Self::Gate { policies } => format!("gate (approval required){}", by(policies)),
            Self::Deny { reason, policies } => format!("deny ({reason}){}", by(policies)),
            Self::Breach { reason } => format!("deny ({reason}, containment before policy)"),
        }
    }
}

/// One record decided again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Replay {
    pub seq: u64,
    /// The policy set it was decided again under (the pinned one, or the candidate).
    pub policy_set: String,
    pub recorded: Ruling,
    pub replayed: Ruling,
}

impl Replay {
    /// The same decision by the same policies.
    pub fn agrees(&self) -> bool {
        self.recorded == self.replayed
    }
}

/// Why a record cannot be decided again; each names the record and what is missing.
#[derive(Debug, thiserror::Error)]
pub enum CannotReplay {
    #[error("there is no record {seq} (the chain ends at record {last})")]
    NoRecord { seq: u64, last: u64 },
    #[error("record {seq} cannot be read: {reason}")]
    Unreadable { seq: u64, reason: String },
    #[error(
        "record {seq} is a `{kind}` record: a replay decides exchanges again (`exchange` and \
         `approval_request` records)"
    )]
    NotADecision { seq: u64, kind: String },
    #[error(
        "record {seq} is a `{reason}` refusal: it was not made by containment's plan and budget \
         checks, policy or the approval gate, which are what a replay decides again"
    )]
    NotDecidedByPolicy { seq: u64, reason: String },
    #[error(
        "record {seq} does not pin what it was decided on (no `decided_on`): it was written \
         before decisions were replayable"
    )]
    NotPinned { seq: u64 },
    #[error("record {seq} names no policy set")]
    NoPolicySet { seq: u64 },
    #[error("policy set `{hash}`, which decided record {seq}, was not kept by this store")]
    PolicySetNotKept { seq: u64, hash: String },
    #[error(
        "policy set `{hash}`, which decided record {seq}, does not load under the current \
         deployment: {problems}"
    )]
    PolicySetInvalid {
        seq: u64,
        hash: String,
        problems: String,
    },
    #[error("the facts record {seq} was decided on cannot be rebuilt: {reason}")]
    Facts { seq: u64, reason: String },
    #[error("the request of record {seq} cannot be rebuilt under the current deployment: {reason}")]
    Request { seq: u64, reason: String },
    #[error("the store cannot be read: {0}")]
    Store(#[from] StoreError),
}

impl CannotReplay {
    /// A short stable name of the cause, for counting (`policy diff`).
    pub fn cause(&self) -> &'static str {
        match self {
            Self::NoRecord { .. } => "no_record",
            Self::Unreadable { .. } => "unreadable",
            Self::NotADecision { .. } => "not_a_decision",
            Self::NotDecidedByPolicy { .. } => "not_decided_by_policy",
            Self::NotPinned { .. } => "not_pinned",
            Self::NoPolicySet { .. } => "no_policy_set",
            Self::PolicySetNotKept { .. } => "policy_set_not_kept",
            Self::PolicySetInvalid { .. } => "policy_set_invalid",
            Self::Facts { .. } => "facts",
            Self::Request { .. } => "request",
            Self::Store(_) => "store",
        }
    }
}

/// Refusals made by a policy decision, and by containment before it.
const POLICY_REASONS: [DenyReason; 3] = [
    DenyReason::NoPermit,
    DenyReason::Forbidden,
    DenyReason::PolicyError,
];
const BREACH_REASONS: [DenyReason; 5] = [
    DenyReason::OutsidePlan,
    DenyReason::BudgetExchanges,
    DenyReason::BudgetSystems,
    DenyReason::BudgetWrites,
    DenyReason::BudgetLiveTokens,
];

/// What record `seq` says was decided, or why it is not a decision a replay can make again.
pub fn recorded(seq: u64, event: &AuditEvent) -> Result<Ruling, CannotReplay> {
    let policies = event.policies.clone();
    match (event.kind, event.outcome) {
        (Some(EventKind::Exchange), Some(Outcome::Permit)) if event.approval.is_some() => {
            Ok(Ruling::Gate { policies })
        }
        (Some(EventKind::Exchange), Some(Outcome::Permit)) => Ok(Ruling::Allow { policies }),
        (Some(EventKind::Exchange), _) => {
            let reason = event.reason.clone().unwrap_or_default();
            let is = |reasons: &[DenyReason]| reasons.iter().any(|r| r.as_str() == reason);
            if is(&POLICY_REASONS) {
                Ok(Ruling::Deny { reason, policies })
            } else if is(&BREACH_REASONS) {
                Ok(Ruling::Breach { reason })
            } else {
                Err(CannotReplay::NotDecidedByPolicy { seq, reason })
            }
        }
        (Some(EventKind::ApprovalRequest), _) => Ok(Ruling::Gate { policies }),
        (kind, _) => Err(CannotReplay::NotADecision {
            seq,
            kind: kind.map_or("unknown", EventKind::as_str).to_owned(),
        }),
    }
}

/// Which policy set decides the records again.
enum Against<'a> {
    /// Each record's own, loaded from the store's kept sets (once per hash).
    Pinned(HashMap<String, PolicyEngine>),
    Candidate(&'a PolicyEngine),
}

/// Decides recorded decisions again under the current deployment's config (systems, actions,
/// purposes and their budgets, counters) and the pinned or a candidate policy set.
pub struct Replayer<'a> {
    config: &'a Config,
    store: &'a dyn Store,
    against: Against<'a>,
    /// The last task's records, read once for its consecutive decisions.
    records: Option<(TaskId, Vec<SealedRecord>)>,
}

impl<'a> Replayer<'a> {
    /// Each record under the policy set that decided it (`handoff audit replay`).
    pub fn pinned(config: &'a Config, store: &'a dyn Store) -> Self {
        Self {
            config,
            store,
            against: Against::Pinned(HashMap::new()),
            records: None,
        }
    }

    /// Every record under `candidate` instead (`handoff policy diff`).
    pub fn candidate(
        config: &'a Config,
        store: &'a dyn Store,
        candidate: &'a PolicyEngine,
    ) -> Self {
        Self {
            config,
            store,
            against: Against::Candidate(candidate),
            records: None,
        }
    }

    /// Record `seq`, read from the store and decided again.
    pub async fn replay_seq(&mut self, seq: u64) -> Result<Replay, CannotReplay> {
        let page = self.store.audit_page(seq.saturating_sub(1), 1).await?;
        match page.into_iter().next() {
            Some(record) if record.seq == seq => self.replay(&record).await,
            _ => {
                let last = self.store.audit_head().await?.map_or(0, |head| head.seq);
                Err(CannotReplay::NoRecord { seq, last })
            }
        }
    }

    /// One record decided again.
    pub async fn replay(&mut self, record: &SealedRecord) -> Result<Replay, CannotReplay> {
        let (config, store) = (self.config, self.store);
        let seq = record.seq;
        let event = record
            .event()
            .map_err(|reason| CannotReplay::Unreadable { seq, reason })?;
        let recorded = recorded(seq, &event)?;
        let decided_on = event
            .decided_on
            .clone()
            .ok_or(CannotReplay::NotPinned { seq })?;
        let request = |reason: String| CannotReplay::Request { seq, reason };
        let task_id = TaskId::new(event.task.as_deref().unwrap_or_default());
        let snapshot = store
            .task(&task_id)
            .await?
            .ok_or_else(|| request(format!("task `{task_id}` is not in the store")))?;
        let task = snapshot.task;
        let records = self.task_records(&task_id).await?;
        let facts = facts::rebuild(config, records, seq, &decided_on)
            .map_err(|reason| CannotReplay::Facts { seq, reason })?;
        let facts::RecordedRequest {
            system,
            actions,
            details,
        } = facts::recorded_request(config, &event).map_err(request)?;
        let delegation = match &event.delegation {
            Some(id) => Some(
                store
                    .delegation(id)
                    .await?
                    .ok_or_else(|| request(format!("delegation `{id}` is not in the store")))?,
            ),
            None => None,
        };
        let purpose = config
            .purposes
            .get(&task.purpose)
            .ok_or_else(|| request(format!("purpose `{}` is no longer declared", task.purpose)))?;
        let at = record.at;
        let engine = self.engine(seq, &event).await?;
        let policy_set = engine.hash().to_owned();
        // Containment first, as admission runs it: a breach is decided before policy.
        if let Err((reason, _)) =
            crate::budget::check(purpose, &task, &facts, system, &actions, at.seconds())
        {
            return Ok(Replay {
                seq,
                policy_set,
                recorded,
                replayed: Ruling::Breach {
                    reason: reason.as_str().to_owned(),
                },
            });
        }
        let (Some(lifetime_seconds), Some(counters)) =
            (decided_on.lifetime_seconds, decided_on.counters.as_ref())
        else {
            return Err(CannotReplay::Facts {
                seq,
                reason: "containment refused it before its policy inputs were read, and the \
                         deployment's plan and budgets no longer refuse it"
                    .to_owned(),
            });
        };
        let principal = delegation
            .as_ref()
            .map_or_else(|| task.agent.clone(), |d| d.delegate.clone());
        let request_facts = RequestFacts {
            scope: &event.actions,
            lifetime_seconds,
            resource: event.resource.as_deref(),
            details: &details,
            counters,
            delegation: delegation
                .as_ref()
                .map(|d| (d.depth, d.actors.get(1).map_or("", String::as_str))),
        };
        let grant = Grant {
            task: task.id.clone(),
            agent: principal,
            user: task.user.clone(),
            system: system.id.clone(),
            audience: system.audience.clone(),
            actions,
            resource: event.resource.clone(),
            details: event.authorization_details.clone(),
            issued_at: at,
            expires_at: at,
            delegation: delegation.clone().map(Box::new),
        };
        let decision_id = DecisionId::new(event.decision_id.as_deref().unwrap_or_default());
        let replayed = match engine.decide(decision_id, &task, &facts, &request_facts, grant, at) {
            Decision::Allow(permit) => Ruling::Allow {
                policies: permit.policies().to_vec(),
            },
            Decision::Gate(gated) => Ruling::Gate {
                policies: gated.policies().to_vec(),
            },
            Decision::Deny(denial) => Ruling::Deny {
                reason: denial.reason.as_str().to_owned(),
                policies: denial.policies,
            },
        };
        Ok(Replay {
            seq,
            policy_set,
            recorded,
            replayed,
        })
    }

    async fn task_records(&mut self, task: &TaskId) -> Result<&[SealedRecord], StoreError> {
        let cached = matches!(&self.records, Some((id, _)) if id == task);
        if !cached {
            let records = self.store.task_records(task).await?;
            self.records = Some((task.clone(), records));
        }
        Ok(self.records.as_ref().map_or(&[], |(_, r)| r.as_slice()))
    }

    /// The policy set that decides `event` again.
    async fn engine(
        &mut self,
        seq: u64,
        event: &AuditEvent,
    ) -> Result<&PolicyEngine, CannotReplay> {
        let engines = match &mut self.against {
            Against::Candidate(engine) => return Ok(*engine),
            Against::Pinned(engines) => engines,
        };
        let hash = event
            .policy_set
            .clone()
            .ok_or(CannotReplay::NoPolicySet { seq })?;
        if !engines.contains_key(&hash) {
            let files = self.store.policy_set(&hash).await?.ok_or_else(|| {
                CannotReplay::PolicySetNotKept {
                    seq,
                    hash: hash.clone(),
                }
            })?;
            let engine = PolicyEngine::load(self.config, &files).map_err(|problems| {
                CannotReplay::PolicySetInvalid {
                    seq,
                    hash: hash.clone(),
                    problems: problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                }
            })?;
            engines.insert(hash.clone(), engine);
        }
        engines
            .get(&hash)
            .ok_or(CannotReplay::PolicySetNotKept { seq, hash })
    }
}
