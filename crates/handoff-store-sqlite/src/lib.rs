//! The embedded SQLite store: one file under the data directory, WAL-journaled, with one writer
//! thread that group-commits concurrent writes so many exchanges share one fsync.

mod checkpointer;
mod export;
mod hot;
mod migrate;
mod reader;
#[cfg(feature = "test-util")]
pub mod testing;
mod writer;

pub use export::{ExportError, ExportedTable, export};

use async_trait::async_trait;
use handoff_core::approval::{Approval, ApprovalStatus};
use handoff_core::audit::SealedRecord;
use handoff_core::checkpoint::Checkpoint;
use handoff_core::containment::{RevocationEntry, TokenStatus};
use handoff_core::counters::AgentFacts;
use handoff_core::delegation::Delegation;
use handoff_core::ids::{AgentId, SystemId, TaskId};
use handoff_core::store::{ExchangeReads, Receipt, Store, StoreError, Write};
use handoff_core::task::TaskSnapshot;
use handoff_core::time::Timestamp;
use reader::Readers;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Writes queued for the writer thread; past this, callers wait (backpressure).
const QUEUE_DEPTH: usize = 16_384;
/// Read connections; WAL lets them read while the writer commits.
const READERS: usize = 4;

pub struct SqliteStore {
    queue: mpsc::Sender<writer::Queued>,
    readers: Readers,
    /// What the writer last committed of the tasks and counters in use (`hot.rs`).
    hot: Arc<hot::Hot>,
    /// For small updates outside the audit chain (approval polls).
    side: std::sync::Mutex<Connection>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the database: {0}")]
    Open(#[from] rusqlite::Error),
    #[error("the database is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot start the writer thread: {0}")]
    Thread(#[from] std::io::Error),
}

pub(crate) fn unavailable(error: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// Runs one statement that returns no rows (a transaction's own: `BEGIN`, `SAVEPOINT`, ...),
/// prepared once per connection and kept: rusqlite's transaction types prepare theirs on every
/// use, five parses per record.
pub(crate) fn exec(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk (the WAL is fsynced) before the caller is answered.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Every statement a connection runs stays prepared (rusqlite keeps 16 by default, fewer than
    // the writer and the readers use, so some were parsed again on every request).
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    /// Exchange reads answered from what the writer last committed, and those read from SQLite
    /// (`hot.rs`), since the store was opened.
    pub fn hot_reads(&self) -> handoff_core::cache::CacheCounts {
        self.hot.counts()
    }

    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let mut conn = connect(path)?;
        migrate::migrate(&mut conn)?;
        let head = writer::load_head(&conn).map_err(|e| OpenError::Corrupt(e.to_string()))?;
        // The writer never checkpoints inside a commit: the checkpointer thread does, beside it.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (nudge, woken) = checkpointer::channel();
        let checkpointing = connect(path)?;
        std::thread::Builder::new()
            .name("handoff-sqlite-checkpointer".to_owned())
            .spawn(move || checkpointer::run(checkpointing, woken))?;
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        let hot = Arc::new(hot::Hot::default());
        let writes_hot = Arc::clone(&hot);
        std::thread::Builder::new()
            .name("handoff-sqlite-writer".to_owned())
            .spawn(move || writer::run(conn, jobs, nudge, writes_hot, head))?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let conn = connect(path)?;
            conn.pragma_update(None, "query_only", "ON")?;
            readers.push(conn);
        }
        let side = connect(path)?;
        side.pragma_update(None, "wal_autocheckpoint", 0)?;
        let side = std::sync::Mutex::new(side);
        Ok(Self {
            queue,
            readers: Readers::new(readers),
            hot,
            side,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn task(&self, id: &TaskId) -> Result<Option<TaskSnapshot>, StoreError> {
        self.readers.with(|conn| reader::task(conn, id))
    }

    async fn write(&self, write: Write) -> Result<Receipt, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(writer::Queued::Write(writer::Job { write, reply }))
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".to_owned()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer dropped the write".to_owned()))?
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (done, flushed) = oneshot::channel();
        self.queue
            .send(writer::Queued::Flush(done))
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".to_owned()))?;
        flushed
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped before the flush".to_owned()))
    }

    async fn audit_page(&self, after: u64, limit: usize) -> Result<Vec<SealedRecord>, StoreError> {
        self.readers
            .with(|conn| reader::audit_page(conn, after, limit))
    }

    async fn audit_head(&self) -> Result<Option<Receipt>, StoreError> {
        self.readers.with(reader::audit_head)
    }

    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let conn = self
            .side
            .lock()
            .map_err(|_| StoreError::Unavailable("a writer panicked".to_owned()))?;
        conn.execute(
            "INSERT INTO checkpoints (seq, head, at, jws) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                i64::try_from(checkpoint.seq).unwrap_or(i64::MAX),
                checkpoint.head,
                checkpoint.at.millis(),
                checkpoint.jws
            ],
        )
        .map_err(unavailable)?;
        Ok(())
    }

    async fn checkpoints(&self, after: u64, limit: usize) -> Result<Vec<Checkpoint>, StoreError> {
        self.readers
            .with(|conn| reader::checkpoints(conn, after, limit))
    }

