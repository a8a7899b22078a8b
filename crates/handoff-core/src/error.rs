//! What the service refuses with, in wire terms (the server maps each variant to a status).

use crate::ids::DecisionId;
use crate::policy::{Denial, DenyReason};
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
    Unavailable(String),
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
    /// A fault on Handoff's side (signing failed); never caused by input.
    #[error("internal error")]
    Internal(String),
}

impl ServiceError {
    /// A refusal decided before policy ran (containment, delegation, admission): no policies.
    pub(crate) fn denied(
        decision_id: &DecisionId,
        reason: DenyReason,
        description: String,
    ) -> Self {
        Self::Denied(Denial {
            decision_id: decision_id.clone(),
            reason,
            description,
            policies: Vec::new(),
        })
    }

    /// The stable reason code recorded in the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidAuthorizationDetails(_) => "invalid_authorization_details",
            Self::InvalidTarget(_) => "invalid_target",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::Denied(denial) => denial.reason.as_str(),
            Self::Unavailable(_) => "temporarily_unavailable",
            Self::ApprovalPending { .. } => "authorization_pending",
            Self::SlowDown { .. } => "slow_down",
            Self::ExpiredToken(_) => "expired_token",
            Self::InvalidEvidence(_) => "invalid_evidence",
            Self::EvidenceReplayed(_) => "evidence_replayed",
            Self::Internal(_) => "server_error",
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict => Self::Unavailable("the task is busy; retry".to_owned()),
            StoreError::Unavailable(e) | StoreError::Corrupt(e) => Self::Unavailable(e),
            // Callers that can be refused this way map it to a denial themselves.
            StoreError::Rejected(rejection) => Self::Unavailable(rejection.to_string()),
        }
    }
}
