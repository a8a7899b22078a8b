//! The PostgreSQL store: several Handoff nodes share one database. Each node group-commits its
//! writes in one transaction that locks the chain's head row, so the audit chain has one total
//! order across nodes and a task's version checks see every node's last commit.

mod import;
mod keys;
mod migrate;
mod reader;
mod writer;

pub use import::{ImportError, ImportReport, ImportTable};
pub use keys::StoredKey;
pub use migrate::MigrateError;
pub use writer::REVOCATIONS_CHANNEL;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
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
use std::fmt::Display;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Writes queued for the writer; past this, callers wait (backpressure).
const QUEUE_DEPTH: usize = 16_384;
/// Connections per node: the writer's and the readers'.
const POOL_SIZE: usize = 16;
/// How long a request waits for a connection before the store is called unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PgStore {
    pool: Pool,
    queue: mpsc::Sender<writer::Queued>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the store URL is not a PostgreSQL connection string: {0}")]
    Url(tokio_postgres::Error),
    #[error("cannot set up the connection pool: {0}")]
    Pool(String),
    #[error("cannot reach the database: {0}")]
    Connect(String),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
}

/// A store error for a fault reaching or using the database; never names the connection string.
pub(crate) fn unavailable(error: &impl Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// Whether `url` names a PostgreSQL store (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl PgStore {
    /// Connects to `url`, applies this binary's migrations (refusing a newer schema) and starts
    /// the node's writer. Call inside a Tokio runtime.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(OpenError::Url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| OpenError::Pool(e.to_string()))?;
        {
            let mut client = pool
                .get()
                .await
                .map_err(|e| OpenError::Connect(e.to_string()))?;
            let client: &mut tokio_postgres::Client = &mut client;
            migrate::migrate(client).await?;
        }
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(writer::run(pool.clone(), jobs));
        Ok(Self { pool, queue })
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| unavailable(&e))
    }
}

#[async_trait]
impl Store for PgStore {
    async fn task(&self, id: &TaskId) -> Result<Option<TaskSnapshot>, StoreError> {
        reader::task(&self.client().await?, id).await
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
        reader::audit_page(&self.client().await?, after, limit).await
    }

    async fn audit_head(&self) -> Result<Option<Receipt>, StoreError> {
        reader::audit_head(&self.client().await?).await
    }

    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let seq = i64::try_from(checkpoint.seq).unwrap_or(i64::MAX);
        reader::run(
            &self.client().await?,
            "INSERT INTO checkpoints (seq, head, at, jws) VALUES ($1, $2, $3, $4)",
            &[
                &seq,
                &checkpoint.head,
                &checkpoint.at.millis(),
                &checkpoint.jws,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn checkpoints(&self, after: u64, limit: usize) -> Result<Vec<Checkpoint>, StoreError> {
        reader::checkpoints(&self.client().await?, after, limit).await
    }

    async fn keep_policy_set(
        &self,
        hash: &str,
        files: &[(String, String)],
    ) -> Result<(), StoreError> {
        let files = serde_json::to_string(files)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode a policy set: {e}")))?;
        reader::run(
            &self.client().await?,
            "INSERT INTO policy_sets (hash, files) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
            &[&hash, &files],
        )
        .await
        .map(|_| ())
    }

    async fn policy_set(&self, hash: &str) -> Result<Option<Vec<(String, String)>>, StoreError> {
        reader::policy_set(&self.client().await?, hash).await
    }

    async fn task_records(&self, task: &TaskId) -> Result<Vec<SealedRecord>, StoreError> {
        reader::task_records(&self.client().await?, task).await
    }

    async fn token_status(
        &self,
        jti: &str,
        task: &TaskId,
        system: &SystemId,
    ) -> Result<TokenStatus, StoreError> {
        reader::token_status(&self.client().await?, jti, task, system).await
    }

    async fn exchange_reads(
        &self,
        task: &TaskId,
        system: &SystemId,
        agent_facts: bool,
    ) -> Result<Option<ExchangeReads>, StoreError> {
        reader::exchange_reads(&self.client().await?, task, system, agent_facts).await
    }

    async fn is_frozen(&self, system: &SystemId) -> Result<bool, StoreError> {
        reader::exists(
            &self.client().await?,
            "SELECT 1 FROM frozen_systems WHERE system = $1",
            system.as_str(),
        )
        .await
    }

    async fn is_agent_revoked(&self, agent: &AgentId) -> Result<bool, StoreError> {
        reader::exists(
            &self.client().await?,
            "SELECT 1 FROM revoked_agents WHERE agent = $1",
            agent.as_str(),
        )
        .await
    }

    async fn agent_facts(&self, key: &str) -> Result<(AgentFacts, u64), StoreError> {
        reader::agent_facts(&self.client().await?, key).await
    }

    async fn delegation(&self, id: &str) -> Result<Option<Delegation>, StoreError> {
        reader::delegation(&self.client().await?, id).await
    }

    async fn task_delegations(&self, task: &TaskId) -> Result<Vec<Delegation>, StoreError> {
        reader::task_delegations(&self.client().await?, task.as_str()).await
    }

    async fn any_delegation_revoked(&self, ids: &[String]) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT 1 FROM revoked_delegations WHERE id = ANY($1)")
            .await
            .map_err(|e| unavailable(&e))?;
        let row = client
            .query_opt(&stmt, &[&ids])
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(row.is_some())
    }

    async fn open_tasks(&self, agent: &AgentId) -> Result<Vec<TaskId>, StoreError> {
        reader::open_tasks(&self.client().await?, agent).await
    }

    async fn token_known(&self, jti: &str) -> Result<bool, StoreError> {
        reader::exists(
            &self.client().await?,
            "SELECT 1 FROM audit WHERE jti = $1 LIMIT 1",
            jti,
        )
        .await
    }

    async fn agent_known(&self, agent: &AgentId) -> Result<bool, StoreError> {
        reader::exists(
            &self.client().await?,
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM tasks WHERE agent = $1)
                OR EXISTS (SELECT 1 FROM revoked_agents WHERE agent = $1)
                OR EXISTS (SELECT 1 FROM delegations WHERE delegate = $1)",
            agent.as_str(),
        )
        .await
    }

    async fn revocations(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RevocationEntry>, StoreError> {
        reader::revocations(&self.client().await?, after, limit).await
    }

    async fn credential(&self, system: &SystemId) -> Result<Option<String>, StoreError> {
        reader::credential(&self.client().await?, system).await
    }

    async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        reader::approval(&self.client().await?, id).await
    }

    async fn pending_approval(
        &self,
        task: &TaskId,
        hash: &str,
    ) -> Result<Option<Approval>, StoreError> {
        reader::pending_approval(&self.client().await?, task, hash).await
    }

    async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
        system: Option<&SystemId>,
        limit: usize,
    ) -> Result<Vec<Approval>, StoreError> {
        reader::approvals(&self.client().await?, status, system, limit).await
    }

    async fn poll_approval(
        &self,
        id: &str,
        now: Timestamp,
        interval_seconds: u32,
    ) -> Result<bool, StoreError> {
        let earliest = now.millis() - i64::from(interval_seconds) * 1000;
        let changed = reader::run(
            &self.client().await?,
            "UPDATE approvals SET last_poll = $1
             WHERE id = $2 AND (last_poll IS NULL OR last_poll <= $3)",
            &[&now.millis(), &id, &earliest],
        )
        .await?;
        Ok(changed == 1)
    }
}
