//! Transaction Tokens (draft-ietf-oauth-transaction-tokens-08): the task, carried across handoffs.

use super::TXN_TOKEN_TYP;
use super::jws::{TokenError, Unverified, check_times};
use crate::ids::{AgentId, TaskId};
use crate::keys::{KeyError, KeyRing};
use crate::task::Task;
use jsonwebtoken::{Validation, decode, decode_header};
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
    let header = decode_header(token.as_str()).map_err(|_| TokenError::Malformed)?;
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(TXN_TOKEN_TYP))
    {
        return Err(TokenError::WrongType(TXN_TOKEN_TYP));
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.find(kid))
        .ok_or(TokenError::UnknownKey)?;
    if header.alg != key.jwt_algorithm() {
        return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
    }
    let mut validation = Validation::new(key.jwt_algorithm());
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_audience(&[trust_domain]);
    validation.set_issuer(&[trust_domain]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let data = decode::<TxnClaims>(token.as_str(), key.decoding_key(), &validation)
        .map_err(|e| TokenError::Invalid(e.to_string()))?;
    check_times(Some(data.claims.exp), None, now_seconds, 0)?;
    Ok(VerifiedTxn {
        task: TaskId::new(data.claims.txn.clone()),
        agent: AgentId::new(data.claims.req_wl.clone()),
        claims: data.claims,
    })
}
