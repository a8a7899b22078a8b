//! Who is calling: an operator (Bearer operator credential), a registered system (HTTP Basic
//! `system:secret`), an agent (Bearer identity JWT) or a person (Bearer approver token). The
//! credential is read by the one parser every door uses ([`handoff_http::credential`]).

use crate::error::ApiError;
use axum::http::HeaderMap;
use handoff_core::Handoff;
use handoff_core::containment::{Operator, TokenCaller};
use handoff_http::{Credential, CredentialError};

/// The request's credential; without a usable one, `unauthenticated` (a repeated
/// `Authorization` header is a malformed request instead, at every door).
fn credential<'h>(
    headers: &'h HeaderMap,
    unauthenticated: &str,
) -> Result<Credential<'h>, ApiError> {
    handoff_http::credential(headers).map_err(|error| refused(error, unauthenticated))
}

fn refused(error: CredentialError, unauthenticated: &str) -> ApiError {
    if error.is_malformed_request() {
        ApiError::invalid_request(error.to_string())
    } else {
        ApiError::invalid_client(unauthenticated.to_owned())
    }
}

/// The request's bearer token; `unauthenticated` says what was expected.
pub fn bearer<'h>(headers: &'h HeaderMap, unauthenticated: &str) -> Result<&'h str, ApiError> {
    handoff_http::bearer(headers).map_err(|error| refused(error, unauthenticated))
}

/// The header in which an operator's client names the person at the keyboard
/// (`handoff ... --server` sends `$USER`); records then name `operator:<name>`. It is the
/// holder of the operator credential's word, not a second authentication.
pub const OPERATOR_NAME: &str = "handoff-operator";

pub fn operator(handoff: &Handoff, headers: &HeaderMap) -> Result<Operator, ApiError> {
    let secret = bearer(headers, "operator credentials are required")?;
    let operator = handoff.authenticate_operator(secret)?;
    let Some(name) = headers.get(OPERATOR_NAME) else {
        return Ok(operator);
    };
    let name = name
        .to_str()
        .map_err(|_| ApiError::invalid_request(format!("`{OPERATOR_NAME}` is not text")))?;
    handoff_core::text::check_identifier(OPERATOR_NAME, name)?;
    Ok(Operator::local(format!(
        "{}:{}",
        operator.name(),
        name.trim()
    )))
}

/// A system or an operator (for introspection and the revocation feed).
pub async fn system_or_operator(
    handoff: &Handoff,
    headers: &HeaderMap,
) -> Result<TokenCaller, ApiError> {
    match credential(headers, "authentication is required")? {
        Credential::Basic { user, password } => Ok(TokenCaller::System(
            handoff.authenticate_system(&user, &password).await?,
        )),
        Credential::Bearer(secret) => Ok(TokenCaller::Operator(
            handoff.authenticate_operator(secret)?,
        )),
    }
}

/// A system, an operator, or an agent (for RFC 7009 revocation).
pub async fn any_caller(handoff: &Handoff, headers: &HeaderMap) -> Result<TokenCaller, ApiError> {
    match credential(headers, "authentication is required")? {
        Credential::Basic { user, password } => Ok(TokenCaller::System(
            handoff.authenticate_system(&user, &password).await?,
        )),
        Credential::Bearer(secret) => match handoff.authenticate_operator(secret) {
            Ok(operator) => Ok(TokenCaller::Operator(operator)),
            Err(_) => Ok(TokenCaller::Agent(handoff.authenticate(secret)?)),
        },
    }
}
