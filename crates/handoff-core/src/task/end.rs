//! Ending a task: nothing more is minted under it, and the revocation feed tells verifiers that
//! cannot call back that its tokens are done.

use crate::audit::{AuditEvent, EventKind};
use crate::containment::{Revocation, RevocationKind};
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::identity::VerifiedIdentity;
use crate::ids::TaskId;
use crate::limits::{CONFLICT_RETRIES, MAX_NAME_CHARS};
use crate::refusal::Refused;
use crate::store::{Effect, StoreError, TaskWrite, Write};
use crate::task::{Task, TaskState, task_event};
use crate::text::truncate;

impl Handoff {
    /// Ends a task: nothing more is minted under it. Only the task's agent may end it.
    pub async fn end_task(
        &self,
        identity: &VerifiedIdentity,
        task_id: &TaskId,
    ) -> Result<Task, ServiceError> {
        let outcome = self.end_task_checked(identity, task_id).await;
        let about = || AuditEvent {
            kind: Some(EventKind::TaskEnd),
            task: Some(truncate(task_id.as_str(), MAX_NAME_CHARS)),
            ..AuditEvent::default()
        };
        let outcome = outcome.map_err(|error| Refused::new(error, about()));
        self.recorded(identity, outcome).await
    }

    async fn end_task_checked(
        &self,
        identity: &VerifiedIdentity,
        task_id: &TaskId,
    ) -> Result<Task, ServiceError> {
        let unknown = || ServiceError::InvalidGrant("unknown task".to_owned());
        for _ in 0..CONFLICT_RETRIES {
            let snapshot = self.store().task(task_id).await?.ok_or_else(unknown)?;
            if &snapshot.task.agent != identity.agent()
                || snapshot.task.agent_issuer != identity.issuer()
            {
                return Err(unknown());
            }
            if snapshot.task.state != TaskState::Open {
                return Ok(snapshot.task);
            }
            let mut task = snapshot.task.clone();
            task.state = TaskState::Ended;
            let event = AuditEvent {
                kind: Some(EventKind::TaskEnd),
                ..task_event(&task)
            };
            let write = Write {
                at: self.now(),
                event,
                task: TaskWrite::Update {
                    id: task.id.clone(),
                    expected_version: snapshot.version,
                    facts: None,
                    state: Some(TaskState::Ended),
                },
                // The feed tells verifiers that cannot call back (a standalone gateway) that the
                // task's tokens are done: a `task` entry, its reason `ended`. The task stays
                // ended, not revoked (the entry's state change only applies to an open task).
                effects: vec![Effect::Revoke(Revocation {
                    kind: RevocationKind::Task,
                    subject: task.id.to_string(),
                    reason: "ended".to_owned(),
                    actor: identity.agent().to_string(),
                })],
                ..Default::default()
            };
            match self.store().write(write).await {
                Ok(_) => return Ok(task),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }
}
