//! The single writer: drains queued writes into one transaction (group commit), so concurrent
//! exchanges share one fsync, and extends the audit chain in commit order.

use crate::checkpointer::Nudge;
use crate::hot::Hot;
use crate::reader::{FROZEN, exists};
use crate::{exec, reader, unavailable};
use handoff_core::audit::{GENESIS, SealedRecord, seal};
use handoff_core::containment::{Revocation, RevocationKind};
use handoff_core::counters::AgentFacts;
use handoff_core::ids::{SystemId, TaskId};
use handoff_core::store::{Effect, Receipt, Rejection, StoreError, TaskWrite, Write, metric_names};
use handoff_core::task::{TaskFacts, TaskSnapshot};
use handoff_core::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most writes folded into one commit.
const MAX_BATCH: usize = 512;

pub struct Job {
    pub write: Write,
    pub reply: oneshot::Sender<Result<Receipt, StoreError>>,
}

/// What the writer's queue carries: a write, or a flush answered once everything queued before
/// it is committed. A write moves by value as it did before flushes shared the queue (no box per
/// write); a flush is rare.
#[allow(clippy::large_enum_variant)]
pub enum Queued {
    Write(Job),
    Flush(oneshot::Sender<()>),
}

/// The chain's last record: its sequence number and hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    seq: u64,
    hash: String,
}

impl Head {
    /// The head once `receipt`'s record is the chain's last.
    fn after(receipt: &Receipt) -> Self {
        Self {
            seq: receipt.seq,
            hash: receipt.hash.clone(),
        }
    }
}

pub fn load_head(conn: &Connection) -> Result<Head, rusqlite::Error> {
    // Read at the start of every commit: prepared once, not parsed again each time.
    let last = conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
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

/// The writer's loop; `head` is the chain's head as the store found it when it opened.
pub fn run(
    conn: Connection,
    mut jobs: mpsc::Receiver<Queued>,
    mut checkpoints: Nudge,
    hot: Arc<Hot>,
    head: Head,
) {
    // The head this writer last committed: any other at the next commit was written by another
    // process, and the hot state is then forgotten.
    let mut known = Some(head);
    hot.set_frozen(frozen_systems(&conn).ok());
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = Vec::new();
        let mut flushed = None;
        let mut next = Some(first);
        // A flush ends the batch: it is answered after the writes queued before it commit.
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
            checkpoints.reset_due(&conn);
            let started = std::time::Instant::now();
            let records = batch.len();
            let (writes, replies): (Vec<Write>, Vec<_>) =
                batch.into_iter().map(|job| (job.write, job.reply)).unzip();
            let results = commit(&conn, &hot, &mut known, writes);
            checkpoints.committed(records);
            metrics::histogram!(metric_names::AUDIT_COMMIT_SECONDS)
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!(metric_names::AUDIT_BATCH_RECORDS).record(records as f64);
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that gave up waiting no longer needs the answer.
                let _ = reply.send(result);
            }
        }
        if let Some(done) = flushed {
            let _ = done.send(());
        }
    }
}

