//! The one HTTP error type: a refusal core decided ([`ServiceError`]) or one only the HTTP layer
//! makes (routing, body limits, timeouts). Each carries its stable [`ErrorCode`], spelled once in
//! core; each code has an explicit status here. The cause goes to the log, the client gets a safe
//! message.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use handoff_core::ServiceError;
use handoff_core::error::ErrorCode;
use handoff_http::{ErrorBody, Refusal};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A refusal core decided (or a request the HTTP layer found malformed in core's terms).
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("{0}")]
    UnsupportedGrantType(String),
    #[error("not found")]
    NotFound,
    #[error("the method is not allowed on this path")]
    MethodNotAllowed,
    #[error("the request body is larger than this endpoint accepts")]
    BodyTooLarge,
    #[error("the content type is not supported here")]
    UnsupportedMediaType,
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("the request line and headers are larger than {0} bytes")]
    HeaderTooLarge(usize),
    /// A fault in the HTTP layer (a plain 5xx answer from below); the text goes to the log.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// `invalid_request`: the request is malformed.
    pub(crate) fn invalid_request(message: impl Into<String>) -> Self {
        Self::Service(ServiceError::InvalidRequest(message.into()))
    }

    /// `invalid_client`: the caller's credential is missing or refused.
    pub(crate) fn invalid_client(message: impl Into<String>) -> Self {
        Self::Service(ServiceError::InvalidClient(message.into()))
    }

    /// `invalid_target`: the audience names no registered system.
    pub(crate) fn invalid_target(message: impl Into<String>) -> Self {
        Self::Service(ServiceError::InvalidTarget(message.into()))
    }

    /// `invalid_authorization_details`: the details do not parse.
    pub(crate) fn invalid_authorization_details(message: impl Into<String>) -> Self {
        Self::Service(ServiceError::InvalidAuthorizationDetails(message.into()))
    }

    /// `invalid_evidence`: the evidence is unsigned or wrongly signed.
    pub(crate) fn invalid_evidence(message: impl Into<String>) -> Self {
        Self::Service(ServiceError::InvalidEvidence(message.into()))
    }

    /// The stable code the client gets.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Self::Service(error) => error.error_code(),
            Self::UnsupportedGrantType(_) => ErrorCode::UnsupportedGrantType,
            Self::NotFound => ErrorCode::NotFound,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::BodyTooLarge => ErrorCode::BodyTooLarge,
            Self::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Self::RequestTimeout => ErrorCode::RequestTimeout,
            Self::HeaderTooLarge(_) => ErrorCode::HeaderTooLarge,
            Self::Internal(_) => ErrorCode::ServerError,
        }
    }

    /// The JSON body of this refusal: the stable code, a safe description, and the members a
    /// denial or a pending approval adds.
    pub(crate) fn body(&self) -> ErrorBody {
        let body = ErrorBody::new(self.code().as_str(), self.description());
        match self {
            Self::Service(ServiceError::Denied(denial)) => body
                .with("decision_id", denial.decision_id.as_str())
                .with("reason", denial.reason.as_str())
                .with("policies", denial.policies.clone()),
            Self::Service(ServiceError::ApprovalPending {
                approval_id,
                group,
                interval,
                expires_in,
            }) => body
                .with("approval_id", approval_id.clone())
                .with("approver_group", group.clone())
                .with("interval", *interval)
                .with("expires_in", *expires_in),
            Self::Service(ServiceError::SlowDown {
                approval_id,
                interval,
            }) => body
                .with("approval_id", approval_id.clone())
                .with("interval", *interval),
            Self::Service(ServiceError::DeploymentRefused(problems)) => {
                body.with("problems", problems.clone())
            }
            Self::Service(
                ServiceError::InvalidRequest(_)
                | ServiceError::InvalidAuthorizationDetails(_)
                | ServiceError::InvalidTarget(_)
                | ServiceError::InvalidScope(_)
                | ServiceError::InvalidClient(_)
                | ServiceError::InvalidGrant(_)
                | ServiceError::ExpiredToken(_)
                | ServiceError::InvalidEvidence(_)
                | ServiceError::EvidenceReplayed(_)
                | ServiceError::Unavailable(_)
                | ServiceError::Internal(_),
            )
            | Self::UnsupportedGrantType(_)
            | Self::NotFound
            | Self::MethodNotAllowed
            | Self::BodyTooLarge
            | Self::UnsupportedMediaType
            | Self::RequestTimeout
            | Self::HeaderTooLarge(_)
            | Self::Internal(_) => body,
        }
    }

    /// The answer: the status of the code, the body, no caching, and the `Bearer` challenge on
    /// 401 (RFC 6750 §3).
    pub(crate) fn refusal(&self) -> Refusal {
        let status = status(self.code());
        let refusal = Refusal::new(status, self.body());
        if status == StatusCode::UNAUTHORIZED {
            refusal.challenge(HeaderValue::from_static("Bearer"))
        } else {
            refusal
        }
    }

    /// What the client is told: core's message, except that a store fault says only that the
    /// service is unavailable.
    fn description(&self) -> String {
        match self {
            Self::Service(ServiceError::Unavailable(_)) => {
                "the service is temporarily unavailable".to_owned()
            }
            other => other.to_string(),
        }
    }
}

/// The HTTP status of a code: core's one table.
fn status(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Only a fault has a cause worth the log; every refusal is in the audit chain or the
        // caller's own doing.
        if let Self::Service(ServiceError::Unavailable(cause)) = &self {
            tracing::warn!(cause = %cause, "request failed closed");
            metrics::counter!(crate::metrics::STORE_ERRORS).increment(1);
        } else if let Self::Service(ServiceError::Internal(cause)) = &self {
            let source = std::error::Error::source(cause).map(ToString::to_string);
            tracing::error!(cause = %cause, source, "internal error");
        } else if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "internal error");
        }
        self.refusal().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;
    use serde_json::{Value, json};

    #[test]
    fn a_pending_approval_answers_400_with_its_id_group_interval_and_expiry_beside_the_code() {
        let refusal = ApiError::Service(ServiceError::ApprovalPending {
            approval_id: "apr_1".to_owned(),
            group: "ops".to_owned(),
            interval: 5,
            expires_in: 600,
        })
        .refusal();
        assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            Value::from(refusal.body()),
            json!({
                "error": "authorization_pending",
                "error_description": "the request waits for approval by `ops`",
                "approval_id": "apr_1",
                "approver_group": "ops",
                "interval": 5,
                "expires_in": 600,
            })
        );
    }

    #[test]
    fn a_refused_credential_is_challenged_with_bearer_and_no_refusal_is_cached() {
        let unauthorized = ApiError::invalid_client("no credential").into_response();
        assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(unauthorized.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(unauthorized.headers()[header::CACHE_CONTROL], "no-store");

        let not_found = ApiError::NotFound.into_response();
        assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
        assert!(!not_found.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(not_found.headers()[header::CACHE_CONTROL], "no-store");
    }
}
