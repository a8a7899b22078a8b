//! A decision is a value. Deny is the fallback; only the decision point builds a [`Permit`].

use crate::approval::{Approval, ApprovalStatus, request_hash};
use crate::config::ActionConfig;
use crate::ids::{AgentId, DecisionId, SystemId, TaskId, UserId};
use crate::time::Timestamp;
use serde::Serialize;

/// Why a request was refused; stable codes clients and the audit log rely on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// No permit policy matched.
    NoPermit,
    /// A forbid policy matched.
    Forbidden,
    /// Evaluating a policy failed; an error is a deny.
    PolicyError,
    /// The actor is not the task's agent.
    NotTaskAgent,
    TaskEnded,
    TaskExpired,
    TaskRevoked,
    /// The agent was revoked: it opens no more tasks.
    AgentRevoked,
    /// The system is frozen: it gets no new tokens until unfrozen.
    SystemFrozen,
    /// The system is not in the task's declared plan.
    OutsidePlan,
    /// The purpose's `max_exchanges` budget is spent.
    BudgetExchanges,
    /// The purpose's `max_systems` budget is spent.
    BudgetSystems,
    /// The purpose's `max_writes` budget is spent.
    BudgetWrites,
    /// The purpose's `max_live_tokens` budget is spent.
    BudgetLiveTokens,
    /// The owner denied the approval.
    ApprovalDenied,
    /// The approval was cancelled.
    ApprovalCancelled,
    /// The approval is for a different request (amount, resource, system or task).
    ApprovalMismatch,
    /// The approval was already used to mint a token.
    ApprovalUsed,
    /// A delegate asked for more than was delegated to it, or is not the delegate.
    OutsideDelegation,
    /// The delegation, or one it descends from, was revoked.
    DelegationRevoked,
    /// The delegation's lifetime is over.
    DelegationExpired,
    /// Delegating once more would exceed the configured depth.
    DelegationDepth,
    /// The delegate already acts in the task: the delegator itself, or an actor above it.
    SelfDelegation,
    /// The approver acts in the task (its agent or a delegate), or is the user it acts for.
    SeparationOfDuties,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoPermit => "no_permit",
            Self::Forbidden => "forbidden",
            Self::PolicyError => "policy_error",
            Self::NotTaskAgent => "not_task_agent",
            Self::TaskEnded => "task_ended",
            Self::TaskExpired => "task_expired",
            Self::TaskRevoked => "task_revoked",
            Self::AgentRevoked => "agent_revoked",
            Self::SystemFrozen => "system_frozen",
            Self::OutsidePlan => "outside_plan",
            Self::BudgetExchanges => "budget_exchanges",
            Self::BudgetSystems => "budget_systems",
            Self::BudgetWrites => "budget_writes",
            Self::BudgetLiveTokens => "budget_live_tokens",
            Self::ApprovalDenied => "approval_denied",
            Self::ApprovalCancelled => "approval_cancelled",
            Self::ApprovalMismatch => "approval_mismatch",
            Self::ApprovalUsed => "approval_used",
            Self::OutsideDelegation => "outside_delegation",
            Self::DelegationRevoked => "delegation_revoked",
            Self::DelegationExpired => "delegation_expired",
            Self::DelegationDepth => "delegation_depth",
            Self::SelfDelegation => "self_delegation",
            Self::SeparationOfDuties => "separation_of_duties",
        }
    }
}

/// What a deny tells the caller and the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub decision_id: DecisionId,
    pub reason: DenyReason,
    pub description: String,
    /// The policies that determined the deny (forbids that matched), if any.
    pub policies: Vec<String>,
}

/// Exactly what a permit allows to be minted.
#[derive(Clone, Debug)]
pub struct Grant {
    pub task: TaskId,
    pub agent: AgentId,
    pub user: UserId,
    pub system: SystemId,
    pub audience: String,
    pub actions: Vec<ActionConfig>,
    pub resource: Option<String>,
    pub details: Option<serde_json::Value>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// When a delegate acts: the delegation it acts under (its token names the actor chain).
    pub delegation: Option<Box<crate::delegation::Delegation>>,
}

/// Proof that the decision point allowed a grant. Minting takes nothing else. Not `Clone`: one
/// permit, one mint.
#[derive(Debug)]
pub struct Permit {
    decision_id: DecisionId,
    grant: Grant,
    policies: Vec<String>,
}

impl Permit {
    /// INVARIANT: called only by the decision point after every requested action was allowed.
    pub(super) fn new(decision_id: DecisionId, grant: Grant, policies: Vec<String>) -> Self {
        Self {
            decision_id,
            grant,
            policies,
        }
    }

    pub fn decision_id(&self) -> &DecisionId {
        &self.decision_id
    }

    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The permit policies that determined the allow.
    pub fn policies(&self) -> &[String] {
        &self.policies
    }
}

/// A permit that needs a person first: it can only become a [`Permit`] through [`GatedPermit::release`]
/// with an approval for exactly this request.
#[derive(Debug)]
pub struct GatedPermit {
    permit: Permit,
    group: String,
}

/// Why an approval cannot release a gated permit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseRefusal {
    /// The approval is for another request (amount, resource, system, task or agent differ).
    Mismatch,
    /// Not approved (pending, denied, cancelled) as of now.
    NotApproved(ApprovalStatus),
    /// Already used to mint a token.
    Used,
}

impl GatedPermit {
    pub(super) fn new(permit: Permit, group: String) -> Self {
        Self { permit, group }
    }

    /// The group whose members may approve.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// What would be granted; for binding an approval to it.
    pub fn grant(&self) -> &Grant {
        &self.permit.grant
    }

    pub fn decision_id(&self) -> &DecisionId {
        &self.permit.decision_id
    }

    pub fn policies(&self) -> &[String] {
        &self.permit.policies
    }

    /// The canonical hash of the gated request.
    pub fn request_hash(&self) -> String {
        let grant = &self.permit.grant;
        let actions: Vec<String> = grant.actions.iter().map(|a| a.name.to_string()).collect();
        request_hash(
            &grant.task,
            &grant.system,
            &actions,
            grant.resource.as_deref(),
            grant.details.as_ref(),
        )
    }

    /// Releases the permit with `approval`, if it approves exactly this request and is unused and
    /// unexpired at `now`. The token's expiry is clamped to the approval's.
    pub fn release(self, approval: &Approval, now: Timestamp) -> Result<Permit, ReleaseRefusal> {
        if approval.request_hash != self.request_hash() || approval.task != self.permit.grant.task {
            return Err(ReleaseRefusal::Mismatch);
        }
        if approval.consumed_by.is_some() {
            return Err(ReleaseRefusal::Used);
        }
        match approval.status_at(now) {
            ApprovalStatus::Approved => {}
            other => return Err(ReleaseRefusal::NotApproved(other)),
        }
        let mut permit = self.permit;
        permit.grant.expires_at = permit.grant.expires_at.min(approval.expires_at);
        Ok(permit)
    }
}

#[derive(Debug)]
pub enum Decision {
    Allow(Box<Permit>),
    /// Policy permits, but a person must approve first.
    Gate(Box<GatedPermit>),
    Deny(Denial),
}

/// The outcome of asking whether an agent may open a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenDecision {
    Allow {
        policies: Vec<String>,
    },
    Deny {
        reason: DenyReason,
        policies: Vec<String>,
        description: String,
    },
}
