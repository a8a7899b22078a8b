//! Verifying the access token an agent presents: inside `handoff serve` against Handoff's own keys
//! and store (revocations seen at once), or in a standalone `handoff gateway` offline against the
//! served JWKS and a deny list fed by the revocation feed.

use crate::error::GatewayError;
use crate::feed::FeedEntry;
use handoff_core::cache::{DEFAULT_LIMIT, VerifiedCache};
use handoff_core::clock::{Clock, SystemClock};
use handoff_core::config::SystemConfig;
use handoff_core::containment::Inactive;
use handoff_core::containment::RevocationKind;
use handoff_core::live::Current;
use handoff_core::token::{
    ACCESS_TOKEN_TYP, AccessClaims, OWN_TOKEN_LEEWAY, TokenTimes, Unverified, verify_access_token,
};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Checks a presented access token for one system. A token's signature is verified once, then
/// recognised by its SHA-256 until it expires; whether it was revoked is checked on every call.
pub struct Verifier {
    kind: Kind,
    verified: VerifiedCache<AccessClaims>,
}

enum Kind {
    /// Inside `handoff serve`: Handoff's keys, and the store's view of revocations and freezes.
    Online(Arc<Current>),
    /// A standalone gateway: the served JWKS and a deny list fed by the revocation feed.
    Offline(Arc<OfflineVerifier>),
}

impl Verifier {
    /// Inside `handoff serve`: checks against the service current at each call.
    pub fn online(current: Arc<Current>) -> Self {
        Self {
            kind: Kind::Online(current),
            verified: VerifiedCache::new(DEFAULT_LIMIT),
        }
    }

    pub fn offline(verifier: Arc<OfflineVerifier>) -> Self {
        Self {
            kind: Kind::Offline(verifier),
            verified: VerifiedCache::new(DEFAULT_LIMIT),
        }
    }

    /// The token's claims when it is Handoff's, unexpired, unrevoked and for `system`.
    pub async fn check(
        &self,
        token: &str,
        system: &SystemConfig,
    ) -> Result<AccessClaims, GatewayError> {
        let now = match &self.kind {
            Kind::Online(current) => current.get().now().seconds(),
            Kind::Offline(offline) => offline.clock.now().seconds(),
        };
        let key = VerifiedCache::<AccessClaims>::key(token);
        let claims = match self.verified.get(&key, now) {
            Some(claims) => claims,
            None => {
                let claims = match &self.kind {
                    Kind::Online(current) => verify_access_token(
                        &current.get().keys(),
                        current.get().config().issuer(),
                        Unverified::new(token),
                        Some(now),
                    )
                    .map_err(|e| {
                        GatewayError::InvalidToken(format!("the token is refused: {e}"))
                    })?,
                    Kind::Offline(offline) => offline.verify(token, system, now)?,
                };
                self.verified.insert(key, claims.clone(), claims.exp);
                claims
            }
        };
        if claims.aud != system.audience {
            return Err(GatewayError::InvalidToken(format!(
                "the token is not for `{}`",
                system.id
            )));
        }
        // Whether it was cut is the core's one answer (the same introspection gives), or the
        // deny list's offline; never a check of the gateway's own.
        let inactive = match &self.kind {
            Kind::Online(current) => current
                .get()
                .why_inactive(&claims)
                .await
                .map_err(|e| GatewayError::Unavailable(e.to_string()))?,
            Kind::Offline(offline) => offline.check_deny_list(&claims, system)?,
        };
        if let Some(why) = inactive {
            return Err(GatewayError::InvalidToken(format!(
                "the token is not active ({why})"
            )));
        }
        Ok(claims)
    }
}

/// Offline verification state: Handoff's public keys and the deny list.
pub struct OfflineVerifier {
    issuer: String,
    jwks: RwLock<JwkSet>,
    deny: RwLock<DenyList>,
    /// With no successful feed read for this long, every token is refused (fail closed).
    stale_after: Duration,
    clock: Arc<dyn Clock>,
}

/// What the revocation feed has cut so far.
#[derive(Debug, Default)]
pub struct DenyList {
    tokens: BTreeSet<String>,
    tasks: BTreeSet<String>,
    agents: BTreeSet<String>,
    frozen: BTreeSet<String>,
    delegations: BTreeSet<String>,
    /// The feed's cursor.
    pub after: u64,
    last_read: Option<Instant>,
}

impl DenyList {
    pub fn apply(&mut self, entry: &FeedEntry) {
        let subject = entry.id.clone();
        match entry.kind {
            RevocationKind::Token => {
                self.tokens.insert(subject);
            }
            RevocationKind::Task => {
                self.tasks.insert(subject);
            }
            RevocationKind::Agent => {
                self.agents.insert(subject);
            }
            RevocationKind::Freeze => {
                self.frozen.insert(subject);
            }
            RevocationKind::Unfreeze => {
                self.frozen.remove(&subject);
            }
            RevocationKind::Delegation => {
                self.delegations.insert(subject);
            }
        }
        self.after = self.after.max(entry.seq);
    }

