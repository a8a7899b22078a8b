//! Introspection (RFC 7662), and the one answer to whether a verified token is still honoured,
//! shared by introspection and the gateway inside `handoff serve`.

use super::callers::TokenCaller;
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::ids::{AgentId, TaskId};
use crate::task::TaskState;
use crate::token::{AccessClaims, Unverified, verify_access_token};

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

impl Handoff {
    /// RFC 7662: active with its claims while the token is valid, and nothing more once it
    /// expired, was revoked, or was cut by a task, agent or freeze.
    pub async fn introspect(
        &self,
        caller: &TokenCaller,
        token: &str,
    ) -> Result<Introspection, ServiceError> {
        let now = self.now().seconds();
        let Ok(claims) = verify_access_token(
            &self.keys(),
            self.config().issuer(),
            Unverified::new(token),
            Some(now),
        ) else {
            return Ok(Introspection::Inactive);
        };
        match caller {
            TokenCaller::System(system) if system.audience() != claims.aud => {
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
}
