//! The one HTTP error type: every variant has an explicit status and a stable OAuth error code;
//! the cause goes to the log, the client gets a safe message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use handoff_core::ServiceError;
use handoff_core::policy::Denial;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    UnsupportedGrantType(String),
    #[error("{0}")]
    InvalidAuthorizationDetails(String),
    #[error("{0}")]
    InvalidTarget(String),
    #[error("{0}")]
    InvalidScope(String),
    #[error("{0}")]
    InvalidClient(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{}", .0.description)]
    AccessDenied(Denial),
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
    #[error("{0}")]
    Pending(ServiceError),
    #[error("{0}")]
    ExpiredToken(String),
    #[error("{0}")]
    InvalidEvidence(String),
    #[error("{0}")]
    EvidenceReplayed(String),
    #[error("the service is temporarily unavailable")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::InvalidRequest(m) => Self::InvalidRequest(m),
            ServiceError::InvalidAuthorizationDetails(m) => Self::InvalidAuthorizationDetails(m),
            ServiceError::InvalidTarget(m) => Self::InvalidTarget(m),
            ServiceError::InvalidScope(m) => Self::InvalidScope(m),
            ServiceError::InvalidClient(m) => Self::InvalidClient(m),
            ServiceError::InvalidGrant(m) => Self::InvalidGrant(m),
            ServiceError::Denied(denial) => Self::AccessDenied(denial),
            ServiceError::Unavailable(m) => Self::Unavailable(m),
            ServiceError::Internal(m) => Self::Internal(m),
            pending @ (ServiceError::ApprovalPending { .. } | ServiceError::SlowDown { .. }) => {
                Self::Pending(pending)
            }
            ServiceError::ExpiredToken(m) => Self::ExpiredToken(m),
            ServiceError::InvalidEvidence(m) => Self::InvalidEvidence(m),
            ServiceError::EvidenceReplayed(m) => Self::EvidenceReplayed(m),
        }
    }
}

impl ApiError {
    /// The JSON body every refusal carries: the stable code and a safe description.
    pub(crate) fn body(&self) -> serde_json::Value {
        json!({ "error": self.status_and_code().1, "error_description": self.to_string() })
    }

    pub(crate) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::UnsupportedGrantType(_) => (StatusCode::BAD_REQUEST, "unsupported_grant_type"),
            Self::InvalidAuthorizationDetails(_) => {
                (StatusCode::BAD_REQUEST, "invalid_authorization_details")
            }
            Self::InvalidTarget(_) => (StatusCode::BAD_REQUEST, "invalid_target"),
            Self::InvalidScope(_) => (StatusCode::BAD_REQUEST, "invalid_scope"),
            Self::InvalidClient(_) => (StatusCode::UNAUTHORIZED, "invalid_client"),
            Self::InvalidGrant(_) => (StatusCode::UNAUTHORIZED, "invalid_grant"),
            Self::AccessDenied(_) => (StatusCode::FORBIDDEN, "access_denied"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::HeaderTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header_too_large",
            ),
            Self::Pending(ServiceError::SlowDown { .. }) => (StatusCode::BAD_REQUEST, "slow_down"),
            Self::Pending(_) => (StatusCode::BAD_REQUEST, "authorization_pending"),
            Self::ExpiredToken(_) => (StatusCode::BAD_REQUEST, "expired_token"),
            Self::InvalidEvidence(_) => (StatusCode::UNAUTHORIZED, "invalid_evidence"),
            Self::EvidenceReplayed(_) => (StatusCode::CONFLICT, "evidence_replayed"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut body = serde_json::Map::new();
        body.insert("error".to_owned(), json!(code));
        body.insert("error_description".to_owned(), json!(self.to_string()));
        match &self {
            Self::AccessDenied(denial) => {
                body.insert("decision_id".to_owned(), json!(denial.decision_id.as_str()));
                body.insert("reason".to_owned(), json!(denial.reason.as_str()));
                body.insert("policies".to_owned(), json!(denial.policies));
            }
            Self::Pending(ServiceError::ApprovalPending {
                approval_id,
                group,
                interval,
                expires_in,
            }) => {
                body.insert("approval_id".to_owned(), json!(approval_id));
                body.insert("approver_group".to_owned(), json!(group));
                body.insert("interval".to_owned(), json!(interval));
                body.insert("expires_in".to_owned(), json!(expires_in));
            }
            Self::Pending(ServiceError::SlowDown {
                approval_id,
                interval,
            }) => {
                body.insert("approval_id".to_owned(), json!(approval_id));
                body.insert("interval".to_owned(), json!(interval));
            }
            Self::Unavailable(cause) => tracing::warn!(%cause, "request failed closed"),
            Self::Internal(cause) => tracing::error!(%cause, "internal error"),
            _ => {}
        }
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