    /// Why the feed cut this token, if it did: its `jti`, its task (`txn`), its system's freeze,
    /// any delegation in its `del` chain, or any agent in its actor chain. An agent's revocation
    /// is one `agent` entry (no `task` entries for the tasks it cut), so the whole chain is
    /// checked: the holder, every delegate between, and the task's agent, innermost.
    fn refuses(&self, claims: &AccessClaims, system: &SystemConfig) -> Option<Inactive> {
        if self.tokens.contains(&claims.jti) {
            Some(Inactive::TokenRevoked)
        } else if self.tasks.contains(&claims.txn) {
            Some(Inactive::TaskRevoked)
        } else if self.frozen.contains(system.id.as_str()) {
            Some(Inactive::SystemFrozen)
        } else if claims
            .del
            .iter()
            .flatten()
            .any(|d| self.delegations.contains(d))
        {
            Some(Inactive::DelegationRevoked)
        } else if claims
            .act
            .chain()
            .any(|actor| self.agents.contains(&actor.sub))
        {
            Some(Inactive::AgentRevoked)
        } else {
            None
        }
    }
}

/// Whether a key of Handoff's JWKS may verify tokens: `use` is `sig` or absent. The checkpoint key
/// (`use: handoff-checkpoint`) never does.
fn is_token_key(jwk: &jsonwebtoken::jwk::Jwk) -> bool {
    matches!(
        jwk.common.public_key_use,
        None | Some(jsonwebtoken::jwk::PublicKeyUse::Signature)
    )
}

impl OfflineVerifier {
    pub fn new(issuer: impl Into<String>, jwks: JwkSet, stale_after: Duration) -> Self {
        Self {
            issuer: issuer.into(),
            jwks: RwLock::new(jwks),
            deny: RwLock::new(DenyList::default()),
            stale_after,
            clock: Arc::new(SystemClock),
        }
    }

    /// Replaces the keys (after a refresh of the JWKS).
    pub fn set_keys(&self, jwks: JwkSet) {
        if let Ok(mut keys) = self.jwks.write() {
            *keys = jwks;
        }
    }

    /// Applies a page of the feed and notes that the feed was read now.
    pub fn apply_feed(&self, entries: &[FeedEntry], at: Instant) {
        if let Ok(mut deny) = self.deny.write() {
            for entry in entries {
                deny.apply(entry);
            }
            deny.last_read = Some(at);
        }
    }

    pub fn cursor(&self) -> u64 {
        self.deny.read().map_or(0, |d| d.after)
    }

    /// Signature, `typ`, algorithm, issuer, audience and lifetime (RFC 7519 NumericDates, checked
    /// as Handoff checks its own tokens, against the injected clock).
    fn verify(
        &self,
        token: &str,
        system: &SystemConfig,
        now: i64,
    ) -> Result<AccessClaims, GatewayError> {
        let refused = |why: &str| GatewayError::InvalidToken(why.to_owned());
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| refused("the token is malformed"))?;
        if !header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP))
        {
            return Err(refused("the token is not an access token"));
        }
        if !matches!(header.alg, Algorithm::ES256 | Algorithm::EdDSA) {
            return Err(refused("the token's algorithm is not allowed"));
        }
        let key = {
            let jwks = self
                .jwks
                .read()
                .map_err(|_| GatewayError::Unavailable("the key set is poisoned".to_owned()))?;
            let jwk = header
                .kid
                .as_deref()
                .and_then(|kid| jwks.find(kid))
                .filter(|jwk| is_token_key(jwk))
                .ok_or_else(|| refused("no key of Handoff matches the token"))?;
            DecodingKey::from_jwk(jwk).map_err(|_| refused("the key does not parse"))?
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_audience(&[system.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let invalid = |e: &dyn std::fmt::Display| {
            GatewayError::InvalidToken(format!("the token is refused: {e}"))
        };
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| invalid(&e))?
            .claims;
        TokenTimes::from_claims(&claims)
            .and_then(|times| times.check(now, OWN_TOKEN_LEEWAY))
            .map_err(|e| invalid(&e))?;
        serde_json::from_value(claims).map_err(|e| invalid(&e))
    }

    /// Why the revocation feed cut the token, if it did; every token is refused while the feed
    /// is stale.
    fn check_deny_list(
        &self,
        claims: &AccessClaims,
        system: &SystemConfig,
    ) -> Result<Option<Inactive>, GatewayError> {
        let deny = self
            .deny
            .read()
            .map_err(|_| GatewayError::Unavailable("the deny list is poisoned".to_owned()))?;
        match deny.last_read {
            Some(at) if at.elapsed() <= self.stale_after => {}
            _ => {
                return Err(GatewayError::Unavailable(
                    "the revocation feed has not been read recently".to_owned(),
                ));
            }
        }
        Ok(deny.refuses(claims, system))
    }
}
