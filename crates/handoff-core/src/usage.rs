//! Use records: what an enforcement point forwarded (or refused past verification) under an
//! access token, as the audit chain keeps it, and the reports a standalone gateway posts of its
//! own system's uses. The gateway enforces; the shape of a use record, the checks on a report
//! and the writes to the chain are here, so nothing outside the core writes the chain.

use crate::Handoff;
use crate::audit::{AuditEvent, EventKind, Outcome, TokenRecord, UsageRecord};
use crate::containment::SystemCaller;
use crate::error::ErrorCode;
use crate::store::{Receipt, StoreError, TaskWrite, Write};
use crate::token::AccessClaims;

/// Most use records one report may carry.
pub const MAX_REPORTED_USES: usize = 500;

/// Who a use record names as its actor when the gateway inside `handoff serve` made the call.
pub const GATEWAY_ACTOR: &str = "gateway";

/// One call through an enforcement point.
#[derive(Clone, Debug)]
pub struct Use {
    pub system: String,
    /// The qualified action (`git:open_pr`).
    pub action: String,
    pub resource: Option<String>,
    pub authorization_details: Option<serde_json::Value>,
    /// The decision that allowed the call, when the call asked for one (MCP tool calls).
    pub decision_id: Option<String>,
    pub usage: UsageRecord,
    /// `None` when forwarded; the refusal's code otherwise.
    pub refused: Option<String>,
}

impl Use {
    /// The use record of this call made under `claims`: who, for which task and user, under
    /// which token (its id, audience, scope and expiry, never the token itself), and what passed.
    pub fn event(self, claims: &AccessClaims) -> AuditEvent {
        let outcome = if self.refused.is_some() {
            Outcome::Deny
        } else {
            Outcome::Permit
        };
        AuditEvent {
            kind: Some(EventKind::Use),
            decision_id: self.decision_id,
            agent: Some(claims.act.sub.clone()),
            agent_issuer: claims.act.iss.clone(),
            user: Some(claims.sub.clone()),
            task: Some(claims.txn.clone()),
            system: Some(self.system),
            actions: vec![self.action],
            resource: self.resource,
            authorization_details: self.authorization_details,
            outcome: Some(outcome),
            reason: self.refused,
            token: Some(TokenRecord {
                jti: claims.jti.clone(),
                aud: claims.aud.clone(),
                scope: claims.scope.clone(),
                exp: claims.exp,
            }),
            actor: Some(GATEWAY_ACTOR.to_owned()),
            usage: Some(self.usage),
            ..AuditEvent::default()
        }
    }
}

/// Why a standalone gateway's report of uses was refused (none of it is recorded then, except
/// for [`ReportError::Store`], where the records before the failing one are).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("a report carries at most {MAX_REPORTED_USES} use records")]
    TooMany,
    #[error("record {index} is not a use record")]
    NotUse { index: usize },
    #[error("record {index} is not about `{system}`")]
    OtherSystem { index: usize, system: String },
    #[error("record {index} names no token for `{system}`")]
    OtherToken { index: usize, system: String },
    #[error("the use records could not be recorded")]
    Store(#[source] StoreError),
}

impl ReportError {
    /// The stable code the caller sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooMany => ErrorCode::InvalidRequest,
            Self::NotUse { .. } | Self::OtherSystem { .. } | Self::OtherToken { .. } => {
                ErrorCode::AccessDenied
            }
            Self::Store(_) => ErrorCode::TemporarilyUnavailable,
        }
    }
}

impl Handoff {
    /// Appends the use record of `call`, made under `claims`, to the audit chain (no task
    /// changes: a use grants nothing).
    pub async fn record_use(
        &self,
        claims: &AccessClaims,
        call: Use,
    ) -> Result<Receipt, StoreError> {
        let write = Write::new(self.now(), call.event(claims), TaskWrite::None);
        self.store().write(write).await
    }

    /// Accepts a standalone gateway's report of uses for `caller`'s system: at most
    /// [`MAX_REPORTED_USES`] records, every one a use record about that system under a token
    /// for its audience; every record is checked before any is written, so a refused report
    /// records nothing. Each is recorded with the reporting gateway as its actor
    /// (`gateway:<system>`), one write each: a store failure part-way leaves the records before
    /// it in the chain. Returns how many were recorded.
    pub async fn accept_reported_uses(
        &self,
        caller: &SystemCaller,
        events: Vec<AuditEvent>,
    ) -> Result<usize, ReportError> {
        if events.len() > MAX_REPORTED_USES {
            return Err(ReportError::TooMany);
        }
        let system = caller.system();
        let audience = self
            .config()
            .systems
            .get(system)
            .map(|s| s.audience.as_str());
        for (index, event) in events.iter().enumerate() {
            if event.kind != Some(EventKind::Use) {
                return Err(ReportError::NotUse { index });
            }
            if event.system.as_deref() != Some(system.as_str()) {
                return Err(ReportError::OtherSystem {
                    index,
                    system: system.to_string(),
                });
            }
            let token_audience = event.token.as_ref().map(|t| t.aud.as_str());
            if token_audience.is_none() || token_audience != audience {
                return Err(ReportError::OtherToken {
                    index,
                    system: system.to_string(),
                });
            }
        }
        let actor = format!("{GATEWAY_ACTOR}:{system}");
        let count = events.len();
        for event in events {
            let event = AuditEvent {
                actor: Some(actor.clone()),
                ..event
            };
            self.store()
                .write(Write::new(self.now(), event, TaskWrite::None))
                .await
                .map_err(ReportError::Store)?;
        }
        Ok(count)
    }
}
