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
    mint_txn_token_verified(keys, issuer, trust_domain, task).map(|(token, _)| token)
}

/// Mints a task's Transaction Token, with what verifying it would give: the claims just signed,
/// so that the token's first use need not check a signature made here a moment before.
pub(crate) fn mint_txn_token_verified(
    keys: &KeyRing,
    issuer: &str,
    trust_domain: &str,
    task: &Task,
) -> Result<(String, VerifiedTxn), KeyError> {
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
    let token = keys.active().sign_jwt(TXN_TOKEN_TYP, &claims)?;
    Ok((
        token,
        VerifiedTxn {
            task: task.id.clone(),
            agent: task.agent.clone(),
            claims,
        },
    ))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::SigningAlgorithm;
    use crate::ids::{Purpose, SystemId, UserId};
    use crate::keys::{SigningKey, generate_pkcs8};
    use crate::task::TaskState;
    use crate::time::Timestamp;

    /// A task token's first use is answered from what minting it gave (`open.rs` puts it in
    /// the cache): that must be exactly what verifying the token gives.
    #[test]
    fn a_minted_task_tokens_claims_are_what_verifying_it_gives() {
        for algorithm in [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa] {
            let der = generate_pkcs8(algorithm).unwrap();
            let keys = KeyRing::new(SigningKey::from_pkcs8(algorithm, &der).unwrap(), vec![]);
            let task = Task {
                id: TaskId::new("task_019b0a2c3d4e-abc"),
                agent_issuer: "https://issuer.example".to_owned(),
                agent: AgentId::new("spiffe://example.org/agent/release"),
                user: UserId::new("alice"),
                purpose: Purpose::new("release"),
                intent: "ship \"v2\" to staging".to_owned(),
                plan: [SystemId::new("git"), SystemId::new("ci")]
                    .into_iter()
                    .collect(),
                created_at: Timestamp::from_millis(1_700_000_000_999),
                expires_at: Timestamp::from_millis(1_700_003_600_500),
                state: TaskState::Open,
            };
            let (token, minted) =
                mint_txn_token_verified(&keys, "https://handoff.example", "example.org", &task)
                    .unwrap();
            let verified = verify_txn_token(
                &keys,
                "https://handoff.example",
                "example.org",
                Unverified::new(&token),
                1_700_000_100,
            )
            .unwrap();
            assert_eq!(minted.claims(), verified.claims());
            assert_eq!(minted.task(), verified.task());
            assert_eq!(minted.agent(), verified.agent());
        }
    }
}
