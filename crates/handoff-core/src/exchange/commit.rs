//! The commit of one attempt: mint from the permit, fold the grant into the task's (and the
//! agent's) facts, and append the record with its effects in one write. A freeze or a used
//! approval that commits first rejects the write atomically and becomes a denial; a concurrent
//! change to the task sends the attempt round again.

use super::decide::Decided;
use super::request::{Issued, Resolved};
use crate::audit::{AuditEvent, DecidedOn, EventKind, Outcome, TokenRecord};
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::identity::VerifiedIdentity;
use crate::ids::TokenId;
use crate::policy::DenyReason;
use crate::store::{Effect, Rejection, StoreError, TaskWrite, Write};
use crate::task::fold::{Granted, fold_grant};
use crate::task::{TaskSnapshot, task_event};
use crate::time::Timestamp;
use crate::token::mint_access_token;
use crate::trace::stage;
use tracing::Instrument;

impl Handoff {
    /// Mints and records; `None` when another exchange of the task committed first.
    pub(super) async fn commit(
        &self,
        identity: &VerifiedIdentity,
        resolved: &Resolved<'_>,
        snapshot: &TaskSnapshot,
        decided: Decided,
        decided_on: DecidedOn,
        now: Timestamp,
    ) -> Result<Option<Issued>, ServiceError> {
        let Decided {
            permit,
            approval,
            agent: mut agent_counters,
        } = decided;
        let (system, request, delegation) = (
            resolved.system,
            resolved.request,
            resolved.delegation.as_ref(),
        );
        let jti = TokenId::new(self.ordered_id("tok", now)?);
        let keys = self.keys();
        let minted = stage!("handoff.mint").in_scope(|| {
            mint_access_token(
                &keys,
                self.config().issuer(),
                identity.issuer(),
                &permit,
                jti,
            )
        })?;
        let mut new_facts = snapshot.facts.clone();
        let agent_changed = fold_grant(
            self.config(),
            &Granted {
                system: &system.id,
                actions: &resolved.actions,
                details: &resolved.details,
                expires_at_seconds: minted.expires_at.seconds(),
                at: now,
            },
            &mut new_facts,
            &mut agent_counters.facts,
        );
        let event = AuditEvent {
            kind: Some(EventKind::Exchange),
            decision_id: Some(permit.decision_id().to_string()),
            system: Some(system.id.to_string()),
            actions: resolved.scope.clone(),
            resource: request.resource.clone(),
            authorization_details: request.authorization_details.clone(),
            outcome: Some(Outcome::Permit),
            policies: permit.policies().to_vec(),
            policy_set: Some(self.policy_engine().hash().to_owned()),
            token: Some(TokenRecord {
                jti: minted.jti.to_string(),
                aud: minted.audience.clone(),
                scope: minted.scope.clone(),
                exp: minted.expires_at.seconds(),
            }),
            kid: Some(keys.active().kid().to_owned()),
            agent_issuer: Some(identity.issuer().to_owned()),
            approval: approval.clone(),
            actor: delegation.map(|d| format!("delegate:{}", d.delegate)),
            delegation: delegation.map(|d| d.id.clone()),
            decided_on: Some(decided_on),
            ..task_event(&snapshot.task)
        };
        let mut effects: Vec<Effect> = approval
            .iter()
            .map(|id| Effect::ConsumeApproval {
                id: id.clone(),
                jti: minted.jti.to_string(),
            })
            .collect();
        if let (true, Some(key)) = (agent_changed, agent_counters.key) {
            effects.push(Effect::AgentFacts {
                key,
                expected_version: agent_counters.version,
                facts: Box::new(agent_counters.facts),
            });
        }
        let write = Write {
            at: now,
            event,
            task: TaskWrite::Update {
                id: snapshot.task.id.clone(),
                expected_version: snapshot.version,
                facts: Some(Box::new(new_facts)),
                state: None,
            },
            // A freeze that commits first wins: the token is never handed out.
            unless_frozen: Some(system.id.clone()),
            // An approval releases one token, used here atomically with the record; an agent's
            // counters change only if no other exchange changed them first.
            effects,
        };
        let deny = |reason, description: String| {
            Err(ServiceError::denied(
                permit.decision_id(),
                reason,
                description,
            ))
        };
        match self
            .store()
            .write(write)
            .instrument(stage!("handoff.audit_commit"))
            .await
        {
            Ok(_) => {
                let expires_in = (minted.expires_at.seconds() - now.seconds()).max(0);
                Ok(Some(Issued {
                    decision_id: permit.decision_id().clone(),
                    token: minted,
                    expires_in,
                    agent: identity.agent().clone(),
                    task: resolved.txn.task().clone(),
                    system: system.id.clone(),
                }))
            }
            Err(StoreError::Conflict) => Ok(None),
            Err(StoreError::Rejected(Rejection::ApprovalUsed)) => deny(
                DenyReason::ApprovalUsed,
                "the approval was already used".to_owned(),
            ),
            Err(StoreError::Rejected(Rejection::SystemFrozen)) => deny(
                DenyReason::SystemFrozen,
                format!("`{}` is frozen", system.id),
            ),
            Err(e) => Err(e.into()),
        }
    }
}
