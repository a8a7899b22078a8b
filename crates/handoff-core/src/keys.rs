//! Handoff's signing keys: generation, PKCS#8 import, JWS signing and the published JWKS.
//!
//! Keys are parsed once and held; signing a token never re-parses key material.

use crate::config::SigningAlgorithm;
use crate::hash::sha256;
use crate::time::Timestamp;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key material is not a valid {0} PKCS#8 key")]
    Rejected(&'static str),
    #[error("key generation failed")]
    Generate,
    #[error("signing failed")]
    Sign,
    #[error("the token could not be encoded: {0}")]
    Encode(String),
    /// The key folder could not be read or written (a rotation did not happen).
    #[error("the signing keys could not be stored: {0}")]
    Storage(String),
}

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One private signing key with its public half in JWK and verification form.
pub struct SigningKey {
    algorithm: SigningAlgorithm,
    pair: Pair,
    kid: String,
    jwk: Value,
    decoding: DecodingKey,
    random: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A new PKCS#8 document for `algorithm`.
pub fn generate_pkcs8(algorithm: SigningAlgorithm) -> Result<Vec<u8>, KeyError> {
    let random = SystemRandom::new();
    let document = match algorithm {
        SigningAlgorithm::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random)
        }
        SigningAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&random),
    };
    document
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| KeyError::Generate)
}

impl SigningKey {
    pub fn from_pkcs8(algorithm: SigningAlgorithm, der: &[u8]) -> Result<Self, KeyError> {
        Self::from_pkcs8_for(algorithm, der, "sig")
    }

    /// A key published with JWK `use` = `key_use` (`sig` for token keys; the checkpoint key has
    /// its own, so nothing that picks token keys from the JWKS picks it).
    pub fn from_pkcs8_for(
        algorithm: SigningAlgorithm,
        der: &[u8],
        key_use: &str,
    ) -> Result<Self, KeyError> {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let (pair, thumbprint_input, jwk, decoding) = match algorithm {
            SigningAlgorithm::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| KeyError::Rejected("P-256"))?;
                // An uncompressed SEC1 point: 0x04 || x || y.
                let point = pair.public_key().as_ref();
                let (x, y) = match (point.get(1..33), point.get(33..65)) {
                    (Some(x), Some(y)) => (b64(x), b64(y)),
                    _ => return Err(KeyError::Rejected("P-256")),
                };
                let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                let decoding = DecodingKey::from_ec_components(&x, &y)
                    .map_err(|_| KeyError::Rejected("P-256"))?;
                let jwk = json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y });
                (Pair::Ec(pair), thumbprint, jwk, decoding)
            }
            SigningAlgorithm::EdDsa => {
                let pair =
                    Ed25519KeyPair::from_pkcs8(der).map_err(|_| KeyError::Rejected("Ed25519"))?;
                let x = b64(pair.public_key().as_ref());
                let thumbprint = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
                let decoding = DecodingKey::from_ed_components(&x)
                    .map_err(|_| KeyError::Rejected("Ed25519"))?;
                let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "x": x });
                (Pair::Ed(pair), thumbprint, jwk, decoding)
            }
        };
        // RFC 7638 thumbprint as the key id.
        let kid = b64(&sha256(thumbprint_input.as_bytes()));
        let mut jwk = jwk;
        if let Value::Object(map) = &mut jwk {
            map.insert("kid".to_owned(), Value::String(kid.clone()));
            map.insert("use".to_owned(), Value::String(key_use.to_owned()));
            map.insert(
                "alg".to_owned(),
                Value::String(algorithm.jws_name().to_owned()),
            );
        }
        Ok(Self {
            algorithm,
            pair,
            kid,
            jwk,
            decoding,
            random: SystemRandom::new(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    pub fn jwt_algorithm(&self) -> Algorithm {
        match self.algorithm {
            SigningAlgorithm::Es256 => Algorithm::ES256,
            SigningAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }

    /// The public key as a JWK, with `kid`, `use` and `alg`.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.pair {
            Pair::Ec(pair) => pair
                .sign(&self.random, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
            Pair::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    /// A compact JWS of `claims` with header `{alg, typ, kid}`.
    pub fn sign_jwt<C: Serialize>(&self, typ: &str, claims: &C) -> Result<String, KeyError> {
        let header = json!({ "alg": self.algorithm.jws_name(), "typ": typ, "kid": self.kid });
        let header = serde_json::to_vec(&header).map_err(|e| KeyError::Encode(e.to_string()))?;
        let claims = serde_json::to_vec(claims).map_err(|e| KeyError::Encode(e.to_string()))?;
        let mut token = String::with_capacity((header.len() + claims.len()) * 4 / 3 + 100);
        URL_SAFE_NO_PAD.encode_string(&header, &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
        let signature = self.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}

/// The keys Handoff signs with: one active key and older keys kept for verification until
/// every token they signed has expired.
#[derive(Debug)]
pub struct KeyRing {
    active: SigningKey,
    retired: Vec<Retired>,
}

/// A key that no longer signs, published and trusted until `until` (every token it signed has
/// expired by then); `None` keeps it.
#[derive(Debug)]
struct Retired {
    key: SigningKey,
    until: Option<Timestamp>,
}

impl KeyRing {
    /// A ring whose retired keys are kept for good.
    pub fn new(active: SigningKey, retired: Vec<SigningKey>) -> Self {
        Self::with_retirements(active, retired.into_iter().map(|k| (k, None)).collect())
    }

    /// A ring whose retired keys each leave the JWKS after their time (`None`: never).
    pub fn with_retirements(
        active: SigningKey,
        retired: Vec<(SigningKey, Option<Timestamp>)>,
    ) -> Self {
        let retired = retired
            .into_iter()
            .filter(|(key, _)| key.kid != active.kid)
            .map(|(key, until)| Retired { key, until })
            .collect();
        Self { active, retired }
    }

    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    /// The active key or a retired one with this `kid` (a retired key past its time signed only
    /// tokens that have expired, so finding it admits nothing).
    pub fn find(&self, kid: &str) -> Option<&SigningKey> {
        std::iter::once(&self.active)
            .chain(self.retired.iter().map(|r| &r.key))
            .find(|k| k.kid == kid)
    }

    /// The retired keys with the time each leaves the JWKS.
    pub fn retired(&self) -> impl Iterator<Item = (&SigningKey, Option<Timestamp>)> {
        self.retired.iter().map(|r| (&r.key, r.until))
    }

    /// The JWKS document served at `/.well-known/jwks.json` at `now`: the active key and every
    /// retired key whose tokens may still be live.
    pub fn jwks(&self, now: Timestamp) -> Value {
        let keys: Vec<&Value> = std::iter::once(&self.active)
            .chain(
                self.retired
                    .iter()
                    .filter(|r| r.until.is_none_or(|until| until >= now))
                    .map(|r| &r.key),
            )
            .map(|k| &k.jwk)
            .collect();
        json!({ "keys": keys })
    }
}
