//! Who is calling: an operator (Bearer operator credential), a registered system (HTTP Basic
//! `system:secret`), or an agent (Bearer identity JWT).

use crate::error::ApiError;
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use handoff_core::Handoff;
use handoff_core::containment::{Operator, TokenCaller};

enum Credential {
    Bearer(String),
    Basic(String, String),
}

fn credential(headers: &HeaderMap) -> Option<Credential> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(Credential::Bearer(rest.trim().to_owned())),
        "basic" => {
            let decoded = STANDARD.decode(rest.trim()).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (user, password) = text.split_once(':')?;
            Some(Credential::Basic(user.to_owned(), password.to_owned()))
        }
        _ => None,
    }
}

fn unauthenticated() -> ApiError {
    ApiError::invalid_client("authentication is required".to_owned())
}

pub fn operator(handoff: &Handoff, headers: &HeaderMap) -> Result<Operator, ApiError> {
    match credential(headers) {
        Some(Credential::Bearer(secret)) => Ok(handoff.authenticate_operator(&secret)?),
        _ => Err(ApiError::invalid_client(
            "operator credentials are required".to_owned(),
        )),
    }
}

/// A system or an operator (for introspection and the revocation feed).
pub async fn system_or_operator(
    handoff: &Handoff,
    headers: &HeaderMap,
) -> Result<TokenCaller, ApiError> {
    match credential(headers) {
        Some(Credential::Basic(system, secret)) => Ok(TokenCaller::System(
            handoff.authenticate_system(&system, &secret).await?,
        )),
        Some(Credential::Bearer(secret)) => Ok(TokenCaller::Operator(
            handoff.authenticate_operator(&secret)?,
        )),
        None => Err(unauthenticated()),
    }
}

/// A system, an operator, or an agent (for RFC 7009 revocation).
pub async fn any_caller(handoff: &Handoff, headers: &HeaderMap) -> Result<TokenCaller, ApiError> {
    match credential(headers) {
        Some(Credential::Basic(system, secret)) => Ok(TokenCaller::System(
            handoff.authenticate_system(&system, &secret).await?,
        )),
        Some(Credential::Bearer(secret)) => match handoff.authenticate_operator(&secret) {
            Ok(operator) => Ok(TokenCaller::Operator(operator)),
            Err(_) => Ok(TokenCaller::Agent(handoff.authenticate(&secret)?)),
        },
        None => Err(unauthenticated()),
    }
}
