//! Workload identity: a JWT from a trusted issuer, verified once per request (and cached until it
//! expires). Algorithms come from the issuer's allow-list, never from the token; keys come from the
//! issuer's configured JWKS, never from `jku`, `x5u` or an embedded `jwk`.

use crate::cache::VerifiedCache;
use crate::config::{Config, IssuerConfig, IssuerKeySource};
use crate::ids::AgentId;
use crate::issuer_keys::{IssuerKeySet, IssuerList, NoRemoteKeys, RemoteKeyProvider, RemoteKeys};
use crate::keys::{KeyError, SigningKey};
use crate::time::{Timestamp, Ttl};
use crate::token::{
    ACCESS_TOKEN_TYP, Leeway, TXN_TOKEN_TYP, TokenError, TokenTimes, Unverified, peek_claims,
};
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// An agent identity whose signature, issuer, audience and lifetime were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedIdentity {
    issuer: String,
    agent: AgentId,
    expires_at: Timestamp,
}

impl VerifiedIdentity {
    /// The issuer that vouched for the agent.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
}

struct TrustedIssuer {
    issuer: String,
    audience: String,
    agent_claim: String,
    algorithms: Vec<Algorithm>,
    typ: Option<String>,
    leeway: Leeway,
    keys: IssuerKeys,
    groups_claim: String,
}

/// A trusted issuer's keys: fixed at load (`jwks_file`, the dev issuer), or fetched (`None`: no
/// fetcher serves the issuer, so it has no keys).
enum IssuerKeys {
    Fixed(IssuerKeySet),
    Remote(Option<Arc<RemoteKeys>>),
}

/// A person (an approver) whose token was verified, with the groups the issuer vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedPerson {
    issuer: String,
    user: String,
    groups: Vec<String>,
}