/// Commits the batch; each write succeeds or fails alone, and nothing is reported written unless
/// the transaction committed. The chain head is read inside the (immediate) transaction, so
/// another process appending to the same file (the CLI revoking) keeps one unbroken chain.
/// The writes are taken by value: each event moves into its sealed record, uncopied. Once the
/// transaction has committed, what it wrote is put into the hot state (`hot.rs`), before any
/// caller is answered.
fn commit(
    conn: &Connection,
    hot: &Hot,
    known: &mut Option<Head>,
    writes: Vec<Write>,
) -> Vec<Result<Receipt, StoreError>> {
    let count = writes.len();
    let failed = |e: &rusqlite::Error| (0..count).map(|_| Err(unavailable_ref(e))).collect();
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        return failed(&e);
    }
    let mut head = match load_head(conn) {
        Ok(head) => head,
        Err(e) => {
            let _ = exec(conn, "ROLLBACK");
            return failed(&e);
        }
    };
    let mut learned = Learned::default();
    if known.as_ref() != Some(&head) {
        // Another process wrote since this writer's last commit: nothing held is trusted.
        hot.clear();
        learned.clear = true;
    }
    let mut results = Vec::with_capacity(count);
    let mut writes = writes.into_iter();
    // A write alone needs no savepoint of its own: when it fails, the whole transaction is
    // undone, and it was the only write in it.
    if count == 1
        && let Some(write) = writes.next()
    {
        match apply_write(conn, &head, write, hot, &mut learned) {
            Ok(applied) => {
                head = Head::after(&applied);
                results.push(Ok(applied));
            }
            Err(error) => {
                let _ = exec(conn, "ROLLBACK");
                return vec![Err(error)];
            }
        }
    }
    for write in writes {
        results.push(apply_one(conn, &mut head, write, hot, &mut learned));
    }
    // The frozen systems as this transaction leaves them, when a write may have changed them.
    let frozen = (learned.clear || !hot.frozen_known()).then(|| frozen_systems(conn).ok());
    if let Err(e) = exec(conn, "COMMIT") {
        // A failed COMMIT may leave the transaction open: end it, so the next batch starts clean.
        if !conn.is_autocommit() {
            let _ = exec(conn, "ROLLBACK");
        }
        hot.clear();
        *known = None;
        return failed(&e);
    }
    *known = Some(head);
    learned.apply(hot, frozen);
    results
}

/// What the batch's committed writes tell the hot state, in the order they were applied (a
/// task written twice in one batch keeps its second state).
#[derive(Default)]
struct Learned {
    /// A task's new state, or `None`: forget it.
    tasks: HashMap<TaskId, Option<Arc<TaskSnapshot>>>,
    agents: HashMap<String, (AgentFacts, u64)>,
    /// A write changed tasks by other keys than their ids (a revocation), or another process
    /// wrote: forget everything held, and keep nothing of this batch.
    clear: bool,
}

impl Learned {
    fn apply(self, hot: &Hot, frozen: Option<Option<HashSet<SystemId>>>) {
        if self.clear {
            hot.clear();
        } else {
            for (id, snapshot) in self.tasks {
                match snapshot {
                    Some(snapshot) => hot.put_task(id, snapshot),
                    None => hot.forget_task(&id),
                }
            }
            for (key, (facts, version)) in self.agents {
                hot.put_agent(key, facts, version);
            }
        }
        if let Some(frozen) = frozen {
            hot.set_frozen(frozen);
        }
    }

    /// The task's state before this write: from this batch, else the hot state.
    fn base(&self, hot: &Hot, id: &TaskId) -> Option<Arc<TaskSnapshot>> {
        match self.tasks.get(id) {
            Some(snapshot) => snapshot.clone(),
            None => hot.task(id),
        }
    }

    fn knows_agent(&self, hot: &Hot, key: &str) -> bool {
        self.agents.contains_key(key) || hot.agent(key).is_some()
    }

    /// Notes one applied write's task and effects (inside its savepoint, after it applied):
    /// built from the write itself when the task's previous state is held, else read back
    /// from this transaction.
    fn note(&mut self, conn: &Connection, hot: &Hot, task: TaskWrite, effects: &[Effect]) {
        for effect in effects {
            match effect {
                Effect::Revoke(_) => self.clear = true,
                Effect::AgentFacts {
                    key,
                    expected_version,
                    facts,
                } => {
                    self.agents.insert(
                        key.clone(),
                        ((**facts).clone(), expected_version.saturating_add(1)),
                    );
                }
                _ => {}
            }
        }
        if self.clear {
            return;
        }
        let snapshot = match task {
            TaskWrite::None => return,
            TaskWrite::Insert(task) => Some(TaskSnapshot {
                task: *task,
                facts: TaskFacts::default(),
                version: 1,
            }),
            TaskWrite::Update {
                id,
                expected_version,
                facts,
                state,
            } => match self.base(hot, &id) {
                Some(base) if base.version == expected_version => {
                    Some(updated(&base, facts, state))
                }
                _ => match reader::task(conn, &id) {
                    Ok(snapshot) => snapshot,
                    Err(_) => {
                        self.tasks.insert(id, None);
                        return;
                    }
                },
            },
        };
        let Some(snapshot) = snapshot else { return };
        let key = snapshot.task.agent_key();
        if !self.knows_agent(hot, &key)
            && let Ok(facts) = reader::agent_facts(conn, &key)
        {
            self.agents.insert(key, facts);
        }
        self.tasks
            .insert(snapshot.task.id.clone(), Some(Arc::new(snapshot)));
    }
}

