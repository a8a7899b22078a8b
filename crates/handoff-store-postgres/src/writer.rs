//! The node's writer: drains queued writes into one transaction (group commit per node). Each
//! transaction first locks the chain's head row, so commits from every node are serialized into
//! one total order, and a task's version checks run against the last committed state.

use crate::unavailable;
use deadpool_postgres::{Object, Pool};
use handoff_core::audit::{SealedRecord, seal};
use handoff_core::containment::{Revocation, RevocationKind};
use handoff_core::store::{Effect, Receipt, Rejection, StoreError, TaskWrite, Write, metric_names};
use handoff_core::time::Timestamp;
use tokio::sync::{mpsc, oneshot};

/// Most writes folded into one commit.
const MAX_BATCH: usize = 512;

/// The channel revocations and freezes are announced on when they commit.
pub const REVOCATIONS_CHANNEL: &str = "handoff_revocations";

pub struct Job {
    pub write: Write,
    pub reply: oneshot::Sender<Result<Receipt, StoreError>>,
}

#[allow(clippy::large_enum_variant)]
pub enum Queued {
    Write(Job),
    Flush(oneshot::Sender<()>),
}

struct Head {
    seq: u64,
    hash: String,
}

pub async fn run(pool: Pool, mut jobs: mpsc::Receiver<Queued>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = Vec::new();
        let mut flushed = None;
        let mut next = Some(first);
        while let Some(queued) = next.take() {
            match queued {
                Queued::Write(job) => batch.push(job),
                Queued::Flush(done) => {
                    flushed = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = jobs.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let started = std::time::Instant::now();
            let results = commit(&pool, &batch).await;
            metrics::histogram!(metric_names::AUDIT_COMMIT_SECONDS)
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!(metric_names::AUDIT_BATCH_RECORDS).record(batch.len() as f64);
            for (job, result) in batch.into_iter().zip(results) {
                let _ = job.reply.send(result);
            }
        }
        if let Some(done) = flushed {
            let _ = done.send(());
        }
    }
}

/// Commits the batch; each write succeeds or fails alone, and nothing is reported written unless
/// the transaction committed (durably: `synchronous_commit` is on for it).
async fn commit(pool: &Pool, batch: &[Job]) -> Vec<Result<Receipt, StoreError>> {
    let client = match pool.get().await {
        Ok(client) => client,
        Err(e) => return batch.iter().map(|_| Err(unavailable(&e))).collect(),
    };
    match commit_on(&client, batch).await {
        Ok(results) => results,
        Err(e) => {
            // Leave no open transaction on a connection that goes back to the pool.
            let _ = client.batch_execute("ROLLBACK").await;
            batch.iter().map(|_| Err(unavailable(&e))).collect()
        }
    }
}

async fn commit_on(
    client: &Object,
    batch: &[Job],
) -> Result<Vec<Result<Receipt, StoreError>>, tokio_postgres::Error> {
    client
        .batch_execute("BEGIN; SET LOCAL synchronous_commit = on")
        .await?;
    let row = client
        .query_one(
            "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await?;
    let mut head = Head {
        seq: u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0),
        hash: row.try_get(1)?,
    };
    let start = head.seq;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        client.batch_execute("SAVEPOINT w").await?;
        let result = apply_one(client, &mut head, &job.write).await;
        if result.is_ok() {
            client.batch_execute("RELEASE SAVEPOINT w").await?;
        } else {
            client.batch_execute("ROLLBACK TO SAVEPOINT w").await?;
        }
        results.push(result);
    }
    if head.seq != start {
        let seq = i64::try_from(head.seq).unwrap_or(i64::MAX);
        client
            .execute(
                "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
                &[&seq, &head.hash],
            )
            .await?;
    }
    client.batch_execute("COMMIT").await?;
    Ok(results)
}

async fn apply_one(client: &Object, head: &mut Head, write: &Write) -> Result<Receipt, StoreError> {
    if let Some(system) = &write.unless_frozen
        && exists(
            client,
            "SELECT 1 FROM frozen_systems WHERE system = $1",
            system.as_str(),
        )
        .await?
    {
        return Err(StoreError::Rejected(Rejection::SystemFrozen));
    }
    apply_task(client, &write.task).await?;
    for effect in &write.effects {
        apply_effect(client, write.at, effect).await?;
    }
    let seq = head.seq.saturating_add(1);
    let record =
        seal(seq, write.at, &head.hash, write.event.clone()).map_err(StoreError::Corrupt)?;
    let jti = write.event.token.as_ref().map(|t| t.jti.as_str());
    insert_record(client, &record, jti).await?;
    *head = Head {
        seq,
        hash: record.hash.clone(),
    };
    Ok(Receipt {
        seq,
        hash: record.hash,
    })
}

async fn exists(client: &Object, sql: &str, key: &str) -> Result<bool, StoreError> {
    let stmt = client
        .prepare_cached(sql)
        .await
        .map_err(|e| unavailable(&e))?;
    let row = client
        .query_opt(&stmt, &[&key])
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(row.is_some())
}