impl VerifiedPerson {
    /// A person a door signed in itself (the console's one-time link or its OpenID Connect
    /// sign-in), vouched for by `issuer`: `None` unless the name is usable and every group is
    /// visible text. Only a door that verified the person calls this.
    pub fn signed_in(issuer: &str, user: &str, groups: Vec<String>) -> Option<Self> {
        let usable = |text: &str| usable_name(text) && text.trim() == text;
        (usable(issuer) && usable(user) && groups.iter().all(|g| usable(g))).then(|| Self {
            issuer: issuer.to_owned(),
            user: user.to_owned(),
            groups,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    pub fn is_member(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The audience of approvers' tokens, distinct from agents', so neither passes for the other.
pub fn approvals_audience(config: &Config) -> String {
    format!("{}/approvals", config.trust_domain.trim_end_matches('/'))
}

/// Verifies agent identities against the trusted issuers.
pub struct IdentityVerifier {
    issuers: HashMap<String, TrustedIssuer>,
    cache: VerifiedCache<VerifiedIdentity>,
}

#[derive(Deserialize)]
struct Peek {
    iss: Option<String>,
}

impl IdentityVerifier {
    /// Trusts the config's agent issuers and, when given, Handoff's development issuer key.
    /// Issuers given by URL have no keys here: see [`IdentityVerifier::with_remote_keys`].
    pub fn new(config: &Config, dev_issuer: Option<&SigningKey>) -> Self {
        Self::with_remote_keys(config, dev_issuer, &NoRemoteKeys)
    }

    /// [`IdentityVerifier::new`], reading the keys of issuers given by URL from `remote`.
    pub fn with_remote_keys(
        config: &Config,
        dev_issuer: Option<&SigningKey>,
        remote: &dyn RemoteKeyProvider,
    ) -> Self {
        let dev = dev_issuer
            .filter(|_| config.dev_issuer)
            .map(|key| (config.dev_issuer_name(), config.trust_domain.clone(), key));
        Self::build(&config.issuers, IssuerList::Agents, remote, dev)
    }

    /// Trusts the config's approver issuers and, when given, the development issuer (people's
    /// tokens carry the approvals audience and a `groups` claim).
    pub fn for_approvers(config: &Config, dev_issuer: Option<&SigningKey>) -> Self {
        Self::for_approvers_with_remote_keys(config, dev_issuer, &NoRemoteKeys)
    }

    /// [`IdentityVerifier::for_approvers`], reading the keys of issuers given by URL from `remote`.
    pub fn for_approvers_with_remote_keys(
        config: &Config,
        dev_issuer: Option<&SigningKey>,
        remote: &dyn RemoteKeyProvider,
    ) -> Self {
        let dev = dev_issuer
            .filter(|_| config.dev_issuer)
            .map(|key| (config.dev_issuer_name(), approvals_audience(config), key));
        Self::build(&config.approver_issuers, IssuerList::Approvers, remote, dev)
    }

    fn build(
        configured: &[IssuerConfig],
        list: IssuerList,
        remote: &dyn RemoteKeyProvider,
        dev: Option<(String, String, &SigningKey)>,
    ) -> Self {
        let mut issuers = HashMap::new();
        for issuer in configured {
            let keys = match &issuer.keys {
                IssuerKeySource::File(jwks) => IssuerKeys::Fixed(IssuerKeySet::from_jwks(jwks)),
                IssuerKeySource::Remote(_) => IssuerKeys::Remote(remote.remote_keys(list, issuer)),
            };
            issuers.insert(
                issuer.issuer.clone(),
                TrustedIssuer {
                    issuer: issuer.issuer.clone(),
                    audience: issuer.audience.clone(),
                    agent_claim: issuer.agent_claim.clone(),
                    algorithms: issuer.algorithms.clone(),
                    typ: issuer.typ.clone(),
                    leeway: Leeway {
                        expiry: i64::from(issuer.leeway_seconds),
                        issued_at: i64::from(issuer.iat_leeway_seconds),
                    },
                    keys,
                    groups_claim: issuer.groups_claim.clone(),
                },
            );
        }
        if let Some((name, audience, key)) = dev {
            issuers.insert(
                name.clone(),
                TrustedIssuer {
                    issuer: name,
                    audience,
                    agent_claim: "sub".to_owned(),
                    algorithms: vec![key.jwt_algorithm()],
                    typ: Some("JWT".to_owned()),
                    leeway: Leeway {
                        expiry: i64::from(crate::config::DEFAULT_LEEWAY_SECONDS),
                        issued_at: i64::from(crate::config::DEFAULT_IAT_LEEWAY_SECONDS),
                    },
                    keys: IssuerKeys::Fixed(IssuerKeySet::from_keys(vec![(
                        Some(key.kid().to_owned()),
                        key.decoding_key().clone(),
                    )])),
                    groups_claim: "groups".to_owned(),
                },
            );
        }
        Self {
            issuers,
            cache: VerifiedCache::new(crate::cache::DEFAULT_LIMIT),
        }
    }

    /// Verifies `token` as a person's (an approver's) token at time `now`.
    pub fn verify_person(
        &self,
        token: Unverified<'_>,
        now: Timestamp,
    ) -> Result<VerifiedPerson, TokenError> {
        let (issuer, claims, _) = self.verify_claims(token, now)?;
        let user = claims
            .get(&issuer.agent_claim)
            .and_then(Value::as_str)
            .filter(|a| usable_name(a))
            .ok_or(TokenError::MissingClaim("sub"))?;
        let groups = match claims.get(&issuer.groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        Ok(VerifiedPerson {
            issuer: issuer.issuer.clone(),
            user: user.to_owned(),
            groups,
        })
    }

    /// Hits and misses of the verified-identity cache.
    pub fn cache_counts(&self) -> crate::cache::CacheCounts {
        self.cache.counts()
    }

    /// Verifies `token` as an agent identity at time `now`.
    pub fn verify(
        &self,
        token: Unverified<'_>,
        now: Timestamp,
    ) -> Result<VerifiedIdentity, TokenError> {
        let key = VerifiedCache::<VerifiedIdentity>::key(token.as_str());
        if let Some(hit) = self.cache.get(&key, now.seconds()) {
            return Ok(hit);
        }
        let verified = self.verify_uncached(token, now)?;
        self.cache
            .insert(key, verified.clone(), verified.expires_at.seconds());
        Ok(verified)
    }

    fn verify_uncached(
        &self,
        token: Unverified<'_>,
        now: Timestamp,
    ) -> Result<VerifiedIdentity, TokenError> {
        let (issuer, claims, times) = self.verify_claims(token, now)?;
        let agent = claims
            .get(&issuer.agent_claim)
            .and_then(Value::as_str)
            .filter(|a| usable_name(a))
            .ok_or(TokenError::MissingClaim("agent"))?;
        // `check` refused a token without `exp`, so the fallback is never used.
        let exp = times.exp.map_or(0, |exp| exp.floor());
        Ok(VerifiedIdentity {
            issuer: issuer.issuer.clone(),
            agent: AgentId::new(agent),
            expires_at: Timestamp::from_seconds(exp),
        })
    }

    /// Signature, issuer, audience, algorithm, type and lifetime: everything but what the claims
    /// name, which differs for agents and people.
    fn verify_claims(
        &self,
        token: Unverified<'_>,
        now: Timestamp,
    ) -> Result<(&TrustedIssuer, Value, TokenTimes), TokenError> {
        let header = decode_header(token.as_str()).map_err(|_| TokenError::Malformed)?;
        crate::token::refuse_key_headers(&header)?;
        // Explicit typing: Handoff's own token kinds are never identities.
        if let Some(typ) = header.typ.as_deref()
            && (typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP)
                || typ.eq_ignore_ascii_case(TXN_TOKEN_TYP))
        {
            return Err(TokenError::WrongType("JWT"));
        }
        let peek: Peek = peek_claims(token)?;
        let issuer = peek
            .iss
            .as_deref()
            .and_then(|iss| self.issuers.get(iss))
            .ok_or(TokenError::UnknownIssuer)?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        // `typ` is optional for identities (JWT-SVIDs may omit it); when present it must match.
        if let (Some(expected), Some(typ)) = (&issuer.typ, header.typ.as_deref())
            && !typ.eq_ignore_ascii_case(expected)
        {
            return Err(TokenError::WrongType("JWT"));
        }
        let fetched;
        let key = match &issuer.keys {
            IssuerKeys::Fixed(set) => set.find(header.kid.as_deref()),
            IssuerKeys::Remote(None) => return Err(TokenError::KeysUnavailable),
            IssuerKeys::Remote(Some(remote)) => {
                fetched = remote.current();
                let Some(set) = fetched.as_ref() else {
                    // Not fetched yet (an optional issuer that was unreachable): ask again.
                    remote.hint();
                    return Err(TokenError::KeysUnavailable);
                };
                let key = set.find(header.kid.as_deref());
                if key.is_none() && header.kid.is_some() {
                    // The issuer may have rotated: the fetcher refetches, under its rate limit.
                    remote.hint();
                }
                key
            }
        }
        .ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_audience(&[&issuer.audience]);
        validation.set_issuer(&[&issuer.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = decode::<Value>(token.as_str(), key, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?
            .claims;
        let times = TokenTimes::from_claims(&claims)?;
        times.check(now.seconds(), issuer.leeway)?;
        Ok((issuer, claims, times))
    }
}

/// A name a token vouches for (an agent, a person): bounded and free of invisible characters.
fn usable_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 512 && crate::text::invisible_char(name).is_none()
}

#[derive(Serialize)]
struct DevIdentityClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

/// A development identity for `agent`, signed by Handoff's dev issuer key.
pub fn issue_dev_identity(
    config: &Config,
    key: &SigningKey,
    agent: &str,
    now: Timestamp,
    lifetime: Ttl,
) -> Result<String, KeyError> {
    let issuer = config.dev_issuer_name();
    let claims = DevIdentityClaims {
        iss: &issuer,
        sub: agent,
        aud: &config.trust_domain,
        iat: now.seconds(),
        exp: now.plus(lifetime).seconds(),
    };
    key.sign_jwt("JWT", &claims)
}

#[derive(Serialize)]
struct DevPersonClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    groups: &'a [String],
    iat: i64,
    exp: i64,
}

/// A development token for a person (an approver) in `groups`, signed by the dev issuer key.
pub fn issue_dev_person(
    config: &Config,
    key: &SigningKey,
    user: &str,
    groups: &[String],
    now: Timestamp,
    lifetime: Ttl,
) -> Result<String, KeyError> {
    let issuer = config.dev_issuer_name();
    let audience = approvals_audience(config);
    let claims = DevPersonClaims {
        iss: &issuer,
        sub: user,
        aud: &audience,
        groups,
        iat: now.seconds(),
        exp: now.plus(lifetime).seconds(),
    };
    key.sign_jwt("JWT", &claims)
}
