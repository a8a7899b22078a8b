//! Reads on pooled connections, with cached prepared statements.

use crate::unavailable;
use deadpool_postgres::Object;
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
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn column(error: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(format!("unexpected column: {error}"))
}

async fn query(client: &Object, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
    let stmt = client
        .prepare_cached(sql)
        .await
        .map_err(|e| unavailable(&e))?;
    client
        .query(&stmt, params)
        .await
        .map_err(|e| unavailable(&e))
}

async fn query_opt(
    client: &Object,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, StoreError> {
    let stmt = client
        .prepare_cached(sql)
        .await
        .map_err(|e| unavailable(&e))?;
    client
        .query_opt(&stmt, params)
        .await
        .map_err(|e| unavailable(&e))
}

/// Runs a cached statement and returns how many rows it changed.
pub async fn run(client: &Object, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
    let stmt = client
        .prepare_cached(sql)
        .await
        .map_err(|e| unavailable(&e))?;
    client
        .execute(&stmt, params)
        .await
        .map_err(|e| unavailable(&e))
}

pub async fn exists(client: &Object, sql: &str, key: &str) -> Result<bool, StoreError> {
    Ok(query_opt(client, sql, &[&key]).await?.is_some())
}

fn unsigned(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(what))
}

fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn after(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub async fn task(client: &Object, id: &TaskId) -> Result<Option<TaskSnapshot>, StoreError> {
    let row = query_opt(
        client,
        "SELECT id, agent_issuer, agent, user_id, purpose, intent, plan, created_at, expires_at,
                state, facts, version FROM tasks WHERE id = $1",
        &[&id.as_str()],
    )
    .await?;
    row.as_ref().map(task_snapshot).transpose()
}

/// What an exchange reads before it decides, in one statement (one round trip, one snapshot):
/// the task, whether the system is frozen and, when `$3`, the agent's facts, under the key
/// `Task::agent_key` makes (`issuer#agent`: the conformance suite writes them under that key
/// and reads them back through here).
pub async fn exchange_reads(
    client: &Object,
    id: &TaskId,
    system: &SystemId,
    agent_facts: bool,
) -> Result<Option<ExchangeReads>, StoreError> {
    let Some(row) = query_opt(
        client,
        "SELECT t.id, t.agent_issuer, t.agent, t.user_id, t.purpose, t.intent, t.plan,
                t.created_at, t.expires_at, t.state, t.facts, t.version,
                EXISTS (SELECT 1 FROM frozen_systems WHERE system = $2), a.facts, a.version
         FROM tasks t
         LEFT JOIN agent_facts a ON $3 AND a.key = t.agent_issuer || '#' || t.agent
         WHERE t.id = $1",
        &[&id.as_str(), &system.as_str(), &agent_facts],
    )
    .await?
    else {
        return Ok(None);
    };
    let snapshot = task_snapshot(&row)?;
    let frozen: bool = row.try_get(12).map_err(column)?;
    let agent = agent_facts.then(|| agent_facts_at(&row, 13)).transpose()?;
    Ok(Some(ExchangeReads {
        snapshot: std::sync::Arc::new(snapshot),
        frozen,
        agent,
    }))
}

/// A task from the first twelve columns of a row (as [`task`] selects them).
fn task_snapshot(row: &Row) -> Result<TaskSnapshot, StoreError> {
    let state: String = row.try_get(9).map_err(column)?;
    let plan: String = row.try_get(6).map_err(column)?;
    let plan: Vec<String> = serde_json::from_str(&plan).map_err(|_| corrupt("task plan"))?;
    let facts: String = row.try_get(10).map_err(column)?;
    let facts: TaskFacts = serde_json::from_str(&facts).map_err(|_| corrupt("task facts"))?;
    let task = Task {
        id: TaskId::new(row.try_get::<_, String>(0).map_err(column)?),
        agent_issuer: row.try_get(1).map_err(column)?,
        agent: AgentId::new(row.try_get::<_, String>(2).map_err(column)?),
        user: UserId::new(row.try_get::<_, String>(3).map_err(column)?),
        purpose: Purpose::new(row.try_get::<_, String>(4).map_err(column)?),
        intent: row.try_get(5).map_err(column)?,
        plan: plan.into_iter().map(SystemId::new).collect(),
        created_at: Timestamp::from_millis(row.try_get(7).map_err(column)?),
        expires_at: Timestamp::from_millis(row.try_get(8).map_err(column)?),
        state: TaskState::parse(&state).ok_or_else(|| corrupt("task state"))?,
    };
    let version = unsigned(row.try_get(11).map_err(column)?, "task version")?;
    Ok(TaskSnapshot {
        task,
        facts,
        version,
    })
}

fn record(row: &Row) -> Result<SealedRecord, StoreError> {
    Ok(SealedRecord {
        seq: unsigned(row.try_get(0).map_err(column)?, "record sequence")?,
        at: Timestamp::from_millis(row.try_get(1).map_err(column)?),
        task: row.try_get(2).map_err(column)?,
        body: row.try_get(3).map_err(column)?,
        prev_hash: row.try_get(4).map_err(column)?,
        hash: row.try_get(5).map_err(column)?,
    })
}

pub async fn audit_page(
    client: &Object,
    from: u64,
    count: usize,
) -> Result<Vec<SealedRecord>, StoreError> {
    query(
        client,
        "SELECT seq, at, task, body, prev_hash, hash FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
        &[&after(from), &limit(count)],
    )
    .await?
    .iter()
    .map(record)
    .collect()
}

pub async fn audit_head(client: &Object) -> Result<Option<Receipt>, StoreError> {
    let row = query_opt(
        client,
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        &[],
    )
    .await?;
    row.map(|row| {
        Ok(Receipt {
            seq: unsigned(row.try_get(0).map_err(column)?, "record sequence")?,
            hash: row.try_get(1).map_err(column)?,
        })
    })
    .transpose()
}

pub async fn checkpoints(
    client: &Object,
    from: u64,
    count: usize,
) -> Result<Vec<Checkpoint>, StoreError> {
    query(
        client,
        "SELECT seq, head, at, jws FROM checkpoints WHERE id > $1 ORDER BY id LIMIT $2",
        &[&after(from), &limit(count)],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(Checkpoint {
            seq: unsigned(row.try_get(0).map_err(column)?, "checkpoint sequence")?,
            head: row.try_get(1).map_err(column)?,
            at: Timestamp::from_millis(row.try_get(2).map_err(column)?),
            jws: row.try_get(3).map_err(column)?,
        })
    })
    .collect()
}

