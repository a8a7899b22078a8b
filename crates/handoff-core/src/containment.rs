//! Containment: introspection (RFC 7662), revocation (RFC 7009 and beyond), freezes, system
//! credentials and the revocation feed. Every change is recorded in the audit chain with who
//! did it and why, and takes effect for the next exchange or introspection.

use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::error::ServiceError;
use crate::hash::sha256_hex;
use crate::ids::{AgentId, SystemId, TaskId};
use crate::notify::{Notice, NoticeKind};
use crate::random::new_id;
use crate::revocation::{Revocation, RevocationEntry, RevocationKind};
use crate::service::Handoff;
use crate::store::{Effect, TaskWrite, Write};
use crate::task::TaskState;
use crate::token::{AccessClaims, Unverified, verify_access_token};

/// Most entries one feed page returns.
pub const MAX_FEED_PAGE: usize = 1000;
pub const MAX_REASON_CHARS: usize = 1024;

/// An authenticated operator. Over HTTP, a caller presenting the operator credential; on the
/// command line, whoever can write the data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    name: String,
}

impl Operator {
    /// An operator acting through local access to the data directory (the CLI).
    pub fn local(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A registered system that authenticated with its credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemCaller {
    system: SystemId,
    audience: String,
}

impl SystemCaller {
    pub fn system(&self) -> &SystemId {
        &self.system
    }
}

/// Who may introspect or revoke a token.
#[derive(Clone, Debug)]
pub enum TokenCaller {
    /// Sees and revokes only tokens for its own audience.
    System(SystemCaller),
    /// Revokes only tokens minted to it (RFC 7009's client); introspects nothing.
    Agent(crate::identity::VerifiedIdentity),
    /// Sees and revokes every token.
    Operator(Operator),
}

/// An RFC 7662 answer: the claims while active, nothing else otherwise.
#[derive(Clone, Debug)]
pub enum Introspection {
    Active(Box<AccessClaims>),
    Inactive,
}

/// Why a token whose signature and lifetime verify is no longer honoured. One answer for
/// introspection and the gateway inside `handoff serve` ([`Handoff::why_inactive`]), so they
/// cannot disagree; the standalone gateway's deny list gives the same codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inactive {
    /// Its audience is no registered system.
    UnknownSystem,
    TokenRevoked,
    /// Its task (`txn`) is unknown to this store.
    UnknownTask,
    TaskEnded,
    /// Its task was revoked, by itself or with the task's agent.
    TaskRevoked,
    SystemFrozen,
    /// A delegation in its `del` chain was revoked.
    DelegationRevoked,
    /// An agent in its actor chain (the holder, a delegate between, or the task's agent) was
    /// revoked.
    AgentRevoked,
}

impl Inactive {
    /// The stable code, as exchanges deny with it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownSystem => "unknown_system",
            Self::TokenRevoked => "token_revoked",
            Self::UnknownTask => "unknown_task",
            Self::TaskEnded => "task_ended",
            Self::TaskRevoked => "task_revoked",
            Self::SystemFrozen => "system_frozen",
            Self::DelegationRevoked => "delegation_revoked",
            Self::AgentRevoked => "agent_revoked",
        }
    }
}

