//! Recording each forwarded call (and each refusal of a verified token) in the audit chain,
//! against the token, and so the decision, that allowed it.

use handoff_core::Handoff;
use handoff_core::audit::{AuditEvent, EventKind, Outcome, TokenRecord, UsageRecord};
use handoff_core::store::{TaskWrite, Write};
use handoff_core::token::AccessClaims;
use std::sync::Arc;

/// What one call was, as the audit log keeps it.
#[derive(Clone, Debug)]
pub struct Use {
    pub system: String,
    /// The qualified action (`git:open_pr`).
    pub action: String,
    pub resource: Option<String>,
    pub authorization_details: Option<serde_json::Value>,
    /// The decision that allowed the call, when the gateway asked for it (MCP tool calls).
    pub decision_id: Option<String>,
    pub usage: UsageRecord,
    /// `None` when forwarded; the refusal's code otherwise.
    pub refused: Option<String>,
}

/// Where use records go.
#[derive(Clone)]
pub enum Recorder {
    /// Inside `handoff serve`: appended to the audit chain.
    Store(Arc<Handoff>),
    /// A standalone gateway: posted to Handoff in batches (`POST /v1/gateway/uses`).
    Remote(crate::uses::Remote),
    /// Records go to the log only (`target: handoff_gateway::use`).
    Log,
}

impl Recorder {
    /// Records `call` made under `claims`, without holding up the caller.
    pub fn record(&self, claims: &AccessClaims, call: Use) {
        let event = event(claims, call);
        match self {
            Self::Store(handoff) => {
                let handoff = handoff.clone();
                tokio::spawn(async move {
                    let write = Write::new(handoff.now(), event, TaskWrite::None);
                    if let Err(error) = handoff.store().write(write).await {
                        tracing::error!(%error, "a gateway use could not be recorded");
                    }
                });
            }
            Self::Remote(remote) => remote.send(event),
            Self::Log if !tracing::enabled!(target: "handoff_gateway::use", tracing::Level::INFO) =>
                {}
            Self::Log => match serde_json::to_string(&event) {
                Ok(line) => tracing::info!(target: "handoff_gateway::use", "{line}"),
                Err(error) => tracing::error!(%error, "a gateway use could not be logged"),
            },
        }
    }
}

fn event(claims: &AccessClaims, call: Use) -> AuditEvent {
    let outcome = if call.refused.is_some() {
        Outcome::Deny
    } else {
        Outcome::Permit
    };
    AuditEvent {
        kind: Some(EventKind::Use),
        decision_id: call.decision_id,
        agent: Some(claims.act.sub.clone()),
        agent_issuer: claims.act.iss.clone(),
        user: Some(claims.sub.clone()),
        task: Some(claims.txn.clone()),
        system: Some(call.system),
        actions: vec![call.action],
        resource: call.resource,
        authorization_details: call.authorization_details,
        outcome: Some(outcome),
        reason: call.refused,
        token: Some(TokenRecord {
            jti: claims.jti.clone(),
            aud: claims.aud.clone(),
            scope: claims.scope.clone(),
            exp: claims.exp,
        }),
        actor: Some("gateway".to_owned()),
        usage: Some(call.usage),
        ..AuditEvent::default()
    }
}
