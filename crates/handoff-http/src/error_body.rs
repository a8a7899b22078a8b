//! The one JSON error body of every door: `{"error": code, "error_description": text, ...}`, the
//! shape RFC 6749 §5.2 gives the token endpoint, so OAuth clients and everyone else read the same
//! object. Members a refusal adds (`decision_id`, `reason`, `approval_id`, ...) sit beside the two.
//!
//! A [`Refusal`] is that body with its status, `Cache-Control: no-store` (a refusal describes one
//! request, RFC 6749 §5.1), and the `WWW-Authenticate` challenge a door names. The MCP endpoint's
//! JSON-RPC errors are the protocol's own and are not built here.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// The members of `code` and `description`, which [`ErrorBody::with`] never replaces.
const RESERVED: [&str; 2] = ["error", "error_description"];

/// A refusal's JSON body: the stable code, a safe one-line description, any further members.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorBody {
    error: &'static str,
    error_description: String,
    details: Map<String, Value>,
}

impl ErrorBody {
    /// A body with the stable `code` and a `description` safe to show the caller (never a token,
    /// a secret or a cause from inside).
    pub fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self {
            error: code,
            error_description: description.into(),
            details: Map::new(),
        }
    }

    /// Adds the member `name` beside the code and description; `error` and `error_description`
    /// themselves are never replaced.
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        if !RESERVED.contains(&name) {
            self.details.insert(name.to_owned(), value.into());
        }
        self
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.error
    }

    /// The body as JSON text (for answers written below the router, such as a refused head).
    pub fn to_json(&self) -> String {
        Value::from(self).to_string()
    }
}

impl From<&ErrorBody> for Value {
    fn from(body: &ErrorBody) -> Self {
        let mut object = Map::new();
        object.insert("error".to_owned(), Value::from(body.error));
        object.insert(
            "error_description".to_owned(),
            Value::from(body.error_description.as_str()),
        );
        for (name, value) in &body.details {
            object.insert(name.clone(), value.clone());
        }
        Value::Object(object)
    }
}

/// An error answer: a status, the [`ErrorBody`], no caching, and a challenge where one is named.
#[derive(Clone, Debug)]
pub struct Refusal {
    status: StatusCode,
    body: ErrorBody,
    challenge: Option<HeaderValue>,
}

impl Refusal {
    pub fn new(status: StatusCode, body: ErrorBody) -> Self {
        Self {
            status,
            body,
            challenge: None,
        }
    }

    /// The `WWW-Authenticate` challenge to send (RFC 9110 §11.6.1; RFC 6750 §3 for bearer
    /// token problems).
    #[must_use]
    pub fn challenge(mut self, challenge: HeaderValue) -> Self {
        self.challenge = Some(challenge);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn body(&self) -> &ErrorBody {
        &self.body
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(Value::from(&self.body))).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_refusal_body_is_one_object_with_the_code_the_description_and_its_members() {
        let body = ErrorBody::new("access_denied", "no permit")
            .with("decision_id", "dec_1")
            .with("policies", json!(["p1"]));
        assert_eq!(
            Value::from(&body),
            json!({
                "error": "access_denied",
                "error_description": "no permit",
                "decision_id": "dec_1",
                "policies": ["p1"],
            })
        );
        let text: Value = serde_json::from_str(&body.to_json()).unwrap();
        assert_eq!(text, Value::from(&body));
        assert_eq!(body.code(), "access_denied");
    }

    #[test]
    fn a_member_never_replaces_the_code_or_the_description() {
        let body = ErrorBody::new("invalid_request", "bad")
            .with("error", "access_granted")
            .with("error_description", "fine");
        assert_eq!(
            Value::from(&body),
            json!({ "error": "invalid_request", "error_description": "bad" })
        );
    }

    #[test]
    fn a_refusal_is_never_cached_and_carries_the_challenge_it_names() {
        let response = Refusal::new(
            StatusCode::UNAUTHORIZED,
            ErrorBody::new("invalid_token", "a bearer token is required"),
        )
        .challenge(HeaderValue::from_static("Bearer error=\"invalid_token\""))
        .into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let headers = response.headers();
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            headers[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");

        let plain = Refusal::new(StatusCode::FORBIDDEN, ErrorBody::new("access_denied", "no"))
            .into_response();
        assert!(!plain.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(plain.headers()[header::CACHE_CONTROL], "no-store");
    }
}
