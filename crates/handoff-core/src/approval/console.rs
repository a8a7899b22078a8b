//! The owners' side of approvals: list, show (with the task's intent and history), approve or
//! deny with separation of duties, and cancel. A person's refused decision is recorded.

use crate::approval::{Approval, ApprovalStatus};
use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::config::RiskTier;
use crate::containment::Operator;
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::identity::{VerifiedIdentity, VerifiedPerson};
use crate::ids::{DecisionId, SystemId};
use crate::limits::MAX_REASON_CHARS;
use crate::notify::NoticeKind;
use crate::policy::DenyReason;
use crate::refusal::Refused;
use crate::store::{Effect, Rejection, StoreError, TaskWrite, Write};
use crate::task::TaskState;
use crate::time::Timestamp;
use crate::token::Unverified;

/// Most approvals one listing returns.
pub const MAX_LIST: usize = 500;
/// Most history records an approver is shown.
pub const MAX_HISTORY: usize = 200;

/// Who is looking at approvals.
#[derive(Clone, Debug)]
pub enum Viewer {
    /// Sees the approvals of the groups they belong to.
    Person(VerifiedPerson),
    /// Sees every approval (and may cancel, never approve).
    Operator(Operator),
}

/// Who may cancel an approval: the task's own agent, or an operator.
#[derive(Clone, Debug)]
pub enum Canceller {
    Agent(VerifiedIdentity),
    Operator(Operator),
}

/// One earlier step of the task, as an approver sees it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HistoryItem {
    pub at: String,
    pub kind: String,
    pub system: Option<String>,
    pub actions: Vec<String>,
    pub outcome: Option<String>,
    pub reason: Option<String>,
}

/// What an approver sees before deciding.
#[derive(Clone, Debug)]
pub struct ApprovalView {
    pub approval: Approval,
    pub status: ApprovalStatus,
    pub intent: String,
    pub purpose: String,
    pub task_state: String,
    pub history: Vec<HistoryItem>,
}

fn check_reason(reason: &str) -> Result<(), ServiceError> {
    if reason.trim().is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(ServiceError::InvalidRequest(
            "a reason (at most 1024 characters) is required".to_owned(),
        ));
    }
    Ok(())
}

impl Handoff {
    /// Verifies a person's (approver's) token.
    pub fn authenticate_approver(&self, token: &str) -> Result<VerifiedPerson, ServiceError> {
        let verifier = self.approvers().ok_or_else(|| {
            ServiceError::InvalidClient("no approver issuer is trusted".to_owned())
        })?;
        verifier
            .verify_person(Unverified::new(token), self.now())
            .map_err(|e| ServiceError::InvalidClient(format!("approver token refused: {e}")))
    }

    fn visible(viewer: &Viewer, approval: &Approval) -> bool {
        match viewer {
            Viewer::Person(person) => person.is_member(&approval.group),
            Viewer::Operator(_) => true,
        }
    }

    pub async fn list_approvals(
        &self,
        viewer: &Viewer,
        status: Option<ApprovalStatus>,
        system: Option<&str>,
    ) -> Result<Vec<Approval>, ServiceError> {
        let system = system.map(SystemId::new);
        let all = self
            .store()
            .approvals(status, system.as_ref(), MAX_LIST)
            .await?;
        let now = self.now();
        Ok(all
            .into_iter()
            .filter(|a| Self::visible(viewer, a))
            .map(|mut a| {
                a.status = a.status_at(now);
                a
            })
            .filter(|a| status.is_none_or(|s| a.status == s))
            .collect())
    }

    /// An approval with what the approver needs to decide: the task's intent, for whom, its
    /// history so far, the exact request and its risk tier.
    pub async fn approval_view(
        &self,
        viewer: &Viewer,
        id: &str,
    ) -> Result<ApprovalView, ServiceError> {
        let approval = self
            .store()
            .approval(id)
            .await?
            .filter(|a| Self::visible(viewer, a))
            .ok_or_else(|| {
                ServiceError::InvalidTarget(
                    "no such approval (or not one of your groups')".to_owned(),
                )
            })?;
        let snapshot = self.store().task(&approval.task).await?;
        let records = self.store().task_records(&approval.task).await?;
        let history = records
            .iter()
            .rev()
            .take(MAX_HISTORY)
            .rev()
            .filter_map(|r| r.event().ok().map(|e| (r.at, e)))
            .map(|(at, e)| HistoryItem {
                at: at.rfc3339(),
                kind: e.kind.map_or("event", EventKind::as_str).to_owned(),
                system: e.system,
                actions: e.actions,
                outcome: e.outcome.map(|o| match o {
                    Outcome::Permit => "permit".to_owned(),
                    Outcome::Deny => "deny".to_owned(),
                }),
                reason: e.reason,
            })
            .collect();
        let (intent, purpose, task_state) = snapshot.map_or_else(
            || (String::new(), String::new(), "unknown".to_owned()),
            |s| {
                (
                    s.task.intent,
                    s.task.purpose.to_string(),
                    s.task.state.as_str().to_owned(),
                )
            },
        );
        Ok(ApprovalView {
            status: approval.status_at(self.now()),
            approval,
            intent,
            purpose,
            task_state,
            history,
        })
    }

