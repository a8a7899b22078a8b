//! The storage the core needs, as one trait every backend implements and one conformance suite
//! checks. A decision never depends on state only one node holds.

use crate::audit::{AuditEvent, SealedRecord};
use crate::ids::TaskId;
use crate::task::{Task, TaskFacts, TaskSnapshot, TaskState};
use crate::time::Timestamp;
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The task changed since it was read; decide again on fresh facts.
    #[error("the task changed concurrently")]
    Conflict,
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// What a write does to a task besides appending its audit record.
#[derive(Clone, Debug)]
pub enum TaskWrite {
    None,
    Insert(Box<Task>),
    /// Applies only if the task is still at `expected_version`.
    Update {
        id: TaskId,
        expected_version: u64,
        facts: Option<Box<TaskFacts>>,
        state: Option<TaskState>,
    },
}

/// One atomic write: the audit record and its task change land together or not at all.
#[derive(Clone, Debug)]
pub struct Write {
    pub at: Timestamp,
    pub event: AuditEvent,
    pub task: TaskWrite,
}

/// Where the record landed in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub hash: String,
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn task(&self, id: &TaskId) -> Result<Option<TaskSnapshot>, StoreError>;

    /// Appends the record and applies the task change atomically and durably before returning.
    async fn write(&self, write: Write) -> Result<Receipt, StoreError>;

    /// Records with `seq > after`, in order, at most `limit`.
    async fn audit_page(&self, after: u64, limit: usize) -> Result<Vec<SealedRecord>, StoreError>;

    /// Every record about one task, in order.
    async fn task_records(&self, task: &TaskId) -> Result<Vec<SealedRecord>, StoreError>;
}