/// The task after an update of `base` (at its version) to `facts` and `state`, where given.
fn updated(
    base: &TaskSnapshot,
    facts: Option<Box<TaskFacts>>,
    state: Option<handoff_core::task::TaskState>,
) -> TaskSnapshot {
    let mut task = base.task.clone();
    if let Some(state) = state {
        task.state = state;
    }
    TaskSnapshot {
        task,
        facts: facts.map_or_else(|| base.facts.clone(), |facts| *facts),
        version: base.version.saturating_add(1),
    }
}

/// Every frozen system.
fn frozen_systems(conn: &Connection) -> Result<HashSet<SystemId>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached("SELECT system FROM frozen_systems")?;
    let rows = stmt.query_map([], |row| row.get::<_, String>(0).map(SystemId::new))?;
    rows.collect()
}

fn unavailable_ref(error: &rusqlite::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// One write inside the batch's transaction, under its own savepoint: a write that fails leaves
/// nothing behind and the others go on.
fn apply_one(
    conn: &Connection,
    head: &mut Head,
    write: Write,
    hot: &Hot,
    learned: &mut Learned,
) -> Result<Receipt, StoreError> {
    exec(conn, "SAVEPOINT write").map_err(unavailable)?;
    let applied = apply_write(conn, head, write, hot, learned).and_then(|applied| {
        exec(conn, "RELEASE write").map(|()| applied).map_err(|e| {
            // Noted, then undone: what was noted of this batch can no longer be told apart.
            learned.clear = true;
            unavailable(e)
        })
    });
    match applied {
        Ok(applied) => {
            *head = Head::after(&applied);
            Ok(applied)
        }
        Err(error) => {
            // Undo this write alone; the batch's transaction goes on.
            exec(conn, "ROLLBACK TO write")
                .and_then(|()| exec(conn, "RELEASE write"))
                .map_err(unavailable)?;
            Err(error)
        }
    }
}

/// Applies one write; once all of it applied, notes what the hot state learns from it.
fn apply_write(
    conn: &Connection,
    head: &Head,
    write: Write,
    hot: &Hot,
    learned: &mut Learned,
) -> Result<Receipt, StoreError> {
    let Write {
        at,
        event,
        task,
        effects,
        unless_frozen,
    } = write;
    if let Some(system) = &unless_frozen
        && exists(conn, FROZEN, system.as_str())?
    {
        return Err(StoreError::Rejected(Rejection::SystemFrozen));
    }
    apply_task(conn, &task)?;
    for effect in &effects {
        apply_effect(conn, at, effect)?;
    }
    let seq = head.seq.saturating_add(1);
    let jti = event.token.as_ref().map(|token| token.jti.clone());
    let record = seal(seq, at, &head.hash, event).map_err(StoreError::Corrupt)?;
    insert_record(conn, &record, jti.as_deref())?;
    learned.note(conn, hot, task, &effects);
    Ok(Receipt {
        seq,
        hash: record.hash,
    })
}

fn apply_task(tx: &Connection, write: &TaskWrite) -> Result<(), StoreError> {
    match write {
        TaskWrite::None => Ok(()),
        TaskWrite::Insert(task) => {
            let revoked = tx
                .prepare_cached("SELECT 1 FROM revoked_agents WHERE agent = ?1")
                .and_then(|mut stmt| stmt.exists(params![task.agent.as_str()]))
                .map_err(unavailable)?;
            if revoked {
                return Err(StoreError::Rejected(Rejection::AgentRevoked));
            }
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
            let changed = match state {
                // An exchange's update: `state` is left out of the statement, so SQLite leaves
                // `tasks_by_agent (agent, state)` alone rather than rewriting its entry (one
                // page fewer to write per record).
                None => tx
                    .prepare_cached(
                        "UPDATE tasks SET facts = COALESCE(?1, facts), version = version + 1
                         WHERE id = ?2 AND version = ?3",
                    )
                    .and_then(|mut stmt| stmt.execute(params![facts, id.as_str(), expected])),
                Some(state) => tx
                    .prepare_cached(
                        "UPDATE tasks SET facts = COALESCE(?1, facts), state = ?2,
                                version = version + 1
                         WHERE id = ?3 AND version = ?4",
                    )
                    .and_then(|mut stmt| {
                        stmt.execute(params![facts, state.as_str(), id.as_str(), expected])
                    }),
            }
            .map_err(unavailable)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(StoreError::Conflict)
            }
        }
    }
}

