//! Signed webhook delivery of notices. `notify` only queues; a background task delivers each
//! notice with retries and backoff, and records the outcome in the audit chain.

use aws_lc_rs::hmac;
use handoff_core::audit::{AuditEvent, EventKind, Outcome};
use handoff_core::clock::Clock;
use handoff_core::config::{NotificationConfig, WebhookFormat};
use handoff_core::hash::hex;
use handoff_core::notify::{Notice, Notifier};
use handoff_core::store::{Store, TaskWrite, Write};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// Notices waiting for delivery; past this, new notices are dropped (and logged) rather than
/// ever slowing an exchange.
const QUEUE_DEPTH: usize = 4096;
/// Attempts per notice, with exponential backoff between them.
pub const MAX_ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deliveries in flight at once.
const CONCURRENCY: usize = 16;

/// The header carrying `sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
pub const SIGNATURE_HEADER: &str = "x-handoff-signature";
/// The header carrying the signing time (Unix seconds), part of the signed message.
pub const TIMESTAMP_HEADER: &str = "x-handoff-timestamp";

pub struct WebhookNotifier {
    queue: mpsc::Sender<Notice>,
}

struct Delivery {
    client: reqwest::Client,
    url: String,
    format: WebhookFormat,
    key: Option<hmac::Key>,
    /// The server's public URL: notices about approvals link to the console.
    public_url: Option<String>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
pub struct WebhookError(String);

impl std::fmt::Display for WebhookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WebhookError {}

impl WebhookNotifier {
    /// Starts the delivery task on the current Tokio runtime.
    ///
    /// With `public_url` (the server's, `Config::issuer`), a notice about an approval links to
    /// its page in the console (`console_url`; in the Slack format a button).
    pub fn start(
        config: &NotificationConfig,
        secret: Option<Vec<u8>>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        public_url: Option<&str>,
    ) -> Result<Self, WebhookError> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WebhookError(format!("cannot build the webhook client: {e}")))?;
        let delivery = Arc::new(Delivery {
            client,
            url: config.webhook_url.clone(),
            format: config.format,
            key: secret.map(|s| hmac::Key::new(hmac::HMAC_SHA256, &s)),
            public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
            store,
            clock,
        });
        let (queue, mut notices) = mpsc::channel::<Notice>(QUEUE_DEPTH);
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        tokio::spawn(async move {
            while let Some(notice) = notices.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let delivery = delivery.clone();
                tokio::spawn(async move {
                    delivery.deliver(notice).await;
                    drop(permit);
                });
            }
        });
        Ok(Self { queue })
    }
}

impl Notifier for WebhookNotifier {
    fn notify(&self, notice: Notice) {
        if self.queue.try_send(notice).is_err() {
            tracing::warn!("the webhook queue is full; a notice was dropped");
        }
    }
}

/// The console page of the approval a notice is about, on the server at `public_url`.
pub fn console_url(public_url: Option<&str>, notice: &Notice) -> Option<String> {
    let base = public_url?;
    let id = notice.approval_id.as_deref()?;
    Some(format!("{base}/console/#/approval/{id}"))
}

/// The JSON body a notice is sent as; `console` is the approval's console page, if any.
pub fn payload(format: WebhookFormat, notice: &Notice, at: &str, console: Option<&str>) -> Value {
    match format {
        WebhookFormat::Json => json!({
            "type": "handoff.notice",
            "kind": notice.kind,
            "at": at,
            "system": notice.system,
            "owner": notice.owner,
            "escalation": notice.escalation,
            "task": notice.task,
            "agent": notice.agent,
            "user": notice.user,
            "intent": notice.intent,
            "reason": notice.reason,
            "description": notice.description,
            "decision_id": notice.decision_id,
            "approval_id": notice.approval_id,
            "console_url": console,
        }),
        WebhookFormat::Slack => {
            let mut text = format!("*Handoff*: {} ({})", notice.description, notice.reason);
            if let Some(system) = &notice.system {
                text.push_str(&format!("\n• system: `{system}`"));
            }
            if let Some(owner) = &notice.owner {
                text.push_str(&format!(" (owner {owner}"));
                if let Some(escalation) = &notice.escalation {
                    text.push_str(&format!(", escalation {escalation}"));
                }
                text.push(')');
            }
            if let Some(task) = &notice.task {
                text.push_str(&format!("\n• task: `{task}`"));
            }
            if let Some(agent) = &notice.agent {
                text.push_str(&format!("\n• agent: `{agent}`"));
            }
            if let Some(intent) = &notice.intent {
                text.push_str(&format!("\n• intent: {intent}"));
            }
            match console {
                // Block Kit: the text, and a button to the request's page in the console.
                Some(url) => {
                    text.push_str(&format!("\n• decide: <{url}|open in the Handoff console>"));
                    json!({
                        "text": text,
                        "blocks": [
                            { "type": "section", "text": { "type": "mrkdwn", "text": text } },
                            { "type": "actions", "elements": [{
                                "type": "button",
                                "text": { "type": "plain_text", "text": "Open in the console" },
                                "url": url,
                            }] },
                        ],
                    })
                }
                None => json!({ "text": text }),
            }
        }
    }
}

