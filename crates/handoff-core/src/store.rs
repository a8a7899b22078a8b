//! The storage the core needs, as one trait every backend implements and one conformance suite
//! checks. A decision never depends on state only one node holds.

use crate::approval::{Approval, ApprovalStatus};
use crate::audit::{AuditEvent, SealedRecord};
use crate::checkpoint::Checkpoint;
use crate::containment::{Revocation, RevocationEntry, TokenStatus};
use crate::counters::AgentFacts;
use crate::delegation::Delegation;
use crate::ids::{AgentId, SystemId, TaskId};
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
    /// A precondition checked inside the write's transaction failed.
    #[error("{0}")]
    Rejected(Rejection),
}

/// Why a write was refused atomically, so a revocation can never lose a race with a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the agent is revoked")]
    AgentRevoked,
    #[error("the system is frozen")]
    SystemFrozen,
    #[error("the approval is no longer pending")]
    ApprovalClosed,
    #[error("the approval was already used, or is not approved")]
    ApprovalUsed,
    #[error("this evidence was already received")]
    EvidenceReplayed,
}

/// What a write does to a task besides appending its audit record.
#[derive(Clone, Debug, Default)]
pub enum TaskWrite {
    #[default]
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

/// What else a write changes, applied in the same transaction as its record.
#[derive(Clone, Debug)]
pub enum Effect {
    /// Applies a revocation (cutting what it names) and appends it to the revocation feed.
    Revoke(Revocation),
    /// Registers (or replaces) the SHA-256 of a system's introspection credential.
    Credential {
        system: SystemId,
        secret_sha256: String,
    },
    /// Opens an approval request.
    InsertApproval(Box<Approval>),
    /// Decides a pending, unexpired approval (at the write's time), else `ApprovalClosed`.
    DecideApproval {
        id: String,
        status: ApprovalStatus,
        by: String,
        reason: String,
    },
    /// Marks an approved, unused, unexpired approval used by `jti`, else `ApprovalUsed`.
    ConsumeApproval { id: String, jti: String },
    /// Expires a pending approval whose time has passed (at the write's time).
    ExpireApproval { id: String },
    /// Notes that an approval was escalated.
    EscalateApproval { id: String },
    /// Replaces an agent's cross-task facts if still at `expected_version` (0: none stored yet),
    /// else `Conflict`: counters spanning tasks are decided on fresh facts, like a task's.
    AgentFacts {
        key: String,
        expected_version: u64,
        facts: Box<AgentFacts>,
    },
    /// Remembers a piece of evidence until `expires_at`; one already remembered is
    /// `EvidenceReplayed`.
    EvidenceSeen {
        system: SystemId,
        id: String,
        expires_at: Timestamp,
    },
    /// Records a delegation.
    InsertDelegation(Box<Delegation>),
}

/// One atomic write: the audit record, its task change and its effects land together or not at all.
#[derive(Clone, Debug, Default)]
pub struct Write {
    pub at: Timestamp,
    pub event: AuditEvent,
    pub task: TaskWrite,
    pub effects: Vec<Effect>,
    /// Refuse the write if this system is frozen when it commits.
    pub unless_frozen: Option<SystemId>,
}

impl Write {
    /// A write of `event` and `task` with no effects or preconditions.
    pub fn new(at: Timestamp, event: AuditEvent, task: TaskWrite) -> Self {
        Self {
            at,
            event,
            task,
            effects: Vec::new(),
            unless_frozen: None,
        }
    }
}

/// Where the record landed in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub hash: String,
}

/// What every backend reports through the `metrics` facade (a no-op until the server installs a
/// recorder): the records folded into each commit, and how long each commit took, its fsync
/// included. Named here once so that every backend uses the same names.
pub mod metric_names {
    pub const AUDIT_BATCH_RECORDS: &str = "handoff_audit_batch_records";
    pub const AUDIT_COMMIT_SECONDS: &str = "handoff_audit_commit_duration_seconds";
    /// The embedded store only: one WAL checkpoint, run beside the writer, never inside a commit.
    pub const AUDIT_CHECKPOINT_SECONDS: &str = "handoff_audit_checkpoint_duration_seconds";
    /// The embedded store only: an exchange's reads, by where they were answered (`from`:
    /// `memory`, what the writer last committed; `sqlite`, a read transaction).
    pub const EXCHANGE_READS: &str = "handoff_store_exchange_reads_total";
}

/// What an exchange reads before it decides ([`Store::exchange_reads`]).
#[derive(Clone, Debug)]
pub struct ExchangeReads {
    /// Shared: a store that holds the task in memory hands it out without copying its facts.
    pub snapshot: std::sync::Arc<TaskSnapshot>,
    /// Whether the exchange's system is frozen.
    pub frozen: bool,
    /// The cross-task facts of the task's agent and their version, when they were asked for.
    pub agent: Option<(AgentFacts, u64)>,
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn task(&self, id: &TaskId) -> Result<Option<TaskSnapshot>, StoreError>;