/// Runs a cached statement and returns how many rows it changed.
async fn run_sql(
    client: &Object,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    let stmt = client
        .prepare_cached(sql)
        .await
        .map_err(|e| unavailable(&e))?;
    client
        .execute(&stmt, params)
        .await
        .map_err(|e| unavailable(&e))
}

fn corrupt(error: serde_json::Error) -> StoreError {
    StoreError::Corrupt(error.to_string())
}

fn version(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Conflict)
}

async fn apply_task(client: &Object, write: &TaskWrite) -> Result<(), StoreError> {
    match write {
        TaskWrite::None => Ok(()),
        TaskWrite::Insert(task) => {
            if exists(
                client,
                "SELECT 1 FROM revoked_agents WHERE agent = $1",
                task.agent.as_str(),
            )
            .await?
            {
                return Err(StoreError::Rejected(Rejection::AgentRevoked));
            }
            let plan: Vec<&str> = task.plan.iter().map(|s| s.as_str()).collect();
            let plan = serde_json::to_string(&plan).map_err(corrupt)?;
            run_sql(
                client,
                "INSERT INTO tasks (id, agent_issuer, agent, user_id, purpose, intent, plan, created_at,
                                    expires_at, state, facts, version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '{}', 1)",
                &[
                    &task.id.as_str(),
                    &task.agent_issuer,
                    &task.agent.as_str(),
                    &task.user.as_str(),
                    &task.purpose.as_str(),
                    &task.intent,
                    &plan,
                    &task.created_at.millis(),
                    &task.expires_at.millis(),
                    &task.state.as_str(),
                ],
            )
            .await?;
            Ok(())
        }
        TaskWrite::Update {
            id,
            expected_version,
            facts,
            state,
        } => {
            let facts = facts
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(corrupt)?;
            let expected = version(*expected_version)?;
            let changed = run_sql(
                client,
                "UPDATE tasks SET facts = COALESCE($1, facts), state = COALESCE($2, state),
                        version = version + 1
                 WHERE id = $3 AND version = $4",
                &[&facts, &state.map(|s| s.as_str()), &id.as_str(), &expected],
            )
            .await?;
            if changed == 1 {
                Ok(())
            } else {
                Err(StoreError::Conflict)
            }
        }
    }
}

async fn insert_record(
    client: &Object,
    record: &SealedRecord,
    jti: Option<&str>,
) -> Result<(), StoreError> {
    let seq = i64::try_from(record.seq)
        .map_err(|_| StoreError::Corrupt("sequence overflow".to_owned()))?;
    run_sql(
        client,
        "INSERT INTO audit (seq, at, task, jti, body, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &seq,
            &record.at.millis(),
            &record.task,
            &jti,
            &record.body,
            &record.prev_hash,
            &record.hash,
        ],
    )
    .await?;
    Ok(())
}

fn one_or(changed: u64, rejection: Rejection) -> Result<(), StoreError> {
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::Rejected(rejection))
    }
}

