//! Where the gateway sends the use record of each forwarded call (and of each refusal of a
//! verified token). The record's shape and the write to the audit chain are the core's
//! ([`handoff_core::usage`]); the gateway only says where it goes.

use handoff_core::live::Current;
use handoff_core::token::AccessClaims;
use handoff_core::usage::Use;
use std::sync::Arc;

/// Where use records go.
#[derive(Clone)]
pub enum Recorder {
    /// Inside `handoff serve`: appended to the audit chain
    /// ([`handoff_core::Handoff::record_use`]) by the service current when the call ended.
    Store(Arc<Current>),
    /// A standalone gateway: posted to Handoff in batches (`POST /v1/gateway/uses`).
    Remote(crate::uses::Remote),
    /// Records go to the log only (`target: handoff_gateway::use`).
    Log,
}

impl Recorder {
    /// Records `call` made under `claims`, without holding up the caller.
    pub fn record(&self, claims: &AccessClaims, call: Use) {
        match self {
            Self::Store(current) => {
                let handoff = current.get();
                let claims = claims.clone();
                tokio::spawn(async move {
                    if let Err(error) = handoff.record_use(&claims, call).await {
                        tracing::error!(%error, "a gateway use could not be recorded");
                    }
                });
            }
            Self::Remote(remote) => remote.send(call.event(claims)),
            Self::Log if !tracing::enabled!(target: "handoff_gateway::use", tracing::Level::INFO) =>
                {}
            Self::Log => match serde_json::to_string(&call.event(claims)) {
                Ok(line) => tracing::info!(target: "handoff_gateway::use", "{line}"),
                Err(error) => tracing::error!(%error, "a gateway use could not be logged"),
            },
        }
    }
}
