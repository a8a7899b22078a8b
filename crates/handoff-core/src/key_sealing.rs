//! Signing keys at rest in a shared store: each private key sealed with AES-256-GCM under the
//! operator's key-encryption key (KEK), bound to its `kid` and algorithm (the associated data),
//! so a stored key can be opened only with the deployment's KEK and only as the key it was
//! stored as.

use crate::config::SigningAlgorithm;
use crate::keys::{KeyError, SigningKey};
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use std::fmt;

/// Length of a key-encryption key: 32 bytes (AES-256).
pub const KEK_LEN: usize = 32;

/// The operator's key-encryption key.
pub struct KeyEncryptionKey {
    key: RandomizedNonceKey,
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryptionKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "the key-encryption key must be {KEK_LEN} bytes written as 64 hexadecimal digits (e.g. `openssl rand -hex 32`)"
    )]
    BadKek,
    #[error("sealing the signing key failed")]
    Seal,
    #[error(
        "signing key `{0}` cannot be opened with this key-encryption key (not the one it was stored with, or the stored key was altered)"
    )]
    Open(String),
    #[error("stored signing key `{kid}`: {source}")]
    Key {
        kid: String,
        #[source]
        source: KeyError,
    },
}

impl KeyEncryptionKey {
    /// The KEK from its text form: 64 hexadecimal digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        if text.len() != KEK_LEN * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SealError::BadKek);
        }
        let mut bytes = [0_u8; KEK_LEN];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = text.get(i * 2..i * 2 + 2).ok_or(SealError::BadKek)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| SealError::BadKek)?;
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::BadKek)?;
        Ok(Self { key })
    }

    /// `der` (a PKCS#8 private key) sealed: a fresh random nonce, then the ciphertext and tag.
    pub fn seal(
        &self,
        kid: &str,
        algorithm: SigningAlgorithm,
        der: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let mut data = der.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(aad(kid, algorithm)), &mut data)
            .map_err(|_| SealError::Seal)?;
        let mut sealed = nonce.as_ref().to_vec();
        sealed.extend_from_slice(&data);
        Ok(sealed)
    }

    /// The signing key `sealed` holds, checked to be `kid`.
    pub fn open(
        &self,
        kid: &str,
        algorithm: SigningAlgorithm,
        sealed: &[u8],
    ) -> Result<SigningKey, SealError> {
        let refused = || SealError::Open(kid.to_owned());
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN).ok_or_else(refused)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut data = body.to_vec();
        let der = self
            .key
            .open_in_place(nonce, Aad::from(aad(kid, algorithm)), &mut data)
            .map_err(|_| refused())?;
        let key = SigningKey::from_pkcs8(algorithm, der).map_err(|source| SealError::Key {
            kid: kid.to_owned(),
            source,
        })?;
        if key.kid() != kid {
            return Err(refused());
        }
        Ok(key)
    }
}

fn aad(kid: &str, algorithm: SigningAlgorithm) -> Vec<u8> {
    format!("handoff signing key\0{}\0{kid}", algorithm.jws_name()).into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::keys::generate_pkcs8;

    const KEK: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_sealed_key_opens_only_with_its_kek_as_its_own_kid() {
        let kek = KeyEncryptionKey::from_hex(KEK).unwrap();
        let der = generate_pkcs8(SigningAlgorithm::Es256).unwrap();
        let key = SigningKey::from_pkcs8(SigningAlgorithm::Es256, &der).unwrap();
        let sealed = kek.seal(key.kid(), SigningAlgorithm::Es256, &der).unwrap();
        assert!(!sealed.windows(der.len()).any(|w| w == der.as_slice()));
        let opened = kek
            .open(key.kid(), SigningAlgorithm::Es256, &sealed)
            .unwrap();
        assert_eq!(opened.kid(), key.kid());
        let other = KeyEncryptionKey::from_hex(&KEK.replace("1f", "ff")).unwrap();
        assert!(matches!(
            other.open(key.kid(), SigningAlgorithm::Es256, &sealed),
            Err(SealError::Open(_))
        ));
        assert!(matches!(
            kek.open("another-kid", SigningAlgorithm::Es256, &sealed),
            Err(SealError::Open(_))
        ));
        let mut altered = sealed.clone();
        if let Some(last) = altered.last_mut() {
            *last ^= 1;
        }
        assert!(
            kek.open(key.kid(), SigningAlgorithm::Es256, &altered)
                .is_err()
        );
    }

    #[test]
    fn a_kek_is_64_hex_digits() {
        assert!(KeyEncryptionKey::from_hex(&format!("  {KEK}\n")).is_ok());
        for bad in [
            "",
            "00",
            &KEK[..62],
            &format!("{KEK}00"),
            &KEK.replace('0', "g"),
        ] {
            assert!(matches!(
                KeyEncryptionKey::from_hex(bad),
                Err(SealError::BadKek)
            ));
        }
    }
}
