//! The one refusal recorder. Every operation of a caller Handoff could identify (an agent, a
//! person deciding an approval, a system reporting evidence) records its refusals here: what the
//! request named (the [`Refused`] value the operation returns), who asked, the decision and why.
//! Store and internal faults, and waiting for approval, are not refusals and are not recorded.

use crate::audit::{AuditEvent, Outcome};
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::identity::VerifiedIdentity;
use crate::store::{TaskWrite, Write};

/// A refusal, and what is known of the request it refuses, for its audit record.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) error: ServiceError,
    /// The request's own fields (kind, task, system, actions, ...); the rest is filled in when
    /// it is recorded.
    pub(crate) about: AuditEvent,
}

impl Refused {
    pub(crate) fn new(error: ServiceError, about: AuditEvent) -> Self {
        Self { error, about }
    }
}

/// Refusals worth a record: everything but store and internal faults (which cannot be recorded).
/// Waiting for approval is not a refusal: the approval request itself is recorded once.
fn is_recorded(error: &ServiceError) -> bool {
    !matches!(
        error,
        ServiceError::Unavailable(_)
            | ServiceError::Internal(_)
            | ServiceError::ApprovalPending { .. }
            | ServiceError::SlowDown { .. }
    )
}

impl Handoff {
    /// The outcome of an authenticated agent's operation: its value, or its refusal recorded.
    pub(crate) async fn recorded<T>(
        &self,
        identity: &VerifiedIdentity,
        outcome: Result<T, Refused>,
    ) -> Result<T, ServiceError> {
        match outcome {
            Ok(value) => Ok(value),
            Err(refused) => Err(self.record_refusal(identity, refused).await),
        }
    }

    /// Records a refusal of an authenticated agent: who it is and the policy set are filled in.
    pub(crate) async fn record_refusal(
        &self,
        identity: &VerifiedIdentity,
        refused: Refused,
    ) -> ServiceError {
        let Refused { error, about } = refused;
        let about = AuditEvent {
            agent: about.agent.or_else(|| Some(identity.agent().to_string())),
            agent_issuer: Some(identity.issuer().to_owned()),
            policy_set: Some(self.policy_engine().hash().to_owned()),
            ..about
        };
        self.record(Refused::new(error, about)).await
    }

    /// Records `refused` as a deny record (the decision, its reason code, description and
    /// policies) and returns its error, unless the record cannot be written: then the caller
    /// learns the store is unavailable.
    pub(crate) async fn record(&self, refused: Refused) -> ServiceError {
        let Refused { error, about } = refused;
        if !is_recorded(&error) {
            return error;
        }
        let (decision_id, policies) = match &error {
            ServiceError::Denied(denial) => (
                Some(denial.decision_id.to_string()),
                denial.policies.clone(),
            ),
            _ => (None, Vec::new()),
        };
        let event = AuditEvent {
            decision_id,
            outcome: Some(Outcome::Deny),
            reason: Some(error.code().to_owned()),
            description: Some(error.to_string()),
            policies,
            ..about
        };
        match self
            .store()
            .write(Write::new(self.now(), event, TaskWrite::None))
            .await
        {
            Ok(_) => error,
            Err(store) => store.into(),
        }
    }
}
