//! The HTTP gateway: `ANY /gateway/{system}/{path}`. Verify the token, map the route to an action
//! and resource inside the token's grant, check the body against its authorization details, swap
//! the agent's token for the upstream credential, forward, and stream the answer back.

use crate::Gateway;
use crate::details;
use crate::error::GatewayError;
use crate::metered::Metered;
use crate::{micros, truncate};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use handoff_core::audit::UsageRecord;
use handoff_core::config::{GatewayConfig, Route, SystemConfig};
use handoff_core::error::ErrorCode;
use handoff_core::ids::SystemId;
use handoff_core::token::AccessClaims;
use handoff_core::usage::Use;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// Where the gateway's HTTP routes live.
pub const PREFIX: &str = "/gateway/";

/// Headers that belong to one connection and never travel on, either way (RFC 9110 §7.6.1;
/// `keep-alive` and `proxy-connection` are the legacy ones): the headers named in `Connection`
/// are dropped too.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers the gateway replaces or that carry the agent's credentials.
const NOT_FORWARDED: &[HeaderName] = &[
    header::HOST,
    header::AUTHORIZATION,
    header::CONTENT_LENGTH,
    header::COOKIE,
];

/// The names a message's `Connection` headers list (lowercased; `close` and `keep-alive` too).
fn connection_named(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Removes the hop-by-hop headers and those named in `Connection` from a message.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in connection_named(headers) {
        headers.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

fn keep(name: &HeaderName) -> bool {
    !NOT_FORWARDED.contains(name) && name.as_str() != "txn-token"
}

pub async fn forward(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let started = Instant::now();
    match handle(&gateway, request, started).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// A verified caller and the route it called, for recording refusals past verification.
struct Verified<'a> {
    claims: AccessClaims,
    system: &'a SystemConfig,
}

async fn handle(
    gateway: &Arc<Gateway>,
    request: Request,
    started: Instant,
) -> Result<Response, GatewayError> {
    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let (system_id, rest) = split_path(parts.uri.path())?;
    let system = gateway
        .config
        .systems
        .get(&SystemId::new(system_id))
        .filter(|s| s.gateway.as_ref().is_some_and(|g| g.upstream.is_some()))
        .ok_or_else(|| GatewayError::UnknownSystem(system_id.chars().take(64).collect()))?;
    let token = handoff_http::bearer(&parts.headers).map_err(|error| {
        GatewayError::credential(
            error,
            GatewayError::InvalidToken("a bearer token is required".to_owned()),
        )
    })?;
    let claims = gateway.verifier.check(token, system).await?;
    let verified = Verified { claims, system };
    let method = parts.method.as_str();
    let length = declared_length(&parts.headers);
    let outcome = authorize(gateway, &verified, method, rest, (length, body)).await;
    let (route, resource, body) = match outcome {
        Ok(found) => found,
        Err((error, action)) => {
            gateway.recorder.record(
                &verified.claims,
                Use {
                    system: system.id.to_string(),
                    action: action.unwrap_or_default(),
                    resource: None,
                    authorization_details: None,
                    decision_id: None,
                    usage: UsageRecord {
                        call: format!("{method} {}", truncate(rest, 256)),
                        status: 0,
                        bytes_in: 0,
                        bytes_out: 0,
                        latency_us: micros(started),
                    },
                    refused: Some(error.code().as_str().to_owned()),
                },
            );
            return Err(error);
        }
    };
    let upstream = gateway
        .upstream_uri(system, rest, parts.uri.query())
        .ok_or_else(|| GatewayError::Upstream("the upstream URL does not parse".to_owned()))?;
    // The relayed call's span: the upstream continues the trace from it, not from the caller.
    let relay = tracing::info_span!(
        target: handoff_http::trace::TARGET,
        "handoff.upstream",
        otel.kind = "client",
        http.request.method = %parts.method,
        handoff.system = %system.id,
    );
    let mut outbound = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(upstream);
    if let Some(headers) = outbound.headers_mut() {
        for (name, value) in parts.headers.iter().filter(|(n, _)| keep(n)) {
            headers.append(name.clone(), value.clone());
        }
        if let Some((name, value)) = gateway.credential(system, &route.action).await? {
            headers.insert(name, value);
        }
        handoff_http::trace::propagate(&relay, headers);
    }
    let bytes_in = body.len() as u64;
    let outbound = outbound
        .body(Full::new(body))
        .map_err(|e| GatewayError::Upstream(e.to_string()))?;
    let action = format!("{}:{}", system.id, route.action);
    let call = format!("{method} {}", route.path.as_str());
    let answer = match gateway.client.request(outbound).instrument(relay).await {
        Ok(answer) => answer,
        Err(e) => {
            gateway.recorder.record(
                &verified.claims,
                Use {
                    system: system.id.to_string(),
                    action,
                    resource,
                    authorization_details: verified.claims.authorization_details.clone(),
                    decision_id: None,
                    usage: UsageRecord {
                        call,
                        status: 0,
                        bytes_in,
                        bytes_out: 0,
                        latency_us: micros(started),
                    },
                    refused: Some(ErrorCode::UpstreamUnavailable.as_str().to_owned()),
                },
            );
            let mut refused = GatewayError::Upstream(e.to_string()).into_response();
            refused.extensions_mut().insert(handoff_http::ForwardFacts {
                system: system.id.to_string(),
                upstream_status: None,
            });
            return Ok(refused);
        }
    };
    let (mut head, incoming) = answer.into_parts();
    let status = head.status.as_u16();
    strip_hop_by_hop(&mut head.headers);
    let recorder = gateway.recorder.clone();
    let claims = verified.claims;
    let system_name = system.id.to_string();
    let metered = Metered::new(
        incoming,
        started,
        Box::new(move |bytes_out, latency_us| {
            let details = claims.authorization_details.clone();
            recorder.record(
                &claims,
                Use {
                    system: system_name,
                    action,
                    resource,
                    authorization_details: details,
                    decision_id: None,
                    usage: UsageRecord {
                        call,
                        status,
                        bytes_in,
                        bytes_out,
                        latency_us,
                    },
                    refused: None,
                },
            );
        }),
    );
    let mut response = Response::from_parts(head, Body::new(metered));
    response
        .extensions_mut()
        .insert(handoff_http::ForwardFacts {
            system: system.id.to_string(),
            upstream_status: Some(status),
        });
    Ok(response)
}

/// Finds the route and checks it against the grant; on refusal, says which action it was.
async fn authorize(
    gateway: &Gateway,
    verified: &Verified<'_>,
    method: &str,
    path: &str,
    (length, body): (Option<u64>, Body),
) -> Result<(Route, Option<String>, Bytes), (GatewayError, Option<String>)> {
    let system = verified.system;
    let claims = &verified.claims;
    let not_mapped = || GatewayError::RouteNotMapped {
        system: system.id.to_string(),
        method: method.chars().take(16).collect(),
        path: truncate(path, 256),
    };
    let Some((route, values)) = route_for(system.gateway.as_ref(), method, path) else {
        return Err((not_mapped(), None));
    };
    let action = format!("{}:{}", system.id, route.action);
    let fail = |e: GatewayError| (e, Some(action.clone()));
    if !claims.scope.split(' ').any(|s| s == action) {
        return Err(fail(GatewayError::InsufficientScope(action.clone())));
    }
    let resource = details::resource(route.resource.as_ref(), |name| values.get(name).cloned())
        .map_err(fail)?;
    match (&claims.resource, &resource) {
        // A token for the whole system covers every resource in it.
        (None, _) => {}
        (Some(granted), Some(called)) if granted == called => {}
        (Some(_), Some(called)) => {
            return Err(fail(GatewayError::ResourceMismatch(truncate(called, 256))));
        }
        (Some(granted), None) => {
            return Err(fail(GatewayError::ResourceMismatch(truncate(granted, 256))));
        }
    }
    let limit = gateway.max_body_bytes;
    // Refused on the declared length before the body is read, so a client that sent
    // `Expect: 100-continue` never gets `100 Continue` for a body that would be refused.
    if length.is_some_and(|n| n > limit as u64) {
        return Err(fail(GatewayError::BodyTooLarge(limit)));
    }
    let body = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            fail(if e.is::<LengthLimitError>() {
                GatewayError::BodyTooLarge(limit)
            } else {
                GatewayError::InvalidRequest("the request body could not be read".to_owned())
            })
        })?
        .to_bytes();
    if !route.details.is_empty() {
        let parsed: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
            fail(GatewayError::DetailsMismatch(
                "the body must be JSON to be checked against the token".to_owned(),
            ))
        })?;
        details::check(
            &route.details,
            &parsed,
            claims.authorization_details.as_ref(),
        )
        .map_err(fail)?;
    }
    Ok((route.clone(), resource, body))
}

