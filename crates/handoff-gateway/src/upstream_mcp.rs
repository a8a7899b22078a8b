//! The gateway as an MCP client of one upstream server (Streamable HTTP): one session, opened
//! with the `initialize` handshake on first use and again when the upstream forgets it; answers
//! read as JSON or as a server-sent-event stream (parsed by `eventsource-stream`: LF, CR or CRLF
//! framing, comments, multi-line `data:`), read incrementally and only until the response
//! arrives. Notifications the upstream sends before its response (logging, progress) go to a
//! relay when the caller streams them on.

use crate::error::GatewayError;
use axum::http::{HeaderName, HeaderValue};
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Mutex, mpsc};

/// The protocol revision the gateway asks upstreams for.
pub const UPSTREAM_PROTOCOL: &str = "2025-11-25";
/// Largest upstream answer read: every byte of a stream counts, notifications included.
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;
/// The notifications relayed to the caller; any other message the upstream sends unasked is
/// dropped (the gateway declares no client capabilities, so it is asked nothing).
const RELAYED: &[&str] = &["notifications/message", "notifications/progress"];

/// Where notifications the upstream sends before its response go.
pub type Relay = mpsc::Sender<Value>;

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
        self.request_relaying(method, params, credential, None)
            .await
    }

    /// Sends one request and returns its response message; the logging and progress
    /// notifications the upstream sends first go to `relay`, in order, as they arrive.
    pub async fn request_relaying(
        &self,
        method: &str,
        params: Value,
        credential: &Credential,
        relay: Option<&Relay>,
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
            return read_answer(answer, id, relay).await;
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
        let answer = read_answer(answer, id, None).await?;
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
        // The upstream's spans hang under the tool call's (`execute_tool`), in the caller's trace.
        let mut trace = axum::http::HeaderMap::new();
        handoff_http::trace::propagate(&tracing::Span::current(), &mut trace);
        request = request.headers(trace);
        request
            .send()
            .await
            .map_err(|e| GatewayError::Upstream(e.to_string()))
    }
}

async fn read_answer(
    answer: reqwest::Response,
    id: u64,
    relay: Option<&Relay>,
) -> Result<Answer, GatewayError> {
    let status = answer.status().as_u16();
    let is_stream = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if answer
        .content_length()
        .is_some_and(|length| length > MAX_ANSWER_BYTES)
    {
        return Err(too_large());
    }
    let read = AtomicU64::new(0);
    let chunks = answer.bytes_stream().map(|chunk| {
        let chunk = chunk.map_err(|e| GatewayError::Upstream(e.to_string()))?;
        let total = read.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
        if total > MAX_ANSWER_BYTES {
            return Err(too_large());
        }
        Ok(chunk)
    });
    let found = if is_stream {
        let mut events = std::pin::pin!(chunks.eventsource());
        let mut found = None;
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| match e {
                eventsource_stream::EventStreamError::Transport(e) => e,
                other => GatewayError::Upstream(other.to_string()),
            })?;
            let Ok(message) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            match classify(&message, id) {
                Kind::Response => {
                    found = Some(message);
                    break;
                }
                Kind::Relayed => {
                    if let Some(relay) = relay {
                        // A caller that went away still gets its call finished and recorded.
                        let _ = relay.send(message).await;
                    }
                }
                Kind::Other => {}
            }
        }
        found
    } else {
        let mut body = Vec::new();
        let mut chunks = std::pin::pin!(chunks);
        while let Some(chunk) = chunks.next().await {
            body.extend_from_slice(&chunk?);
        }
        serde_json::from_slice::<Value>(&body).ok()
    };
    let bytes = read.load(Ordering::Relaxed);
    match found {
        Some(message) if classify(&message, id) == Kind::Response => Ok(Answer {
            message,
            status,
            bytes,
        }),
        _ => Err(GatewayError::Upstream(format!(
            "the upstream answered {status} without a response"
        ))),
    }
}

