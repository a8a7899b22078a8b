//! The MCP endpoint (Streamable HTTP, `POST /mcp`): one endpoint in front of every system's
//! upstream MCP server. Answers are JSON, except a `tools/call` from a caller that accepts
//! `text/event-stream`: that answer is a stream relaying the upstream's logging and progress
//! notifications as they arrive, then the result.
//!
//! The client authenticates with its workload identity (`Authorization: Bearer`) and names its
//! task with a `Txn-Token` header. Each `tools/call` is a handoff: the tool's system, action,
//! resource and authorization details (from its arguments, as config declares) go through
//! [`Handoff::exchange`], the same decision, approval gate and record as `POST /oauth/token`;
//! only on permit is the call forwarded upstream, with the upstream credential. The client's
//! token never leaves the gateway. `tools/list` shows the tools whose actions the core says the
//! caller can reach in the task (the exchange's admission checks, so a delegate sees what its
//! delegation allows). Every other method fails closed.

use crate::details;
use crate::truncate;
use crate::upstream_mcp::{McpUpstream, Relay};
use crate::{Gateway, GatewayError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use handoff_core::ServiceError;
use handoff_core::audit::UsageRecord;
use handoff_core::config::{SystemConfig, Tool};
use handoff_core::error::ErrorCode;
use handoff_core::exchange::{ExchangeRequest, Rejected};
use handoff_core::identity::VerifiedIdentity;
use handoff_core::ids::ActionName;
use handoff_core::token::{AccessClaims, Unverified, peek_claims};
use handoff_core::usage::Use;
use handoff_http::ExchangeFacts;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::Instrument;

pub const PATH: &str = "/mcp";
/// RFC 9728 protected resource metadata for the endpoint (path-suffixed, as the MCP spec asks).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/mcp";
/// The header naming the task.
pub const TXN_HEADER: &str = "txn-token";
/// Where a retry names the approval it waited for: `params._meta["io.handoff/approval_id"]`, or
/// this header.
pub const APPROVAL_META: &str = "io.handoff/approval_id";
pub const APPROVAL_HEADER: &str = "handoff-approval-id";
/// Protocol revisions the endpoint speaks (the `initialize` handshake era).
const VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// JSON-RPC error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;
/// Access denied (AuthZEN MCP profile): `data` carries `reason` and `decision_id`.
pub const ACCESS_DENIED: i64 = -32001;
/// The call waits for a person's approval: `data` carries `approval_id`; retry once approved.
pub const APPROVAL_PENDING: i64 = -32003;
/// Tools listed per upstream at most (pages followed).
const MAX_LIST_PAGES: usize = 16;
/// Notifications held for a slow caller before the upstream read waits for it.
const RELAY_BUFFER: usize = 16;

pub async fn metadata(State(gateway): State<Arc<Gateway>>) -> Response {
    let issuer = gateway.config.issuer();
    Json(json!({
        "resource": format!("{issuer}{PATH}"),
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": "Handoff MCP gateway",
    }))
    .into_response()
}

/// A caller without a usable identity: 401 `invalid_token` with a challenge pointing to the
/// protected resource metadata (RFC 9728 §5.1); a request malformed whoever sent it stays 400.
fn unauthenticated(gateway: &Gateway, error: GatewayError) -> Response {
    let refusal = error.refusal();
    if !matches!(error, GatewayError::InvalidToken(_)) {
        return refusal.into_response();
    }
    let challenge = format!(
        "Bearer error=\"invalid_token\", resource_metadata=\"{}{METADATA_PATH}\"",
        gateway.config.issuer()
    );
    match HeaderValue::from_str(&challenge) {
        Ok(challenge) => refusal.challenge(challenge).into_response(),
        Err(_) => refusal.into_response(),
    }
}

fn rpc_error(id: &Value, code: i64, message: &str, data: Option<Value>) -> Response {
    Json(error_message(id, code, message, data)).into_response()
}

/// A JSON-RPC error response message.
fn error_message(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({ "code": code, "message": message });
    if let (Some(data), Some(object)) = (data, error.as_object_mut()) {
        object.insert("data".to_owned(), data);
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": error })
}

fn rpc_result(id: &Value, result: Value) -> Response {
    Json(json!({ "jsonrpc": "2.0", "id": id, "result": result })).into_response()
}

pub async fn endpoint(
    State(gateway): State<Arc<Gateway>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        // No server-initiated stream and no sessions: only POST.
        let mut response = GatewayError::MethodNotAllowed.into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    // DNS rebinding: browsers send Origin; agents do not. No origin is trusted.
    if headers.contains_key(header::ORIGIN) {
        return GatewayError::BrowserOrigin.into_response();
    }
    let Some(handoff) = gateway.handoff.as_ref().map(|current| current.get()) else {
        return GatewayError::NotFound.into_response();
    };
    let identity_token = match handoff_http::bearer(&headers) {
        Ok(token) => token,
        Err(error) => {
            let missing =
                GatewayError::InvalidToken("a workload identity token is required".to_owned());
            return unauthenticated(&gateway, GatewayError::credential(error, missing));
        }
    };
    let identity = match handoff.authenticate(identity_token) {
        Ok(identity) => identity,
        Err(_) => {
            let refused = GatewayError::InvalidToken("the identity token is refused".to_owned());
            return unauthenticated(&gateway, refused);
        }
    };
    if let Some(version) = headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        && !VERSIONS.contains(&version)
    {
        return GatewayError::InvalidRequest(format!(
            "unsupported MCP protocol version; supported: {}",
            VERSIONS.join(", ")
        ))
        .into_response();
    }
    let message: Value = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(_) => return rpc_error(&Value::Null, PARSE_ERROR, "parse error", None),
    };
    let (Some(name), true) = (
        message.get("method").and_then(Value::as_str),
        message.get("jsonrpc") == Some(&json!("2.0")),
    ) else {
        return rpc_error(&Value::Null, INVALID_REQUEST, "invalid request", None);
    };
    let Some(id) = message.get("id").cloned() else {
        // A notification (or a response to nothing we asked): accepted, nothing to answer.
        return StatusCode::ACCEPTED.into_response();
    };
    let params = message.get("params").cloned().unwrap_or(json!({}));
    let call = Call {
        gateway: &gateway,
        handoff: &handoff,
        identity: &identity,
        identity_token,
        headers: &headers,
        id: &id,
    };
    match name {
        "initialize" => rpc_result(&id, initialize(&params)),
        "ping" => rpc_result(&id, json!({})),
        "tools/list" => call.list().await,
        "tools/call" => {
            // Only a declared tool is named in the log and metrics (a caller's made-up names
            // would grow them without bound).
            let tool = params
                .get("name")
                .and_then(Value::as_str)
                .filter(|name| call.find(name).is_some())
                .map(str::to_owned);
            let span = execute_tool_span(tool.as_deref(), &id);
            let mut response = call.call(&params).instrument(span).await;
            if let Some(tool) = tool {
                response
                    .extensions_mut()
                    .insert(handoff_http::ToolCallFacts { tool });
            }
            response
        }
        _ => rpc_error(&id, METHOD_NOT_FOUND, "method not found", None),
    }
}

fn initialize(params: &Value) -> Value {
    let asked = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let version = VERSIONS
        .iter()
        .find(|v| **v == asked)
        .or(VERSIONS.first())
        .copied()
        .unwrap_or("2025-11-25");
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": "handoff-gateway", "version": env!("CARGO_PKG_VERSION") },
        "instructions": "Every tool call is decided by Handoff for the task named in the Txn-Token header.",
    })
}

