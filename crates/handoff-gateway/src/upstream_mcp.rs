//! The gateway as an MCP client of one upstream server (Streamable HTTP): one session, opened
//! with the `initialize` handshake on first use and again when the upstream forgets it; answers
//! read as JSON or as a server-sent-event stream.

use crate::error::GatewayError;
use axum::http::{HeaderName, HeaderValue};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Mutex;

/// The protocol revision the gateway asks upstreams for.
pub const UPSTREAM_PROTOCOL: &str = "2025-11-25";
/// Largest upstream answer read.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone)]
struct Session {
    id: Option<String>,
    version: String,
}

pub struct McpUpstream {
    url: String,
    client: reqwest::Client,
    session: Mutex<Option<Session>>,
    next_id: AtomicU64,
}

/// An upstream answer: the JSON-RPC message, the HTTP status and its size.
pub struct Answer {
    pub message: Value,
    pub status: u16,
    pub bytes: u64,
}

type Credential = Option<(HeaderName, HeaderValue)>;

impl McpUpstream {
    pub fn new(url: &str, client: reqwest::Client) -> Self {
        Self {
            url: url.to_owned(),
            client,
            session: Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    /// Sends one request and returns its response message.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        credential: &Credential,
    ) -> Result<Answer, GatewayError> {
        for attempt in 0..2 {
            let session = self.session(credential).await?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let message = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
            let answer = self.post(&message, Some(&session), credential).await?;
            // A session the upstream no longer knows is reopened once (Streamable HTTP: 404).
            if answer.status().as_u16() == 404 && session.id.is_some() && attempt == 0 {
                *self.session.lock().await = None;
                continue;
            }
            return read_answer(answer, id).await;
        }
        Err(GatewayError::Upstream(
            "the upstream keeps losing the session".to_owned(),
        ))
    }

    async fn session(&self, credential: &Credential) -> Result<Session, GatewayError> {
        let mut guard = self.session.lock().await;
        if let Some(session) = guard.as_ref() {
            return Ok(session.clone());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let initialize = json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "initialize",
            "params": {
                "protocolVersion": UPSTREAM_PROTOCOL,
                "capabilities": {},
                "clientInfo": { "name": "handoff-gateway", "version": env!("CARGO_PKG_VERSION") },
            },
        });
        let answer = self.post(&initialize, None, credential).await?;
        let session_id = answer
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = read_answer(answer, id).await?;
        let version = answer
            .message
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| GatewayError::Upstream("the upstream refused to initialize".to_owned()))?
            .to_owned();
        let session = Session {
            id: session_id,
            version,
        };
        let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        self.post(&initialized, Some(&session), credential).await?;
        *guard = Some(session.clone());
        Ok(session)
    }

    async fn post(
        &self,
        message: &Value,
        session: Option<&Session>,
        credential: &Credential,
    ) -> Result<reqwest::Response, GatewayError> {
        let mut request = self
            .client
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .json(message);
        if let Some(session) = session {
            request = request.header("mcp-protocol-version", session.version.as_str());
            if let Some(id) = &session.id {
                request = request.header("mcp-session-id", id.as_str());
            }
        }
        if let Some((name, value)) = credential {
            request = request.header(name.clone(), value.clone());
        }
        request
            .send()
            .await
            .map_err(|e| GatewayError::Upstream(e.to_string()))
    }
}

async fn read_answer(answer: reqwest::Response, id: u64) -> Result<Answer, GatewayError> {
    let status = answer.status().as_u16();
    let is_stream = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = answer
        .bytes()
        .await
        .map_err(|e| GatewayError::Upstream(e.to_string()))?;
    if body.len() > MAX_ANSWER_BYTES {
        return Err(GatewayError::Upstream(
            "the upstream answer is too large".to_owned(),
        ));
    }
    let bytes = body.len() as u64;
    let text = String::from_utf8_lossy(&body);
    let found = if is_stream {
        events(&text)
            .filter_map(|data| serde_json::from_str::<Value>(&data).ok())
            .find(|m| m.get("id").and_then(Value::as_u64) == Some(id))
    } else {
        serde_json::from_str::<Value>(&text).ok()
    };
    match found {
        Some(message) if message.get("result").is_some() || message.get("error").is_some() => {
            Ok(Answer {
                message,
                status,
                bytes,
            })
        }
        _ => Err(GatewayError::Upstream(format!(
            "the upstream answered {status} without a response"
        ))),
    }
}

/// The `data` of each server-sent event in `text`.
fn events(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split("\n\n").filter_map(|event| {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|line| line.trim_end_matches('\r').strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        (!data.is_empty()).then(|| data.join("\n"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sent_events_yield_each_data_payload() {
        let text = "event: message\ndata: {\"a\":1}\n\n: keepalive\n\nid: 2\ndata: {\"id\":7,\ndata: \"result\":{}}\n\n";
        let all: Vec<String> = events(text).collect();
        assert_eq!(all.first().map(String::as_str), Some("{\"a\":1}"));
        assert_eq!(all.len(), 2);
    }
}
