//! Signed evidence from other systems: CI reports `tests_passed` for a commit, a review bot
//! reports an approval. A piece of evidence is accepted only when signed by a key registered for
//! the system that reports it (a JWT against the system's JWKS, or an HMAC-signed webhook), fresh,
//! never seen before, of a kind the system may report, about an open task. It then becomes a fact
//! of the task (`context.task.evidence["system:kind"]`) and a record of the audit chain with its
//! provenance.

use crate::audit::{AuditEvent, EventKind, EvidenceRecord, Outcome};
use crate::config::{EvidenceConfig, SystemConfig};
use crate::error::ServiceError;
use crate::ids::{SystemId, TaskId};
use crate::service::{Handoff, MAX_NAME_CHARS, task_event};
use crate::store::{Effect, Rejection, StoreError, TaskWrite, Write};
use crate::task::TaskState;
use crate::text::check_identifier;
use crate::time::{Timestamp, Ttl};
use crate::token::{Leeway, NumericDate, TokenError, TokenTimes, Unverified, peek_claims};
use aws_lc_rs::hmac;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// How far in the future a signing time may be (clock skew between systems).
const MAX_SKEW_SECONDS: u32 = 60;
/// Attempts to record on fresh facts when the task changed concurrently.
const CONFLICT_RETRIES: usize = 16;
/// Fields one piece of evidence may carry.
const MAX_FIELDS: usize = 32;

/// Evidence as received, nothing about it trusted yet.
#[derive(Clone, Copy, Debug)]
pub enum EvidenceSubmission<'a> {
    /// A compact JWS (`application/jwt`) signed with one of the system's registered keys.
    Jwt(Unverified<'a>),
    /// A JSON body with `x-handoff-timestamp` and `x-handoff-signature: sha256=<hex>` over
    /// `timestamp + "." + body`, keyed with the system's shared secret.
    Hmac {
        timestamp: &'a str,
        signature: &'a str,
        body: &'a [u8],
    },
}

/// What a piece of evidence says, the same for both signatures.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Statement {
    /// The reporting system's id (`iss` in a JWT; `system` in a webhook body).
    #[serde(alias = "iss")]
    system: String,
    /// Unique per system: a second piece with the same id is a replay.
    #[serde(alias = "jti")]
    id: String,
    task: String,
    kind: String,
    #[serde(default)]
    data: BTreeMap<String, Value>,
    /// JWT-only registered claims; `aud` is checked by the JWT library.
    #[serde(default, rename = "aud")]
    _aud: Option<Value>,
    /// RFC 7519 NumericDates, parsed strictly: a string, `null` or out-of-range value is
    /// refused; only an absent claim is `None`.
    #[serde(default, deserialize_with = "crate::token::present_or_refused")]
    iat: Option<NumericDate>,
    #[serde(default, deserialize_with = "crate::token::present_or_refused")]
    exp: Option<NumericDate>,
    #[serde(default, deserialize_with = "crate::token::present_or_refused")]
    nbf: Option<NumericDate>,
    /// Other registered claims a JWT library may add; carried by nothing.
    #[serde(default, rename = "sub")]
    _sub: Option<Value>,
}

/// Accepted evidence.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub system: SystemId,
    pub task: TaskId,
    pub id: String,
    pub kind: String,
    pub seq: u64,
}

fn refused(message: impl Into<String>) -> ServiceError {
    ServiceError::InvalidEvidence(message.into())
}

/// Evidence whose signature verified, and the registration it verified against.
struct Signed<'a> {
    system: &'a SystemConfig,
    config: &'a EvidenceConfig,
    statement: Statement,
    provenance: EvidenceRecord,
}

#[derive(Deserialize)]
struct Peek {
    iss: Option<String>,
}

impl Handoff {
    /// Verifies and records one piece of evidence.
    pub async fn report_evidence(
        &self,
        submission: EvidenceSubmission<'_>,
    ) -> Result<Recorded, ServiceError> {
        let now = self.now();
        let signed = match submission {
            EvidenceSubmission::Jwt(token) => self.verify_jwt_evidence(token, now)?,
            EvidenceSubmission::Hmac {
                timestamp,
                signature,
                body,
            } => self.verify_hmac_evidence(timestamp, signature, body, now)?,
        };
        let (system, statement, provenance) =
            (signed.system, &signed.statement, &signed.provenance);
        let about = AuditEvent {
            kind: Some(EventKind::Evidence),
            task: Some(statement.task.chars().take(MAX_NAME_CHARS).collect()),
            system: Some(system.id.to_string()),
            actor: Some(format!("system:{}", system.id)),
            evidence: Some(EvidenceRecord {
                id: statement.id.chars().take(MAX_NAME_CHARS).collect(),
                kind: statement.kind.chars().take(MAX_NAME_CHARS).collect(),
                ..provenance.clone()
            }),
            ..AuditEvent::default()
        };
        match self.record_evidence(signed, now).await {
            Ok(recorded) => Ok(recorded),
            Err(error @ (ServiceError::Unavailable(_) | ServiceError::Internal(_))) => Err(error),
            // Signed by the system but refused (a replay, a stale or undeclared report): a record
            // of it is evidence too. Unsigned or wrongly signed reports never get this far.
            Err(error) => {
                let event = AuditEvent {
                    outcome: Some(Outcome::Deny),
                    reason: Some(error.code().to_owned()),
                    description: Some(error.to_string()),
                    ..about
                };
                match self
                    .store()
                    .write(Write::new(now, event, TaskWrite::None))
                    .await
                {
                    Ok(_) => Err(error),
                    Err(store) => Err(store.into()),
                }
            }
        }
    }