async fn apply_effect(client: &Object, at: Timestamp, effect: &Effect) -> Result<(), StoreError> {
    let millis = at.millis();
    match effect {
        Effect::Revoke(revocation) => apply_revocation(client, millis, revocation).await,
        Effect::InsertApproval(approval) => {
            let actions = serde_json::to_string(&approval.actions).map_err(corrupt)?;
            let details = approval
                .details
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(corrupt)?;
            run_sql(
                client,
                "INSERT INTO approvals (id, task, agent, user_id, system, actions, resource, details,
                                        request_hash, grp, risk, status, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                &[
                    &approval.id,
                    &approval.task.as_str(),
                    &approval.agent.as_str(),
                    &approval.user.as_str(),
                    &approval.system.as_str(),
                    &actions,
                    &approval.resource,
                    &details,
                    &approval.request_hash,
                    &approval.group,
                    &approval.risk,
                    &approval.status.as_str(),
                    &approval.created_at.millis(),
                    &approval.expires_at.millis(),
                ],
            )
            .await?;
            Ok(())
        }
        Effect::DecideApproval {
            id,
            status,
            by,
            reason,
        } => {
            let changed = run_sql(
                client,
                "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, reason = $4
                 WHERE id = $5 AND status = 'pending' AND expires_at > $3",
                &[&status.as_str(), by, &millis, reason, id],
            )
            .await?;
            one_or(changed, Rejection::ApprovalClosed)
        }
        Effect::ConsumeApproval { id, jti } => {
            let changed = run_sql(
                client,
                "UPDATE approvals SET consumed_by = $1
                 WHERE id = $2 AND status = 'approved' AND consumed_by IS NULL AND expires_at > $3",
                &[jti, id, &millis],
            )
            .await?;
            one_or(changed, Rejection::ApprovalUsed)
        }
        Effect::ExpireApproval { id } => {
            let changed = run_sql(
                client,
                "UPDATE approvals SET status = 'expired', decided_at = $1
                 WHERE id = $2 AND status = 'pending' AND expires_at <= $1",
                &[&millis, id],
            )
            .await?;
            one_or(changed, Rejection::ApprovalClosed)
        }
        Effect::EscalateApproval { id } => {
            // Once, while pending: sweeps on several nodes may both have seen it undecided.
            let changed = run_sql(
                client,
                "UPDATE approvals SET escalated = TRUE
                 WHERE id = $1 AND status = 'pending' AND NOT escalated",
                &[id],
            )
            .await?;
            one_or(changed, Rejection::ApprovalClosed)
        }
        Effect::AgentFacts {
            key,
            expected_version,
            facts,
        } => {
            let facts = serde_json::to_string(facts).map_err(corrupt)?;
            let expected = version(*expected_version)?;
            let changed = if expected == 0 {
                run_sql(
                    client,
                    "INSERT INTO agent_facts (key, facts, version) VALUES ($1, $2, 1)
                     ON CONFLICT (key) DO NOTHING",
                    &[key, &facts],
                )
                .await?
            } else {
                run_sql(
                    client,
                    "UPDATE agent_facts SET facts = $1, version = version + 1
                     WHERE key = $2 AND version = $3",
                    &[&facts, key, &expected],
                )
                .await?
            };
            if changed == 1 {
                Ok(())
            } else {
                Err(StoreError::Conflict)
            }
        }
        Effect::EvidenceSeen {
            system,
            id,
            expires_at,
        } => {
            run_sql(
                client,
                "DELETE FROM evidence_seen WHERE expires_at <= $1",
                &[&millis],
            )
            .await?;
            let inserted = run_sql(
                client,
                "INSERT INTO evidence_seen (system, id, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (system, id) DO NOTHING",
                &[&system.as_str(), id, &expires_at.millis()],
            )
            .await?;
            one_or(inserted, Rejection::EvidenceReplayed)
        }
        Effect::InsertDelegation(delegation) => {
            let body = serde_json::to_string(delegation).map_err(corrupt)?;
            run_sql(
                client,
                "INSERT INTO delegations (id, task, delegate, body) VALUES ($1, $2, $3, $4)",
                &[
                    &delegation.id,
                    &delegation.task.as_str(),
                    &delegation.delegate.as_str(),
                    &body,
                ],
            )
            .await?;
            Ok(())
        }
        Effect::Credential {
            system,
            secret_sha256,
        } => {
            run_sql(
                client,
                "INSERT INTO credentials (system, secret_sha256, at) VALUES ($1, $2, $3)
                 ON CONFLICT (system) DO UPDATE SET secret_sha256 = excluded.secret_sha256, at = excluded.at",
                &[&system.as_str(), secret_sha256, &millis],
            )
            .await?;
            Ok(())
        }
    }
}

async fn apply_revocation(
    client: &Object,
    millis: i64,
    revocation: &Revocation,
) -> Result<(), StoreError> {
    let subject = revocation.subject.as_str();
    match revocation.kind {
        RevocationKind::Token => {
            run_sql(
                client,
                "INSERT INTO revoked_tokens (jti, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&subject, &millis],
            )
            .await?
        }
        RevocationKind::Task => {
            run_sql(
                client,
                "UPDATE tasks SET state = 'revoked', version = version + 1
                 WHERE id = $1 AND state = 'open'",
                &[&subject],
            )
            .await?
        }
        RevocationKind::Agent => {
            run_sql(
                client,
                "INSERT INTO revoked_agents (agent, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&subject, &millis],
            )
            .await?;
            run_sql(
                client,
                "UPDATE tasks SET state = 'revoked', version = version + 1
                 WHERE agent = $1 AND state = 'open'",
                &[&subject],
            )
            .await?
        }
        RevocationKind::Freeze => {
            run_sql(
                client,
                "INSERT INTO frozen_systems (system, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&subject, &millis],
            )
            .await?
        }
        RevocationKind::Unfreeze => {
            run_sql(
                client,
                "DELETE FROM frozen_systems WHERE system = $1",
                &[&subject],
            )
            .await?
        }
        RevocationKind::Delegation => {
            run_sql(
                client,
                "INSERT INTO revoked_delegations (id, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&subject, &millis],
            )
            .await?;
            // A delegate's exchange decided before this revocation must not commit after it.
            run_sql(
                client,
                "UPDATE tasks SET version = version + 1
                 WHERE id = (SELECT task FROM delegations WHERE id = $1)",
                &[&subject],
            )
            .await?
        }
    };
    run_sql(
        client,
        "INSERT INTO revocations (kind, subject, at, reason, actor) VALUES ($1, $2, $3, $4, $5)",
        &[
            &revocation.kind.as_str(),
            &subject,
            &millis,
            &revocation.reason,
            &revocation.actor,
        ],
    )
    .await?;
    // Delivered to every listening node when (and only if) the transaction commits.
    run_sql(
        client,
        "SELECT pg_notify($1, $2)",
        &[&REVOCATIONS_CHANNEL, &revocation.kind.as_str()],
    )
    .await?;
    Ok(())
}
