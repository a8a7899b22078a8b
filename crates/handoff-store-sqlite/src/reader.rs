//! Reads on a small pool of read-only connections.

use handoff_core::approval::{Approval, ApprovalStatus};
use handoff_core::audit::SealedRecord;
use handoff_core::checkpoint::Checkpoint;
use handoff_core::containment::{RevocationEntry, RevocationKind, TokenStatus};
use handoff_core::counters::AgentFacts;
use handoff_core::delegation::Delegation;
use handoff_core::ids::{AgentId, Purpose, SystemId, TaskId, UserId};
use handoff_core::store::{ExchangeReads, Receipt, StoreError};
use handoff_core::task::{Task, TaskFacts, TaskSnapshot, TaskState};
use handoff_core::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{exec, unavailable};

pub struct Readers {
    pool: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    pub fn new(connections: Vec<Connection>) -> Self {
        Self {
            pool: connections.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Runs `f` on a free connection, or waits for the next in turn.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        for slot in &self.pool {
            if let Ok(conn) = slot.try_lock() {
                return f(&conn);
            }
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len().max(1);
        let slot = self
            .pool
            .get(index)
            .ok_or_else(|| StoreError::Unavailable("no reader".to_owned()))?;
        let conn = slot
            .lock()
            .map_err(|_| StoreError::Unavailable("a reader panicked".to_owned()))?;
        f(&conn)
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// A task row's columns, before the JSON and enum columns are decoded.
struct TaskRow {
    task: Task,
    plan: String,
    state: String,
    facts: String,
    version: i64,
}

fn task_row(row: &Row<'_>) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        task: Task {
            id: TaskId::new(row.get::<_, String>(0)?),
            agent_issuer: row.get(1)?,
            agent: AgentId::new(row.get::<_, String>(2)?),
            user: UserId::new(row.get::<_, String>(3)?),
            purpose: Purpose::new(row.get::<_, String>(4)?),
            intent: row.get(5)?,
            plan: Default::default(),
            created_at: Timestamp::from_millis(row.get(7)?),
            expires_at: Timestamp::from_millis(row.get(8)?),
            state: TaskState::Open,
        },
        plan: row.get(6)?,
        state: row.get(9)?,
        facts: row.get(10)?,
        version: row.get(11)?,
    })
}

pub fn task(conn: &Connection, id: &TaskId) -> Result<Option<TaskSnapshot>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, agent_issuer, agent, user_id, purpose, intent, plan, created_at, expires_at,
                    state, facts, version FROM tasks WHERE id = ?1",
        )
        .map_err(unavailable)?;
    let Some(row) = stmt
        .query_row(params![id.as_str()], task_row)
        .optional()
        .map_err(unavailable)?
    else {
        return Ok(None);
    };
    let mut task = row.task;
    task.state = TaskState::parse(&row.state).ok_or_else(|| corrupt("task state"))?;
    let plan: Vec<String> = serde_json::from_str(&row.plan).map_err(|_| corrupt("task plan"))?;
    task.plan = plan.into_iter().map(SystemId::new).collect();
    let facts: TaskFacts = serde_json::from_str(&row.facts).map_err(|_| corrupt("task facts"))?;
    let version = u64::try_from(row.version).map_err(|_| corrupt("task version"))?;
    Ok(Some(TaskSnapshot {
        task,
        facts,
        version,
    }))
}

/// A read transaction on a reader: the reads inside it see one state of the store, and take the
/// WAL's read locks once. It ends when dropped, on every path, so that no reader is left
/// holding an old state.
struct ReadTransaction<'c> {
    conn: &'c Connection,
}

impl<'c> ReadTransaction<'c> {
    fn begin(conn: &'c Connection) -> Result<Self, StoreError> {
        exec(conn, "BEGIN").map_err(unavailable)?;
        Ok(Self { conn })
    }
}

impl Drop for ReadTransaction<'_> {
    fn drop(&mut self) {
        // A read transaction has nothing to commit; should ending it fail, roll it back.
        if exec(self.conn, "COMMIT").is_err() && !self.conn.is_autocommit() {
            let _ = exec(self.conn, "ROLLBACK");
        }
    }
}

/// What an exchange reads before it decides, in one read transaction.
pub fn exchange_reads(
    conn: &Connection,
    id: &TaskId,
    system: &SystemId,
    agent_facts: bool,
) -> Result<Option<ExchangeReads>, StoreError> {
    let read = ReadTransaction::begin(conn)?;
    let Some(snapshot) = task(read.conn, id)? else {
        return Ok(None);
    };
    let frozen = exists(read.conn, FROZEN, system.as_str())?;
    let agent = agent_facts
        .then(|| self::agent_facts(read.conn, &snapshot.task.agent_key()))
        .transpose()?;
    Ok(Some(ExchangeReads {
        snapshot: std::sync::Arc::new(snapshot),
        frozen,
        agent,
    }))
}

