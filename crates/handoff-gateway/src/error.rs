//! The gateway's one HTTP error type: every refusal has an explicit status and a stable code; the
//! cause goes to the log, the caller gets a safe message in the body every door shares
//! ([`handoff_http::ErrorBody`]).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use handoff_core::error::ErrorCode;
use handoff_core::usage::ReportError;
use handoff_http::{CredentialError, ErrorBody, Refusal};

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
    /// Verification data (keys, deny list) is not available yet, or Handoff's store cannot
    /// be reached: fail closed.
    #[error("the gateway cannot verify tokens right now")]
    Unavailable(String),
    /// A system reporting uses did not authenticate (HTTP Basic with its credential).
    #[error("{0}")]
    InvalidClient(String),
    /// A report of uses that the core refused.
    #[error("{0}")]
    Report(#[source] ReportError),
    /// A browser (a request with `Origin`) at the MCP endpoint: no origin is trusted.
    #[error("requests from browsers are refused")]
    BrowserOrigin,
    #[error("the method is not allowed on this path")]
    MethodNotAllowed,
    #[error("not found")]
    NotFound,
}

impl GatewayError {
    /// The stable code clients and the audit log see.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidToken(_) => ErrorCode::InvalidToken,
            Self::UnknownSystem(_) => ErrorCode::UnknownSystem,
            Self::RouteNotMapped { .. } => ErrorCode::RouteNotMapped,
            Self::InsufficientScope(_) => ErrorCode::InsufficientScope,
            Self::ResourceMismatch(_) => ErrorCode::ResourceMismatch,
            Self::DetailsMismatch(_) => ErrorCode::DetailsMismatch,
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::BodyTooLarge(_) => ErrorCode::BodyTooLarge,
            Self::Credential(_) => ErrorCode::UpstreamCredentialUnavailable,
            Self::Upstream(_) => ErrorCode::UpstreamUnavailable,
            Self::Unavailable(_) => ErrorCode::TemporarilyUnavailable,
            Self::InvalidClient(_) => ErrorCode::InvalidClient,
            Self::Report(report) => report.code(),
            Self::BrowserOrigin => ErrorCode::InvalidRequest,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::NotFound => ErrorCode::NotFound,
        }
    }

    /// The status of the code (core's one table), except a browser's request: refused as
    /// forbidden, though what it lacks is a well-formed request.
    fn status(&self) -> StatusCode {
        match self {
            Self::BrowserOrigin => StatusCode::FORBIDDEN,
            other => StatusCode::from_u16(other.code().http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// A request without a usable credential: malformed whoever sent it (a repeated
    /// `Authorization`, 400 `invalid_request`), or else unauthenticated as `otherwise` says.
    pub(crate) fn credential(error: CredentialError, otherwise: Self) -> Self {
        if error.is_malformed_request() {
            Self::InvalidRequest(error.to_string())
        } else {
            otherwise
        }
    }

    /// The answer: status, body and, for credential problems, the challenge (RFC 6750 §3 names
    /// the error for token problems; RFC 7617 for the Basic credential of a reporting system).
    pub fn refusal(&self) -> Refusal {
        let refusal = Refusal::new(
            self.status(),
            ErrorBody::new(self.code().as_str(), self.to_string()),
        );
        let challenge = match self {
            Self::InvalidToken(_) => "Bearer error=\"invalid_token\"",
            Self::InsufficientScope(_) => "Bearer error=\"insufficient_scope\"",
            Self::InvalidClient(_) => "Basic realm=\"handoff\"",
            _ => return refusal,
        };
        refusal.challenge(HeaderValue::from_static(challenge))
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        match &self {
            Self::Credential(cause) | Self::Upstream(cause) | Self::Unavailable(cause) => {
                tracing::warn!(%cause, code = self.code().as_str(), "gateway call failed");
            }
            Self::Report(ReportError::Store(cause)) => {
                tracing::warn!(%cause, "reported uses could not be recorded");
            }
            _ => {}
        }
        self.refusal().into_response()
    }
}
