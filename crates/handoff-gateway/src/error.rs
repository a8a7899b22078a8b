//! The gateway's one HTTP error type: every refusal has an explicit status and a stable code; the
//! cause goes to the log, the caller gets a safe message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No token, or one that does not verify, expired, was revoked, or names another audience.
    #[error("{0}")]
    InvalidToken(String),
    /// The system is not fronted by this gateway.
    #[error("`{0}` is not a system behind this gateway")]
    UnknownSystem(String),
    /// No route of the system maps this method and path: anything unmapped is denied.
    #[error("no route of `{system}` maps `{method} {path}`")]
    RouteNotMapped {
        system: String,
        method: String,
        path: String,
    },
    /// The route's action is not in the token's scope.
    #[error("the token's scope does not include `{0}`")]
    InsufficientScope(String),
    /// The route's resource is not the token's resource.
    #[error("the token is not for resource `{0}`")]
    ResourceMismatch(String),
    /// The request body does not match the token's authorization details.
    #[error("{0}")]
    DetailsMismatch(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The upstream credential could not be obtained (secret missing, token endpoint refused).
    #[error("the upstream credential is unavailable")]
    Credential(String),
    /// The upstream could not be reached or answered badly.
    #[error("the upstream is unavailable")]
    Upstream(String),
    /// Verification data (keys, deny list) is not available yet: fail closed.
    #[error("the gateway cannot verify tokens right now")]
    Unavailable(String),
}

impl GatewayError {
    /// The stable code clients and the audit log see.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidToken(_) => "invalid_token",
            Self::UnknownSystem(_) => "unknown_system",
            Self::RouteNotMapped { .. } => "route_not_mapped",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::ResourceMismatch(_) => "resource_mismatch",
            Self::DetailsMismatch(_) => "details_mismatch",
            Self::InvalidRequest(_) => "invalid_request",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::Credential(_) => "upstream_credential_unavailable",
            Self::Upstream(_) => "upstream_unavailable",
            Self::Unavailable(_) => "temporarily_unavailable",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::UnknownSystem(_) => StatusCode::NOT_FOUND,
            Self::RouteNotMapped { .. } => StatusCode::FORBIDDEN,
            Self::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Self::ResourceMismatch(_) => StatusCode::FORBIDDEN,
            Self::DetailsMismatch(_) => StatusCode::FORBIDDEN,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Credential(_) => StatusCode::BAD_GATEWAY,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        match &self {
            Self::Credential(cause) | Self::Upstream(cause) | Self::Unavailable(cause) => {
                tracing::warn!(%cause, code, "gateway call failed");
            }
            _ => {}
        }
        let mut response = (
            status,
            Json(json!({ "error": code, "error_description": self.to_string() })),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // RFC 6750 §3: the challenge names the error for token problems.
        let challenge = match &self {
            Self::InvalidToken(_) => Some("Bearer error=\"invalid_token\""),
            Self::InsufficientScope(_) => Some("Bearer error=\"insufficient_scope\""),
            _ => None,
        };
        if let Some(challenge) = challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}
