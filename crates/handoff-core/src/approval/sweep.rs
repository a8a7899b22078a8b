//! The approvals' background sweep: undecided approvals past their time expire, and those
//! undecided for longer than `approvals.escalate_after` are escalated to the system's contact.

use crate::approval::ApprovalStatus;
use crate::approval::console::MAX_LIST;
use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::notify::NoticeKind;
use crate::store::{Effect, StoreError, TaskWrite, Write};

impl Handoff {
    /// Expires undecided approvals past their time and escalates those undecided for longer than
    /// `approvals.escalate_after`.
    pub async fn sweep_approvals(&self) -> Result<Swept, ServiceError> {
        let now = self.now();
        let pending = self
            .store()
            .approvals(Some(ApprovalStatus::Pending), None, MAX_LIST)
            .await?;
        let escalate_after = self.config().approvals.escalate_after;
        let listed = pending.len();
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
                match self.store().write(write).await {
                    Ok(_) => escalated += 1,
                    // Another node's sweep escalated it first (or it was decided meanwhile).
                    Err(StoreError::Rejected(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
                let description = format!(
                    "{} on `{}` has waited {}s for `{}`",
                    approval.actions.join(" "),
                    approval.system,
                    escalate_after.seconds(),
                    approval.group
                );
                self.notifier().notify(approval.notice(
                    NoticeKind::ApprovalEscalated,
                    Some(contact.clone()),
                    description,
                ));
            }
        }
        Ok(Swept {
            expired,
            escalated,
            pending: listed - expired,
        })
    }
}

/// What one sweep did, and what it left waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Swept {
    pub expired: usize,
    pub escalated: usize,
    /// Approvals still waiting for a decision (counted up to [`MAX_LIST`]).
    pub pending: usize,
}
