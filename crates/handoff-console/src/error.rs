//! The console's refusals: the JSON body every door answers with (`handoff_http::Refusal`),
//! each with core's stable code and that code's status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use handoff_core::ServiceError;
use handoff_http::{ErrorBody, Refusal};

#[derive(Debug)]
pub enum ConsoleError {
    /// A refusal core decided (or a request the console found malformed in core's terms).
    Service(ServiceError),
}

impl From<ServiceError> for ConsoleError {
    fn from(error: ServiceError) -> Self {
        Self::Service(error)
    }
}

impl ConsoleError {
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::Service(ServiceError::InvalidRequest(message.into()))
    }

    /// No session, or one that ended.
    pub fn signed_out() -> Self {
        Self::Service(ServiceError::InvalidClient(
            "sign in first: `handoff approver login` prints a sign-in link".to_owned(),
        ))
    }

    /// Signed in, but not allowed to do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Service(ServiceError::Denied(
            handoff_core::policy::decision::Denial {
                decision_id: handoff_core::ids::DecisionId::new("console"),
                reason: handoff_core::policy::decision::DenyReason::NoPermit,
                description: message.into(),
                policies: Vec::new(),
            },
        ))
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let Self::Service(error) = self;
        let code = error.error_code();
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let description = match &error {
            ServiceError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "console request failed closed");
                "the service is temporarily unavailable".to_owned()
            }
            ServiceError::Internal(cause) => {
                tracing::error!(cause = %cause, "console internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut body = ErrorBody::new(code.as_str(), description);
        if let ServiceError::Denied(denial) = &error {
            body = body
                .with("decision_id", denial.decision_id.as_str())
                .with("reason", denial.reason.as_str())
                .with("policies", denial.policies.clone());
        }
        Refusal::new(status, body).into_response()
    }
}