/// Whether a system is frozen: one row per frozen system (read by the writer too).
pub const FROZEN: &str = "SELECT 1 FROM frozen_systems WHERE system = ?1";

fn record_row(row: &Row<'_>) -> rusqlite::Result<SealedRecord> {
    Ok(SealedRecord {
        seq: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
        at: Timestamp::from_millis(row.get(1)?),
        task: row.get(2)?,
        body: row.get(3)?,
        prev_hash: row.get(4)?,
        hash: row.get(5)?,
    })
}

pub fn audit_page(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<SealedRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT seq, at, task, body, prev_hash, hash FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2")
        .map_err(unavailable)?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(params![after, limit], record_row)
        .map_err(unavailable)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
}

pub fn audit_head(conn: &Connection) -> Result<Option<Receipt>, StoreError> {
    conn.query_row(
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        [],
        |row| {
            Ok(Receipt {
                seq: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                hash: row.get(1)?,
            })
        },
    )
    .optional()
    .map_err(unavailable)
}

/// The files of the policy set kept under `hash`.
pub fn policy_set(
    conn: &Connection,
    hash: &str,
) -> Result<Option<Vec<(String, String)>>, StoreError> {
    let files: Option<String> = conn
        .prepare_cached("SELECT files FROM policy_sets WHERE hash = ?1")
        .map_err(unavailable)?
        .query_row(params![hash], |row| row.get(0))
        .optional()
        .map_err(unavailable)?;
    files
        .map(|files| serde_json::from_str(&files).map_err(|_| corrupt("kept policy set")))
        .transpose()
}

pub fn checkpoints(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<Checkpoint>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, head, at, jws FROM checkpoints WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .map_err(unavailable)?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(params![after, limit], |row| {
            Ok(Checkpoint {
                seq: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                head: row.get(1)?,
                at: Timestamp::from_millis(row.get(2)?),
                jws: row.get(3)?,
            })
        })
        .map_err(unavailable)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
}

pub fn task_records(conn: &Connection, task: &TaskId) -> Result<Vec<SealedRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, at, task, body, prev_hash, hash FROM audit WHERE task = ?1 ORDER BY seq",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![task.as_str()], record_row)
        .map_err(unavailable)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
}

pub fn exists(conn: &Connection, sql: &str, key: &str) -> Result<bool, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.exists(params![key]))
        .map_err(unavailable)
}

pub fn token_status(
    conn: &Connection,
    jti: &str,
    task: &TaskId,
    system: &SystemId,
) -> Result<TokenStatus, StoreError> {
    let token_revoked = exists(conn, "SELECT 1 FROM revoked_tokens WHERE jti = ?1", jti)?;
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM tasks WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row(params![task.as_str()], |row| row.get(0))
                .optional()
        })
        .map_err(unavailable)?;
    let task_state = match state {
        Some(state) => Some(TaskState::parse(&state).ok_or_else(|| corrupt("task state"))?),
        None => None,
    };
    let system_frozen = exists(conn, FROZEN, system.as_str())?;
    Ok(TokenStatus {
        token_revoked,
        task_state,
        system_frozen,
    })
}

pub fn open_tasks(conn: &Connection, agent: &AgentId) -> Result<Vec<TaskId>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id FROM tasks WHERE agent = ?1 AND state = 'open' ORDER BY created_at",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![agent.as_str()], |row| row.get::<_, String>(0))
        .map_err(unavailable)?;
    rows.map(|r| r.map(TaskId::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)
}

pub fn revocations(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<RevocationEntry>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT seq, kind, subject, at, reason FROM revocations WHERE seq > ?1 ORDER BY seq LIMIT ?2")
        .map_err(unavailable)?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(params![after, limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
            ))
        })
        .map_err(unavailable)?;
    let mut entries = Vec::new();
    for row in rows {
        let (seq, kind, subject, at, reason) = row.map_err(unavailable)?;
        entries.push(RevocationEntry {
            seq: u64::try_from(seq).map_err(|_| corrupt("revocation sequence"))?,
            kind: RevocationKind::parse(&kind).ok_or_else(|| corrupt("revocation kind"))?,
            subject,
            at: Timestamp::from_millis(at),
            reason,
        });
    }
    Ok(entries)
}

pub fn credential(conn: &Connection, system: &SystemId) -> Result<Option<String>, StoreError> {
    conn.prepare_cached("SELECT secret_sha256 FROM credentials WHERE system = ?1")
        .and_then(|mut stmt| {
            stmt.query_row(params![system.as_str()], |row| row.get(0))
                .optional()
        })
        .map_err(unavailable)
}