impl std::fmt::Display for Inactive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// Checks an operator credential presented over HTTP.
    pub fn authenticate_operator(&self, secret: &str) -> Result<Operator, ServiceError> {
        match self.operator_sha256() {
            Some(expected) if !secret.is_empty() && sha256_hex(secret.as_bytes()) == expected => {
                Ok(Operator {
                    name: "operator".to_owned(),
                })
            }
            _ => Err(ServiceError::InvalidClient(
                "operator credentials are required".to_owned(),
            )),
        }
    }

    /// Checks a system's introspection credential (HTTP Basic `system:secret`).
    pub async fn authenticate_system(
        &self,
        system: &str,
        secret: &str,
    ) -> Result<SystemCaller, ServiceError> {
        let refused =
            || ServiceError::InvalidClient("unknown system or wrong credential".to_owned());
        let config = self
            .config()
            .systems
            .get(&SystemId::new(system))
            .ok_or_else(refused)?;
        let stored = self
            .store()
            .credential(&config.id)
            .await?
            .ok_or_else(refused)?;
        // Comparing digests: the caller controls the secret, not the digest, so no timing leak.
        if secret.is_empty() || sha256_hex(secret.as_bytes()) != stored {
            return Err(refused());
        }
        Ok(SystemCaller {
            system: config.id.clone(),
            audience: config.audience.clone(),
        })
    }

    /// Registers a new introspection credential for `system`, replacing any earlier one, and
    /// returns the secret (shown once; only its digest is stored).
    pub async fn register_credential(
        &self,
        operator: &Operator,
        system: &str,
    ) -> Result<String, ServiceError> {
        let config = self
            .config()
            .systems
            .get(&SystemId::new(system))
            .ok_or_else(|| {
                ServiceError::InvalidTarget(format!("`{system}` is not a registered system"))
            })?;
        let secret =
            new_id(self.random(), "hsk").map_err(|e| ServiceError::Internal(e.to_string()))?;
        let event = AuditEvent {
            kind: Some(EventKind::Credential),
            system: Some(config.id.to_string()),
            actor: Some(operator.name().to_owned()),
            description: Some("introspection credential registered".to_owned()),
            ..AuditEvent::default()
        };
        let mut write = Write::new(self.now(), event, TaskWrite::None);
        write.effects.push(Effect::Credential {
            system: config.id.clone(),
            secret_sha256: sha256_hex(secret.as_bytes()),
        });
        self.store().write(write).await?;
        Ok(secret)
    }

    /// RFC 7662: active with its claims while the token is valid, and nothing more once it
    /// expired, was revoked, or was cut by a task, agent or freeze.
    pub async fn introspect(
        &self,
        caller: &TokenCaller,
        token: &str,
    ) -> Result<Introspection, ServiceError> {
        let now = self.now().seconds();
        let Ok(claims) = verify_access_token(
            self.keys(),
            &self.config().trust_domain,
            Unverified::new(token),
            Some(now),
        ) else {
            return Ok(Introspection::Inactive);
        };
        match caller {
            TokenCaller::System(system) if system.audience != claims.aud => {
                return Ok(Introspection::Inactive);
            }
            TokenCaller::Agent(_) => return Ok(Introspection::Inactive),
            TokenCaller::System(_) | TokenCaller::Operator(_) => {}
        }
        match self.why_inactive(&claims).await? {
            None => Ok(Introspection::Active(Box::new(claims))),
            Some(_) => Ok(Introspection::Inactive),
        }
    }

    /// Whether an access token whose signature and lifetime were verified is still honoured:
    /// `None` while it is, else why not. The one check behind introspection and the gateway in
    /// `handoff serve`: the token itself, its task, its system's freeze, every delegation in its
    /// `del` chain, and every agent in its actor chain (the holder, any delegate between, and
    /// the task's agent; revoking an agent cuts every token it appears in, at any depth).
    pub async fn why_inactive(
        &self,
        claims: &AccessClaims,
    ) -> Result<Option<Inactive>, ServiceError> {
        let Some(system) = self.config().system_for_audience(&claims.aud) else {
            return Ok(Some(Inactive::UnknownSystem));
        };
        let status = self
            .store()
            .token_status(&claims.jti, &TaskId::new(claims.txn.as_str()), &system.id)
            .await?;
        if status.token_revoked {
            return Ok(Some(Inactive::TokenRevoked));
        }
        match status.task_state {
            None => return Ok(Some(Inactive::UnknownTask)),
            Some(TaskState::Ended) => return Ok(Some(Inactive::TaskEnded)),
            Some(TaskState::Revoked) => return Ok(Some(Inactive::TaskRevoked)),
            Some(TaskState::Open) => {}
        }
        if status.system_frozen {
            return Ok(Some(Inactive::SystemFrozen));
        }
        if let Some(chain) = &claims.del
            && self.store().any_delegation_revoked(chain).await?
        {
            return Ok(Some(Inactive::DelegationRevoked));
        }
        // The outermost actor is the holder (`client_id`), the innermost the task's agent.
        let actors: Vec<&str> = claims.act.chain().map(|actor| actor.sub.as_str()).collect();
        if self.first_revoked_agent(&actors).await?.is_some() {
            return Ok(Some(Inactive::AgentRevoked));
        }
        Ok(None)
    }

    /// The first of `agents` that was revoked, if any.
    pub(crate) async fn first_revoked_agent<'a, S: AsRef<str> + Sync>(
        &self,
        agents: &'a [S],
    ) -> Result<Option<&'a str>, ServiceError> {
        for agent in agents {
            let agent = agent.as_ref();
            if self.store().is_agent_revoked(&AgentId::new(agent)).await? {
                return Ok(Some(agent));
            }
        }
        Ok(None)
    }

    /// RFC 7009: revokes one access token. Unknown, malformed or foreign tokens are ignored (the
    /// caller still gets success), as the RFC asks.
    pub async fn revoke_token(
        &self,
        caller: &TokenCaller,
        token: &str,
    ) -> Result<(), ServiceError> {
        let Ok(claims) = verify_access_token(
            self.keys(),
            &self.config().trust_domain,
            Unverified::new(token),
            None,
        ) else {
            return Ok(());
        };
        let actor = match caller {
            TokenCaller::System(system) if system.audience == claims.aud => {
                format!("system:{}", system.system)
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
        if subject.is_empty() || subject.chars().count() > crate::service::MAX_NAME_CHARS {
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
