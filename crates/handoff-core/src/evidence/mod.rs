//! Signed evidence from other systems: CI reports `tests_passed` for a commit, a review bot
//! reports an approval. A piece of evidence is accepted only when signed by a key registered for
//! the system that reports it (a JWT against the system's JWKS, or an HMAC-signed webhook), fresh,
//! never seen before, of a kind the system may report, about an open task. It then becomes a fact
//! of the task (`context.task.evidence["system:kind"]`) and a record of the audit chain with its
//! provenance.

mod record;
mod sign;
mod verify;

pub use sign::{EvidenceSignError, EvidenceStatement, sign_evidence};

use crate::audit::{AuditEvent, EventKind, EvidenceRecord};
use crate::config::{EvidenceConfig, SystemConfig};
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::ids::{SystemId, TaskId};
use crate::limits::MAX_NAME_CHARS;
use crate::refusal::Refused;
use crate::text::truncate;
use crate::token::{NumericDate, Unverified};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// How far in the future a signing time may be (clock skew between systems).
const MAX_SKEW_SECONDS: u32 = 60;
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
            task: Some(truncate(&statement.task, MAX_NAME_CHARS)),
            system: Some(system.id.to_string()),
            actor: Some(format!("system:{}", system.id)),
            evidence: Some(EvidenceRecord {
                id: truncate(&statement.id, MAX_NAME_CHARS),
                kind: truncate(&statement.kind, MAX_NAME_CHARS),
                ..provenance.clone()
            }),
            ..AuditEvent::default()
        };
        match self.record_evidence(signed, now).await {
            Ok(recorded) => Ok(recorded),
            // Signed by the system but refused (a replay, a stale or undeclared report): a record
            // of it is evidence too. Unsigned or wrongly signed reports never get this far.
            Err(error) => Err(self.record(Refused::new(error, about)).await),
        }
    }
}
