//! The approval workflow around a [`GatedPermit`]: opening a request bound to the exact request,
//! answering polls the way RFC 8628 clients expect, releasing once, and the owners' side
//! (list, show, approve, deny, cancel), with escalation and expiry swept in the background.

use crate::approval::{Approval, ApprovalStatus};
use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::config::{RiskTier, SystemConfig};
use crate::containment::Operator;
use crate::error::ServiceError;
use crate::identity::{VerifiedIdentity, VerifiedPerson};
use crate::ids::SystemId;
use crate::notify::{Notice, NoticeKind};
use crate::policy::{Denial, DenyReason, GatedPermit, Permit, ReleaseRefusal};
use crate::random::new_id;
use crate::service::Handoff;
use crate::store::{Effect, Rejection, StoreError, TaskWrite, Write};
use crate::task::{Task, TaskState};
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

fn deny(
    decision_id: &crate::ids::DecisionId,
    reason: DenyReason,
    description: &str,
) -> ServiceError {
    ServiceError::Denied(Denial {
        decision_id: decision_id.clone(),
        reason,
        description: description.to_owned(),
        policies: Vec::new(),
    })
}

fn check_reason(reason: &str) -> Result<(), ServiceError> {
    if reason.trim().is_empty() || reason.chars().count() > crate::containment::MAX_REASON_CHARS {
        return Err(ServiceError::InvalidRequest(
            "a reason (at most 1024 characters) is required".to_owned(),
        ));
    }
    Ok(())
}

impl Handoff {
    /// Turns a gated permit into a permit through an approval, or says why not yet.
    pub(crate) async fn through_approval(
        &self,
        gated: GatedPermit,
        approval_id: Option<&str>,
        task: &Task,
        system: &SystemConfig,
        now: Timestamp,
    ) -> Result<(Permit, String), ServiceError> {
        let hash = gated.request_hash();
        let decision_id = gated.decision_id().clone();
        let interval = self.config().approvals.poll_interval_seconds;
        let approval = match approval_id {
            Some(id) => match self.store().approval(id).await? {
                Some(approval) => approval,
                None => {
                    return Err(ServiceError::InvalidGrant(format!(
                        "approval `{}` is unknown",
                        id.chars().take(64).collect::<String>()
                    )));
                }
            },
            None => match self.store().pending_approval(&task.id, &hash).await? {
                Some(existing) => existing,
                None => return Err(self.open_approval(gated, task, system, hash, now).await?),
            },
        };
        // Bound to one exact request in its task: another amount, resource, system or task is
        // refused. Not to the actor: a delegate may release what was approved for the task.
        if approval.request_hash != hash || approval.task != task.id {
            return Err(deny(
                &decision_id,
                DenyReason::ApprovalMismatch,
                "the approval is for a different request",
            ));
        }
        match approval.status_at(now) {
            ApprovalStatus::Pending => {
                if !self
                    .store()
                    .poll_approval(&approval.id, now, interval)
                    .await?
                {
                    return Err(ServiceError::SlowDown {
                        approval_id: approval.id,
                        interval: interval.saturating_add(5),
                    });
                }
                Err(ServiceError::ApprovalPending {
                    expires_in: (approval.expires_at.seconds() - now.seconds()).max(0),
                    approval_id: approval.id,
                    group: approval.group,
                    interval,
                })
            }
            ApprovalStatus::Approved => match gated.release(&approval, now) {
                Ok(permit) => Ok((permit, approval.id)),
                Err(ReleaseRefusal::Used) => Err(deny(
                    &decision_id,
                    DenyReason::ApprovalUsed,
                    "the approval was already used",
                )),
                Err(ReleaseRefusal::Mismatch) => Err(deny(
                    &decision_id,
                    DenyReason::ApprovalMismatch,
                    "the approval is for a different request",
                )),
                Err(ReleaseRefusal::NotApproved(_)) => Err(ServiceError::ExpiredToken(
                    "the approval has expired".to_owned(),
                )),
            },
            ApprovalStatus::Denied => Err(deny(
                &decision_id,
                DenyReason::ApprovalDenied,
                "the owner denied the request",
            )),
            ApprovalStatus::Cancelled => Err(deny(
                &decision_id,
                DenyReason::ApprovalCancelled,
                "the approval was cancelled",
            )),
            ApprovalStatus::Expired => Err(ServiceError::ExpiredToken(
                "the approval has expired".to_owned(),
            )),
        }
    }

