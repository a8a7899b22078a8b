//! Revocation (RFC 7009 and beyond): tokens, tasks, agents, delegations, and freezes of a
//! system, each recorded with who did it and why, and the feed verifiers that cannot call back
//! keep a local deny list from.

use super::callers::{Operator, TokenCaller};
use super::revocation::{Revocation, RevocationEntry, RevocationKind};
use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::ids::{AgentId, SystemId, TaskId};
use crate::limits::{MAX_NAME_CHARS, MAX_REASON_CHARS};
use crate::notify::{Notice, NoticeKind};
use crate::store::{Effect, TaskWrite, Write};
use crate::token::{Unverified, verify_access_token};

/// Most entries one feed page returns.
pub const MAX_FEED_PAGE: usize = 1000;

/// What a revocation changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokeReport {
    pub kind: RevocationKind,
    pub subject: String,
    /// Tasks cut by it (the task itself, or an agent's open tasks).
    pub tasks: Vec<TaskId>,
}

fn check_reason(reason: &str) -> Result<(), ServiceError> {
    if reason.trim().is_empty() {
        return Err(ServiceError::InvalidRequest(
            "a reason is required".to_owned(),
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ServiceError::InvalidRequest(format!(
            "the reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    Ok(())
}

impl Handoff {
    /// RFC 7009: revokes one access token. Unknown, malformed or foreign tokens are ignored (the
    /// caller still gets success), as the RFC asks.
    pub async fn revoke_token(
        &self,
        caller: &TokenCaller,
        token: &str,
    ) -> Result<(), ServiceError> {
        let Ok(claims) = verify_access_token(
            &self.keys(),
            self.config().issuer(),
            Unverified::new(token),
            None,
        ) else {
            return Ok(());
        };
        let actor = match caller {
            TokenCaller::System(system) if system.audience() == claims.aud => {
                format!("system:{}", system.system())
            }
            TokenCaller::System(_) => return Ok(()),
            TokenCaller::Agent(identity) if identity.agent().as_str() == claims.client_id => {
                format!("agent:{}", identity.agent())
            }
            TokenCaller::Agent(_) => return Ok(()),
            TokenCaller::Operator(operator) => operator.name().to_owned(),
        };
        let revocation = Revocation {
            kind: RevocationKind::Token,
            subject: claims.jti.clone(),
            reason: "revoked through the revocation endpoint".to_owned(),
            actor,
        };
        self.apply_revocation(revocation, Some(TaskId::new(claims.txn.as_str())))
            .await?;
        Ok(())
    }

    /// Revokes a token (by `jti`), a task or an agent, or freezes or unfreezes a system.
    pub async fn revoke(
        &self,
        operator: &Operator,
        kind: RevocationKind,
        subject: &str,
        reason: &str,
    ) -> Result<RevokeReport, ServiceError> {
        check_reason(reason)?;
        let subject = subject.trim();
        if subject.is_empty() || subject.chars().count() > MAX_NAME_CHARS {
            return Err(ServiceError::InvalidRequest(
                "the id to revoke is missing or too long".to_owned(),
            ));
        }
        let revocation = Revocation {
            kind,
            subject: subject.to_owned(),
            reason: reason.to_owned(),
            actor: operator.name().to_owned(),
        };
        match kind {
            RevocationKind::Token => {
                // An operator naming a token id Handoff never minted has the wrong id (or the
                // wrong deployment): say so. RFC 7009's endpoint still answers 200 for those.
                if !self.store().token_known(subject).await? {
                    return Err(ServiceError::InvalidTarget(format!(
                        "no token with id `{subject}` was ever issued here"
                    )));
                }
                self.apply_revocation(revocation, None).await?;
                Ok(RevokeReport {
                    kind,
                    subject: subject.to_owned(),
                    tasks: Vec::new(),
                })
            }
            RevocationKind::Task => {
                let id = TaskId::new(subject);
                if self.store().task(&id).await?.is_none() {
                    return Err(ServiceError::InvalidTarget(format!(
                        "task `{subject}` does not exist"
                    )));
                }
                self.apply_revocation(revocation, Some(id.clone())).await?;
                Ok(RevokeReport {
                    kind,
                    subject: subject.to_owned(),
                    tasks: vec![id],
                })
            }
            RevocationKind::Agent => {
                let agent = AgentId::new(subject);
                if !self.store().agent_known(&agent).await? {
                    return Err(ServiceError::InvalidTarget(format!(
                        "agent `{subject}` never held a task here"
                    )));
                }
                let tasks = self.store().open_tasks(&agent).await?;
                self.apply_revocation(revocation, None).await?;
                // One record per task cut, so each task's trace shows why it stopped.
                for task in &tasks {
                    let event = AuditEvent {
                        kind: Some(EventKind::Revoke),
                        task: Some(task.to_string()),
                        agent: Some(subject.to_owned()),
                        actor: Some(operator.name().to_owned()),
                        target: Some(format!("task:{task}")),
                        outcome: Some(Outcome::Deny),
                        reason: Some("agent_revoked".to_owned()),
                        description: Some(reason.to_owned()),
                        ..AuditEvent::default()
                    };
                    self.store()
                        .write(Write::new(self.now(), event, TaskWrite::None))
                        .await?;
                }
                Ok(RevokeReport {
                    kind,
                    subject: subject.to_owned(),
                    tasks,
                })
            }
            RevocationKind::Delegation => {
                let Some(delegation) = self.store().delegation(subject).await? else {
                    return Err(ServiceError::InvalidTarget(format!(
                        "delegation `{subject}` does not exist"
                    )));
                };
                self.apply_revocation(revocation, Some(delegation.task.clone()))
                    .await?;
                Ok(RevokeReport {
                    kind,
                    subject: subject.to_owned(),
                    tasks: Vec::new(),
                })
            }
            RevocationKind::Freeze | RevocationKind::Unfreeze => {
                if !self.config().systems.contains_key(&SystemId::new(subject)) {
                    return Err(ServiceError::InvalidTarget(format!(
                        "`{subject}` is not a registered system"
                    )));
                }
                self.apply_revocation(revocation, None).await?;
                Ok(RevokeReport {
                    kind,
                    subject: subject.to_owned(),
                    tasks: Vec::new(),
                })
            }
        }
    }

    async fn apply_revocation(
        &self,
        revocation: Revocation,
        task: Option<TaskId>,
    ) -> Result<(), ServiceError> {
        let event = AuditEvent {
            kind: Some(EventKind::Revoke),
            task: task.map(|t| t.to_string()),
            system: matches!(
                revocation.kind,
                RevocationKind::Freeze | RevocationKind::Unfreeze
            )
            .then(|| revocation.subject.clone()),
            agent: (revocation.kind == RevocationKind::Agent).then(|| revocation.subject.clone()),
            actor: Some(revocation.actor.clone()),
            target: Some(format!(
                "{}:{}",
                revocation.kind.as_str(),
                revocation.subject
            )),
            reason: Some(
                match revocation.kind {
                    RevocationKind::Token => "token_revoked",
                    RevocationKind::Task => "task_revoked",
                    RevocationKind::Agent => "agent_revoked",
                    RevocationKind::Freeze => "system_frozen",
                    RevocationKind::Unfreeze => "system_unfrozen",
                    RevocationKind::Delegation => "delegation_revoked",
                }
                .to_owned(),
            ),
            description: Some(revocation.reason.clone()),
            ..AuditEvent::default()
        };
        let system = match revocation.kind {
            RevocationKind::Freeze | RevocationKind::Unfreeze => self
                .config()
                .systems
                .get(&SystemId::new(revocation.subject.as_str()))
                .cloned(),
            _ => None,
        };
        let notice = Notice {
            kind: NoticeKind::Revoked,
            system: system.as_ref().map(|s| s.id.to_string()),
            owner: system.as_ref().map(|s| s.owner.clone()),
            escalation: system.as_ref().map(|s| s.escalation.clone()),
            task: event.task.clone(),
            agent: event.agent.clone(),
            user: None,
            intent: None,
            reason: event.reason.clone().unwrap_or_default(),
            description: revocation.reason.clone(),
            decision_id: None,
            approval_id: None,
        };
        let mut write = Write::new(self.now(), event, TaskWrite::None);
        write.effects.push(Effect::Revoke(revocation));
        self.store().write(write).await?;
        self.notifier().notify(notice);
        Ok(())
    }

    /// The revocation feed after `after`, for verifiers that keep a local deny list.
    pub async fn revocation_feed(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, ServiceError> {
        Ok(self
            .store()
            .revocations(after, limit.clamp(1, MAX_FEED_PAGE))
            .await?)
    }
}
