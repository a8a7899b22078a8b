//! Tasks: the model ([`model`]), opening one for an agent ([`open`]) and ending it ([`end`]).

mod end;
pub mod fold;
pub mod model;
pub mod open;
pub mod trace;

pub use model::{
    EvidenceFact, GrantCount, MAX_EVIDENCE_VALUES, Task, TaskFacts, TaskSnapshot, TaskState,
};
pub use open::{OpenTaskRequest, OpenedTask};
pub use trace::TaskTrace;

use crate::audit::AuditEvent;

/// The part of every record about `task` that names it: who acts, for whom, why.
pub(crate) fn task_event(task: &Task) -> AuditEvent {
    AuditEvent {
        agent: Some(task.agent.to_string()),
        agent_issuer: Some(task.agent_issuer.clone()),
        user: Some(task.user.to_string()),
        task: Some(task.id.to_string()),
        intent: Some(task.intent.clone()),
        purpose: Some(task.purpose.to_string()),
        ..AuditEvent::default()
    }
}
