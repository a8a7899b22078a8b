//! Authorization details and resources taken from a request: a route's body or a tool's
//! arguments, by the JSON pointers and templates declared in config.

use crate::error::GatewayError;
use handoff_core::template::Template;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The `authorization_details` entry a tool call asks for: `{"type": SYSTEM, field: value...}`,
/// or `None` when the tool maps no details.
pub fn build(
    system: &str,
    mapping: &BTreeMap<String, String>,
    input: &Value,
) -> Result<Option<Value>, GatewayError> {
    if mapping.is_empty() {
        return Ok(None);
    }
    let mut entry = Map::new();
    entry.insert("type".to_owned(), Value::String(system.to_owned()));
    for (field, pointer) in mapping {
        let value = input.pointer(pointer).ok_or_else(|| {
            GatewayError::InvalidRequest(format!("`{pointer}` is missing; it gives `{field}`"))
        })?;
        entry.insert(field.clone(), value.clone());
    }
    Ok(Some(Value::Array(vec![Value::Object(entry)])))
}

/// Checks that every mapped field of `body` equals the token's authorization details: the call
/// must be the one that was decided (the amount in the body is the amount that was allowed).
pub fn check(
    mapping: &BTreeMap<String, String>,
    body: &Value,
    granted: Option<&Value>,
) -> Result<(), GatewayError> {
    for (field, pointer) in mapping {
        let Some(sent) = body.pointer(pointer) else {
            return Err(GatewayError::DetailsMismatch(format!(
                "the request lacks `{pointer}`, which the token's `{field}` must match"
            )));
        };
        let allowed = granted
            .and_then(Value::as_array)
            .and_then(|items| items.iter().find_map(|item| item.get(field)));
        match allowed {
            Some(allowed) if allowed == sent => {}
            Some(_) => {
                return Err(GatewayError::DetailsMismatch(format!(
                    "`{field}` in the request differs from the token's authorization details"
                )));
            }
            None => {
                return Err(GatewayError::DetailsMismatch(format!(
                    "the token's authorization details do not grant any `{field}`"
                )));
            }
        }
    }
    Ok(())
}

/// Renders a resource template from `values`; a missing placeholder is a bad request.
pub fn resource(
    template: Option<&Template>,
    values: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, GatewayError> {
    match template {
        None => Ok(None),
        Some(template) => template.render(values).map(Some).ok_or_else(|| {
            GatewayError::InvalidRequest("the resource's placeholders have no value".to_owned())
        }),
    }
}

/// A top-level argument as resource text: strings as they are, numbers and booleans printed.
pub fn argument_text(arguments: &Value, name: &str) -> Option<String> {
    match arguments.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_body_matching_the_granted_amount_passes_and_another_amount_is_refused() {
        let mapping: BTreeMap<String, String> =
            [("amount".to_owned(), "/amount".to_owned())].into();
        let granted = json!([{ "type": "payments", "amount": 5000 }]);
        assert!(check(&mapping, &json!({ "amount": 5000 }), Some(&granted)).is_ok());
        assert!(check(&mapping, &json!({ "amount": 5001 }), Some(&granted)).is_err());
        assert!(check(&mapping, &json!({}), Some(&granted)).is_err());
        assert!(check(&mapping, &json!({ "amount": 5000 }), None).is_err());
    }
}