/// The files of the policy set kept under `hash`.
pub async fn policy_set(
    client: &Object,
    hash: &str,
) -> Result<Option<Vec<(String, String)>>, StoreError> {
    query_opt(
        client,
        "SELECT files FROM policy_sets WHERE hash = $1",
        &[&hash],
    )
    .await?
    .map(|row| {
        let files: String = row.try_get(0).map_err(column)?;
        serde_json::from_str(&files).map_err(|_| corrupt("kept policy set"))
    })
    .transpose()
}

pub async fn task_records(client: &Object, task: &TaskId) -> Result<Vec<SealedRecord>, StoreError> {
    query(
        client,
        "SELECT seq, at, task, body, prev_hash, hash FROM audit WHERE task = $1 ORDER BY seq",
        &[&task.as_str()],
    )
    .await?
    .iter()
    .map(record)
    .collect()
}

pub async fn token_status(
    client: &Object,
    jti: &str,
    task: &TaskId,
    system: &SystemId,
) -> Result<TokenStatus, StoreError> {
    let row = query_opt(
        client,
        "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $1),
                (SELECT state FROM tasks WHERE id = $2),
                EXISTS (SELECT 1 FROM frozen_systems WHERE system = $3)",
        &[&jti, &task.as_str(), &system.as_str()],
    )
    .await?
    .ok_or_else(|| corrupt("token status"))?;
    let state: Option<String> = row.try_get(1).map_err(column)?;
    let task_state = match state {
        Some(state) => Some(TaskState::parse(&state).ok_or_else(|| corrupt("task state"))?),
        None => None,
    };
    Ok(TokenStatus {
        token_revoked: row.try_get(0).map_err(column)?,
        task_state,
        system_frozen: row.try_get(2).map_err(column)?,
    })
}

pub async fn open_tasks(client: &Object, agent: &AgentId) -> Result<Vec<TaskId>, StoreError> {
    query(
        client,
        "SELECT id FROM tasks WHERE agent = $1 AND state = 'open' ORDER BY created_at, id",
        &[&agent.as_str()],
    )
    .await?
    .iter()
    .map(|row| Ok(TaskId::new(row.try_get::<_, String>(0).map_err(column)?)))
    .collect()
}

pub async fn revocations(
    client: &Object,
    from: u64,
    count: usize,
) -> Result<Vec<RevocationEntry>, StoreError> {
    query(
        client,
        "SELECT seq, kind, subject, at, reason FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2",
        &[&after(from), &limit(count)],
    )
    .await?
    .iter()
    .map(|row| {
        let kind: String = row.try_get(1).map_err(column)?;
        Ok(RevocationEntry {
            seq: unsigned(row.try_get(0).map_err(column)?, "revocation sequence")?,
            kind: RevocationKind::parse(&kind).ok_or_else(|| corrupt("revocation kind"))?,
            subject: row.try_get(2).map_err(column)?,
            at: Timestamp::from_millis(row.try_get(3).map_err(column)?),
            reason: row.try_get(4).map_err(column)?,
        })
    })
    .collect()
}

pub async fn credential(client: &Object, system: &SystemId) -> Result<Option<String>, StoreError> {
    query_opt(
        client,
        "SELECT secret_sha256 FROM credentials WHERE system = $1",
        &[&system.as_str()],
    )
    .await?
    .map(|row| row.try_get(0).map_err(column))
    .transpose()
}