pub fn agent_facts(conn: &Connection, key: &str) -> Result<(AgentFacts, u64), StoreError> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT facts, version FROM agent_facts WHERE key = ?1")
        .and_then(|mut stmt| {
            stmt.query_row(params![key], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(unavailable)?;
    match row {
        None => Ok((AgentFacts::default(), 0)),
        Some((facts, version)) => Ok((
            serde_json::from_str(&facts).map_err(|_| corrupt("agent facts"))?,
            u64::try_from(version).map_err(|_| corrupt("agent facts version"))?,
        )),
    }
}

pub fn delegation(conn: &Connection, id: &str) -> Result<Option<Delegation>, StoreError> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM delegations WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row(params![id], |row| row.get(0)).optional())
        .map_err(unavailable)?;
    body.map(|b| serde_json::from_str(&b).map_err(|_| corrupt("delegation")))
        .transpose()
}

pub fn task_delegations(conn: &Connection, task: &str) -> Result<Vec<Delegation>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT body FROM delegations WHERE task = ?1 ORDER BY rowid")
        .map_err(unavailable)?;
    let bodies = stmt
        .query_map(params![task], |row| row.get::<_, String>(0))
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(unavailable)?;
    bodies
        .iter()
        .map(|b| serde_json::from_str(b).map_err(|_| corrupt("delegation")))
        .collect()
}

const APPROVAL_COLUMNS: &str =
    "id, task, agent, user_id, system, actions, resource, details, request_hash, grp, risk,
     status, created_at, expires_at, decided_by, decided_at, reason, consumed_by, escalated";

/// An approval row, before its JSON and status columns are decoded.
struct ApprovalRow {
    approval: Approval,
    actions: String,
    details: Option<String>,
    status: String,
}

fn approval_row(row: &Row<'_>) -> rusqlite::Result<ApprovalRow> {
    let approval = Approval {
        id: row.get(0)?,
        task: TaskId::new(row.get::<_, String>(1)?),
        agent: AgentId::new(row.get::<_, String>(2)?),
        user: UserId::new(row.get::<_, String>(3)?),
        system: SystemId::new(row.get::<_, String>(4)?),
        actions: Vec::new(),
        resource: row.get(6)?,
        details: None,
        request_hash: row.get(8)?,
        group: row.get(9)?,
        risk: row.get(10)?,
        status: ApprovalStatus::Pending,
        created_at: Timestamp::from_millis(row.get(12)?),
        expires_at: Timestamp::from_millis(row.get(13)?),
        decided_by: row.get(14)?,
        decided_at: row.get::<_, Option<i64>>(15)?.map(Timestamp::from_millis),
        reason: row.get(16)?,
        consumed_by: row.get(17)?,
        escalated: row.get::<_, i64>(18)? != 0,
    };
    Ok(ApprovalRow {
        approval,
        actions: row.get(5)?,
        details: row.get(7)?,
        status: row.get(11)?,
    })
}

fn decode_approval(row: ApprovalRow) -> Result<Approval, StoreError> {
    let mut approval = row.approval;
    approval.actions =
        serde_json::from_str(&row.actions).map_err(|_| corrupt("approval actions"))?;
    approval.details = row
        .details
        .map(|d| serde_json::from_str(&d))
        .transpose()
        .map_err(|_| corrupt("approval details"))?;
    // An unknown status is corrupt data, never an approval.
    approval.status =
        ApprovalStatus::parse(&row.status).ok_or_else(|| corrupt("approval status"))?;
    Ok(approval)
}

pub fn approval(conn: &Connection, id: &str) -> Result<Option<Approval>, StoreError> {
    let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1");
    let row = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| stmt.query_row(params![id], approval_row).optional())
        .map_err(unavailable)?;
    row.map(decode_approval).transpose()
}

pub fn pending_approval(
    conn: &Connection,
    task: &TaskId,
    hash: &str,
) -> Result<Option<Approval>, StoreError> {
    let sql = format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE task = ?1 AND request_hash = ?2 AND status = 'pending'
         ORDER BY created_at DESC LIMIT 1"
    );
    let row = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_row(params![task.as_str(), hash], approval_row)
                .optional()
        })
        .map_err(unavailable)?;
    row.map(decode_approval).transpose()
}

pub fn approvals(
    conn: &Connection,
    status: Option<ApprovalStatus>,
    system: Option<&SystemId>,
    limit: usize,
) -> Result<Vec<Approval>, StoreError> {
    let sql = format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR system = ?2)
         ORDER BY created_at DESC LIMIT ?3"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(&sql).map_err(unavailable)?;
    let rows = stmt
        .query_map(
            params![
                status.map(ApprovalStatus::as_str),
                system.map(SystemId::as_str),
                limit
            ],
            approval_row,
        )
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(decode_approval(row.map_err(unavailable)?)?);
    }
    Ok(out)
}