    /// Approves or denies, as a member of the approval's group who is no actor of the task (its
    /// agent, any delegate at any depth) and, unless the system sets `user_may_approve`, not the
    /// user the task acts for. A refusal of the person is recorded.
    pub async fn decide_approval(
        &self,
        person: &VerifiedPerson,
        id: &str,
        approve: bool,
        reason: &str,
    ) -> Result<Approval, ServiceError> {
        check_reason(reason)?;
        let approval = self.approval_to_close(id).await?;
        match self.check_approver(person, &approval).await {
            Ok(()) => {}
            Err(refusal @ ServiceError::Denied(_)) => {
                return Err(self
                    .record_approver_refusal(person, &approval, refusal)
                    .await);
            }
            Err(other) => return Err(other),
        }
        let now = self.now();
        if approval.status_at(now) != ApprovalStatus::Pending {
            return Err(ServiceError::InvalidRequest(format!(
                "the approval is {}",
                approval.status_at(now).as_str()
            )));
        }
        let status = if approve {
            ApprovalStatus::Approved
        } else {
            ApprovalStatus::Denied
        };
        let by = format!("{} ({})", person.user(), person.issuer());
        let event = AuditEvent {
            authorization_details: approval.details.clone(),
            outcome: Some(if approve {
                Outcome::Permit
            } else {
                Outcome::Deny
            }),
            reason: Some(status.as_str().to_owned()),
            description: Some(reason.to_owned()),
            ..decision_event(&approval, &by)
        };
        self.close_approval(&approval, event, status, &by, reason, now)
            .await?;
        let system = self.config().systems.get(&approval.system);
        if !approve && system.is_some_and(|s| s.risk >= RiskTier::High) {
            self.notifier().notify(approval.notice(
                NoticeKind::ApprovalDenied,
                system.map(|s| s.escalation.clone()),
                format!("{by} denied a {} request: {reason}", approval.risk),
            ));
        }
        Ok(Approval {
            status,
            decided_by: Some(by),
            decided_at: Some(now),
            reason: Some(reason.to_owned()),
            ..approval
        })
    }

    /// Separation of duties: the approver is a member of the approval's group, no actor of the
    /// task (its agent, every delegate at any depth, whoever asked) and, unless the system sets
    /// `user_may_approve`, not the user the task acts for. Names are compared bare (see
    /// [`same_name`]), so a person named like an actor is refused whatever issuer vouches for
    /// either.
    async fn check_approver(
        &self,
        person: &VerifiedPerson,
        approval: &Approval,
    ) -> Result<(), ServiceError> {
        let decision_id = DecisionId::new(format!("approval:{}", approval.id));
        let refuse = |reason, why: String| ServiceError::denied(&decision_id, reason, why);
        if !person.is_member(&approval.group) {
            return Err(refuse(
                DenyReason::NoPermit,
                "only members of the approval's group may decide".to_owned(),
            ));
        }
        // The task's agent, and every actor of every delegation in it (revoked or not): an
        // approval binds the task, not the actor, so any of them could release it.
        let Some(snapshot) = self.store().task(&approval.task).await? else {
            return Err(refuse(
                DenyReason::NoPermit,
                "the approval's task is unknown".to_owned(),
            ));
        };
        let mut actors = vec![approval.agent.to_string(), snapshot.task.agent.to_string()];
        for delegation in self.store().task_delegations(&approval.task).await? {
            actors.push(delegation.delegate.to_string());
            actors.extend(delegation.actors);
        }
        if let Some(actor) = actors.iter().find(|a| same_name(a, person.user())) {
            return Err(refuse(
                DenyReason::SeparationOfDuties,
                format!("`{actor}` acts in the task, so cannot approve its requests"),
            ));
        }
        let user_may_approve = self
            .config()
            .systems
            .get(&approval.system)
            .is_some_and(|s| s.user_may_approve);
        if !user_may_approve && same_name(approval.user.as_str(), person.user()) {
            return Err(refuse(
                DenyReason::SeparationOfDuties,
                "the user the task acts for cannot approve its requests".to_owned(),
            ));
        }
        // A decision on a task that can no longer act would be recorded as if it mattered.
        match snapshot.task.state {
            TaskState::Open => Ok(()),
            TaskState::Ended => Err(refuse(
                DenyReason::TaskEnded,
                "the approval's task has ended".to_owned(),
            )),
            TaskState::Revoked => Err(refuse(
                DenyReason::TaskRevoked,
                "the approval's task was revoked".to_owned(),
            )),
        }
    }

