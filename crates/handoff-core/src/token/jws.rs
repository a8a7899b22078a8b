//! Inbound compact JWS handling shared by every token kind.

use super::numeric_date::TokenTimes;
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
    #[error("the issuer's keys have not been fetched yet (issuer_keys_unavailable)")]
    KeysUnavailable,
    #[error("the token's signature or claims are invalid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's `iat` is in the future")]
    IssuedInFuture,
    #[error("the token's `{0}` claim is not a NumericDate")]
    InvalidTime(&'static str),
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

/// Reads the payload without checking its signature, only to choose which issuer's keys to
/// verify with. A payload naming a member twice (at any depth) is malformed: the verifier that
/// reads it next must not take a different copy than this peek did.
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
    let text = std::str::from_utf8(&bytes).map_err(|_| TokenError::Malformed)?;
    let payload = crate::json::from_str_unique(text).map_err(|_| TokenError::Malformed)?;
    serde_json::from_value(payload).map_err(|_| TokenError::Malformed)
}

/// Refuses a header that names its own key or where to fetch one (`jku`, `x5u`, `jwk`), or
/// extensions it says must be understood (`crit`, RFC 7515 §4.1.11): none is ever honoured,
/// whoever signed the token.
pub fn refuse_key_headers(header: &jsonwebtoken::Header) -> Result<(), TokenError> {
    if header.jku.is_some() {
        return Err(TokenError::ForbiddenHeader("jku"));
    }
    if header.x5u.is_some() {
        return Err(TokenError::ForbiddenHeader("x5u"));
    }
    if header.jwk.is_some() {
        return Err(TokenError::ForbiddenHeader("jwk"));
    }
    if header.crit.is_some() {
        return Err(TokenError::ForbiddenHeader("crit"));
    }
    Ok(())
}

/// Verifies a token Handoff signed itself: explicit `typ`, a `kid` of the key ring, the key's own
/// algorithm, the signature, `iss` and (when given) `aud`. The time claims are parsed strictly and
/// returned; checking them against the injected clock is the caller's.
pub fn verify_own<T: DeserializeOwned>(
    keys: &crate::keys::KeyRing,
    token: Unverified<'_>,
    typ: &'static str,
    issuer: &str,
    audience: Option<&str>,
) -> Result<(T, TokenTimes), TokenError> {
    let header = jsonwebtoken::decode_header(token.as_str()).map_err(|_| TokenError::Malformed)?;
    refuse_key_headers(&header)?;
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(typ))
    {
        return Err(TokenError::WrongType(typ));
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.find(kid))
        .ok_or(TokenError::UnknownKey)?;
    if header.alg != key.jwt_algorithm() {
        return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
    }
    let mut validation = jsonwebtoken::Validation::new(key.jwt_algorithm());
    validation.validate_exp = false;
    validation.validate_nbf = false;
    match audience {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let claims =
        jsonwebtoken::decode::<serde_json::Value>(token.as_str(), key.decoding_key(), &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?
            .claims;
    let times = TokenTimes::from_claims(&claims)?;
    let claims = serde_json::from_value(claims).map_err(|e| TokenError::Invalid(e.to_string()))?;
    Ok((claims, times))
}