struct Call<'a> {
    gateway: &'a Arc<Gateway>,
    handoff: &'a handoff_core::Handoff,
    identity: &'a VerifiedIdentity,
    identity_token: &'a str,
    headers: &'a HeaderMap,
    id: &'a Value,
}

impl Call<'_> {
    fn txn(&self) -> Option<&str> {
        self.headers
            .get(TXN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// A call without the `Txn-Token` header that names its task.
    fn no_txn(&self) -> Response {
        self.denied(
            ErrorCode::InvalidGrant.as_str(),
            "a Txn-Token header naming the task is required",
            None,
        )
    }

    fn denied(&self, reason: &str, message: &str, decision_id: Option<&str>) -> Response {
        rpc_error(
            self.id,
            ACCESS_DENIED,
            &format!("access denied: {message}"),
            Some(json!({ "reason": reason, "decision_id": decision_id })),
        )
    }

    /// The tools of every fronted system that the caller could call in the task: the core
    /// answers which of their actions it may reach ([`handoff_core::Handoff::reachable_actions`],
    /// the exchange's own admission checks: task state, delegation, freezes, plan, budgets).
    /// Arguments are decided on each call, by policy.
    async fn list(&self) -> Response {
        let Some(txn) = self.txn() else {
            return self.no_txn();
        };
        let config = &self.gateway.config;
        let fronted: Vec<(&SystemConfig, &[Tool])> = config
            .systems
            .values()
            .filter_map(|system| {
                let gateway = system.gateway.as_ref()?;
                gateway.mcp.as_ref()?;
                Some((system, gateway.tools.as_slice()))
            })
            .collect();
        let wanted: Vec<ActionName> = fronted
            .iter()
            .flat_map(|(system, tools)| tools.iter().map(move |t| tool_action(system, t)))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let reachable = match self
            .handoff
            .reachable_actions(self.identity, txn, &wanted)
            .await
        {
            Ok(reachable) => reachable,
            Err(error) => return self.refused(error),
        };
        let mut tools = Vec::new();
        for (system, declared) in fronted {
            let names: BTreeSet<&str> = declared
                .iter()
                .filter(|tool| reachable.contains(&tool_action(system, tool)))
                .map(|tool| tool.name.as_str())
                .collect();
            if names.is_empty() {
                continue;
            }
            match self.upstream_tools(system).await {
                Ok(offered) => tools.extend(offered.into_iter().filter(|t| {
                    t.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| names.contains(n))
                })),
                Err(error) => {
                    tracing::warn!(system = %system.id, %error, "an upstream MCP server did not list its tools");
                }
            }
        }
        rpc_result(self.id, json!({ "tools": tools }))
    }

    async fn upstream_tools(
        &self,
        system: &SystemConfig,
    ) -> Result<Vec<Value>, crate::GatewayError> {
        let upstream = self
            .gateway
            .mcp
            .get(&system.id)
            .ok_or_else(|| crate::GatewayError::UnknownSystem(system.id.to_string()))?;
        let credential = self.gateway.credential(system, "").await?;
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let params = match &cursor {
                Some(cursor) => json!({ "cursor": cursor }),
                None => json!({}),
            };
            let answer = upstream.request("tools/list", params, &credential).await?;
            if let Some(page) = answer
                .message
                .pointer("/result/tools")
                .and_then(Value::as_array)
            {
                tools.extend(page.iter().cloned());
            }
            cursor = answer
                .message
                .pointer("/result/nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok(tools)
    }

    /// A `tools/call`; the answer carries the exchange's [`ExchangeFacts`] (for the request log
    /// and the exchange metrics, as `POST /oauth/token`'s does) once there was one.
    async fn call(&self, params: &Value) -> Response {
        let mut facts = None;
        let mut response = self.call_deciding(params, &mut facts).await;
        if let Some(facts) = facts {
            response.extensions_mut().insert(facts);
        }
        response
    }

    async fn call_deciding(&self, params: &Value, facts: &mut Option<ExchangeFacts>) -> Response {
        let started = Instant::now();
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return rpc_error(self.id, INVALID_PARAMS, "`name` is required", None);
        };
        let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
        if !arguments.is_object() {
            return rpc_error(
                self.id,
                INVALID_PARAMS,
                "`arguments` must be an object",
                None,
            );
        }
        let Some((system, tool)) = self.find(name) else {
            return rpc_error(
                self.id,
                INVALID_PARAMS,
                &format!("unknown tool: {}", truncate(name, 128)),
                None,
            );
        };
        let Some(txn) = self.txn() else {
            return self.no_txn();
        };
        let resource = match details::resource(tool.resource.as_ref(), |n| {
            details::argument_text(&arguments, n)
        }) {
            Ok(resource) => resource,
            Err(e) => return rpc_error(self.id, INVALID_PARAMS, &e.to_string(), None),
        };
        let authorization_details =
            match details::build(system.id.as_str(), &tool.details, &arguments) {
                Ok(details) => details,
                Err(e) => return rpc_error(self.id, INVALID_PARAMS, &e.to_string(), None),
            };
        let approval_id = params
            .pointer("/_meta")
            .and_then(|m| m.get(APPROVAL_META))
            .and_then(Value::as_str)
            .or_else(|| {
                self.headers
                    .get(APPROVAL_HEADER)
                    .and_then(|v| v.to_str().ok())
            })
            .map(str::to_owned);
        let request = ExchangeRequest {
            subject_token: txn.to_owned(),
            actor_token: self.identity_token.to_owned(),
            audience: system.id.to_string(),
            scope: vec![tool.action.clone()],
            resource: resource.clone(),
            authorization_details: authorization_details.clone(),
            // The token is never handed out: it only names the grant the use is recorded under.
            // One second keeps a tool call from holding a `max_live_tokens` slot any longer.
            requested_lifetime: Some(1),
            approval_id,
        };
        let actions = vec![tool.action.to_string()];
        let issued = match self.handoff.exchange_known(request).await {
            Ok(issued) => issued,
            Err(Rejected { error, agent, task }) => {
                *facts = Some(ExchangeFacts {
                    decision_id: error.decision_id().map(str::to_owned),
                    agent,
                    task,
                    system: Some(system.id.to_string()),
                    actions,
                    outcome: error.outcome(),
                    reason: Some(error.code()),
                });
                let span = tracing::Span::current();
                span.record("error.type", error.error_code().as_str());
                span.record("handoff.reason", error.code());
                if let Some(decision) = error.decision_id() {
                    span.record("handoff.decision_id", decision);
                }
                return self.refused(error);
            }
        };
        tracing::Span::current().record("handoff.decision_id", issued.decision_id.as_str());
        *facts = Some(ExchangeFacts {
            decision_id: Some(issued.decision_id.to_string()),
            agent: Some(issued.agent.to_string()),
            task: Some(issued.task.to_string()),
            system: Some(issued.system.to_string()),
            actions,
            outcome: "permit",
            reason: None,
        });
        let Ok(claims) = peek_claims::<AccessClaims>(Unverified::new(&issued.token.token)) else {
            return rpc_error(self.id, INTERNAL_ERROR, "internal error", None);
        };
        let Some(upstream) = self.gateway.mcp.get(&system.id).cloned() else {
            return rpc_error(self.id, INTERNAL_ERROR, "the tool has no upstream", None);
        };
        let credential = self.gateway.credential(system, &tool.action).await;
        let streams = accepts_event_stream(self.headers);
        let mut forwarded = json!({ "name": name, "arguments": arguments });
        // The caller's progress token goes upstream only when its progress can come back.
        if let (true, Some(token)) = (streams, params.pointer("/_meta/progressToken"))
            && let Some(object) = forwarded.as_object_mut()
        {
            object.insert("_meta".to_owned(), json!({ "progressToken": token }));
        }
        let forward = Forward {
            gateway: self.gateway.clone(),
            upstream,
            credential,
            id: self.id.clone(),
            forwarded,
            claims,
            call: Use {
                system: system.id.to_string(),
                action: format!("{}:{}", system.id, tool.action),
                resource,
                authorization_details,
                decision_id: Some(issued.decision_id.to_string()),
                usage: UsageRecord {
                    call: format!("tool:{}", truncate(name, 128)),
                    status: 0,
                    bytes_in: 0,
                    bytes_out: 0,
                    latency_us: 0,
                },
                refused: None,
            },
            started,
        };
        if !streams {
            return Json(forward.run(None).await).into_response();
        }
        // Streamable HTTP: the upstream's logging and progress notifications are relayed as they
        // arrive, then the response closes the stream. The call runs to its end (and is recorded)
        // even if the caller goes away.
        let (relay, relayed) = mpsc::channel::<Value>(RELAY_BUFFER);
        tokio::spawn(
            async move {
                let last = forward.run(Some(&relay)).await;
                let _ = relay.send(last).await;
            }
            .in_current_span(),
        );
        let events = futures_util::stream::unfold(relayed, |mut relayed| async move {
            let message = relayed.recv().await?;
            let event = Event::default().event("message").data(message.to_string());
            Some((Ok::<_, std::convert::Infallible>(event), relayed))
        });
        Sse::new(events).into_response()
    }

    fn find(&self, name: &str) -> Option<(&SystemConfig, &Tool)> {
        self.gateway.config.systems.values().find_map(|system| {
            let gateway = system.gateway.as_ref()?;
            gateway.mcp.as_ref()?;
            gateway
                .tools
                .iter()
                .find(|t| t.name == name)
                .map(|t| (system, t))
        })
    }

    /// A refused exchange as a JSON-RPC error: deny with its reason and decision id, or the
    /// approval to wait for.
    fn refused(&self, error: ServiceError) -> Response {
        match error {
            ServiceError::Denied(denial) => rpc_error(
                self.id,
                ACCESS_DENIED,
                &format!("access denied: {}", denial.description),
                Some(json!({
                    "reason": denial.reason.as_str(),
                    "decision_id": denial.decision_id.as_str(),
                    "policies": denial.policies,
                })),
            ),
            ServiceError::ApprovalPending {
                approval_id,
                group,
                interval,
                expires_in,
            } => rpc_error(
                self.id,
                APPROVAL_PENDING,
                &format!(
                    "the call waits for approval by `{group}`; call again with the approval id once approved"
                ),
                Some(json!({
                    "reason": ErrorCode::AuthorizationPending.as_str(),
                    "approval_id": approval_id,
                    "approver_group": group,
                    "interval": interval,
                    "expires_in": expires_in,
                    "retry_meta_key": APPROVAL_META,
                })),
            ),
            ServiceError::SlowDown {
                approval_id,
                interval,
            } => rpc_error(
                self.id,
                APPROVAL_PENDING,
                "polling too fast",
                Some(
                    json!({ "reason": ErrorCode::SlowDown.as_str(), "approval_id": approval_id, "interval": interval }),
                ),
            ),
            ServiceError::Unavailable(_) | ServiceError::Internal(_) => rpc_error(
                self.id,
                INTERNAL_ERROR,
                "Handoff cannot decide right now",
                None,
            ),
            other => {
                let code = other.code();
                rpc_error(
                    self.id,
                    ACCESS_DENIED,
                    &format!("access denied: {other}"),
                    Some(json!({ "reason": code })),
                )
            }
        }
    }
}

