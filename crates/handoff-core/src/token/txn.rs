//! Transaction Tokens (draft-ietf-oauth-transaction-tokens-08): the task, carried across handoffs.

use super::TXN_TOKEN_TYP;
use super::access::Actor;
use super::jws::{TokenError, Unverified, verify_own};
use super::numeric_date::{Leeway, floor_seconds};
use crate::delegation::Delegation;
use crate::ids::{AgentId, TaskId};
use crate::keys::{KeyError, KeyRing};
use crate::task::Task;
use serde::{Deserialize, Serialize};

/// `tctx`: the task facts that travel with the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskContext {
    pub intent: String,
    pub purpose: String,
    pub plan: Vec<String>,
    /// For a delegate's token: the transaction it was handed from (the task, or the delegation
    /// one level up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// For a delegate's token: the delegation it carries; the store holds what it allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<String>,
    /// For a delegate's token: the actions delegated (informative; enforced from the store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnClaims {
    pub iss: String,
    pub aud: String,
    #[serde(deserialize_with = "floor_seconds")]
    pub iat: i64,
    #[serde(deserialize_with = "floor_seconds")]
    pub exp: i64,
    pub txn: String,
    pub sub: String,
    pub scope: String,
    pub req_wl: String,
    pub tctx: TaskContext,
    /// For a delegate's token: the actor chain, RFC 8693 §4.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
}

/// Mints a task's Transaction Token: `iss` is Handoff's issuer, `aud` the trust domain.
pub fn mint_txn_token(
    keys: &KeyRing,
    issuer: &str,
    trust_domain: &str,
    task: &Task,
) -> Result<String, KeyError> {
    let claims = TxnClaims {
        iss: issuer.to_owned(),
        aud: trust_domain.to_owned(),
        iat: task.created_at.seconds(),
        exp: task.expires_at.seconds(),
        txn: task.id.to_string(),
        sub: task.user.to_string(),
        scope: task.purpose.to_string(),
        req_wl: task.agent.to_string(),
        tctx: TaskContext {
            intent: task.intent.clone(),
            purpose: task.purpose.to_string(),
            plan: task.plan.iter().map(ToString::to_string).collect(),
            parent: None,
            delegation: None,
            actions: None,
        },
        act: None,
    };
    keys.active().sign_jwt(TXN_TOKEN_TYP, &claims)
}

/// The child Transaction Token a delegate carries: the same task, its own workload, the
/// delegation it acts under, and the chain of actors that handed it the work.
pub fn mint_delegated_txn_token(
    keys: &KeyRing,
    issuer: &str,
    trust_domain: &str,
    task: &Task,
    delegation: &Delegation,
) -> Result<String, KeyError> {
    let parent = delegation
        .chain
        .iter()
        .rev()
        .nth(1)
        .map_or_else(|| task.id.to_string(), Clone::clone);
    let claims = TxnClaims {
        iss: issuer.to_owned(),
        aud: trust_domain.to_owned(),
        iat: delegation.created_at.seconds(),
        exp: delegation.expires_at.seconds(),
        txn: task.id.to_string(),
        sub: task.user.to_string(),
        scope: task.purpose.to_string(),
        req_wl: delegation.delegate.to_string(),
        tctx: TaskContext {
            intent: task.intent.clone(),
            purpose: task.purpose.to_string(),
            plan: task.plan.iter().map(ToString::to_string).collect(),
            parent: Some(parent),
            delegation: Some(delegation.id.clone()),
            actions: Some(delegation.actions.iter().map(ToString::to_string).collect()),
        },
        act: Some(delegation.actor(None)),
    };
    keys.active().sign_jwt(TXN_TOKEN_TYP, &claims)
}

/// A Transaction Token whose signature, type, audience and lifetime were checked.
#[derive(Clone, Debug)]
pub struct VerifiedTxn {
    task: TaskId,
    agent: AgentId,
    claims: TxnClaims,
}

impl VerifiedTxn {
    pub fn task(&self) -> &TaskId {
        &self.task
    }

    /// The agent the task was opened for (`req_wl`).
    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    pub fn claims(&self) -> &TxnClaims {
        &self.claims
    }

    /// The delegation a delegate's token carries.
    pub fn delegation(&self) -> Option<&str> {
        self.claims.tctx.delegation.as_deref()
    }
}

/// Handoff's own tokens: no skew past `exp`; `iat` may be a little ahead when another node of a
/// cluster, with a slightly faster clock, minted the token.
pub const OWN_TOKEN_LEEWAY: Leeway = Leeway {
    expiry: 0,
    issued_at: 60,
};

/// Verifies one of Handoff's own Transaction Tokens (issued by `issuer`, for `trust_domain`).
pub fn verify_txn_token(
    keys: &KeyRing,
    issuer: &str,
    trust_domain: &str,
    token: Unverified<'_>,
    now_seconds: i64,
) -> Result<VerifiedTxn, TokenError> {
    let (claims, times): (TxnClaims, _) =
        verify_own(keys, token, TXN_TOKEN_TYP, issuer, Some(trust_domain))?;
    times.check(now_seconds, OWN_TOKEN_LEEWAY)?;
    Ok(VerifiedTxn {
        task: TaskId::new(claims.txn.clone()),
        agent: AgentId::new(claims.req_wl.clone()),
        claims,
    })
}
