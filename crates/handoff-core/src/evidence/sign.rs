//! The reporting side: building and signing an evidence JWT as a registered system would
//! (`handoff evidence sign`), exactly in the shape [`Handoff::report_evidence`] accepts: ES256,
//! `iss` = the system, `aud` = Handoff's trust domain, `iat`, `jti`, `task`, `kind`, `data`.
//!
//! [`Handoff::report_evidence`]: crate::handoff::Handoff::report_evidence

use crate::time::{Timestamp, Ttl};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One statement a system signs about a task.
#[derive(Clone, Debug)]
pub struct EvidenceStatement<'a> {
    /// The reporting system's id (`iss`).
    pub system: &'a str,
    /// Handoff's trust domain (`aud`).
    pub audience: &'a str,
    /// Unique per system (`jti`): a second report with the same id is refused as a replay.
    pub id: &'a str,
    pub task: &'a str,
    pub kind: &'a str,
    pub data: &'a BTreeMap<String, Value>,
    /// The signing time (`iat`).
    pub issued_at: Timestamp,
    /// How long the statement may be used (`exp`); Handoff's `max_age` bounds it anyway.
    pub lifetime: Option<Ttl>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvidenceSignError {
    #[error("the signing key is not a PEM EC (P-256) private key: {0}")]
    Key(String),
    #[error("signing failed (is the key a P-256 key?): {0}")]
    Sign(String),
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    jti: &'a str,
    task: &'a str,
    kind: &'a str,
    data: &'a BTreeMap<String, Value>,
}

/// Signs `statement` ES256 with `key_pem` (a PKCS#8 PEM P-256 private key); `kid` names the key
/// in the system's registered JWKS (it may be left out when the JWKS holds one key).
pub fn sign_evidence(
    key_pem: &[u8],
    kid: Option<&str>,
    statement: &EvidenceStatement<'_>,
) -> Result<String, EvidenceSignError> {
    let key =
        EncodingKey::from_ec_pem(key_pem).map_err(|e| EvidenceSignError::Key(e.to_string()))?;
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("JWT".to_owned());
    header.kid = kid.map(str::to_owned);
    let iat = statement.issued_at.seconds();
    let claims = Claims {
        iss: statement.system,
        aud: statement.audience,
        iat,
        exp: statement
            .lifetime
            .map(|ttl| iat.saturating_add(i64::from(ttl.seconds()))),
        jti: statement.id,
        task: statement.task,
        kind: statement.kind,
        data: statement.data,
    };
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| EvidenceSignError::Sign(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};

    const KEY: &[u8] =
        include_bytes!("../../../../examples/quickstart/evidence/ci-dev-signing-key.pem");
    const JWKS: &str = include_str!("../../../../examples/quickstart/evidence/ci-jwks.json");

    #[test]
    fn a_signed_statement_verifies_against_the_systems_jwks_with_every_claim_in_place() {
        let data = BTreeMap::from([("commit".to_owned(), Value::from("abc123"))]);
        let statement = EvidenceStatement {
            system: "ci",
            audience: "https://handoff.local",
            id: "ev-1",
            task: "task_1",
            kind: "tests_passed",
            data: &data,
            issued_at: Timestamp::from_seconds(1_800_000_000),
            lifetime: Some(Ttl::from_seconds(300)),
        };
        let jwt = sign_evidence(KEY, Some("ci-dev-1"), &statement).unwrap();
        let header = decode_header(&jwt).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some("ci-dev-1"));
        let jwks: JwkSet = serde_json::from_str(JWKS).unwrap();
        let key = DecodingKey::from_jwk(jwks.find("ci-dev-1").unwrap()).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.set_audience(&["https://handoff.local"]);
        validation.set_issuer(&["ci"]);
        let claims = decode::<Value>(&jwt, &key, &validation).unwrap().claims;
        assert_eq!(
            claims,
            serde_json::json!({
                "iss": "ci", "aud": "https://handoff.local", "iat": 1_800_000_000_i64,
                "exp": 1_800_000_300_i64, "jti": "ev-1", "task": "task_1",
                "kind": "tests_passed", "data": { "commit": "abc123" },
            })
        );
    }

    #[test]
    fn a_key_that_is_not_an_ec_private_key_is_refused_before_signing() {
        let data = BTreeMap::new();
        let statement = EvidenceStatement {
            system: "ci",
            audience: "https://handoff.local",
            id: "ev-1",
            task: "task_1",
            kind: "tests_passed",
            data: &data,
            issued_at: Timestamp::from_seconds(0),
            lifetime: None,
        };
        let error = sign_evidence(JWKS.as_bytes(), None, &statement).unwrap_err();
        assert!(matches!(error, EvidenceSignError::Key(_)), "{error}");
    }
}
