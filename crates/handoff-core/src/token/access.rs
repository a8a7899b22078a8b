//! RFC 9068 access tokens, minted only from a [`Permit`].

use super::ACCESS_TOKEN_TYP;
use super::jws::{TokenError, Unverified, verify_own};
use super::numeric_date::floor_seconds;
use super::txn::OWN_TOKEN_LEEWAY;
use crate::ids::TokenId;
use crate::keys::{KeyError, KeyRing};
use crate::policy::Permit;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// RFC 8693 §4.1 actor claim; nested when work is delegated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// This actor and every one it acts for, outermost (the acting one) first: for a delegate's
    /// token `[delegate, ..., the task's agent]`, for an agent's own token just the agent.
    pub fn chain(&self) -> impl Iterator<Item = &Actor> {
        std::iter::successors(Some(self), |actor| actor.act.as_deref())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    pub act: Actor,
    pub txn: String,
    pub jti: String,
    #[serde(deserialize_with = "floor_seconds")]
    pub iat: i64,
    #[serde(deserialize_with = "floor_seconds")]
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
    /// For a delegate's token: the delegations it was minted under, outermost first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub del: Option<Vec<String>>,
}

/// A minted token and what the audit log keeps of it (never the token itself).
#[derive(Clone, Debug)]
pub struct MintedToken {
    pub token: String,
    pub jti: TokenId,
    pub audience: String,
    pub scope: String,
    pub expires_at: Timestamp,
}

/// Mints the access token a permit allows: one audience, exactly the granted scope.
pub fn mint_access_token(
    keys: &KeyRing,
    issuer: &str,
    agent_issuer: &str,
    permit: &Permit,
    jti: TokenId,
) -> Result<MintedToken, KeyError> {
    let grant = permit.grant();
    let scope = grant
        .actions
        .iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let claims = AccessClaims {
        iss: issuer.to_owned(),
        aud: grant.audience.clone(),
        sub: grant.user.to_string(),
        client_id: grant.agent.to_string(),
        scope: scope.clone(),
        act: match &grant.delegation {
            None => Actor {
                sub: grant.agent.to_string(),
                iss: Some(agent_issuer.to_owned()),
                act: None,
            },
            Some(delegation) => delegation.actor(Some(agent_issuer)),
        },
        txn: grant.task.to_string(),
        jti: jti.to_string(),
        iat: grant.issued_at.seconds(),
        exp: grant.expires_at.seconds(),
        resource: grant.resource.clone(),
        authorization_details: grant.details.clone(),
        del: grant.delegation.as_ref().map(|d| d.chain.clone()),
    };
    let token = keys.active().sign_jwt(ACCESS_TOKEN_TYP, &claims)?;
    Ok(MintedToken {
        token,
        jti,
        audience: grant.audience.clone(),
        scope,
        expires_at: Timestamp::from_seconds(grant.expires_at.seconds()),
    })
}

/// Verifies one of Handoff's own access tokens (signature, `typ`, issuer). `at` is the time to
/// check expiry against, or `None` to accept expired tokens (revocation of an expired token).
pub fn verify_access_token(
    keys: &KeyRing,
    issuer: &str,
    token: Unverified<'_>,
    at: Option<i64>,
) -> Result<AccessClaims, TokenError> {
    let (claims, times): (AccessClaims, _) =
        verify_own(keys, token, ACCESS_TOKEN_TYP, issuer, None)?;
    if let Some(now) = at {
        times.check(now, OWN_TOKEN_LEEWAY)?;
    }
    Ok(claims)
}
