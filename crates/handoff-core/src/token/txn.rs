//! Transaction Tokens (draft-ietf-oauth-transaction-tokens-08): the task, carried across handoffs.

use super::TXN_TOKEN_TYP;
use super::jws::{TokenError, Unverified, check_times, verify_own};
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnClaims {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub txn: String,
    pub sub: String,
    pub scope: String,
    pub req_wl: String,
    pub tctx: TaskContext,
}

pub fn mint_txn_token(keys: &KeyRing, trust_domain: &str, task: &Task) -> Result<String, KeyError> {
    let claims = TxnClaims {
        iss: trust_domain.to_owned(),
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
        },
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
}

/// Verifies one of Handoff's own Transaction Tokens.
pub fn verify_txn_token(
    keys: &KeyRing,
    trust_domain: &str,
    token: Unverified<'_>,
    now_seconds: i64,
) -> Result<VerifiedTxn, TokenError> {
    let claims: TxnClaims =
        verify_own(keys, token, TXN_TOKEN_TYP, trust_domain, Some(trust_domain))?;
    check_times(Some(claims.exp), None, now_seconds, 0)?;
    Ok(VerifiedTxn {
        task: TaskId::new(claims.txn.clone()),
        agent: AgentId::new(claims.req_wl.clone()),
        claims,
    })
}