/// The upstream reader on a stream with `body` (for the fuzz target): the response to request
/// `id` or why there is none, and the notifications relayed before it. Never panics.
#[doc(hidden)]
pub fn read_event_stream(body: &[u8], id: u64) -> (Result<Value, String>, Vec<Value>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return (Err("no runtime".to_owned()), Vec::new());
    };
    let response = axum::http::Response::builder()
        .header("content-type", "text/event-stream")
        .body(body.to_vec())
        .map(reqwest::Response::from);
    let Ok(response) = response else {
        return (Err("no response".to_owned()), Vec::new());
    };
    runtime.block_on(async {
        let (relay, mut received) = mpsc::channel(16);
        let read = async move { read_answer(response, id, Some(&relay)).await };
        let collect = async {
            let mut relayed = Vec::new();
            while let Some(message) = received.recv().await {
                relayed.push(message);
            }
            relayed
        };
        let (answer, relayed) = tokio::join!(read, collect);
        (
            answer.map(|a| a.message).map_err(|e| format!("{e:?}")),
            relayed,
        )
    })
}

fn too_large() -> GatewayError {
    GatewayError::Upstream(format!(
        "the upstream answer is larger than {MAX_ANSWER_BYTES} bytes"
    ))
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// The response to the request: a result or an error, with its id.
    Response,
    /// A notification the caller may see.
    Relayed,
    Other,
}

fn classify(message: &Value, id: u64) -> Kind {
    let answers = message.get("result").is_some() || message.get("error").is_some();
    if answers && message.get("id").and_then(Value::as_u64) == Some(id) {
        return Kind::Response;
    }
    let notification = message.get("id").is_none()
        && message
            .get("method")
            .and_then(Value::as_str)
            .is_some_and(|m| RELAYED.contains(&m));
    if notification {
        Kind::Relayed
    } else {
        Kind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_response_to_the_request_answers_it_and_only_logging_and_progress_are_relayed() {
        let response = json!({ "jsonrpc": "2.0", "id": 7, "result": {} });
        assert_eq!(classify(&response, 7), Kind::Response);
        assert_eq!(classify(&response, 8), Kind::Other);
        let error = json!({ "jsonrpc": "2.0", "id": 7, "error": { "code": 1, "message": "x" } });
        assert_eq!(classify(&error, 7), Kind::Response);
        let log = json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": {} });
        assert_eq!(classify(&log, 7), Kind::Relayed);
        let progress = json!({ "jsonrpc": "2.0", "method": "notifications/progress" });
        assert_eq!(classify(&progress, 7), Kind::Relayed);
        let asks = json!({ "jsonrpc": "2.0", "id": 1, "method": "sampling/createMessage" });
        assert_eq!(classify(&asks, 7), Kind::Other);
        let other = json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" });
        assert_eq!(classify(&other, 7), Kind::Other);
    }

    fn relayed(body: &str, id: u64) -> (Result<Value, String>, Vec<Value>) {
        read_event_stream(body.as_bytes(), id)
    }

    #[test]
    fn every_framing_yields_the_response_after_the_notifications_it_relays() {
        let log = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"hi"}}"#;
        let done = r#"{"jsonrpc":"2.0","id":7,"result":{"ok":true}}"#;
        // A lone CR can only end a line once the next byte shows it is not CRLF, so CR framing
        // is shown with a comment after the response (a stream that ends right after a
        // CR-framed response is not read as complete).
        for newline in ["\n", "\r\n", "\r"] {
            let body = format!(
                ": keep-alive{newline}{newline}event: message{newline}data: {log}{newline}{newline}\
                 id: 2{newline}data: {done}{newline}{newline}: end{newline}"
            );
            let (answer, notes) = relayed(&body, 7);
            let answer = answer.unwrap_or_else(|e| panic!("{newline:?}: {e}"));
            assert_eq!(answer["result"]["ok"], true, "{newline:?}");
            assert_eq!(notes.len(), 1, "{newline:?}");
        }
    }

    #[test]
    fn a_response_split_over_data_lines_is_joined_and_reading_stops_at_it() {
        let body = "data: {\"jsonrpc\":\"2.0\",\ndata: \"id\":3,\"result\":{}}\n\n\
                    data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n";
        let (answer, notes) = relayed(body, 3);
        assert!(answer.is_ok());
        assert!(notes.is_empty(), "nothing after the response is read");
    }

    #[test]
    fn a_stream_without_the_response_or_past_the_size_limit_is_refused() {
        let other = "data: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}\n\n";
        assert!(relayed(other, 3).0.is_err());
        let huge = format!(": {}\n\n", "x".repeat(MAX_ANSWER_BYTES as usize + 1));
        let Err(error) = relayed(&huge, 3).0 else {
            panic!("an oversized stream was read");
        };
        assert!(
            error.contains("Upstream") && error.contains("larger than"),
            "{error}"
        );
    }
}
