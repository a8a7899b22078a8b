//! The two ways a system signs evidence: a JWT against its registered JWKS, or an HMAC over a
//! webhook body with its shared secret; and the times every statement must be within.

use super::{MAX_SKEW_SECONDS, Peek, Signed, Statement, refused};
use crate::audit::EvidenceRecord;
use crate::config::{EvidenceConfig, SystemConfig};
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::ids::SystemId;
use crate::time::Timestamp;
use crate::token::{Leeway, NumericDate, TokenError, TokenTimes, Unverified, peek_claims};
use aws_lc_rs::hmac;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

impl Handoff {
    pub(super) fn verify_jwt_evidence(
        &self,
        token: Unverified<'_>,
        now: Timestamp,
    ) -> Result<Signed<'_>, ServiceError> {
        let header = decode_header(token.as_str())
            .map_err(|_| refused("the evidence is not a signed JWT (compact JWS)"))?;
        for (present, name) in [
            (header.jku.is_some(), "jku"),
            (header.x5u.is_some(), "x5u"),
            (header.jwk.is_some(), "jwk"),
            (header.crit.is_some(), "crit"),
        ] {
            if present {
                return Err(refused(format!(
                    "the evidence header carries `{name}`, which is never honoured"
                )));
            }
        }
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(refused(
                "JWT evidence must be signed with a registered public key, not a shared secret",
            ));
        }
        let peek: Peek = peek_claims(token).map_err(|_| refused("the evidence is malformed"))?;
        let system_id = peek.iss.unwrap_or_default();
        let (system, config) = self.evidence_system(&system_id)?;
        let jwks = config
            .jwks
            .as_ref()
            .ok_or_else(|| refused(format!("`{}` signs evidence with HMAC, not JWT", system.id)))?;
        let key = pick_key(jwks, header.kid.as_deref(), header.alg)?;
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_audience(&[&self.config().trust_domain]);
        validation.set_issuer(&[system.id.as_str()]);
        validation.set_required_spec_claims(&["iss", "aud"]);
        let statement = decode::<Statement>(token.as_str(), &key, &validation)
            .map_err(|e| refused(format!("the evidence signature or claims are invalid: {e}")))?
            .claims;
        let iat = statement
            .iat
            .ok_or_else(|| refused("JWT evidence must carry `iat`"))?;
        check_times(&statement, Some(iat), now)?;
        let signed_at = iat.floor();
        let provenance = EvidenceRecord {
            signature: "jwt".to_owned(),
            key: header.kid,
            signed_at,
            ..EvidenceRecord::default()
        };
        Ok(Signed {
            system,
            config,
            statement,
            provenance,
        })
    }

    pub(super) fn verify_hmac_evidence(
        &self,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Signed<'_>, ServiceError> {
        let signed_at: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| refused("x-handoff-timestamp must be Unix seconds"))?;
        let tag = signature
            .trim()
            .strip_prefix("sha256=")
            .and_then(decode_hex)
            .ok_or_else(|| refused("x-handoff-signature must be `sha256=<hex>`"))?;
        // The system is named in the body; nothing in it is trusted until its key verifies.
        let claimed: Value = std::str::from_utf8(body)
            .ok()
            .and_then(|text| crate::json::from_str_unique(text).ok())
            .ok_or_else(|| refused("the evidence body is not JSON, or names a member twice"))?;
        let system_id = claimed
            .get("system")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (system, config) = self.evidence_system(system_id)?;
        let secret = self
            .evidence_secret(&system.id)
            .ok_or_else(|| refused(format!("`{}` has no HMAC key for evidence", system.id)))?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
        message.extend_from_slice(timestamp.trim().as_bytes());
        message.push(b'.');
        message.extend_from_slice(body);
        hmac::verify(&key, &message, &tag)
            .map_err(|_| refused("the evidence signature does not verify"))?;
        let statement: Statement = serde_json::from_value(claimed)
            .map_err(|e| ServiceError::InvalidRequest(format!("the evidence body: {e}")))?;
        // The signing time is the header's; `exp`, `nbf` and `iat` in the body still bind.
        check_times(&statement, statement.iat, now)?;
        let provenance = EvidenceRecord {
            signature: "hmac".to_owned(),
            key: None,
            signed_at,
            ..EvidenceRecord::default()
        };
        Ok(Signed {
            system,
            config,
            statement,
            provenance,
        })
    }

    /// The registered system named `id` and how it signs evidence, if it may report any.
    fn evidence_system(&self, id: &str) -> Result<(&SystemConfig, &EvidenceConfig), ServiceError> {
        let system = self
            .config()
            .systems
            .get(&SystemId::new(id))
            .ok_or_else(|| refused("the evidence names no registered system"))?;
        let config = system.evidence.as_ref().ok_or_else(|| {
            refused(format!(
                "`{}` is not registered to report evidence",
                system.id
            ))
        })?;
        Ok((system, config))
    }
}

/// The statement's `exp`, `nbf` and `iat` (RFC 7519 NumericDates) against `now`: the one time check
/// shared with every other token Handoff accepts.
pub(super) fn check_times(
    statement: &Statement,
    iat: Option<NumericDate>,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let times = TokenTimes {
        exp: statement.exp,
        nbf: statement.nbf,
        iat,
    };
    let leeway = Leeway {
        expiry: 0,
        issued_at: i64::from(MAX_SKEW_SECONDS),
    };
    times
        .check_started(now.seconds(), leeway)
        .map_err(|e| match e {
            TokenError::Expired => refused("the evidence has expired"),
            TokenError::NotYetValid => refused("the evidence is not valid yet"),
            TokenError::IssuedInFuture => refused("the evidence is signed in the future"),
            other => refused(other.to_string()),
        })
}

/// The key `kid` names (or the only key), usable with `alg`.
fn pick_key(jwks: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, ServiceError> {
    let jwk = match kid {
        Some(kid) => jwks.find(kid),
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    }
    .ok_or_else(|| refused("no registered key of the system matches the evidence"))?;
    if let Some(key_alg) = jwk.common.key_algorithm
        && format!("{key_alg:?}") != format!("{alg:?}")
    {
        return Err(refused(
            "the evidence is signed with another algorithm than its key's",
        ));
    }
    DecodingKey::from_jwk(jwk).map_err(|_| refused("the system's registered key is unusable"))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 256 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}