pub async fn agent_facts(client: &Object, key: &str) -> Result<(AgentFacts, u64), StoreError> {
    let row = query_opt(
        client,
        "SELECT facts, version FROM agent_facts WHERE key = $1",
        &[&key],
    )
    .await?;
    match row {
        None => Ok((AgentFacts::default(), 0)),
        Some(row) => agent_facts_at(&row, 0),
    }
}

/// An agent's facts and their version from the columns `first` and `first + 1` (none stored:
/// the facts column is null, as a `LEFT JOIN` that found no row leaves it).
fn agent_facts_at(row: &Row, first: usize) -> Result<(AgentFacts, u64), StoreError> {
    let facts: Option<String> = row.try_get(first).map_err(column)?;
    match facts {
        None => Ok((AgentFacts::default(), 0)),
        Some(facts) => Ok((
            serde_json::from_str(&facts).map_err(|_| corrupt("agent facts"))?,
            unsigned(
                row.try_get(first + 1).map_err(column)?,
                "agent facts version",
            )?,
        )),
    }
}

fn delegation_body(row: &Row) -> Result<Delegation, StoreError> {
    let body: String = row.try_get(0).map_err(column)?;
    serde_json::from_str(&body).map_err(|_| corrupt("delegation"))
}

pub async fn delegation(client: &Object, id: &str) -> Result<Option<Delegation>, StoreError> {
    query_opt(client, "SELECT body FROM delegations WHERE id = $1", &[&id])
        .await?
        .as_ref()
        .map(delegation_body)
        .transpose()
}

pub async fn task_delegations(client: &Object, task: &str) -> Result<Vec<Delegation>, StoreError> {
    query(
        client,
        "SELECT body FROM delegations WHERE task = $1 ORDER BY n",
        &[&task],
    )
    .await?
    .iter()
    .map(delegation_body)
    .collect()
}

const APPROVAL_COLUMNS: &str =
    "id, task, agent, user_id, system, actions, resource, details, request_hash, grp, risk,
     status, created_at, expires_at, decided_by, decided_at, reason, consumed_by, escalated";

fn approval_row(row: &Row) -> Result<Approval, StoreError> {
    let actions: String = row.try_get(5).map_err(column)?;
    let details: Option<String> = row.try_get(7).map_err(column)?;
    let status: String = row.try_get(11).map_err(column)?;
    Ok(Approval {
        id: row.try_get(0).map_err(column)?,
        task: TaskId::new(row.try_get::<_, String>(1).map_err(column)?),
        agent: AgentId::new(row.try_get::<_, String>(2).map_err(column)?),
        user: UserId::new(row.try_get::<_, String>(3).map_err(column)?),
        system: SystemId::new(row.try_get::<_, String>(4).map_err(column)?),
        actions: serde_json::from_str(&actions).map_err(|_| corrupt("approval actions"))?,
        resource: row.try_get(6).map_err(column)?,
        details: details
            .map(|d| serde_json::from_str(&d))
            .transpose()
            .map_err(|_| corrupt("approval details"))?,
        request_hash: row.try_get(8).map_err(column)?,
        group: row.try_get(9).map_err(column)?,
        risk: row.try_get(10).map_err(column)?,
        // An unknown status is corrupt data, never an approval.
        status: ApprovalStatus::parse(&status).ok_or_else(|| corrupt("approval status"))?,
        created_at: Timestamp::from_millis(row.try_get(12).map_err(column)?),
        expires_at: Timestamp::from_millis(row.try_get(13).map_err(column)?),
        decided_by: row.try_get(14).map_err(column)?,
        decided_at: row
            .try_get::<_, Option<i64>>(15)
            .map_err(column)?
            .map(Timestamp::from_millis),
        reason: row.try_get(16).map_err(column)?,
        consumed_by: row.try_get(17).map_err(column)?,
        escalated: row.try_get(18).map_err(column)?,
    })
}

pub async fn approval(client: &Object, id: &str) -> Result<Option<Approval>, StoreError> {
    let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1");
    query_opt(client, &sql, &[&id])
        .await?
        .as_ref()
        .map(approval_row)
        .transpose()
}

pub async fn pending_approval(
    client: &Object,
    task: &TaskId,
    hash: &str,
) -> Result<Option<Approval>, StoreError> {
    let sql = format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals
         WHERE task = $1 AND request_hash = $2 AND status = 'pending'
         ORDER BY created_at DESC LIMIT 1"
    );
    query_opt(client, &sql, &[&task.as_str(), &hash])
        .await?
        .as_ref()
        .map(approval_row)
        .transpose()
}

pub async fn approvals(
    client: &Object,
    status: Option<ApprovalStatus>,
    system: Option<&SystemId>,
    count: usize,
) -> Result<Vec<Approval>, StoreError> {
    let sql = format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals
         WHERE ($1::TEXT IS NULL OR status = $1) AND ($2::TEXT IS NULL OR system = $2)
         ORDER BY created_at DESC LIMIT $3"
    );
    query(
        client,
        &sql,
        &[
            &status.map(ApprovalStatus::as_str),
            &system.map(SystemId::as_str),
            &limit(count),
        ],
    )
    .await?
    .iter()
    .map(approval_row)
    .collect()
}
