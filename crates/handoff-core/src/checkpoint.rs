//! Signed checkpoints of the audit chain: "record `seq` has chain hash `head`", signed with a key
//! of their own (never a token key). Someone holding a checkpoint detects any later truncation or
//! rewrite of the log up to `seq`: the record there must still carry that head, and the chain must
//! still lead to it. The format is specified in `docs/audit-format.md`.

use crate::audit::GENESIS;
use crate::error::{InternalError, ServiceError};
use crate::handoff::Handoff;
use crate::keys::SigningKey;
use crate::time::Timestamp;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

/// The JWS `typ` of a checkpoint.
pub const CHECKPOINT_TYP: &str = "handoff-checkpoint+jwt";
/// The JWK `use` of the checkpoint key in the JWKS (token keys are `sig`).
pub const CHECKPOINT_USE: &str = "handoff-checkpoint";

/// What a checkpoint says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointClaims {
    /// Handoff's trust domain.
    pub iss: String,
    /// The sequence number of the last record covered (0: the empty log).
    pub seq: u64,
    /// That record's chain hash (`GENESIS` for the empty log).
    pub head: String,
    /// When it was signed (seconds since the epoch).
    pub iat: i64,
}

/// A checkpoint as kept in the store and sent to witnesses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub head: String,
    pub at: Timestamp,
    /// The compact JWS.
    pub jws: String,
}

/// Somewhere checkpoints go as they are made (a file, a webhook): a witness of the log's end.
pub trait Witness: Send + Sync {
    fn witness(&self, checkpoint: &Checkpoint) -> Result<(), String>;
}

/// Why a checkpoint was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the checkpoint is not a compact JWS: {0}")]
    Malformed(String),
    #[error("the checkpoint's typ is not `{CHECKPOINT_TYP}`")]
    WrongType,
    #[error("the checkpoint was not signed by a known checkpoint key")]
    UnknownKey,
    #[error("the checkpoint's signature does not verify: {0}")]
    BadSignature(String),
}

/// Verifies a checkpoint's signature against `keys` (the checkpoint keys, never token keys) and
/// returns what it says.
pub fn verify_checkpoint(
    jws: &str,
    keys: &[&SigningKey],
) -> Result<CheckpointClaims, CheckpointError> {
    let header =
        jsonwebtoken::decode_header(jws).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    if header.typ.as_deref() != Some(CHECKPOINT_TYP) {
        return Err(CheckpointError::WrongType);
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.iter().find(|k| k.kid() == kid))
        .ok_or(CheckpointError::UnknownKey)?;
    if header.alg != key.jwt_algorithm() {
        return Err(CheckpointError::UnknownKey);
    }
    decode_checkpoint(jws, header.alg, key.decoding_key())
}

/// Verifies a checkpoint against public keys: the JWKS a Handoff server publishes, where only
/// the keys marked `use: handoff-checkpoint` count (its token keys never sign checkpoints).
/// What `handoff audit verify --server` holds the server's checkpoints to.
pub fn verify_checkpoint_public(
    jws: &str,
    jwks: &jsonwebtoken::jwk::JwkSet,
) -> Result<CheckpointClaims, CheckpointError> {
    use jsonwebtoken::jwk::PublicKeyUse;
    let header =
        jsonwebtoken::decode_header(jws).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    if header.typ.as_deref() != Some(CHECKPOINT_TYP) {
        return Err(CheckpointError::WrongType);
    }
    let jwk = header
        .kid
        .as_deref()
        .and_then(|kid| {
            jwks.keys.iter().find(|jwk| {
                jwk.common.key_id.as_deref() == Some(kid)
                    && matches!(&jwk.common.public_key_use,
                        Some(PublicKeyUse::Other(usage)) if usage == CHECKPOINT_USE)
            })
        })
        .ok_or(CheckpointError::UnknownKey)?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|_| CheckpointError::UnknownKey)?;
    let algorithm_fits = match &jwk.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => header.alg == Algorithm::EdDSA,
        jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => header.alg == Algorithm::ES256,
        _ => false,
    };
    if !algorithm_fits {
        return Err(CheckpointError::UnknownKey);
    }
    decode_checkpoint(jws, header.alg, &key)
}

fn decode_checkpoint(
    jws: &str,
    alg: Algorithm,
    key: &jsonwebtoken::DecodingKey,
) -> Result<CheckpointClaims, CheckpointError> {
    if !matches!(alg, Algorithm::EdDSA | Algorithm::ES256) {
        return Err(CheckpointError::UnknownKey);
    }
    let mut validation = Validation::new(alg);
    validation.set_required_spec_claims::<&str>(&[]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<CheckpointClaims>(jws, key, &validation)
        .map(|data| data.claims)
        .map_err(|e| CheckpointError::BadSignature(e.to_string()))
}

impl Handoff {
    /// Signs a checkpoint of the chain's current head, keeps it in the store and hands it to the
    /// witness, if one is configured. A witness that fails is an error, but the checkpoint stays
    /// stored (it is true either way).
    pub async fn checkpoint(&self) -> Result<Checkpoint, ServiceError> {
        let key = self
            .checkpoint_key()
            .ok_or(ServiceError::Internal(InternalError::NoCheckpointKey))?;
        let (seq, head) = match self.store().audit_head().await? {
            Some(receipt) => (receipt.seq, receipt.hash),
            None => (0, GENESIS.to_owned()),
        };
        let at = self.now();
        let claims = CheckpointClaims {
            iss: self.config().trust_domain.clone(),
            seq,
            head: head.clone(),
            iat: at.seconds(),
        };
        let jws = key.sign_jwt(CHECKPOINT_TYP, &claims)?;
        let checkpoint = Checkpoint { seq, head, at, jws };
        self.store().insert_checkpoint(&checkpoint).await?;
        if let Some(witness) = self.witness() {
            witness
                .witness(&checkpoint)
                .map_err(|e| ServiceError::Internal(InternalError::Witness(e)))?;
        }
        Ok(checkpoint)
    }
}
