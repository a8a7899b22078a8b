//! Use records from a standalone gateway: it posts them in batches to Handoff
//! (`POST /v1/gateway/uses`, HTTP Basic with a system credential), which appends those of that
//! system's tokens to the audit chain.

use crate::Gateway;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use handoff_core::audit::{AuditEvent, EventKind};
use handoff_core::store::{TaskWrite, Write};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub const PATH: &str = "/v1/gateway/uses";
/// Most records one post carries.
pub const MAX_BATCH: usize = 500;
/// Largest batch body Handoff reads: axum's default, stated so the early 413 check can use it.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Records waiting to be posted; past this, new ones are logged and dropped.
const QUEUE: usize = 10_000;

#[derive(Serialize, Deserialize)]
struct Batch {
    events: Vec<AuditEvent>,
}

/// Where a standalone gateway sends its use records.
#[derive(Clone)]
pub struct Remote {
    sender: mpsc::Sender<AuditEvent>,
}

impl Remote {
    /// Starts the background poster.
    pub fn start(client: reqwest::Client, handoff: String, system: String, secret: String) -> Self {
        let (sender, mut receiver) = mpsc::channel::<AuditEvent>(QUEUE);
        tokio::spawn(async move {
            let url = format!("{}{PATH}", handoff.trim_end_matches('/'));
            let mut batch = Vec::new();
            while let Some(first) = receiver.recv().await {
                batch.push(first);
                // Whatever else arrived meanwhile goes in the same post.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(event) => batch.push(event),
                        Err(_) => break,
                    }
                }
                let events = std::mem::take(&mut batch);
                let count = events.len();
                let sent = client
                    .post(&url)
                    .basic_auth(&system, Some(&secret))
                    .json(&Batch { events })
                    .send()
                    .await;
                match sent {
                    Ok(answer) if answer.status().is_success() => {}
                    Ok(answer) => {
                        tracing::warn!(status = %answer.status(), count, "use records were refused");
                    }
                    Err(error) => tracing::warn!(%error, count, "use records could not be posted"),
                }
            }
        });
        Self { sender }
    }

    pub fn send(&self, event: AuditEvent) {
        if self.sender.try_send(event).is_err() {
            tracing::warn!("the use-record queue is full; a use was not recorded");
        }
    }
}

/// `POST /v1/gateway/uses`: a registered system's gateway reports uses of its own tokens.
pub async fn receive(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(handoff) = gateway.handoff.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let refused =
        |status: StatusCode, code: &str| (status, Json(json!({ "error": code }))).into_response();
    let Some((system, secret)) = basic(&headers) else {
        return refused(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    let Ok(caller) = handoff.authenticate_system(&system, &secret).await else {
        return refused(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    let Ok(batch) = serde_json::from_slice::<Batch>(&body) else {
        return refused(StatusCode::BAD_REQUEST, "invalid_request");
    };
    if batch.events.len() > MAX_BATCH {
        return refused(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let own = caller.system().to_string();
    // Only use records, only of the caller's own system.
    if batch
        .events
        .iter()
        .any(|e| e.kind != Some(EventKind::Use) || e.system.as_deref() != Some(own.as_str()))
    {
        return refused(StatusCode::FORBIDDEN, "access_denied");
    }
    for event in batch.events {
        let event = AuditEvent {
            actor: Some(format!("gateway:{own}")),
            ..event
        };
        let write = Write::new(handoff.now(), event, TaskWrite::None);
        if handoff.store().write(write).await.is_err() {
            return refused(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}