    /// What one exchange reads before it decides: the task (`None`: unknown), whether `system`
    /// is frozen and, when `agent_facts`, the facts of the task's agent (under
    /// [`Task::agent_key`]). The same values as [`Store::task`],
    /// [`Store::is_frozen`] and [`Store::agent_facts`] called in turn; a backend that can
    /// reads them in one read transaction, so that they come from one state of the store and
    /// cost one transaction's locks.
    async fn exchange_reads(
        &self,
        task: &TaskId,
        system: &SystemId,
        agent_facts: bool,
    ) -> Result<Option<ExchangeReads>, StoreError> {
        let Some(snapshot) = self.task(task).await? else {
            return Ok(None);
        };
        let frozen = self.is_frozen(system).await?;
        let agent = if agent_facts {
            Some(self.agent_facts(&snapshot.task.agent_key()).await?)
        } else {
            None
        };
        Ok(Some(ExchangeReads {
            snapshot: std::sync::Arc::new(snapshot),
            frozen,
            agent,
        }))
    }

    /// Appends the record and applies the task change atomically and durably before returning.
    async fn write(&self, write: Write) -> Result<Receipt, StoreError>;

    /// Records with `seq > after`, in order, at most `limit`.
    async fn audit_page(&self, after: u64, limit: usize) -> Result<Vec<SealedRecord>, StoreError>;

    /// Where the chain ends: the last record's sequence number and hash (`None`: no record yet).
    async fn audit_head(&self) -> Result<Option<Receipt>, StoreError>;

    /// Keeps a signed checkpoint (outside the chain).
    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;

    /// Stored checkpoints in the order they were made, numbered from 1: those numbered after
    /// `after`, at most `limit`.
    async fn checkpoints(&self, after: u64, limit: usize) -> Result<Vec<Checkpoint>, StoreError>;

    /// Keeps a policy set's files (name, text) under its content hash, so that a decision
    /// recorded under that hash can be replayed. Keeping a hash already kept changes nothing.
    async fn keep_policy_set(
        &self,
        hash: &str,
        files: &[(String, String)],
    ) -> Result<(), StoreError>;

    /// The files of the policy set kept under `hash`, in the order they were kept.
    async fn policy_set(&self, hash: &str) -> Result<Option<Vec<(String, String)>>, StoreError>;

    /// Every record about one task, in order.
    async fn task_records(&self, task: &TaskId) -> Result<Vec<SealedRecord>, StoreError>;

    /// Whether a minted token is still backed by an open task, an unfrozen system and no
    /// revocation of its own.
    async fn token_status(
        &self,
        jti: &str,
        task: &TaskId,
        system: &SystemId,
    ) -> Result<TokenStatus, StoreError>;

    async fn is_frozen(&self, system: &SystemId) -> Result<bool, StoreError>;

    async fn is_agent_revoked(&self, agent: &AgentId) -> Result<bool, StoreError>;

    /// An agent's cross-task facts and their version (0 when none are stored).
    async fn agent_facts(&self, key: &str) -> Result<(AgentFacts, u64), StoreError>;

    async fn delegation(&self, id: &str) -> Result<Option<Delegation>, StoreError>;

    /// Every delegation made in a task, at any depth, revoked or not (separation of duties
    /// counts whoever ever acted in it).
    async fn task_delegations(&self, task: &TaskId) -> Result<Vec<Delegation>, StoreError>;

    /// Whether any of the delegations named was revoked.
    async fn any_delegation_revoked(&self, ids: &[String]) -> Result<bool, StoreError>;

    /// The open tasks of an agent.
    async fn open_tasks(&self, agent: &AgentId) -> Result<Vec<TaskId>, StoreError>;

    /// Whether a record names a token with this `jti` (it was minted, or used, here).
    async fn token_known(&self, jti: &str) -> Result<bool, StoreError>;

    /// Whether `agent` ever held a task here, was delegated to, or was revoked before.
    async fn agent_known(&self, agent: &AgentId) -> Result<bool, StoreError>;

    /// Revocation feed entries with `seq > after`, in order, at most `limit`.
    async fn revocations(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError>;

    /// The SHA-256 (hex) of a system's registered introspection credential.
    async fn credential(&self, system: &SystemId) -> Result<Option<String>, StoreError>;

    async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError>;

    /// The pending approval of `task` for the request hashing to `hash`, if any.
    async fn pending_approval(
        &self,
        task: &TaskId,
        hash: &str,
    ) -> Result<Option<Approval>, StoreError>;

    /// Approvals, newest first, optionally filtered, at most `limit`.
    async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
        system: Option<&SystemId>,
        limit: usize,
    ) -> Result<Vec<Approval>, StoreError>;

    /// Records a poll of an approval; `false` when the last poll was less than `interval_seconds`
    /// before `now` (the caller should slow down). Not part of the audit chain.
    async fn poll_approval(
        &self,
        id: &str,
        now: Timestamp,
        interval_seconds: u32,
    ) -> Result<bool, StoreError>;

    /// Returns once every write queued before the call has been committed (or refused): the
    /// last step of a graceful shutdown. Backends that write synchronously have nothing to do.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
