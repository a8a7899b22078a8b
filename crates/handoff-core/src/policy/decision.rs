//! A decision is a value. Deny is the fallback; only the decision point builds a [`Permit`].

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

#[derive(Debug)]
pub enum Decision {
    Allow(Box<Permit>),
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
