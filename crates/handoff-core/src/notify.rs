//! Notifications to people: system owners and escalation contacts hear about what needs them.
//! Delivery never blocks a decision: a notifier only queues.

use serde::Serialize;

/// Why someone is being told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A task asked for a system outside its declared plan.
    OutsidePlan,
    /// A task hit one of its purpose's budgets.
    BudgetExceeded,
    /// A task, agent or token was revoked, or a system frozen.
    Revoked,
    /// A request waits for the owner's approval.
    ApprovalRequested,
    /// Nobody decided in time: the escalation contact is asked.
    ApprovalEscalated,
    /// An owner denied a high-risk request.
    ApprovalDenied,
}

impl NoticeKind {
    /// The name a notice of this kind carries as its reason, when no refusal gives one.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutsidePlan => "outside_plan",
            Self::BudgetExceeded => "budget_exceeded",
            Self::Revoked => "revoked",
            Self::ApprovalRequested => "approval_requested",
            Self::ApprovalEscalated => "approval_escalated",
            Self::ApprovalDenied => "approval_denied",
        }
    }
}

/// One notification, addressed to a system's owner with its escalation contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub kind: NoticeKind,
    pub system: Option<String>,
    pub owner: Option<String>,
    pub escalation: Option<String>,
    pub task: Option<String>,
    pub agent: Option<String>,
    pub user: Option<String>,
    pub intent: Option<String>,
    pub reason: String,
    pub description: String,
    pub decision_id: Option<String>,
    pub approval_id: Option<String>,
}

pub trait Notifier: Send + Sync {
    /// Queues `notice` for delivery; must return at once.
    fn notify(&self, notice: Notice);
}

/// Drops every notice: for deployments without a notification target.
#[derive(Debug, Default)]
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn notify(&self, _notice: Notice) {}
}