/// The route `method path` maps to, with its placeholders' values. A path with a dot segment, or
/// (unless the system allows them) an encoded separator, maps to no route.
pub fn route_for<'g>(
    gateway: Option<&'g GatewayConfig>,
    method: &str,
    path: &str,
) -> Option<(&'g Route, BTreeMap<String, String>)> {
    let gateway = gateway?;
    if has_dot_segment(path)
        || (!gateway.danger_allow_encoded_slashes && has_encoded_separator(path))
    {
        return None;
    }
    gateway
        .routes
        .iter()
        .filter(|r| r.method == method)
        .find_map(|r| r.path.matches(path).map(|v| (r, v)))
}

/// `/gateway/git/repos/a/b` → (`git`, `/repos/a/b`).
pub fn split_path(path: &str) -> Result<(&str, &str), GatewayError> {
    let rest = path
        .strip_prefix(PREFIX)
        .ok_or_else(|| GatewayError::InvalidRequest("not a gateway path".to_owned()))?;
    Ok(match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    })
}

/// `.` and `..` segments (also percent-encoded) could be resolved by the upstream into another
/// path than the one that was matched; they are never forwarded.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase().replace("%2e", ".");
        lower == "." || lower == ".."
    })
}

/// An encoded `/` or `\` inside a segment (`%2F`, `%5C`, any case), or a raw `\`: an upstream
/// that decodes before routing would see more segments than were matched.
fn has_encoded_separator(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains("%2f") || lower.contains("%5c") || lower.contains('\\')
}