/// A permitted tool call on its way upstream: forwarded once, its use recorded once.
struct Forward {
    gateway: Arc<Gateway>,
    upstream: Arc<McpUpstream>,
    credential: Result<Option<(HeaderName, HeaderValue)>, GatewayError>,
    id: Value,
    forwarded: Value,
    claims: AccessClaims,
    call: Use,
    started: Instant,
}

impl Forward {
    /// Forwards the call (notifications to `relay`), records its use, and returns the JSON-RPC
    /// message that answers the caller.
    async fn run(self, relay: Option<&Relay>) -> Value {
        let Self {
            gateway,
            upstream,
            credential,
            id,
            forwarded,
            claims,
            mut call,
            started,
        } = self;
        call.usage.bytes_in = forwarded.to_string().len() as u64;
        let outcome = match credential {
            Ok(credential) => {
                upstream
                    .request_relaying("tools/call", forwarded, &credential, relay)
                    .await
            }
            Err(e) => Err(e),
        };
        let message = match outcome {
            Ok(answer) => {
                call.usage.status = answer.status;
                call.usage.bytes_out = answer.bytes;
                match (answer.message.get("result"), answer.message.get("error")) {
                    (Some(result), _) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
                    (None, Some(error)) => json!({ "jsonrpc": "2.0", "id": id, "error": error }),
                    (None, None) => {
                        error_message(&id, INTERNAL_ERROR, "the upstream answered nothing", None)
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, call = %call.usage.call, "an MCP tool call could not be forwarded");
                call.refused = Some(error.code().as_str().to_owned());
                error_message(&id, INTERNAL_ERROR, "the upstream is unavailable", None)
            }
        };
        call.usage.latency_us = crate::micros(started);
        gateway.recorder.record(&claims, call);
        message
    }
}

/// The span of one `tools/call`, per the OpenTelemetry GenAI conventions for tool execution
/// (`execute_tool {gen_ai.tool.name}`, `gen_ai.operation.name = execute_tool`) and the MCP ones
/// (`mcp.method.name`, `jsonrpc.request.id`). Only a declared tool is named: a caller's made-up
/// names stay out of span names. The exchange's stages and the upstream request hang under it.
fn execute_tool_span(tool: Option<&str>, id: &Value) -> tracing::Span {
    let span = tracing::info_span!(
        target: handoff_http::trace::TARGET,
        "execute_tool",
        otel.name = tracing::field::Empty,
        otel.kind = "internal",
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = tracing::field::Empty,
        gen_ai.tool.type = "extension",
        gen_ai.tool.call.id = %id,
        mcp.method.name = "tools/call",
        jsonrpc.request.id = %id,
        handoff.decision_id = tracing::field::Empty,
        error.type = tracing::field::Empty,
        handoff.reason = tracing::field::Empty,
    );
    if let Some(tool) = tool
        && !span.is_disabled()
    {
        span.record("otel.name", format!("execute_tool {tool}"));
        span.record("gen_ai.tool.name", tool);
    }
    span
}

/// Whether the caller takes a server-sent-event stream (Streamable HTTP clients send
/// `Accept: application/json, text/event-stream`).
fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// The `system:action` a tool's calls are exchanged for.
fn tool_action(system: &SystemConfig, tool: &Tool) -> ActionName {
    ActionName::new(format!("{}:{}", system.id, tool.action))
}
