//! Use records from a standalone gateway: it posts them in batches to Handoff
//! (`POST /v1/gateway/uses`, HTTP Basic with a system credential), which hands them to the core
//! ([`Handoff::accept_reported_uses`]): only use records of that system's tokens are appended.

use crate::{Gateway, GatewayError};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use handoff_core::Handoff;
use handoff_core::ServiceError;
use handoff_core::audit::AuditEvent;
use handoff_core::usage::MAX_REPORTED_USES;
use handoff_http::Credential;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub const PATH: &str = "/v1/gateway/uses";
/// Most records one post carries: as many as the core accepts in one report.
pub const MAX_BATCH: usize = MAX_REPORTED_USES;
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
    let Some(handoff) = gateway.handoff.as_ref().map(|current| current.get()) else {
        return GatewayError::NotFound.into_response();
    };
    match accept(&handoff, &headers, &body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn accept(handoff: &Handoff, headers: &HeaderMap, body: &[u8]) -> Result<(), GatewayError> {
    let unauthenticated =
        || GatewayError::InvalidClient("a system's Basic credential is required".to_owned());
    let credential = handoff_http::credential(headers)
        .map_err(|error| GatewayError::credential(error, unauthenticated()))?;
    let Credential::Basic {
        user: system,
        password: secret,
    } = credential
    else {
        return Err(unauthenticated());
    };
    let caller = match handoff.authenticate_system(&system, &secret).await {
        Ok(caller) => caller,
        Err(ServiceError::Unavailable(cause)) => {
            return Err(GatewayError::Unavailable(cause.to_string()));
        }
        Err(_) => {
            return Err(GatewayError::InvalidClient(
                "unknown system or wrong credential".to_owned(),
            ));
        }
    };
    let batch = serde_json::from_slice::<Batch>(body).map_err(|_| {
        GatewayError::InvalidRequest("the body must be {\"events\": [use records]}".to_owned())
    })?;
    handoff
        .accept_reported_uses(&caller, batch.events)
        .await
        .map_err(GatewayError::Report)?;
    Ok(())
}