/// The body length the request declares, if it declares one that parses.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The upstream URI for `path` (and `query`) under the system's base URL.
pub(crate) fn join(base: &str, path: &str, query: Option<&str>) -> Option<Uri> {
    let text = match query {
        Some(query) => format!("{base}{path}?{query}"),
        None => format!("{base}{path}"),
    };
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_never_forwarded() {
        assert!(has_dot_segment("/repos/../admin"));
        assert!(has_dot_segment("/repos/%2E%2e/admin"));
        assert!(has_dot_segment("/repos/./x"));
        assert!(!has_dot_segment("/repos/a.b/pulls"));
    }

    #[test]
    fn encoded_separators_are_found_in_any_case() {
        assert!(has_encoded_separator("/repos/a%2Fb/pulls"));
        assert!(has_encoded_separator("/repos/a%2fb"));
        assert!(has_encoded_separator("/repos/a%5Cb"));
        assert!(has_encoded_separator("/repos/a\\b"));
        assert!(!has_encoded_separator("/repos/a%20b/pulls"));
    }

    #[test]
    fn headers_named_in_connection_and_hop_by_hop_headers_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "close, X-Secret".parse().unwrap());
        headers.insert("x-secret", "1".parse().unwrap());
        headers.insert("proxy-connection", "keep-alive".parse().unwrap());
        headers.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }
}
