//! One handoff, step by step: verify the agent, resolve the request once, then, on the task's
//! current facts, admit, decide, mint from the permit and append the record durably before
//! answering; a concurrent write to the task sends the attempt round again. Every refusal after
//! the caller was authenticated is recorded ([`crate::refusal`]).
//!
//! - [`request`]: the request and what it resolves to (task token, system, actions, details).
//! - [`admission`]: the task, delegation and containment checks before policy.
//! - [`decide`]: the grant, the policy decision and the approval gate.
//! - [`commit`]: the token, the record and its effects, and rejections as denials.

pub mod admission;
mod commit;
mod decide;
pub(crate) mod request;

pub use admission::MAX_REACH_ITEMS;
pub use request::{ExchangeRequest, Issued};

use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::identity::VerifiedIdentity;
use crate::ids::DecisionId;
use crate::limits::CONFLICT_RETRIES;
use crate::refusal::Refused;
use crate::store::StoreError;
use crate::trace::stage;
use request::Resolved;
use tracing::Instrument;

/// A refused exchange: the error, and who asked for which task where that was established.
#[derive(Debug)]
pub struct Rejected {
    pub error: ServiceError,
    pub agent: Option<String>,
    pub task: Option<String>,
}

impl Handoff {
    /// One RFC 8693 exchange: the agent's identity as actor, the task's Transaction Token as
    /// subject, one system as audience.
    pub async fn exchange(&self, request: ExchangeRequest) -> Result<Issued, ServiceError> {
        self.exchange_known(request).await.map_err(|r| r.error)
    }

    /// [`Handoff::exchange`], with a refusal saying whom it refused and for which task as far as
    /// they were established (for the request log: an identity that did not verify names no
    /// agent, a task token that did not verify names no task).
    pub async fn exchange_known(&self, request: ExchangeRequest) -> Result<Issued, Rejected> {
        let identity = stage!("handoff.identity")
            .in_scope(|| self.authenticate(&request.actor_token))
            .map_err(|error| Rejected {
                error,
                agent: None,
                task: None,
            })?;
        let outcome = self.exchange_as(&identity, &request).await;
        let task = match &outcome {
            Err(refused) => refused.about.task.clone(),
            Ok(_) => None,
        };
        self.recorded(&identity, outcome)
            .await
            .map_err(|error| Rejected {
                error,
                agent: Some(identity.agent().to_string()),
                task,
            })
    }

    async fn exchange_as(
        &self,
        identity: &VerifiedIdentity,
        request: &ExchangeRequest,
    ) -> Result<Issued, Refused> {
        let resolved = self
            .resolve(request)
            .instrument(stage!("handoff.resolve"))
            .await?;
        let _turn = match self.task_turn(resolved.txn.task()) {
            Some(turn) => Some(turn.lock().await),
            None => None,
        };
        for _ in 0..CONFLICT_RETRIES {
            match self.attempt(identity, &resolved).await? {
                Some(issued) => return Ok(issued),
                // Another exchange of this task committed first: decide again on its facts.
                None => continue,
            }
        }
        Err(resolved.refusal(StoreError::Conflict.into(), None, None))
    }

    /// One attempt on the task's current facts: `None` when a concurrent write got there first.
    async fn attempt(
        &self,
        identity: &VerifiedIdentity,
        resolved: &Resolved<'_>,
    ) -> Result<Option<Issued>, Refused> {
        // The task, the freeze and the agent's counters, read together (one read transaction
        // where the store has them).
        let reads = self
            .store()
            .exchange_reads(
                resolved.txn.task(),
                &resolved.system.id,
                self.config().has_agent_counters(),
            )
            .instrument(stage!("handoff.task_load"))
            .await
            .map_err(ServiceError::from)
            .and_then(|reads| {
                reads.ok_or_else(|| {
                    ServiceError::InvalidGrant("the task token names an unknown task".to_owned())
                })
            })
            .map_err(|error| resolved.refusal(error, None, None))?;
        let snapshot = reads.snapshot;
        let refuse = |error| resolved.refusal(error, Some(&snapshot), None);
        let now = self.now();
        let decision_id = DecisionId::new(self.id("dec").map_err(refuse)?);
        self.admit(
            identity,
            resolved,
            &snapshot,
            reads.frozen,
            &decision_id,
            now,
        )
        .instrument(stage!("handoff.admit"))
        .await
        .map_err(refuse)?;
        // A decision's refusal keeps what it was decided on (`decided_on`), for its replay.
        let (decided, decided_on) = async {
            let (agent, decided_on) = self.inputs(resolved, &snapshot, reads.agent, now);
            match self
                .decide(
                    identity,
                    resolved,
                    &snapshot,
                    decision_id,
                    agent,
                    &decided_on,
                    now,
                )
                .await
            {
                Ok(decided) => Ok((decided, decided_on)),
                Err(error) => Err((error, Some(decided_on))),
            }
        }
        .instrument(stage!("handoff.decide"))
        .await
        .map_err(|(error, decided_on)| resolved.refusal(error, Some(&snapshot), decided_on))?;
        self.commit(identity, resolved, &snapshot, decided, decided_on, now)
            .await
            .map_err(refuse)
    }
}
