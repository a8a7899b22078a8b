//! What the service refuses with, in wire terms: each [`ServiceError`] names its stable
//! [`ErrorCode`] here, once; the server maps each code to a status.

use crate::ids::DecisionId;
use crate::keys::KeyError;
use crate::policy::{Denial, DenyReason};
use crate::random::RandomError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Malformed or incomplete request (RFC 6749 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// Authorization details (RFC 9396) of another system's type, naming a field the system does
    /// not declare, repeating a member or a field, or not shaped as the system declares them
    /// (§5 `invalid_authorization_details`).
    #[error("{0}")]
    InvalidAuthorizationDetails(String),
    /// The audience names no registered system (RFC 8693 `invalid_target`).
    #[error("{0}")]
    InvalidTarget(String),
    /// A requested action is not offered by the system (`invalid_scope`).
    #[error("{0}")]
    InvalidScope(String),
    /// The caller's identity could not be verified (`invalid_client`).
    #[error("{0}")]
    InvalidClient(String),
    /// The task token is bad, expired or names an unknown task (`invalid_grant`).
    #[error("{0}")]
    InvalidGrant(String),
    /// The decision point, or a state check, denied the request.
    #[error("{}", .0.description)]
    Denied(Denial),
    /// The store could not be reached or answered badly; authorization fails closed.
    #[error("the store is unavailable")]
    Unavailable(#[source] StoreError),
    /// The request waits for a person (RFC 8628 `authorization_pending`).
    #[error("the request waits for approval by `{group}`")]
    ApprovalPending {
        approval_id: String,
        group: String,
        interval: u32,
        expires_in: i64,
    },
    /// Polled faster than the interval (RFC 8628 `slow_down`).
    #[error("polling too fast; wait {interval} seconds between polls")]
    SlowDown { approval_id: String, interval: u32 },
    /// The approval expired before it was decided or used (RFC 8628 `expired_token`).
    #[error("{0}")]
    ExpiredToken(String),
    /// Evidence that is unsigned, wrongly signed, stale, or from a system that may not report it.
    #[error("{0}")]
    InvalidEvidence(String),
    /// Evidence whose id was already received.
    #[error("{0}")]
    EvidenceReplayed(String),
    /// A reload found the deployment on disk broken, or changing what cannot change while
    /// serving: every problem, one line each. The old deployment keeps serving.
    #[error("the deployment was not reloaded: {} problem(s)", .0.len())]
    DeploymentRefused(Vec<String>),
    /// A fault on Handoff's side (no randomness, signing failed); never caused by input.
    #[error("internal error")]
    Internal(#[from] InternalError),
}

/// A fault on Handoff's side, with its cause.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    #[error("no fresh identifier")]
    Random(#[from] RandomError),
    #[error("signing failed")]
    Signing(#[from] KeyError),
    #[error("no checkpoint key is configured")]
    NoCheckpointKey,
    #[error("the checkpoint was stored, but its witness failed: {0}")]
    Witness(String),
}

impl From<RandomError> for ServiceError {
    fn from(error: RandomError) -> Self {
        Self::Internal(error.into())
    }
}

impl From<KeyError> for ServiceError {
    fn from(error: KeyError) -> Self {
        Self::Internal(error.into())
    }
}

/// The stable error code a refusal carries on the wire (OAuth `error`, JSON `error`), spelled
/// once for every door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    UnsupportedGrantType,
    InvalidAuthorizationDetails,
    InvalidTarget,
    InvalidScope,
    InvalidClient,
    InvalidGrant,
    AccessDenied,
    NotFound,
    MethodNotAllowed,
    BodyTooLarge,
    UnsupportedMediaType,
    RequestTimeout,
    HeaderTooLarge,
    AuthorizationPending,
    SlowDown,
    ExpiredToken,
    InvalidEvidence,
    EvidenceReplayed,
    TemporarilyUnavailable,
    ServerError,
    /// The gateway's refusals (RFC 6750 §3.1 `invalid_token` and `insufficient_scope`, and the
    /// gateway's own route and upstream codes).
    InvalidToken,
    InsufficientScope,
    UnknownSystem,
    RouteNotMapped,
    ResourceMismatch,
    DetailsMismatch,
    UpstreamCredentialUnavailable,
    UpstreamUnavailable,
    /// A reload refused: the deployment on disk does not load, or changes a fixed setting.
    InvalidDeployment,
}

impl ErrorCode {
    /// The HTTP status every door answers this code with (one table for the server, the
    /// gateway and the MCP endpoint; core names the number and speaks no HTTP).
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidRequest
            | Self::UnsupportedGrantType
            | Self::InvalidAuthorizationDetails
            | Self::InvalidTarget
            | Self::InvalidScope
            | Self::AuthorizationPending
            | Self::SlowDown
            | Self::ExpiredToken
            | Self::InvalidDeployment => 400,
            Self::InvalidClient
            | Self::InvalidGrant
            | Self::InvalidEvidence
            | Self::InvalidToken => 401,
            Self::AccessDenied
            | Self::InsufficientScope
            | Self::RouteNotMapped
            | Self::ResourceMismatch
            | Self::DetailsMismatch => 403,
            Self::NotFound | Self::UnknownSystem => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::EvidenceReplayed => 409,
            Self::BodyTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::HeaderTooLarge => 431,
            Self::ServerError => 500,
            Self::UpstreamCredentialUnavailable | Self::UpstreamUnavailable => 502,
            Self::TemporarilyUnavailable => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidAuthorizationDetails => "invalid_authorization_details",
            Self::InvalidTarget => "invalid_target",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::AccessDenied => "access_denied",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BodyTooLarge => "body_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RequestTimeout => "request_timeout",
            Self::HeaderTooLarge => "header_too_large",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::InvalidEvidence => "invalid_evidence",
            Self::EvidenceReplayed => "evidence_replayed",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::UnknownSystem => "unknown_system",
            Self::RouteNotMapped => "route_not_mapped",
            Self::ResourceMismatch => "resource_mismatch",
            Self::DetailsMismatch => "details_mismatch",
            Self::UpstreamCredentialUnavailable => "upstream_credential_unavailable",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::InvalidDeployment => "invalid_deployment",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ServiceError {
    /// A refusal decided before policy ran (containment, delegation, admission): no policies.
    pub(crate) fn denied(
        decision_id: &DecisionId,
        reason: DenyReason,
        description: impl Into<String>,
    ) -> Self {
        Self::Denied(Denial {
            decision_id: decision_id.clone(),
            reason,
            description: description.into(),
            policies: Vec::new(),
        })
    }

    /// The code this refusal carries on the wire.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::InvalidAuthorizationDetails(_) => ErrorCode::InvalidAuthorizationDetails,
            Self::InvalidTarget(_) => ErrorCode::InvalidTarget,
            Self::InvalidScope(_) => ErrorCode::InvalidScope,
            Self::InvalidClient(_) => ErrorCode::InvalidClient,
            Self::InvalidGrant(_) => ErrorCode::InvalidGrant,
            Self::Denied(_) => ErrorCode::AccessDenied,
            Self::Unavailable(_) => ErrorCode::TemporarilyUnavailable,
            Self::ApprovalPending { .. } => ErrorCode::AuthorizationPending,
            Self::SlowDown { .. } => ErrorCode::SlowDown,
            Self::ExpiredToken(_) => ErrorCode::ExpiredToken,
            Self::InvalidEvidence(_) => ErrorCode::InvalidEvidence,
            Self::EvidenceReplayed(_) => ErrorCode::EvidenceReplayed,
            Self::DeploymentRefused(_) => ErrorCode::InvalidDeployment,
            Self::Internal(_) => ErrorCode::ServerError,
        }
    }

    /// The stable reason code recorded in the audit log: a denial's reason, else the wire code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Denied(denial) => denial.reason.as_str(),
            other => other.error_code().as_str(),
        }
    }

    /// What became of the request, for logs and metrics: `deny` (a decision refused it),
    /// `pending` (it waits for a person) or `error`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Denied(_) => "deny",
            Self::ApprovalPending { .. } | Self::SlowDown { .. } => "pending",
            _ => "error",
        }
    }

    /// The id of the decision that refused the request, when one did.
    pub fn decision_id(&self) -> Option<&str> {
        match self {
            Self::Denied(denial) => Some(denial.decision_id.as_str()),
            _ => None,
        }
    }
}

impl From<StoreError> for ServiceError {
    /// A conflict that outlived its retries, a rejection the caller did not map to a denial, or
    /// an unreachable or corrupt store: all fail closed as unavailable, the cause kept.
    fn from(error: StoreError) -> Self {
        Self::Unavailable(error)
    }
}
