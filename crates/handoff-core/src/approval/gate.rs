//! The approval gate on the exchange path: a [`GatedPermit`] becomes a [`Permit`] only through
//! an approval bound to its exact request. The first exchange opens the approval and tells the
//! owners; later ones poll it the way RFC 8628 clients expect, and an approved one releases once.

use crate::approval::{Approval, ApprovalStatus};
use crate::audit::{AuditEvent, DecidedOn, EventKind};
use crate::config::SystemConfig;
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::notify::{Notice, NoticeKind};
use crate::policy::{DenyReason, GatedPermit, Permit, ReleaseRefusal};
use crate::store::{Effect, TaskWrite, Write};
use crate::task::{Task, task_event};
use crate::time::Timestamp;

/// Seconds left of `approval` at `now`, never negative.
fn expires_in(approval: &Approval, now: Timestamp) -> i64 {
    (approval.expires_at.seconds() - now.seconds()).max(0)
}

impl Handoff {
    /// Turns a gated permit into a permit through an approval, or says why not yet.
    pub(crate) async fn through_approval(
        &self,
        gated: GatedPermit,
        approval_id: Option<&str>,
        task: &Task,
        system: &SystemConfig,
        decided_on: &DecidedOn,
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
                None => {
                    return Err(self
                        .open_approval(gated, task, system, hash, decided_on, now)
                        .await?);
                }
            },
        };
        // Bound to one exact request in its task: another amount, resource, system or task is
        // refused. Not to the actor: a delegate may release what was approved for the task.
        if approval.request_hash != hash || approval.task != task.id {
            return Err(ServiceError::denied(
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
                    expires_in: expires_in(&approval, now),
                    approval_id: approval.id,
                    group: approval.group,
                    interval,
                })
            }
            ApprovalStatus::Approved => match gated.release(&approval, now) {
                Ok(permit) => Ok((permit, approval.id)),
                Err(ReleaseRefusal::Used) => Err(ServiceError::denied(
                    &decision_id,
                    DenyReason::ApprovalUsed,
                    "the approval was already used",
                )),
                Err(ReleaseRefusal::Mismatch) => Err(ServiceError::denied(
                    &decision_id,
                    DenyReason::ApprovalMismatch,
                    "the approval is for a different request",
                )),
                Err(ReleaseRefusal::NotApproved(_)) => Err(ServiceError::ExpiredToken(
                    "the approval has expired".to_owned(),
                )),
            },
            ApprovalStatus::Denied => Err(ServiceError::denied(
                &decision_id,
                DenyReason::ApprovalDenied,
                "the owner denied the request",
            )),
            ApprovalStatus::Cancelled => Err(ServiceError::denied(
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
        decided_on: &DecidedOn,
        now: Timestamp,
    ) -> Result<ServiceError, ServiceError> {
        let grant = gated.grant();
        let approvals = self.config().approvals;
        let approval = Approval {
            id: self.id("apr")?,
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
            // The actor that asked (the task's agent or a delegate); the issuer is not recorded.
            agent: Some(grant.agent.to_string()),
            agent_issuer: None,
            system: Some(system.id.to_string()),
            actions: approval.actions.clone(),
            resource: approval.resource.clone(),
            authorization_details: approval.details.clone(),
            policies: gated.policies().to_vec(),
            policy_set: Some(self.policy_engine().hash().to_owned()),
            approval: Some(approval.id.clone()),
            target: Some(format!("group:{}", approval.group)),
            description: Some(format!("waits for approval by `{}`", approval.group)),
            delegation: grant.delegation.as_ref().map(|d| d.id.clone()),
            decided_on: Some(decided_on.clone()),
            ..task_event(task)
        };
        let mut write = Write::new(now, event, TaskWrite::None);
        write
            .effects
            .push(Effect::InsertApproval(Box::new(approval.clone())));
        self.store().write(write).await?;
        let description = format!(
            "{} on `{}` waits for approval",
            approval.actions.join(" "),
            system.id
        );
        self.notifier().notify(Notice {
            intent: Some(task.intent.clone()),
            decision_id: Some(gated.decision_id().to_string()),
            ..approval.notice(
                NoticeKind::ApprovalRequested,
                Some(system.escalation.clone()),
                description,
            )
        });
        Ok(ServiceError::ApprovalPending {
            expires_in: expires_in(&approval, now),
            approval_id: approval.id,
            group: approval.group,
            interval: approvals.poll_interval_seconds,
        })
    }
}
