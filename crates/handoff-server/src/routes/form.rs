//! Strict parsing of `application/x-www-form-urlencoded` OAuth requests: one value per parameter.

use crate::error::ApiError;
use axum::http::{HeaderMap, header};
use std::collections::HashMap;

pub struct FormParams(HashMap<String, String>);

impl FormParams {
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, ApiError> {
        let form_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if !form_type {
            return Err(ApiError::InvalidRequest(
                "the body must be application/x-www-form-urlencoded".to_owned(),
            ));
        }
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| ApiError::InvalidRequest("the form body does not parse".to_owned()))?;
        let mut params = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            if params.contains_key(&name) {
                return Err(ApiError::InvalidRequest(format!(
                    "parameter `{name}` is repeated"
                )));
            }
            params.insert(name, value);
        }
        Ok(Self(params))
    }

    pub fn optional(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.optional(name)
            .ok_or_else(|| ApiError::InvalidRequest(format!("parameter `{name}` is required")))
    }
}