/// `sha256=<hex>` over `timestamp.body`.
pub fn signature(key: &hmac::Key, timestamp: i64, body: &[u8]) -> String {
    let mut context = hmac::Context::with_key(key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex(context.sign().as_ref()))
}

impl Delivery {
    async fn deliver(&self, notice: Notice) {
        let now = self.clock.now();
        let console = console_url(self.public_url.as_deref(), &notice);
        let body = payload(self.format, &notice, &now.rfc3339(), console.as_deref()).to_string();
        let mut backoff = FIRST_BACKOFF;
        let mut outcome = Err("not attempted".to_owned());
        let mut attempts = 0;
        while attempts < MAX_ATTEMPTS {
            attempts += 1;
            outcome = self.attempt(&body).await;
            if outcome.is_ok() {
                break;
            }
            if attempts < MAX_ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
        }
        let (result, description) = match &outcome {
            Ok(status) => (
                Outcome::Permit,
                format!("webhook delivered (HTTP {status}) after {attempts} attempt(s)"),
            ),
            Err(e) => (
                Outcome::Deny,
                format!("webhook failed after {attempts} attempt(s): {e}"),
            ),
        };
        if outcome.is_err() {
            tracing::warn!(%description, "notice not delivered");
        }
        let event = AuditEvent {
            kind: Some(EventKind::Notify),
            task: notice.task.clone(),
            system: notice.system.clone(),
            agent: notice.agent.clone(),
            decision_id: notice.decision_id.clone(),
            outcome: Some(result),
            reason: Some(notice.reason.clone()),
            description: Some(description),
            target: Some(format!(
                "notice:{}",
                serde_json::to_value(notice.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )),
            actor: notice.owner.clone(),
            ..AuditEvent::default()
        };
        if let Err(e) = self
            .store
            .write(Write::new(self.clock.now(), event, TaskWrite::None))
            .await
        {
            tracing::warn!(error = %e, "the notice's delivery could not be recorded");
        }
    }

    async fn attempt(&self, body: &str) -> Result<u16, String> {
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json");
        if let Some(key) = &self.key {
            let timestamp = self.clock.now().seconds();
            request = request
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, signature(key, timestamp, body.as_bytes()));
        }
        match request.body(body.to_owned()).send().await {
            Ok(response) if response.status().is_success() => Ok(response.status().as_u16()),
            Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
            Err(e) => Err(if e.is_timeout() {
                "timed out".to_owned()
            } else {
                "connection failed".to_owned()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;
    use handoff_core::notify::NoticeKind;

    fn approval_notice() -> Notice {
        Notice {
            kind: NoticeKind::ApprovalRequested,
            system: Some("payments".to_owned()),
            owner: Some("payments-owners".to_owned()),
            escalation: None,
            task: Some("task_1".to_owned()),
            agent: Some("payments-agent".to_owned()),
            user: Some("alice".to_owned()),
            intent: None,
            reason: "approval_requested".to_owned(),
            description: "a payment waits".to_owned(),
            decision_id: None,
            approval_id: Some("apr_1".to_owned()),
        }
    }

    #[test]
    fn an_approval_notice_links_to_its_console_page_in_json_and_as_a_slack_button() {
        let notice = approval_notice();
        let url = console_url(Some("https://handoff.example.com"), &notice);
        assert_eq!(
            url.as_deref(),
            Some("https://handoff.example.com/console/#/approval/apr_1")
        );
        let json = payload(WebhookFormat::Json, &notice, "now", url.as_deref());
        assert_eq!(json["console_url"], url.as_deref().unwrap_or_default());
        let slack = payload(WebhookFormat::Slack, &notice, "now", url.as_deref());
        assert_eq!(slack["blocks"][1]["elements"][0]["type"], "button");
        assert_eq!(
            slack["blocks"][1]["elements"][0]["url"],
            url.as_deref().unwrap_or_default()
        );
        // Without a public URL, or about no approval, there is no link.
        assert!(console_url(None, &notice).is_none());
        let other = Notice {
            approval_id: None,
            ..approval_notice()
        };
        assert!(console_url(Some("https://h"), &other).is_none());
        let plain = payload(WebhookFormat::Slack, &other, "now", None);
        assert!(plain.get("blocks").is_none());
    }
}