    /// Records a person's refused decision like any other refusal (who, what, why), and returns
    /// the refusal, unless the record cannot be written.
    async fn record_approver_refusal(
        &self,
        person: &VerifiedPerson,
        approval: &Approval,
        error: ServiceError,
    ) -> ServiceError {
        let about = decision_event(
            approval,
            &format!("{} ({})", person.user(), person.issuer()),
        );
        self.record(Refused::new(error, about)).await
    }

    /// Cancels a pending approval (the task's agent no longer needs it, or an operator stops it).
    pub async fn cancel_approval(
        &self,
        canceller: &Canceller,
        id: &str,
        reason: &str,
    ) -> Result<Approval, ServiceError> {
        check_reason(reason)?;
        let approval = self.approval_to_close(id).await?;
        let by = match canceller {
            Canceller::Agent(identity) if identity.agent() == &approval.agent => {
                format!("agent:{}", identity.agent())
            }
            Canceller::Agent(_) => {
                return Err(ServiceError::InvalidTarget("no such approval".to_owned()));
            }
            Canceller::Operator(operator) => operator.name().to_owned(),
        };
        let now = self.now();
        let event = AuditEvent {
            kind: Some(EventKind::ApprovalDecision),
            task: Some(approval.task.to_string()),
            system: Some(approval.system.to_string()),
            approval: Some(approval.id.clone()),
            actor: Some(by.clone()),
            outcome: Some(Outcome::Deny),
            reason: Some("cancelled".to_owned()),
            description: Some(reason.to_owned()),
            ..AuditEvent::default()
        };
        self.close_approval(
            &approval,
            event,
            ApprovalStatus::Cancelled,
            &by,
            reason,
            now,
        )
        .await?;
        Ok(Approval {
            status: ApprovalStatus::Cancelled,
            decided_by: Some(by),
            ..approval
        })
    }

    /// The approval `id` names, for deciding or cancelling it.
    async fn approval_to_close(&self, id: &str) -> Result<Approval, ServiceError> {
        self.store()
            .approval(id)
            .await?
            .ok_or_else(|| ServiceError::InvalidTarget("no such approval".to_owned()))
    }

    /// Records `event` and closes `approval` as `status` in one write, unless it was closed
    /// first (decided, cancelled, expired).
    async fn close_approval(
        &self,
        approval: &Approval,
        event: AuditEvent,
        status: ApprovalStatus,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let mut write = Write::new(now, event, TaskWrite::None);
        write.effects.push(Effect::DecideApproval {
            id: approval.id.clone(),
            status,
            by: by.to_owned(),
            reason: reason.to_owned(),
        });
        match self.store().write(write).await {
            Ok(_) => Ok(()),
            Err(StoreError::Rejected(Rejection::ApprovalClosed)) => Err(
                ServiceError::InvalidRequest("the approval is no longer pending".to_owned()),
            ),
            Err(e) => Err(e.into()),
        }
    }
}

/// What a person's decision on `approval` records, whatever the outcome: the request and who.
fn decision_event(approval: &Approval, by: &str) -> AuditEvent {
    AuditEvent {
        kind: Some(EventKind::ApprovalDecision),
        task: Some(approval.task.to_string()),
        agent: Some(approval.agent.to_string()),
        user: Some(approval.user.to_string()),
        system: Some(approval.system.to_string()),
        actions: approval.actions.clone(),
        approval: Some(approval.id.clone()),
        actor: Some(by.to_owned()),
        ..AuditEvent::default()
    }
}

/// Whether two subjects name the same principal for separation of duties: equal, or equal but
/// for case. Issuers are deliberately ignored: a person `bob` from the people issuer and an agent
/// `bob` from a workload issuer may well be one party (people often name the agents they run
/// after themselves, and nothing ties the two issuers' namespaces apart), so any collision is
/// refused rather than trusted.
pub(crate) fn same_name(one: &str, other: &str) -> bool {
    one == other || one.to_lowercase() == other.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::same_name;

    #[test]
    fn names_collide_whatever_their_case() {
        assert!(same_name("bob", "bob"));
        assert!(same_name("Bob", "bOB"));
        assert!(!same_name("bob", "bobby"));
        assert!(!same_name("spiffe://example.org/bob", "bob"));
    }
}
