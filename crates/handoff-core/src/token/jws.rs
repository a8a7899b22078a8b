//! Inbound compact JWS handling shared by every token kind.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;

/// Why an inbound token was refused. Messages never echo the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not a compact JWS")]
    Malformed,
    #[error("the token's `typ` is not `{0}`")]
    WrongType(&'static str),
    #[error("the token header carries `{0}`, which is never honoured")]
    ForbiddenHeader(&'static str),
    #[error("the token's issuer is not trusted")]
    UnknownIssuer,
    #[error("algorithm `{0}` is not allowed for this issuer")]
    Algorithm(String),
    #[error("no key of the issuer matches the token")]
    UnknownKey,
    #[error("the token's signature or claims are invalid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token lacks a usable `{0}` claim")]
    MissingClaim(&'static str),
}

/// A token as received: nothing about it is trusted until a verifier turns it into a verified type.
#[derive(Clone, Copy)]
pub struct Unverified<'a>(&'a str);

impl<'a> Unverified<'a> {
    pub fn new(token: &'a str) -> Self {
        Self(token.trim())
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

impl std::fmt::Debug for Unverified<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unverified(..)")
    }
}

/// Reads the payload without checking anything, only to choose which issuer's keys to verify with.
pub fn peek_claims<T: DeserializeOwned>(token: Unverified<'_>) -> Result<T, TokenError> {
    let mut parts = token.as_str().split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Checks `exp` and `nbf` against the injected clock, allowing `leeway` seconds.
pub fn check_times(
    exp: Option<i64>,
    nbf: Option<i64>,
    now: i64,
    leeway: i64,
) -> Result<(), TokenError> {
    let exp = exp.ok_or(TokenError::MissingClaim("exp"))?;
    if now > exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = nbf
        && now.saturating_add(leeway) < nbf
    {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}
