//! A `Store` wrapper that fails on demand, and lets a test slip a write in just before the next
//! one (a revocation that races a grant).

use crate::approval::{Approval, ApprovalStatus};
use crate::audit::SealedRecord;
use crate::containment::{RevocationEntry, TokenStatus};
use crate::counters::AgentFacts;
use crate::delegation::Delegation;
use crate::ids::{AgentId, SystemId, TaskId};
use crate::store::{Receipt, Store, StoreError, Write};
use crate::task::TaskSnapshot;
use crate::time::Timestamp;
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Wraps any [`Store`]. Reads and writes pass through until switched off with
/// [`FailingStore::fail_reads`] / [`FailingStore::fail_writes`]; then each answers
/// `StoreError::Unavailable`, as a store that went away would.
pub struct FailingStore {
    inner: Arc<dyn Store>,
    reads: AtomicBool,
    writes: AtomicBool,
    /// Writes committed to `inner` just before the next write that passes through.
    racing: Mutex<Vec<Write>>,
    /// Writes that reached `inner` (racing writes included).
    written: AtomicUsize,
}

impl FailingStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            reads: AtomicBool::new(false),
            writes: AtomicBool::new(false),
            racing: Mutex::new(Vec::new()),
            written: AtomicUsize::new(0),
        }
    }

    /// The wrapped store, which never fails on demand.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// Every read fails from now on (`true`) or passes again (`false`).
    pub fn fail_reads(&self, fail: bool) {
        self.reads.store(fail, Ordering::SeqCst);
    }

    /// Every write fails from now on (`true`) or passes again (`false`).
    pub fn fail_writes(&self, fail: bool) {
        self.writes.store(fail, Ordering::SeqCst);
    }

    /// Both reads and writes.
    pub fn fail_all(&self, fail: bool) {
        self.fail_reads(fail);
        self.fail_writes(fail);
    }

    /// Commits `write` to the wrapped store just before the next write passes through: the
    /// service has read and decided, and this (a revocation, a freeze) lands before its commit.
    pub fn race_next_write(&self, write: Write) {
        if let Ok(mut racing) = self.racing.lock() {
            racing.push(write);
        }
    }

    /// How many writes reached the wrapped store.
    pub fn writes(&self) -> usize {
        self.written.load(Ordering::SeqCst)
    }

    fn read(&self) -> Result<(), StoreError> {
        if self.reads.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable(
                "the store is switched off (test)".to_owned(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for FailingStore {
    async fn task(&self, id: &TaskId) -> Result<Option<TaskSnapshot>, StoreError> {
        self.read()?;
        self.inner.task(id).await
    }

    async fn write(&self, write: Write) -> Result<Receipt, StoreError> {
        if self.writes.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "the store is switched off (test)".to_owned(),
            ));
        }
        let racing = self
            .racing
            .lock()
            .map(|mut racing| std::mem::take(&mut *racing))
            .unwrap_or_default();
        for first in racing {
            self.inner.write(first).await?;
            self.written.fetch_add(1, Ordering::SeqCst);
        }
        let receipt = self.inner.write(write).await?;
        self.written.fetch_add(1, Ordering::SeqCst);
        Ok(receipt)
    }

    async fn audit_page(&self, after: u64, limit: usize) -> Result<Vec<SealedRecord>, StoreError> {
        self.read()?;
        self.inner.audit_page(after, limit).await
    }

    async fn audit_head(&self) -> Result<Option<Receipt>, StoreError> {
        self.read()?;
        self.inner.audit_head().await
    }

    async fn insert_checkpoint(
        &self,
        checkpoint: &crate::checkpoint::Checkpoint,
    ) -> Result<(), StoreError> {
        if self.writes.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "the store is switched off (test)".to_owned(),
            ));
        }
        self.inner.insert_checkpoint(checkpoint).await
    }

    async fn checkpoints(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::checkpoint::Checkpoint>, StoreError> {
        self.read()?;
        self.inner.checkpoints(after, limit).await
    }

    async fn keep_policy_set(
        &self,
        hash: &str,
        files: &[(String, String)],
    ) -> Result<(), StoreError> {
        if self.writes.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "the store is switched off (test)".to_owned(),
            ));
        }
        self.inner.keep_policy_set(hash, files).await
    }

    async fn policy_set(&self, hash: &str) -> Result<Option<Vec<(String, String)>>, StoreError> {
        self.read()?;
        self.inner.policy_set(hash).await
    }

    async fn task_records(&self, task: &TaskId) -> Result<Vec<SealedRecord>, StoreError> {
        self.read()?;
        self.inner.task_records(task).await
    }

    async fn token_status(
        &self,
        jti: &str,
        task: &TaskId,
        system: &SystemId,
    ) -> Result<TokenStatus, StoreError> {
        self.read()?;
        self.inner.token_status(jti, task, system).await
    }

    async fn token_known(&self, jti: &str) -> Result<bool, StoreError> {
        self.read()?;
        self.inner.token_known(jti).await
    }

    async fn agent_known(&self, agent: &AgentId) -> Result<bool, StoreError> {
        self.read()?;
        self.inner.agent_known(agent).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }

    async fn is_frozen(&self, system: &SystemId) -> Result<bool, StoreError> {
        self.read()?;
        self.inner.is_frozen(system).await
    }

    async fn is_agent_revoked(&self, agent: &AgentId) -> Result<bool, StoreError> {
        self.read()?;
        self.inner.is_agent_revoked(agent).await
    }

    async fn agent_facts(&self, key: &str) -> Result<(AgentFacts, u64), StoreError> {
        self.read()?;
        self.inner.agent_facts(key).await
    }

    async fn delegation(&self, id: &str) -> Result<Option<Delegation>, StoreError> {
        self.read()?;
        self.inner.delegation(id).await
    }

    async fn task_delegations(&self, task: &TaskId) -> Result<Vec<Delegation>, StoreError> {
        self.read()?;
        self.inner.task_delegations(task).await
    }

    async fn any_delegation_revoked(&self, ids: &[String]) -> Result<bool, StoreError> {
        self.read()?;
        self.inner.any_delegation_revoked(ids).await
    }

    async fn open_tasks(&self, agent: &AgentId) -> Result<Vec<TaskId>, StoreError> {
        self.read()?;
        self.inner.open_tasks(agent).await
    }

    async fn revocations(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        self.read()?;
        self.inner.revocations(after, limit).await
    }

    async fn credential(&self, system: &SystemId) -> Result<Option<String>, StoreError> {
        self.read()?;
        self.inner.credential(system).await
    }

    async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        self.read()?;
        self.inner.approval(id).await
    }

    async fn pending_approval(
        &self,
        task: &TaskId,
        hash: &str,
    ) -> Result<Option<Approval>, StoreError> {
        self.read()?;
        self.inner.pending_approval(task, hash).await
    }

    async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
        system: Option<&SystemId>,
        limit: usize,
    ) -> Result<Vec<Approval>, StoreError> {
        self.read()?;
        self.inner.approvals(status, system, limit).await
    }

    async fn poll_approval(
        &self,
        id: &str,
        now: Timestamp,
        interval_seconds: u32,
    ) -> Result<bool, StoreError> {
        // A poll is a small write outside the chain: it fails with the writes.
        if self.writes.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "the store is switched off (test)".to_owned(),
            ));
        }
        self.inner.poll_approval(id, now, interval_seconds).await
    }
}