    async fn keep_policy_set(
        &self,
        hash: &str,
        files: &[(String, String)],
    ) -> Result<(), StoreError> {
        let files = serde_json::to_string(files)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode a policy set: {e}")))?;
        let conn = self
            .side
            .lock()
            .map_err(|_| StoreError::Unavailable("a writer panicked".to_owned()))?;
        conn.execute(
            "INSERT OR IGNORE INTO policy_sets (hash, files) VALUES (?1, ?2)",
            rusqlite::params![hash, files],
        )
        .map_err(unavailable)?;
        Ok(())
    }

    async fn policy_set(&self, hash: &str) -> Result<Option<Vec<(String, String)>>, StoreError> {
        self.readers.with(|conn| reader::policy_set(conn, hash))
    }

    async fn task_records(&self, task: &TaskId) -> Result<Vec<SealedRecord>, StoreError> {
        self.readers.with(|conn| reader::task_records(conn, task))
    }

    async fn token_status(
        &self,
        jti: &str,
        task: &TaskId,
        system: &SystemId,
    ) -> Result<TokenStatus, StoreError> {
        self.readers
            .with(|conn| reader::token_status(conn, jti, task, system))
    }

    async fn exchange_reads(
        &self,
        task: &TaskId,
        system: &SystemId,
        agent_facts: bool,
    ) -> Result<Option<ExchangeReads>, StoreError> {
        // From what the writer last committed when it holds all three (`hot.rs`: why that is
        // safe for an exchange, and only for it), else one read transaction.
        if let Some(reads) = self.hot.exchange_reads(task, system, agent_facts) {
            return Ok(Some(reads));
        }
        self.readers
            .with(|conn| reader::exchange_reads(conn, task, system, agent_facts))
    }

    async fn is_frozen(&self, system: &SystemId) -> Result<bool, StoreError> {
        self.readers
            .with(|conn| reader::exists(conn, reader::FROZEN, system.as_str()))
    }

    async fn is_agent_revoked(&self, agent: &AgentId) -> Result<bool, StoreError> {
        self.readers.with(|conn| {
            reader::exists(
                conn,
                "SELECT 1 FROM revoked_agents WHERE agent = ?1",
                agent.as_str(),
            )
        })
    }

    async fn agent_facts(&self, key: &str) -> Result<(AgentFacts, u64), StoreError> {
        self.readers.with(|conn| reader::agent_facts(conn, key))
    }

    async fn delegation(&self, id: &str) -> Result<Option<Delegation>, StoreError> {
        self.readers.with(|conn| reader::delegation(conn, id))
    }

    async fn task_delegations(&self, task: &TaskId) -> Result<Vec<Delegation>, StoreError> {
        self.readers
            .with(|conn| reader::task_delegations(conn, task.as_str()))
    }

    async fn any_delegation_revoked(&self, ids: &[String]) -> Result<bool, StoreError> {
        self.readers.with(|conn| {
            for id in ids {
                if reader::exists(conn, "SELECT 1 FROM revoked_delegations WHERE id = ?1", id)? {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }

    async fn open_tasks(&self, agent: &AgentId) -> Result<Vec<TaskId>, StoreError> {
        self.readers.with(|conn| reader::open_tasks(conn, agent))
    }

    async fn token_known(&self, jti: &str) -> Result<bool, StoreError> {
        // A lookup in `audit_by_token` (migration 9).
        self.readers
            .with(|conn| reader::exists(conn, "SELECT 1 FROM audit WHERE jti = ?1", jti))
    }

    async fn agent_known(&self, agent: &AgentId) -> Result<bool, StoreError> {
        self.readers.with(|conn| {
            Ok(
                reader::exists(conn, "SELECT 1 FROM tasks WHERE agent = ?1", agent.as_str())?
                    || reader::exists(
                        conn,
                        "SELECT 1 FROM revoked_agents WHERE agent = ?1",
                        agent.as_str(),
                    )?
                    || reader::exists(
                        conn,
                        "SELECT 1 FROM delegations WHERE json_extract(body, '$.delegate') = ?1",
                        agent.as_str(),
                    )?,
            )
        })
    }

    async fn revocations(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        self.readers
            .with(|conn| reader::revocations(conn, after, limit))
    }

    async fn credential(&self, system: &SystemId) -> Result<Option<String>, StoreError> {
        self.readers.with(|conn| reader::credential(conn, system))
    }

    async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        self.readers.with(|conn| reader::approval(conn, id))
    }

    async fn pending_approval(
        &self,
        task: &TaskId,
        hash: &str,
    ) -> Result<Option<Approval>, StoreError> {
        self.readers
            .with(|conn| reader::pending_approval(conn, task, hash))
    }

    async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
        system: Option<&SystemId>,
        limit: usize,
    ) -> Result<Vec<Approval>, StoreError> {
        self.readers
            .with(|conn| reader::approvals(conn, status, system, limit))
    }

    async fn poll_approval(
        &self,
        id: &str,
        now: Timestamp,
        interval_seconds: u32,
    ) -> Result<bool, StoreError> {
        let conn = self
            .side
            .lock()
            .map_err(|_| StoreError::Unavailable("a writer panicked".to_owned()))?;
        let earliest = now.millis() - i64::from(interval_seconds) * 1000;
        let changed = conn
            .execute(
                "UPDATE approvals SET last_poll = ?1 WHERE id = ?2 AND (last_poll IS NULL OR last_poll <= ?3)",
                rusqlite::params![now.millis(), id, earliest],
            )
            .map_err(unavailable)?;
        Ok(changed == 1)
    }
}