    fn verify_jwt_evidence(
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

    fn verify_hmac_evidence(
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

    async fn record_evidence(
        &self,
        signed: Signed<'_>,
        now: Timestamp,
    ) -> Result<Recorded, ServiceError> {
        let Signed {
            system,
            config,
            statement,
            mut provenance,
        } = signed;
        let max_age = i64::from(config.max_age.seconds());
        let age = now.seconds() - provenance.signed_at;
        if age > max_age {
            return Err(refused(format!(
                "the evidence was signed {age} s ago; `{}` evidence is accepted for {max_age} s",
                system.id
            )));
        }
        if age < -i64::from(MAX_SKEW_SECONDS) {
            return Err(refused("the evidence is signed in the future"));
        }
        if statement.system != system.id.as_str() {
            return Err(refused("the evidence names another system than its signer"));
        }
        check_identifier("id", &statement.id)?;
        check_identifier("task", &statement.task)?;
        let declared = config.kinds.get(&statement.kind).ok_or_else(|| {
            ServiceError::InvalidRequest(format!(
                "`{}` does not report `{}` evidence",
                system.id,
                statement.kind.chars().take(64).collect::<String>()
            ))
        })?;
        if statement.data.len() > MAX_FIELDS {
            return Err(ServiceError::InvalidRequest(format!(
                "evidence carries at most {MAX_FIELDS} fields"
            )));
        }
        let mut fields = BTreeMap::new();
        for (name, value) in &statement.data {
            if !declared.contains(name) {
                return Err(ServiceError::InvalidRequest(format!(
                    "`{}:{}` evidence declares no field `{}`",
                    system.id,
                    statement.kind,
                    name.chars().take(64).collect::<String>()
                )));
            }
            let Value::String(text) = value else {
                return Err(ServiceError::InvalidRequest(format!(
                    "evidence field `{name}` must be a string"
                )));
            };
            check_identifier(name, text)?;
            fields.insert(name.clone(), text.clone());
        }
        provenance.id = statement.id.clone();
        provenance.kind = statement.kind.clone();
        provenance.fields = fields.clone();
        let task_id = TaskId::new(statement.task.as_str());
        let key = format!("{}:{}", system.id, statement.kind);
        // Remembered past the last moment it could still be accepted, so a replay always hits.
        let remember_until = Timestamp::from_seconds(provenance.signed_at)
            .plus(Ttl::from_seconds(config.max_age.seconds()))
            .plus(Ttl::from_seconds(MAX_SKEW_SECONDS));
        for _ in 0..CONFLICT_RETRIES {
            let snapshot = self.store().task(&task_id).await?.ok_or_else(|| {
                ServiceError::InvalidTarget(format!(
                    "task `{}` does not exist",
                    statement
                        .task
                        .chars()
                        .take(MAX_NAME_CHARS)
                        .collect::<String>()
                ))
            })?;
            if snapshot.task.state != TaskState::Open || now >= snapshot.task.expires_at {
                return Err(ServiceError::InvalidRequest(format!(
                    "task `{}` is no longer open",
                    snapshot.task.id
                )));
            }
            let mut facts = snapshot.facts.clone();
            if !facts.record_evidence(&key, &fields, now) {
                return Err(ServiceError::InvalidRequest(format!(
                    "`{key}` evidence holds too many distinct values for this task"
                )));
            }
            let event = AuditEvent {
                kind: Some(EventKind::Evidence),
                system: Some(system.id.to_string()),
                actor: Some(format!("system:{}", system.id)),
                outcome: Some(Outcome::Permit),
                evidence: Some(provenance.clone()),
                ..task_event(&snapshot.task)
            };
            let mut write = Write::new(
                now,
                event,
                TaskWrite::Update {
                    id: snapshot.task.id.clone(),
                    expected_version: snapshot.version,
                    facts: Some(Box::new(facts)),
                    state: None,
                },
            );
            write.effects.push(Effect::EvidenceSeen {
                system: system.id.clone(),
                id: statement.id.clone(),
                expires_at: remember_until,
            });
            match self.store().write(write).await {
                Ok(receipt) => {
                    return Ok(Recorded {
                        system: system.id.clone(),
                        task: snapshot.task.id,
                        id: statement.id,
                        kind: statement.kind,
                        seq: receipt.seq,
                    });
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::Rejected(Rejection::EvidenceReplayed)) => {
                    return Err(ServiceError::EvidenceReplayed(format!(
                        "evidence `{}` from `{}` was already received",
                        statement.id.chars().take(64).collect::<String>(),
                        system.id
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }
}

/// The statement's `exp`, `nbf` and `iat` (RFC 7519 NumericDates) against `now`: the one time check
/// shared with every other token Handoff accepts.
fn check_times(
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
