//! What the exchanges read most, kept in memory by the writer: the tasks and the agents' counters
//! it last committed, and the set of frozen systems. An exchange whose task is here reads no
//! SQLite at all. Without this, each exchange's read transaction began with an empty page cache
//! (in WAL mode a connection drops its cache whenever another connection has committed, which
//! under load is always) and re-read its pages with `pread`s of the WAL and the database file.
//!
//! Only the writer thread puts anything here, after the transaction that wrote it committed;
//! readers never fill it from their own reads, so no read of an older state can land over a
//! newer one. A read that misses goes to SQLite.
//!
//! Only [`crate::SqliteStore::exchange_reads`] is served from here, because every decision made
//! on those reads commits with a check of the database itself: the task's version, the agent's
//! counters' version and the freeze are checked again inside the writer's transaction, so a
//! stale entry can cost a retry, never a permit. An entry can go stale in one way: another
//! process writing the same file (the CLI revoking). Its records advance the audit chain, so the
//! writer sees a head it did not write at its next commit and empties all of this before it
//! applies anything; that commit's version checks refuse what was decided on the old state.
//! Everything else (introspection's token status, the task reads of listings and approvals)
//! reads SQLite.

use handoff_core::cache::CacheCounts;
use handoff_core::counters::AgentFacts;
use handoff_core::ids::{SystemId, TaskId};
use handoff_core::store::{ExchangeReads, metric_names};
use handoff_core::task::TaskSnapshot;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Tasks kept (the ones in use; about 1.7 KB each, so some 3.5 MiB when full).
const TASKS: usize = 2_048;
/// Agents' counters kept.
const AGENTS: usize = 4_096;

pub struct Hot {
    tasks: quick_cache::sync::Cache<TaskId, Arc<TaskSnapshot>>,
    agents: quick_cache::sync::Cache<String, Arc<(AgentFacts, u64)>>,
    /// The frozen systems, as of the writer's last commit; `None` until the writer has read them
    /// (and after a failure to read them again): the readers then ask SQLite.
    frozen: RwLock<Option<Arc<HashSet<SystemId>>>>,
    /// Exchange reads answered from here, and those that went to SQLite (for tests), and the
    /// same counted for `/metrics` (handles made once: a lookup by name per read costs more).
    hits: AtomicU64,
    misses: AtomicU64,
    from_memory: metrics::Counter,
    from_sqlite: metrics::Counter,
}

impl Default for Hot {
    fn default() -> Self {
        Self {
            tasks: quick_cache::sync::Cache::new(TASKS),
            agents: quick_cache::sync::Cache::new(AGENTS),
            frozen: RwLock::new(None),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            from_memory: metrics::counter!(metric_names::EXCHANGE_READS, "from" => "memory"),
            from_sqlite: metrics::counter!(metric_names::EXCHANGE_READS, "from" => "sqlite"),
        }
    }
}

impl Hot {
    /// An exchange's three reads, when all of them are held.
    pub fn exchange_reads(
        &self,
        id: &TaskId,
        system: &SystemId,
        agent_facts: bool,
    ) -> Option<ExchangeReads> {
        let reads = self.held(id, system, agent_facts);
        let (counter, metric) = if reads.is_some() {
            (&self.hits, &self.from_memory)
        } else {
            (&self.misses, &self.from_sqlite)
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metric.increment(1);
        reads
    }

    pub fn counts(&self) -> CacheCounts {
        CacheCounts {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    fn held(&self, id: &TaskId, system: &SystemId, agent_facts: bool) -> Option<ExchangeReads> {
        let snapshot = self.tasks.get(id)?;
        let frozen = self.frozen(system)?;
        let agent = if agent_facts {
            Some(
                self.agents
                    .get(&snapshot.task.agent_key())?
                    .as_ref()
                    .clone(),
            )
        } else {
            None
        };
        Some(ExchangeReads {
            snapshot,
            frozen,
            agent,
        })
    }

    pub fn task(&self, id: &TaskId) -> Option<Arc<TaskSnapshot>> {
        self.tasks.get(id)
    }

    pub fn agent(&self, key: &str) -> Option<Arc<(AgentFacts, u64)>> {
        self.agents.get(key)
    }

    /// Whether `system` is frozen, when the set is known.
    fn frozen(&self, system: &SystemId) -> Option<bool> {
        let frozen = self.frozen.read().ok()?;
        frozen.as_ref().map(|set| set.contains(system))
    }

    // The writer's side: called after a commit, on the writer thread only.

    pub fn frozen_known(&self) -> bool {
        self.frozen.read().is_ok_and(|frozen| frozen.is_some())
    }

    pub fn put_task(&self, id: TaskId, snapshot: Arc<TaskSnapshot>) {
        self.tasks.insert(id, snapshot);
    }

    pub fn put_agent(&self, key: String, facts: AgentFacts, version: u64) {
        self.agents.insert(key, Arc::new((facts, version)));
    }

    pub fn forget_task(&self, id: &TaskId) {
        self.tasks.remove(id);
    }

    pub fn set_frozen(&self, frozen: Option<HashSet<SystemId>>) {
        if let Ok(mut slot) = self.frozen.write() {
            *slot = frozen.map(Arc::new);
        }
    }

    /// Everything forgotten: after a write that changes tasks by other keys than their ids (a
    /// revocation), or writes of another process.
    pub fn clear(&self) {
        self.tasks.clear();
        self.agents.clear();
        self.set_frozen(None);
    }
}
