//! The single writer: drains queued writes into one transaction (group commit), so concurrent
//! exchanges share one fsync, and extends the audit chain in commit order.

use crate::unavailable;
use handoff_core::audit::{GENESIS, SealedRecord, seal};
use handoff_core::store::{Receipt, StoreError, TaskWrite, Write};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::{mpsc, oneshot};

/// Most writes folded into one commit.
const MAX_BATCH: usize = 512;

pub struct Job {
    pub write: Write,
    pub reply: oneshot::Sender<Result<Receipt, StoreError>>,
}

/// The chain's last record: its sequence number and hash.
#[derive(Clone, Debug)]
pub struct Head {
    seq: u64,
    hash: String,
}

pub fn load_head(conn: &Connection) -> Result<Head, rusqlite::Error> {
    let last = conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
        )
        .optional()?;
    Ok(match last {
        Some((seq, hash)) => Head {
            seq: u64::try_from(seq).unwrap_or(0),
            hash,
        },
        None => Head {
            seq: 0,
            hash: GENESIS.to_owned(),
        },
    })
}

pub fn run(mut conn: Connection, mut jobs: mpsc::Receiver<Job>, mut head: Head) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let results = commit(&mut conn, &mut head, &batch);
        for (job, result) in batch.into_iter().zip(results) {
            // A caller that gave up waiting no longer needs the answer.
            let _ = job.reply.send(result);
        }
    }
}

/// Commits the batch; each write succeeds or fails alone, and nothing is reported written unless
/// the transaction committed.
fn commit(
    conn: &mut Connection,
    head: &mut Head,
    batch: &[Job],
) -> Vec<Result<Receipt, StoreError>> {
    let before = head.clone();
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return batch.iter().map(|_| Err(unavailable_ref(&e))).collect(),
    };
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        results.push(apply_one(&mut tx, head, &job.write));
    }
    if let Err(e) = tx.commit() {
        *head = before;
        return batch.iter().map(|_| Err(unavailable_ref(&e))).collect();
    }
    results
}

fn unavailable_ref(error: &rusqlite::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn apply_one(
    tx: &mut Transaction<'_>,
    head: &mut Head,
    write: &Write,
) -> Result<Receipt, StoreError> {
    let savepoint = tx.savepoint().map_err(unavailable)?;
    apply_task(&savepoint, &write.task)?;
    let seq = head.seq.saturating_add(1);
    let record =
        seal(seq, write.at, &head.hash, write.event.clone()).map_err(StoreError::Corrupt)?;
    insert_record(&savepoint, &record)?;
    savepoint.commit().map_err(unavailable)?;
    *head = Head {
        seq,
        hash: record.hash.clone(),
    };
    Ok(Receipt {
        seq,
        hash: record.hash,
    })
}

fn apply_task(tx: &Connection, write: &TaskWrite) -> Result<(), StoreError> {
    match write {
        TaskWrite::None => Ok(()),
        TaskWrite::Insert(task) => {
            let plan: Vec<&str> = task.plan.iter().map(|s| s.as_str()).collect();
            let plan =
                serde_json::to_string(&plan).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.prepare_cached(
                "INSERT INTO tasks (id, agent_issuer, agent, user_id, purpose, intent, plan, created_at,
                                    expires_at, state, facts, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, '{}', 1)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    task.id.as_str(),
                    task.agent_issuer,
                    task.agent.as_str(),
                    task.user.as_str(),
                    task.purpose.as_str(),
                    task.intent,
                    plan,
                    task.created_at.millis(),
                    task.expires_at.millis(),
                    task.state.as_str(),
                ])
            })
            .map_err(unavailable)?;
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
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let expected = i64::try_from(*expected_version).map_err(|_| StoreError::Conflict)?;
            let changed = tx
                .prepare_cached(
                    "UPDATE tasks SET facts = COALESCE(?1, facts), state = COALESCE(?2, state),
                            version = version + 1
                     WHERE id = ?3 AND version = ?4",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        facts,
                        state.map(|s| s.as_str()),
                        id.as_str(),
                        expected
                    ])
                })
                .map_err(unavailable)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(StoreError::Conflict)
            }
        }
    }
}

fn insert_record(tx: &Connection, record: &SealedRecord) -> Result<(), StoreError> {
    let seq = i64::try_from(record.seq)
        .map_err(|_| StoreError::Corrupt("sequence overflow".to_owned()))?;
    tx.prepare_cached(
        "INSERT INTO audit (seq, at, task, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            seq,
            record.at.millis(),
            record.task,
            record.body,
            record.prev_hash,
            record.hash
        ])
    })
    .map_err(unavailable)?;
    Ok(())
}