    /// Opens an approval request for the gated request and tells the owners; the answer to the
    /// agent is always `authorization_pending`.
    async fn open_approval(
        &self,
        gated: GatedPermit,
        task: &Task,
        system: &SystemConfig,
        hash: String,
        now: Timestamp,
    ) -> Result<ServiceError, ServiceError> {
        let grant = gated.grant();
        let approvals = self.config().approvals;
        let approval = Approval {
            id: new_id(self.random(), "apr").map_err(|e| ServiceError::Internal(e.to_string()))?,
            task: task.id.clone(),
            agent: grant.agent.clone(),
            user: task.user.clone(),
            system: system.id.clone(),
            actions: grant.actions.iter().map(|a| a.name.to_string()).collect(),
            resource: grant.resource.clone(),
            details: grant.details.clone(),
            request_hash: hash,
            group: gated.group().to_owned(),
            risk: system.risk.as_str().to_owned(),
            status: ApprovalStatus::Pending,
            created_at: now,
            expires_at: now.plus(approvals.ttl),
            decided_by: None,
            decided_at: None,
            reason: None,
            consumed_by: None,
            escalated: false,
        };
        let event = AuditEvent {
            kind: Some(EventKind::ApprovalRequest),
            decision_id: Some(gated.decision_id().to_string()),
            agent: Some(grant.agent.to_string()),
            user: Some(task.user.to_string()),
            task: Some(task.id.to_string()),
            intent: Some(task.intent.clone()),
            purpose: Some(task.purpose.to_string()),
            system: Some(system.id.to_string()),
            actions: approval.actions.clone(),
            resource: approval.resource.clone(),
            authorization_details: approval.details.clone(),
            policies: gated.policies().to_vec(),
            policy_set: Some(self.policy_engine().hash().to_owned()),
            approval: Some(approval.id.clone()),
            target: Some(format!("group:{}", approval.group)),
            description: Some(format!("waits for approval by `{}`", approval.group)),
            ..AuditEvent::default()
        };
        let mut write = Write::new(now, event, TaskWrite::None);
        write
            .effects
            .push(Effect::InsertApproval(Box::new(approval.clone())));
        self.store().write(write).await?;
        self.notifier().notify(Notice {
            kind: NoticeKind::ApprovalRequested,
            system: Some(system.id.to_string()),
            owner: Some(approval.group.clone()),
            escalation: Some(system.escalation.clone()),
            task: Some(task.id.to_string()),
            agent: Some(approval.agent.to_string()),
            user: Some(task.user.to_string()),
            intent: Some(task.intent.clone()),
            reason: "approval_requested".to_owned(),
            description: format!(
                "{} on `{}` waits for approval",
                approval.actions.join(" "),
                system.id
            ),
            decision_id: Some(gated.decision_id().to_string()),
            approval_id: Some(approval.id.clone()),
        });
        Ok(ServiceError::ApprovalPending {
            expires_in: (approval.expires_at.seconds() - now.seconds()).max(0),
            approval_id: approval.id,
            group: approval.group,
            interval: approvals.poll_interval_seconds,
        })
    }

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
        let approval = self
            .store()
            .approval(id)
            .await?
            .ok_or_else(|| ServiceError::InvalidTarget("no such approval".to_owned()))?;
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
            kind: Some(EventKind::ApprovalDecision),
            task: Some(approval.task.to_string()),
            agent: Some(approval.agent.to_string()),
            user: Some(approval.user.to_string()),
            system: Some(approval.system.to_string()),
            actions: approval.actions.clone(),
            authorization_details: approval.details.clone(),
            approval: Some(approval.id.clone()),
            actor: Some(by.clone()),
            outcome: Some(if approve {
                Outcome::Permit
            } else {
                Outcome::Deny
            }),
            reason: Some(status.as_str().to_owned()),
            description: Some(reason.to_owned()),
            ..AuditEvent::default()
        };
        let mut write = Write::new(now, event, TaskWrite::None);
        write.effects.push(Effect::DecideApproval {
            id: approval.id.clone(),
            status,
            by: by.clone(),
            reason: reason.to_owned(),
        });
        match self.store().write(write).await {
            Ok(_) => {}
            Err(StoreError::Rejected(Rejection::ApprovalClosed)) => {
                return Err(ServiceError::InvalidRequest(
                    "the approval is no longer pending".to_owned(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        let system = self.config().systems.get(&approval.system);
        if !approve && system.is_some_and(|s| s.risk >= RiskTier::High) {
            self.notifier().notify(Notice {
                kind: NoticeKind::ApprovalDenied,
                system: Some(approval.system.to_string()),
                owner: Some(approval.group.clone()),
                escalation: system.map(|s| s.escalation.clone()),
                task: Some(approval.task.to_string()),
                agent: Some(approval.agent.to_string()),
                user: Some(approval.user.to_string()),
                intent: None,
                reason: "approval_denied".to_owned(),
                description: format!("{by} denied a {} request: {reason}", approval.risk),
                decision_id: None,
                approval_id: Some(approval.id.clone()),
            });
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
        let refuse = |reason: DenyReason, why: String| {
            ServiceError::Denied(Denial {
                decision_id: crate::ids::DecisionId::new(format!("approval:{}", approval.id)),
                reason,
                description: why,
                policies: Vec::new(),
            })
        };
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
        let decision_id = match &error {
            ServiceError::Denied(denial) => Some(denial.decision_id.to_string()),
            _ => None,
        };
        let event = AuditEvent {
            kind: Some(EventKind::ApprovalDecision),
            decision_id,
            task: Some(approval.task.to_string()),
            agent: Some(approval.agent.to_string()),
            user: Some(approval.user.to_string()),
            system: Some(approval.system.to_string()),
            actions: approval.actions.clone(),
            approval: Some(approval.id.clone()),
            actor: Some(format!("{} ({})", person.user(), person.issuer())),
            outcome: Some(Outcome::Deny),
            reason: Some(error.code().to_owned()),
            description: Some(error.to_string()),
            ..AuditEvent::default()
        };
        match self
            .store()
            .write(Write::new(self.now(), event, TaskWrite::None))
            .await
        {
            Ok(_) => error,
            Err(store) => store.into(),
        }
    }

    /// Cancels a pending approval (the task's agent no longer needs it, or an operator stops it).
    pub async fn cancel_approval(
        &self,
        canceller: &Canceller,
        id: &str,
        reason: &str,
    ) -> Result<Approval, ServiceError> {
        check_reason(reason)?;
        let approval = self
            .store()
            .approval(id)
            .await?
            .ok_or_else(|| ServiceError::InvalidTarget("no such approval".to_owned()))?;
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
        let mut write = Write::new(now, event, TaskWrite::None);
        write.effects.push(Effect::DecideApproval {
            id: approval.id.clone(),
            status: ApprovalStatus::Cancelled,
            by: by.clone(),
            reason: reason.to_owned(),
        });
        match self.store().write(write).await {
            Ok(_) => Ok(Approval {
                status: ApprovalStatus::Cancelled,
                decided_by: Some(by),
                ..approval
            }),
            Err(StoreError::Rejected(Rejection::ApprovalClosed)) => Err(
                ServiceError::InvalidRequest("the approval is no longer pending".to_owned()),
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// Expires undecided approvals past their time and escalates those undecided for longer than
    /// `approvals.escalate_after`. Returns how many were (expired, escalated).
    pub async fn sweep_approvals(&self) -> Result<(usize, usize), ServiceError> {
        let now = self.now();
        let pending = self
            .store()
            .approvals(Some(ApprovalStatus::Pending), None, MAX_LIST)
            .await?;
        let escalate_after = self.config().approvals.escalate_after;
        let (mut expired, mut escalated) = (0, 0);
        for approval in pending {
            let base = AuditEvent {
                task: Some(approval.task.to_string()),
                system: Some(approval.system.to_string()),
                approval: Some(approval.id.clone()),
                actor: Some("handoff".to_owned()),
                ..AuditEvent::default()
            };
            if now >= approval.expires_at {
                let event = AuditEvent {
                    kind: Some(EventKind::ApprovalDecision),
                    outcome: Some(Outcome::Deny),
                    reason: Some("expired".to_owned()),
                    description: Some("nobody decided in time".to_owned()),
                    ..base
                };
                let mut write = Write::new(now, event, TaskWrite::None);
                write.effects.push(Effect::ExpireApproval {
                    id: approval.id.clone(),
                });
                match self.store().write(write).await {
                    Ok(_) => expired += 1,
                    Err(StoreError::Rejected(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            } else if !approval.escalated && now >= approval.created_at.plus(escalate_after) {
                let system = self.config().systems.get(&approval.system);
                let contact = system.map_or_else(String::new, |s| s.escalation.clone());
                let event = AuditEvent {
                    kind: Some(EventKind::ApprovalEscalate),
                    target: Some(format!("escalation:{contact}")),
                    description: Some(format!(
                        "undecided after {}s; escalated to {contact}",
                        escalate_after.seconds()
                    )),
                    ..base
                };
                let mut write = Write::new(now, event, TaskWrite::None);
                write.effects.push(Effect::EscalateApproval {
                    id: approval.id.clone(),
                });
                self.store().write(write).await?;
                escalated += 1;
                self.notifier().notify(Notice {
                    kind: NoticeKind::ApprovalEscalated,
                    system: Some(approval.system.to_string()),
                    owner: Some(approval.group.clone()),
                    escalation: Some(contact.clone()),
                    task: Some(approval.task.to_string()),
                    agent: Some(approval.agent.to_string()),
                    user: Some(approval.user.to_string()),
                    intent: None,
                    reason: "approval_escalated".to_owned(),
                    description: format!(
                        "{} on `{}` has waited {}s for `{}`",
                        approval.actions.join(" "),
                        approval.system,
                        escalate_after.seconds(),
                        approval.group
                    ),
                    decision_id: None,
                    approval_id: Some(approval.id.clone()),
                });
            }
        }
        Ok((expired, escalated))
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