/// Appends the sealed record, with the token it names (`jti`) beside it for `token_known`.
fn insert_record(
    tx: &Connection,
    record: &SealedRecord,
    jti: Option<&str>,
) -> Result<(), StoreError> {
    let seq = i64::try_from(record.seq)
        .map_err(|_| StoreError::Corrupt("sequence overflow".to_owned()))?;
    tx.prepare_cached(
        "INSERT INTO audit (seq, at, task, jti, body, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            seq,
            record.at.millis(),
            record.task,
            jti,
            record.body,
            record.prev_hash,
            record.hash
        ])
    })
    .map_err(unavailable)?;
    Ok(())
}

fn apply_effect(conn: &Connection, at: Timestamp, effect: &Effect) -> Result<(), StoreError> {
    match effect {
        Effect::Revoke(revocation) => apply_revocation(conn, at, revocation),
        Effect::InsertApproval(approval) => {
            let actions = serde_json::to_string(&approval.actions)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let details = approval
                .details
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            conn.execute(
                "INSERT INTO approvals (id, task, agent, user_id, system, actions, resource, details, request_hash,
                                        grp, risk, status, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    approval.id,
                    approval.task.as_str(),
                    approval.agent.as_str(),
                    approval.user.as_str(),
                    approval.system.as_str(),
                    actions,
                    approval.resource,
                    details,
                    approval.request_hash,
                    approval.group,
                    approval.risk,
                    approval.status.as_str(),
                    approval.created_at.millis(),
                    approval.expires_at.millis(),
                ],
            )
            .map_err(unavailable)?;
            Ok(())
        }
        Effect::DecideApproval {
            id,
            status,
            by,
            reason,
        } => {
            let changed = conn
                .execute(
                    "UPDATE approvals SET status = ?1, decided_by = ?2, decided_at = ?3, reason = ?4
                     WHERE id = ?5 AND status = 'pending' AND expires_at > ?3",
                    params![status.as_str(), by, at.millis(), reason, id],
                )
                .map_err(unavailable)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(StoreError::Rejected(Rejection::ApprovalClosed))
            }
        }
        Effect::ConsumeApproval { id, jti } => {
            let changed = conn
                .execute(
                    "UPDATE approvals SET consumed_by = ?1
                     WHERE id = ?2 AND status = 'approved' AND consumed_by IS NULL AND expires_at > ?3",
                    params![jti, id, at.millis()],
                )
                .map_err(unavailable)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(StoreError::Rejected(Rejection::ApprovalUsed))
            }
        }
        Effect::ExpireApproval { id } => {
            let changed = conn
                .execute(
                    "UPDATE approvals SET status = 'expired', decided_at = ?1
                     WHERE id = ?2 AND status = 'pending' AND expires_at <= ?1",
                    params![at.millis(), id],
                )
                .map_err(unavailable)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(StoreError::Rejected(Rejection::ApprovalClosed))
            }
        }
        Effect::EscalateApproval { id } => {
            // Once, while pending (the same contract as a store several nodes share).
            let changed = conn
                .execute(
                    "UPDATE approvals SET escalated = 1
                     WHERE id = ?1 AND status = 'pending' AND escalated = 0",
                    params![id],
                )
                .map_err(unavailable)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(StoreError::Rejected(Rejection::ApprovalClosed))
            }
        }
        Effect::AgentFacts {
            key,
            expected_version,
            facts,
        } => {
            let facts =
                serde_json::to_string(facts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let expected = i64::try_from(*expected_version).map_err(|_| StoreError::Conflict)?;
            let changed = if expected == 0 {
                conn.execute(
                    "INSERT OR IGNORE INTO agent_facts (key, facts, version) VALUES (?1, ?2, 1)",
                    params![key, facts],
                )
            } else {
                conn.execute(
                    "UPDATE agent_facts SET facts = ?1, version = version + 1
                     WHERE key = ?2 AND version = ?3",
                    params![facts, key, expected],
                )
            }
            .map_err(unavailable)?;
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
            conn.execute(
                "DELETE FROM evidence_seen WHERE expires_at <= ?1",
                params![at.millis()],
            )
            .map_err(unavailable)?;
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO evidence_seen (system, id, expires_at) VALUES (?1, ?2, ?3)",
                    params![system.as_str(), id, expires_at.millis()],
                )
                .map_err(unavailable)?;
            if inserted == 1 {
                Ok(())
            } else {
                Err(StoreError::Rejected(Rejection::EvidenceReplayed))
            }
        }
        Effect::InsertDelegation(delegation) => {
            let body = serde_json::to_string(delegation)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            conn.execute(
                "INSERT INTO delegations (id, task, body) VALUES (?1, ?2, ?3)",
                params![delegation.id, delegation.task.as_str(), body],
            )
            .map_err(unavailable)?;
            Ok(())
        }
        Effect::Credential {
            system,
            secret_sha256,
        } => {
            conn.execute(
                "INSERT INTO credentials (system, secret_sha256, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (system) DO UPDATE SET secret_sha256 = excluded.secret_sha256, at = excluded.at",
                params![system.as_str(), secret_sha256, at.millis()],
            )
            .map_err(unavailable)?;
            Ok(())
        }
    }
}

