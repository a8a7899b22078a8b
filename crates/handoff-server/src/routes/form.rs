//! Strict parsing of `application/x-www-form-urlencoded` OAuth requests: one value per parameter.

use crate::error::ApiError;
use axum::http::{HeaderMap, header};
use std::collections::HashMap;

/// The parameters of one form body, each given at most once, each valid UTF-8.
pub struct FormParams(HashMap<String, String>);

/// Splits and decodes `name=value&...` strictly: a name or value whose bytes, once
/// percent-decoded, are not UTF-8 is refused rather than replaced with U+FFFD, so two different
/// byte strings never become one value in a token, an audit record or an approval's hash.
fn pairs(body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut halves = pair.splitn(2, |&b| b == b'=');
            let name = decode(halves.next().unwrap_or_default())?;
            let value = decode(halves.next().unwrap_or_default())?;
            Ok((name, value))
        })
        .collect()
}

/// One percent-encoded component (`+` is a space), decoded only if it is UTF-8.
fn decode(component: &[u8]) -> Result<String, ApiError> {
    let spaced: Vec<u8> = component
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
    String::from_utf8(bytes).map_err(|_| {
        ApiError::invalid_request("the form body is not UTF-8 once percent-decoded".to_owned())
    })
}

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
            return Err(ApiError::invalid_request(
                "the body must be application/x-www-form-urlencoded".to_owned(),
            ));
        }
        let mut params = HashMap::new();
        for (name, value) in pairs(body)? {
            if params.contains_key(&name) {
                return Err(ApiError::invalid_request(format!(
                    "parameter `{name}` is repeated"
                )));
            }
            params.insert(name, value);
        }
        Ok(Self(params))
    }

    /// A parameter's value, if given and not empty.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Every parameter, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.optional(name)
            .ok_or_else(|| ApiError::invalid_request(format!("parameter `{name}` is required")))
    }
}