fn apply_revocation(
    conn: &Connection,
    at: Timestamp,
    revocation: &Revocation,
) -> Result<(), StoreError> {
    let subject = revocation.subject.as_str();
    let millis = at.millis();
    let sql = match revocation.kind {
        RevocationKind::Token => "INSERT OR IGNORE INTO revoked_tokens (jti, at) VALUES (?1, ?2)",
        RevocationKind::Task => {
            "UPDATE tasks SET state = 'revoked', version = version + 1 WHERE id = ?1 AND state = 'open' AND ?2 = ?2"
        }
        RevocationKind::Agent => "INSERT OR IGNORE INTO revoked_agents (agent, at) VALUES (?1, ?2)",
        RevocationKind::Freeze => {
            "INSERT OR IGNORE INTO frozen_systems (system, at) VALUES (?1, ?2)"
        }
        RevocationKind::Unfreeze => "DELETE FROM frozen_systems WHERE system = ?1 AND ?2 = ?2",
        RevocationKind::Delegation => {
            "INSERT OR IGNORE INTO revoked_delegations (id, at) VALUES (?1, ?2)"
        }
    };
    conn.execute(sql, params![subject, millis])
        .map_err(unavailable)?;
    if revocation.kind == RevocationKind::Delegation {
        // A delegate's exchange decided before this revocation must not commit after it: the
        // task's version moves, so that exchange retries and sees the revocation.
        conn.execute(
            "UPDATE tasks SET version = version + 1
             WHERE id = (SELECT task FROM delegations WHERE id = ?1)",
            params![subject],
        )
        .map_err(unavailable)?;
    }
    if revocation.kind == RevocationKind::Agent {
        conn.execute(
            "UPDATE tasks SET state = 'revoked', version = version + 1 WHERE agent = ?1 AND state = 'open'",
            params![subject],
        )
        .map_err(unavailable)?;
    }
    conn.execute(
        "INSERT INTO revocations (kind, subject, at, reason, actor) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            revocation.kind.as_str(),
            subject,
            millis,
            revocation.reason,
            revocation.actor
        ],
    )
    .map_err(unavailable)?;
    Ok(())
}
