//! The storage conformance suite: every `Store` backend runs these same checks (SQLite now,
//! PostgreSQL when it lands), so the core can rely on one contract.
//!
//! Each check takes a fresh, empty store and returns `Err` with what went wrong. A backend runs
//! them all, one test per check so a failure is reported by name, with
//! [`store_conformance!`](crate::store_conformance):
//!
//! ```text
//! async fn scratch() -> (tempfile::TempDir, SqliteStore) { /* an empty store */ }
//! mod conformance {
//!     handoff_core::store_conformance!(super::scratch);
//! }
//! ```
//!
//! The macro's constructor returns `(guard, store)`: the guard (a temporary folder, a database)
//! lives as long as the check, and `&store` must coerce to `&dyn Store`.

use crate::approval::{Approval, ApprovalStatus};
use crate::audit::{AuditEvent, ChainVerifier, EventKind, Outcome};
use crate::checkpoint::Checkpoint;
use crate::config::ActionConfig;
use crate::containment::{Revocation, RevocationKind};
use crate::counters::AgentFacts;
use crate::delegation::Delegation;
use crate::ids::{ActionName, AgentId, Purpose, SystemId, TaskId, UserId};
use crate::store::{Effect, Rejection, Store, StoreError, TaskWrite, Write};
use crate::task::{Task, TaskFacts, TaskState};
use crate::time::Timestamp;
use std::collections::BTreeSet;

fn ensure(condition: bool, what: &str) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

fn sample_task(id: &str) -> Task {
    Task {
        id: TaskId::new(id),
        agent_issuer: "https://issuer.example".to_owned(),
        agent: AgentId::new("agent-1"),
        user: UserId::new("alice"),
        purpose: Purpose::new("release"),
        intent: "  Ship the fix, verbatim  ".to_owned(),
        plan: [SystemId::new("ci"), SystemId::new("git")]
            .into_iter()
            .collect(),
        created_at: Timestamp::from_millis(1_000),
        expires_at: Timestamp::from_millis(3_600_000),
        state: TaskState::Open,
    }
}

fn event(task: &str, kind: EventKind) -> AuditEvent {
    AuditEvent {
        kind: Some(kind),
        task: Some(task.to_owned()),
        outcome: Some(Outcome::Permit),
        ..AuditEvent::default()
    }
}

fn grant_facts() -> TaskFacts {
    let mut facts = TaskFacts::default();
    let action = ActionConfig {
        name: ActionName::new("ci:run_tests"),
        short: "run_tests".to_owned(),
        labels: BTreeSet::from(["execute".to_owned()]),
    };
    facts.record_grant(
        &SystemId::new("ci"),
        &[action],
        Timestamp::from_millis(2_000),
    );
    facts
}

fn failed(error: StoreError) -> String {
    error.to_string()
}

/// Opens `id` (for `agent-1`) at version 1.
async fn open(store: &dyn Store, id: &str) -> Result<(), String> {
    try_open(store, id).await.map(|_| ()).map_err(failed)
}

async fn try_open(store: &dyn Store, id: &str) -> Result<crate::store::Receipt, StoreError> {
    store
        .write(Write {
            at: Timestamp::from_millis(1_000),
            event: event(id, EventKind::TaskOpen),
            task: TaskWrite::Insert(Box::new(sample_task(id))),
            ..Default::default()
        })
        .await
}

/// Records name the tokens they mint and tasks their agents: only those are known.
pub async fn tokens_and_agents_are_known_once_recorded(store: &dyn Store) -> Result<(), String> {
    let agent = AgentId::new("agent-1");
    ensure(
        !store.token_known("jti-1").await.map_err(failed)?,
        "no token is known in an empty store",
    )?;
    ensure(
        !store.agent_known(&agent).await.map_err(failed)?,
        "no agent is known in an empty store",
    )?;
    open(store, "conf-1").await?;
    ensure(
        store.agent_known(&agent).await.map_err(failed)?,
        "an agent that opened a task is known",
    )?;
    let mut grant = event("conf-1", EventKind::Exchange);
    grant.token = Some(crate::audit::TokenRecord {
        jti: "jti-1".to_owned(),
        aud: "https://ci.example".to_owned(),
        scope: "run_tests".to_owned(),
        exp: 3_600,
    });
    store
        .write(Write::new(
            Timestamp::from_millis(2_000),
            grant,
            TaskWrite::None,
        ))
        .await
        .map_err(failed)?;
    ensure(
        store.token_known("jti-1").await.map_err(failed)?,
        "a recorded token is known",
    )?;
    ensure(
        !store.token_known("jti-2").await.map_err(failed)?,
        "another token id is not",
    )?;
    ensure(
        !store
            .agent_known(&AgentId::new("agent-2"))
            .await
            .map_err(failed)?,
        "another agent is not",
    )
}

/// A write of `event` about `task` with no task change and these effects.
fn effects(task: &str, kind: EventKind, at: i64, effects: Vec<Effect>) -> Write {
    let mut write = Write::new(
        Timestamp::from_millis(at),
        event(task, kind),
        TaskWrite::None,
    );
    write.effects = effects;
    write
}

fn revoke(kind: RevocationKind, subject: &str) -> Effect {
    Effect::Revoke(Revocation {
        kind,
        subject: subject.to_owned(),
        reason: "conformance".to_owned(),
        actor: "operator".to_owned(),
    })
}

fn update(id: &str, expected_version: u64, facts: TaskFacts) -> TaskWrite {
    TaskWrite::Update {
        id: TaskId::new(id),
        expected_version,
        facts: Some(Box::new(facts)),
        state: None,
    }
}

async fn records(store: &dyn Store) -> Result<usize, String> {
    Ok(store.audit_page(0, 10_000).await.map_err(failed)?.len())
}

async fn version(store: &dyn Store, id: &str) -> Result<Option<u64>, String> {
    Ok(store
        .task(&TaskId::new(id))
        .await
        .map_err(failed)?
        .map(|s| s.version))
}

pub async fn agent_facts_are_versioned_like_a_task(store: &dyn Store) -> Result<(), String> {
    let (facts, version) = store
        .agent_facts("iss#agent-x")
        .await
        .map_err(|e| e.to_string())?;
    ensure(
        version == 0 && facts == AgentFacts::default(),
        "no agent facts at first",
    )?;
    let mut changed = AgentFacts::default();
    changed
        .windows
        .entry("deploys".to_owned())
        .or_default()
        .record(Timestamp::from_millis(5_000), 1, 60_000);
    let write = |expected_version: u64, facts: AgentFacts| {
        let mut write = Write::new(
            Timestamp::from_millis(5_000),
            event("conf-agent", EventKind::Exchange),
            TaskWrite::None,
        );
        write.effects.push(Effect::AgentFacts {
            key: "iss#agent-x".to_owned(),
            expected_version,
            facts: Box::new(facts),
        });
        write
    };
    store
        .write(write(0, changed.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let (read, version) = store
        .agent_facts("iss#agent-x")
        .await
        .map_err(|e| e.to_string())?;
    ensure(
        version == 1 && read == changed,
        "agent facts read back at version 1",
    )?;
    // Two writers that both read version 0 (or 1): only the first may land.
    for stale in [0, 2] {
        match store.write(write(stale, AgentFacts::default())).await {
            Err(StoreError::Conflict) => {}
            other => {
                return Err(format!(
                    "a stale agent-facts write must conflict: {other:?}"
                ));
            }
        }
    }
    store
        .write(write(1, AgentFacts::default()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

pub async fn evidence_is_accepted_once(store: &dyn Store) -> Result<(), String> {
    let write = || {
        let mut write = Write::new(
            Timestamp::from_millis(6_000),
            event("conf-evidence", EventKind::Evidence),
            TaskWrite::None,
        );
        write.effects.push(Effect::EvidenceSeen {
            system: SystemId::new("ci"),
            id: "ev-1".to_owned(),
            expires_at: Timestamp::from_millis(600_000),
        });
        write
    };
    store.write(write()).await.map_err(|e| e.to_string())?;
    match store.write(write()).await {
        Err(StoreError::Rejected(Rejection::EvidenceReplayed)) => Ok(()),
        other => Err(format!(
            "a replayed evidence id must be rejected: {other:?}"
        )),
    }
}

pub async fn a_delegation_reads_back_and_its_revocation_is_seen(
    store: &dyn Store,
) -> Result<(), String> {
    open(store, "conf-1").await?;
    let delegation = Delegation {
        id: "del-conf".to_owned(),
        task: TaskId::new("conf-1"),
        chain: vec!["del-conf".to_owned()],
        actors: vec!["worker".to_owned(), "agent-1".to_owned()],
        delegate_issuer: "https://issuer.example".to_owned(),
        delegate: AgentId::new("worker"),
        actions: BTreeSet::from([ActionName::new("ci:run_tests")]),
        depth: 1,
        created_at: Timestamp::from_millis(7_000),
        expires_at: Timestamp::from_millis(70_000),
    };
    let mut write = Write::new(
        Timestamp::from_millis(7_000),
        event("conf-1", EventKind::Delegate),
        TaskWrite::None,
    );
    write
        .effects
        .push(Effect::InsertDelegation(Box::new(delegation.clone())));
    store.write(write).await.map_err(|e| e.to_string())?;
    let read = store
        .delegation("del-conf")
        .await
        .map_err(|e| e.to_string())?;
    ensure(
        read.as_ref() == Some(&delegation),
        "the delegation reads back",
    )?;
    let of_task = store
        .task_delegations(&TaskId::new("conf-1"))
        .await
        .map_err(|e| e.to_string())?;
    ensure(
        of_task == vec![delegation.clone()],
        "the delegation is listed with its task",
    )?;
    ensure(
        store
            .task_delegations(&TaskId::new("conf-other"))
            .await
            .map_err(|e| e.to_string())?
            .is_empty(),
        "and with no other task",
    )?;
    let chain = vec!["other".to_owned(), "del-conf".to_owned()];
    ensure(
        !store
            .any_delegation_revoked(&chain)
            .await
            .map_err(|e| e.to_string())?,
        "not revoked yet",
    )?;
    let before = store
        .task(&TaskId::new("conf-1"))
        .await
        .map_err(|e| e.to_string())?
        .map(|s| s.version);
    let mut revoke = Write::new(
        Timestamp::from_millis(8_000),
        event("conf-1", EventKind::Revoke),
        TaskWrite::None,
    );
    revoke.effects.push(Effect::Revoke(Revocation {
        kind: RevocationKind::Delegation,
        subject: "del-conf".to_owned(),
        reason: "test".to_owned(),
        actor: "operator".to_owned(),
    }));
    store.write(revoke).await.map_err(|e| e.to_string())?;
    ensure(
        store
            .any_delegation_revoked(&chain)
            .await
            .map_err(|e| e.to_string())?,
        "a revoked delegation anywhere in the chain is seen",
    )?;
    let after = store
        .task(&TaskId::new("conf-1"))
        .await
        .map_err(|e| e.to_string())?
        .map(|s| s.version);
    ensure(
        before.is_some() && after > before,
        "revoking a delegation moves its task's version (an in-flight exchange retries)",
    )
}

pub async fn a_task_reads_back_as_written(store: &dyn Store) -> Result<(), String> {
    let task = sample_task("conf-1");
    store
        .write(Write {
            at: Timestamp::from_millis(1_000),
            event: event("conf-1", EventKind::TaskOpen),
            task: TaskWrite::Insert(Box::new(task.clone())),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let snapshot = store
        .task(&task.id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the task is missing")?;
    ensure(snapshot.task == task, "the task reads back changed")?;
    ensure(
        snapshot.facts == TaskFacts::default(),
        "a new task has empty facts",
    )?;
    ensure(snapshot.version == 1, "a new task is at version 1")
}

pub async fn an_unknown_task_is_none(store: &dyn Store) -> Result<(), String> {
    let found = store
        .task(&TaskId::new("no-such-task"))
        .await
        .map_err(|e| e.to_string())?;
    ensure(found.is_none(), "an unknown task must read as None")
}

pub async fn an_update_at_the_expected_version_applies(store: &dyn Store) -> Result<(), String> {
    open(store, "conf-1").await?;
    let id = TaskId::new("conf-1");
    let facts = grant_facts();
    store
        .write(Write {
            at: Timestamp::from_millis(2_000),
            event: event("conf-1", EventKind::Exchange),
            task: TaskWrite::Update {
                id: id.clone(),
                expected_version: 1,
                facts: Some(Box::new(facts.clone())),
                state: None,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let snapshot = store
        .task(&id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the task is missing")?;
    ensure(snapshot.version == 2, "an update bumps the version")?;
    ensure(snapshot.facts == facts, "the facts read back as written")?;
    ensure(
        snapshot.task.state == TaskState::Open,
        "a facts update keeps the state",
    )?;
    store
        .write(Write {
            at: Timestamp::from_millis(2_500),
            event: event("conf-1", EventKind::TaskEnd),
            task: TaskWrite::Update {
                id: id.clone(),
                expected_version: 2,
                facts: None,
                state: Some(TaskState::Ended),
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let snapshot = store
        .task(&id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the task is missing")?;
    ensure(
        snapshot.task.state == TaskState::Ended,
        "a state update applies",
    )?;
    ensure(snapshot.facts == facts, "a state update keeps the facts")
}

pub async fn a_stale_update_conflicts_and_appends_nothing(store: &dyn Store) -> Result<(), String> {
    open(store, "conf-1").await?;
    store
        .write(Write {
            at: Timestamp::from_millis(2_000),
            event: event("conf-1", EventKind::Exchange),
            task: update("conf-1", 1, grant_facts()),
            ..Default::default()
        })
        .await
        .map_err(failed)?;
    let before = store
        .audit_page(0, 10_000)
        .await
        .map_err(|e| e.to_string())?
        .len();
    let result = store
        .write(Write {
            at: Timestamp::from_millis(3_000),
            event: event("conf-1", EventKind::Exchange),
            task: TaskWrite::Update {
                id: TaskId::new("conf-1"),
                expected_version: 1,
                facts: Some(Box::new(TaskFacts::default())),
                state: None,
            },
            ..Default::default()
        })
        .await;
    ensure(
        matches!(result, Err(StoreError::Conflict)),
        "a stale version must conflict",
    )?;
    let missing = store
        .write(Write {
            at: Timestamp::from_millis(3_000),
            event: event("nope", EventKind::Exchange),
            task: TaskWrite::Update {
                id: TaskId::new("nope"),
                expected_version: 1,
                facts: None,
                state: None,
            },
            ..Default::default()
        })
        .await;
    ensure(
        matches!(missing, Err(StoreError::Conflict)),
        "updating an unknown task must conflict",
    )?;
    let after = store
        .audit_page(0, 10_000)
        .await
        .map_err(|e| e.to_string())?
        .len();
    ensure(before == after, "a refused write must not append a record")
}

pub async fn checkpoints_read_back_in_order_and_the_head_follows_the_chain(
    store: &dyn Store,
) -> Result<(), String> {
    ensure(
        store.audit_head().await.map_err(failed)?.is_none(),
        "an empty log has no head",
    )?;
    let mut made = Vec::new();
    for n in 1..=3_u64 {
        let receipt = try_open(store, &format!("cp-{n}")).await.map_err(failed)?;
        let head = store.audit_head().await.map_err(failed)?;
        ensure(
            head.as_ref() == Some(&receipt),
            "the head is the last record written",
        )?;
        let checkpoint = Checkpoint {
            seq: receipt.seq,
            head: receipt.hash.clone(),
            at: Timestamp::from_millis(i64::try_from(n).unwrap_or(0) * 1_000),
            jws: format!("header.claims-{n}.signature"),
        };
        store.insert_checkpoint(&checkpoint).await.map_err(failed)?;
        made.push(checkpoint);
    }
    ensure(
        store.checkpoints(0, 100).await.map_err(failed)? == made,
        "checkpoints read back as written, in order",
    )?;
    ensure(
        Some(store.checkpoints(1, 1).await.map_err(failed)?.as_slice()) == made.get(1..2),
        "checkpoints page after the n-th",
    )?;
    ensure(
        records(store).await? == 3,
        "a checkpoint appends no audit record",
    )
}

pub async fn policy_sets_are_kept_by_hash_and_read_back_as_kept(
    store: &dyn Store,
) -> Result<(), String> {
    ensure(
        store.policy_set("h1").await.map_err(failed)?.is_none(),
        "an unknown hash is no policy set",
    )?;
    let first = vec![
        (
            "a.cedar".to_owned(),
            "permit (principal, action, resource);".to_owned(),
        ),
        (
            "b.cedar".to_owned(),
            "// ünïcode and \"quotes\"\n".to_owned(),
        ),
    ];
    let second = vec![(
        "c.cedar".to_owned(),
        "forbid (principal, action, resource);".to_owned(),
    )];
    store.keep_policy_set("h1", &first).await.map_err(failed)?;
    store.keep_policy_set("h2", &second).await.map_err(failed)?;
    // Kept again (every start and reload keeps its set): the first files stay.
    store.keep_policy_set("h1", &second).await.map_err(failed)?;
    ensure(
        store.policy_set("h1").await.map_err(failed)? == Some(first),
        "a kept set reads back as first kept, in order",
    )?;
    ensure(
        store.policy_set("h2").await.map_err(failed)? == Some(second),
        "each hash keeps its own files",
    )?;
    ensure(
        records(store).await? == 0,
        "keeping a policy set appends no audit record",
    )
}

pub async fn the_chain_verifies_and_task_records_filter(store: &dyn Store) -> Result<(), String> {
    open(store, "conf-1").await?;
    for (version, kind) in [(1, EventKind::Exchange), (2, EventKind::TaskEnd)] {
        store
            .write(Write {
                at: Timestamp::from_millis(2_000),
                event: event("conf-1", kind),
                task: update("conf-1", version, TaskFacts::default()),
                ..Default::default()
            })
            .await
            .map_err(failed)?;
    }
    store
        .write(Write {
            at: Timestamp::from_millis(4_000),
            event: event("conf-2", EventKind::TaskOpen),
            task: TaskWrite::Insert(Box::new(sample_task("conf-2"))),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    store
        .write(Write {
            at: Timestamp::from_millis(4_100),
            event: AuditEvent::default(),
            task: TaskWrite::None,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let records = store
        .audit_page(0, 10_000)
        .await
        .map_err(|e| e.to_string())?;
    let mut verifier = ChainVerifier::default();
    for record in &records {
        verifier.check(record).map_err(|e| e.to_string())?;
    }
    ensure(records.len() == 5, "five records were appended")?;
    let page = store.audit_page(2, 2).await.map_err(|e| e.to_string())?;
    ensure(
        page.iter().map(|r| r.seq).collect::<Vec<_>>() == vec![3, 4],
        "pages start after the cursor",
    )?;
    let first = store
        .task_records(&TaskId::new("conf-1"))
        .await
        .map_err(|e| e.to_string())?;
    ensure(
        first.iter().map(|r| r.seq).collect::<Vec<_>>() == vec![1, 2, 3],
        "task records are that task's, in order",
    )?;
    let event = first.first().ok_or("no record")?.event()?;
    ensure(
        event.kind == Some(EventKind::TaskOpen),
        "the record body reads back",
    )
}

fn sample_approval(id: &str, expires_at: i64) -> Approval {
    Approval {
        id: id.to_owned(),
        task: TaskId::new("conf-1"),
        agent: AgentId::new("agent-1"),
        user: UserId::new("alice"),
        system: SystemId::new("payments"),
        actions: vec!["payments:create".to_owned()],
        resource: None,
        details: None,
        request_hash: format!("hash-of-{id}"),
        group: "payments-owners".to_owned(),
        risk: "critical".to_owned(),
        status: ApprovalStatus::Pending,
        created_at: Timestamp::from_millis(1_000),
        expires_at: Timestamp::from_millis(expires_at),
        decided_by: None,
        decided_at: None,
        reason: None,
        consumed_by: None,
        escalated: false,
    }
}

fn decide(id: &str, status: ApprovalStatus) -> Effect {
    Effect::DecideApproval {
        id: id.to_owned(),
        status,
        by: "bob".to_owned(),
        reason: "checked".to_owned(),
    }
}

fn consume(id: &str, jti: &str) -> Effect {
    Effect::ConsumeApproval {
        id: id.to_owned(),
        jti: jti.to_owned(),
    }
}

/// Opens approval `id` (expiring at 100 s) and approves it at 2 s.
async fn approved(store: &dyn Store, id: &str) -> Result<(), String> {
    let open = effects(
        "conf-1",
        EventKind::ApprovalDecision,
        1_000,
        vec![Effect::InsertApproval(Box::new(sample_approval(
            id, 100_000,
        )))],
    );
    store.write(open).await.map_err(failed)?;
    let approve = effects(
        "conf-1",
        EventKind::ApprovalDecision,
        2_000,
        vec![decide(id, ApprovalStatus::Approved)],
    );
    store.write(approve).await.map_err(failed)?;
    Ok(())
}

/// A write whose precondition fails is rejected whole: its task insert, its effects before the
/// failing one and its record are all absent, and the chain goes on from the last good record.
pub async fn a_rejected_write_leaves_nothing_behind(store: &dyn Store) -> Result<(), String> {
    let first = effects(
        "conf-ev",
        EventKind::Evidence,
        1_000,
        vec![Effect::EvidenceSeen {
            system: SystemId::new("ci"),
            id: "ev-1".to_owned(),
            expires_at: Timestamp::from_millis(600_000),
        }],
    );
    let receipt = store.write(first).await.map_err(failed)?;
    let mut doomed = Write::new(
        Timestamp::from_millis(2_000),
        event("conf-9", EventKind::TaskOpen),
        TaskWrite::Insert(Box::new(sample_task("conf-9"))),
    );
    doomed.effects = vec![
        Effect::InsertApproval(Box::new(sample_approval("ap-doomed", 100_000))),
        Effect::Credential {
            system: SystemId::new("ci"),
            secret_sha256: "ab".repeat(32),
        },
        revoke(RevocationKind::Freeze, "git"),
        // Already seen: the whole write must be refused.
        Effect::EvidenceSeen {
            system: SystemId::new("ci"),
            id: "ev-1".to_owned(),
            expires_at: Timestamp::from_millis(600_000),
        },
    ];
    match store.write(doomed).await {
        Err(StoreError::Rejected(Rejection::EvidenceReplayed)) => {}
        other => return Err(format!("the replayed evidence must reject: {other:?}")),
    }
    ensure(
        version(store, "conf-9").await?.is_none(),
        "a rejected write must not insert its task",
    )?;
    ensure(
        store.approval("ap-doomed").await.map_err(failed)?.is_none(),
        "a rejected write must not open its approval",
    )?;
    ensure(
        store
            .credential(&SystemId::new("ci"))
            .await
            .map_err(failed)?
            .is_none(),
        "a rejected write must not register its credential",
    )?;
    ensure(
        !store
            .is_frozen(&SystemId::new("git"))
            .await
            .map_err(failed)?,
        "a rejected write must not freeze its system",
    )?;
    ensure(
        store.revocations(0, 100).await.map_err(failed)?.is_empty(),
        "a rejected write must not reach the revocation feed",
    )?;
    ensure(
        records(store).await? == 1,
        "a rejected write must not append a record",
    )?;
    let next = store
        .write(Write::new(
            Timestamp::from_millis(3_000),
            AuditEvent::default(),
            TaskWrite::None,
        ))
        .await
        .map_err(failed)?;
    ensure(
        next.seq == receipt.seq + 1,
        "the chain goes on from the last committed record",
    )?;
    let mut verifier = ChainVerifier::default();
    for record in store.audit_page(0, 100).await.map_err(failed)? {
        verifier.check(&record).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// An exchange's reads together are the reads one by one: the task, the freeze of the system
/// asked for (and of no other), and the agent's facts only when asked for.
pub async fn the_exchange_reads_are_the_separate_reads(store: &dyn Store) -> Result<(), String> {
    let unknown = store
        .exchange_reads(&TaskId::new("conf-none"), &SystemId::new("ci"), true)
        .await
        .map_err(failed)?;
    ensure(unknown.is_none(), "an unknown task reads as none")?;
    open(store, "conf-1").await?;
    let key = crate::counters::agent_key("https://issuer.example", "agent-1");
    let mut facts = AgentFacts::default();
    facts
        .windows
        .entry("deploys".to_owned())
        .or_default()
        .record(Timestamp::from_millis(1_500), 1, 60_000);
    let mut write = effects(
        "conf-1",
        EventKind::Revoke,
        1_500,
        vec![revoke(RevocationKind::Freeze, "ci")],
    );
    write.effects.push(Effect::AgentFacts {
        key: key.clone(),
        expected_version: 0,
        facts: Box::new(facts.clone()),
    });
    store.write(write).await.map_err(failed)?;
    let task = TaskId::new("conf-1");
    let separate = store.task(&task).await.map_err(failed)?;
    for (system, frozen) in [("ci", true), ("git", false)] {
        let reads = store
            .exchange_reads(&task, &SystemId::new(system), true)
            .await
            .map_err(failed)?
            .ok_or("a known task reads back")?;
        ensure(
            Some(reads.snapshot.as_ref()) == separate.as_ref(),
            "the task is the task read alone",
        )?;
        ensure(reads.frozen == frozen, "the freeze is the system's own")?;
        ensure(
            reads.agent == Some((facts.clone(), 1)),
            "the agent's facts are those stored under its key",
        )?;
        ensure(
            store.agent_facts(&key).await.map_err(failed)? == (facts.clone(), 1),
            "and those read alone",
        )?;
    }
    let without = store
        .exchange_reads(&task, &SystemId::new("ci"), false)
        .await
        .map_err(failed)?
        .ok_or("a known task reads back")?;
    ensure(
        without.agent.is_none(),
        "the agent's facts are read only when asked for",
    )
}

/// A grant decided before a freeze commits after it only if its write ignores the freeze: a
/// write `unless_frozen` is refused whole once the system is frozen, and passes once unfrozen.
pub async fn a_write_that_raced_a_freeze_is_refused(store: &dyn Store) -> Result<(), String> {
    open(store, "conf-1").await?;
    let freeze = effects(
        "conf-1",
        EventKind::Revoke,
        1_500,
        vec![revoke(RevocationKind::Freeze, "ci")],
    );
    store.write(freeze).await.map_err(failed)?;
    let before = records(store).await?;
    let grant = || {
        let mut write = Write::new(
            Timestamp::from_millis(2_000),
            event("conf-1", EventKind::Exchange),
            update("conf-1", 1, grant_facts()),
        );
        write.unless_frozen = Some(SystemId::new("ci"));
        write
    };
    match store.write(grant()).await {
        Err(StoreError::Rejected(Rejection::SystemFrozen)) => {}
        other => return Err(format!("a grant on a frozen system must reject: {other:?}")),
    }
    ensure(
        version(store, "conf-1").await? == Some(1),
        "the refused grant must not move the task",
    )?;
    ensure(
        records(store).await? == before,
        "the refused grant must not append a record",
    )?;
    // Another system's freeze does not stop it; an unfreeze lets it through.
    let unfreeze = effects(
        "conf-1",
        EventKind::Revoke,
        2_500,
        vec![
            revoke(RevocationKind::Freeze, "git"),
            revoke(RevocationKind::Unfreeze, "ci"),
        ],
    );
    store.write(unfreeze).await.map_err(failed)?;
    store.write(grant()).await.map_err(failed)?;
    ensure(
        version(store, "conf-1").await? == Some(2),
        "after the unfreeze the grant applies",
    )
}

/// A task opened for an agent revoked in the meantime is refused inside the write.
pub async fn a_task_for_a_revoked_agent_is_refused(store: &dyn Store) -> Result<(), String> {
    let revocation = effects(
        "conf-agent",
        EventKind::Revoke,
        500,
        vec![revoke(RevocationKind::Agent, "agent-1")],
    );
    store.write(revocation).await.map_err(failed)?;
    ensure(
        store
            .is_agent_revoked(&AgentId::new("agent-1"))
            .await
            .map_err(failed)?,
        "the agent reads as revoked",
    )?;
    let before = records(store).await?;
    match try_open(store, "conf-1").await {
        Err(StoreError::Rejected(Rejection::AgentRevoked)) => {}
        other => {
            return Err(format!(
                "opening a task for a revoked agent must reject: {other:?}"
            ));
        }
    }
    ensure(
        version(store, "conf-1").await?.is_none(),
        "the refused task must not exist",
    )?;
    ensure(
        records(store).await? == before,
        "the refused task must not append a record",
    )?;
    let mut other = sample_task("conf-2");
    other.agent = AgentId::new("agent-2");
    store
        .write(Write::new(
            Timestamp::from_millis(1_000),
            event("conf-2", EventKind::TaskOpen),
            TaskWrite::Insert(Box::new(other)),
        ))
        .await
        .map_err(failed)?;
    Ok(())
}

/// Revoking an agent revokes its open tasks and moves their versions, so a grant decided before
/// the revocation conflicts and is decided again (and refused).
pub async fn revoking_an_agent_revokes_its_open_tasks_and_stales_their_grants(
    store: &dyn Store,
) -> Result<(), String> {
    open(store, "conf-1").await?;
    let revocation = effects(
        "conf-1",
        EventKind::Revoke,
        1_500,
        vec![revoke(RevocationKind::Agent, "agent-1")],
    );
    store.write(revocation).await.map_err(failed)?;
    let snapshot = store
        .task(&TaskId::new("conf-1"))
        .await
        .map_err(failed)?
        .ok_or("the task is missing")?;
    ensure(
        snapshot.task.state == TaskState::Revoked,
        "the agent's open task is revoked",
    )?;
    ensure(
        store
            .open_tasks(&AgentId::new("agent-1"))
            .await
            .map_err(failed)?
            .is_empty(),
        "the agent has no open task left",
    )?;
    let stale = Write::new(
        Timestamp::from_millis(2_000),
        event("conf-1", EventKind::Exchange),
        update("conf-1", 1, grant_facts()),
    );
    match store.write(stale).await {
        Err(StoreError::Conflict) => Ok(()),
        other => Err(format!(
            "a grant decided before the revocation must conflict: {other:?}"
        )),
    }
}

/// Revoking a task marks it revoked and stales a grant decided before.
pub async fn revoking_a_task_stales_grants_decided_before(store: &dyn Store) -> Result<(), String> {
    open(store, "conf-1").await?;
    let revocation = effects(
        "conf-1",
        EventKind::Revoke,
        1_500,
        vec![revoke(RevocationKind::Task, "conf-1")],
    );
    store.write(revocation).await.map_err(failed)?;
    let status = store
        .token_status("jti-1", &TaskId::new("conf-1"), &SystemId::new("ci"))
        .await
        .map_err(failed)?;
    ensure(
        status.task_state == Some(TaskState::Revoked) && !status.is_active(),
        "a token of a revoked task is inactive",
    )?;
    let stale = Write::new(
        Timestamp::from_millis(2_000),
        event("conf-1", EventKind::Exchange),
        update("conf-1", 1, grant_facts()),
    );
    match store.write(stale).await {
        Err(StoreError::Conflict) => Ok(()),
        other => Err(format!(
            "a grant decided before the task's revocation must conflict: {other:?}"
        )),
    }
}

/// A token is active while its task is open, its system unfrozen and its own `jti` unrevoked;
/// each of those cuts it, and only it.
pub async fn token_status_follows_its_task_its_system_and_its_own_revocation(
    store: &dyn Store,
) -> Result<(), String> {
    let status = |jti: &'static str, task: &'static str, system: &'static str| async move {
        store
            .token_status(jti, &TaskId::new(task), &SystemId::new(system))
            .await
            .map_err(failed)
    };
    ensure(
        status("jti-1", "conf-1", "ci").await?.task_state.is_none(),
        "an unknown task has no state",
    )?;
    ensure(
        !status("jti-1", "conf-1", "ci").await?.is_active(),
        "a token of an unknown task is inactive",
    )?;
    open(store, "conf-1").await?;
    ensure(
        status("jti-1", "conf-1", "ci").await?.is_active(),
        "a token of an open task is active",
    )?;
    let cut = effects(
        "conf-1",
        EventKind::Revoke,
        1_500,
        vec![revoke(RevocationKind::Token, "jti-1")],
    );
    store.write(cut).await.map_err(failed)?;
    let revoked = status("jti-1", "conf-1", "ci").await?;
    ensure(
        revoked.token_revoked && !revoked.is_active(),
        "a revoked token is inactive",
    )?;
    ensure(
        status("jti-2", "conf-1", "ci").await?.is_active(),
        "revoking one token leaves its siblings active",
    )?;
    let freeze = effects(
        "conf-1",
        EventKind::Revoke,
        1_600,
        vec![revoke(RevocationKind::Freeze, "ci")],
    );
    store.write(freeze).await.map_err(failed)?;
    let frozen = status("jti-2", "conf-1", "ci").await?;
    ensure(
        frozen.system_frozen && !frozen.is_active(),
        "a token for a frozen system is inactive",
    )?;
    ensure(
        status("jti-2", "conf-1", "git").await?.is_active(),
        "a freeze cuts only its own system",
    )?;
    let unfreeze = effects(
        "conf-1",
        EventKind::Revoke,
        1_700,
        vec![revoke(RevocationKind::Unfreeze, "ci")],
    );
    store.write(unfreeze).await.map_err(failed)?;
    ensure(
        status("jti-2", "conf-1", "ci").await?.is_active(),
        "an unfreeze restores the system's tokens",
    )?;
    store
        .write(Write::new(
            Timestamp::from_millis(1_800),
            event("conf-1", EventKind::TaskEnd),
            TaskWrite::Update {
                id: TaskId::new("conf-1"),
                expected_version: 1,
                facts: None,
                state: Some(TaskState::Ended),
            },
        ))
        .await
        .map_err(failed)?;
    ensure(
        !status("jti-2", "conf-1", "ci").await?.is_active(),
        "a token of an ended task is inactive",
    )?;
    let feed: Vec<_> = store
        .revocations(0, 100)
        .await
        .map_err(failed)?
        .into_iter()
        .map(|e| (e.kind, e.subject))
        .collect();
    ensure(
        feed == vec![
            (RevocationKind::Token, "jti-1".to_owned()),
            (RevocationKind::Freeze, "ci".to_owned()),
            (RevocationKind::Unfreeze, "ci".to_owned()),
        ],
        "the revocation feed lists each in the order it took effect",
    )
}

/// An approval is decided once, while pending and unexpired.
pub async fn an_approval_is_decided_once_and_never_after_it_expired(
    store: &dyn Store,
) -> Result<(), String> {
    approved(store, "ap-1").await?;
    let again = effects(
        "conf-1",
        EventKind::ApprovalDecision,
        3_000,
        vec![decide("ap-1", ApprovalStatus::Denied)],
    );
    match store.write(again).await {
        Err(StoreError::Rejected(Rejection::ApprovalClosed)) => {}
        other => return Err(format!("a second decision must reject: {other:?}")),
    }
    let read = store
        .approval("ap-1")
        .await
        .map_err(failed)?
        .ok_or("the approval is missing")?;
    ensure(
        read.status == ApprovalStatus::Approved && read.decided_by.as_deref() == Some("bob"),
        "the first decision stands",
    )?;
    let open = effects(
        "conf-1",
        EventKind::ApprovalDecision,
        1_000,
        vec![Effect::InsertApproval(Box::new(sample_approval(
            "ap-2", 5_000,
        )))],
    );
    store.write(open).await.map_err(failed)?;
    let too_early = effects(
        "conf-1",
        EventKind::ApprovalDecision,
        4_000,
        vec![Effect::ExpireApproval {
            id: "ap-2".to_owned(),
        }],
    );
    match store.write(too_early).await {
        Err(StoreError::Rejected(Rejection::ApprovalClosed)) => {}
        other => return Err(format!("an approval cannot expire early: {other:?}")),
    }
    let late = effects(
        "conf-1",
        EventKind::ApprovalDecision,
        5_000,
        vec![decide("ap-2", ApprovalStatus::Approved)],
    );
    match store.write(late).await {
        Err(StoreError::Rejected(Rejection::ApprovalClosed)) => {}
        other => return Err(format!("a decision at the expiry must reject: {other:?}")),
    }
    let expire = effects(
        "conf-1",
        EventKind::ApprovalDecision,
        5_000,
        vec![Effect::ExpireApproval {
            id: "ap-2".to_owned(),
        }],
    );
    store.write(expire).await.map_err(failed)?;
    let expired = store.approval("ap-2").await.map_err(failed)?;
    ensure(
        expired.map(|a| a.status) == Some(ApprovalStatus::Expired),
        "an approval past its time expires",
    )
}

/// An approval is escalated once, and only while it is pending: two sweeps (of two nodes) that
/// both saw it undecided escalate it, and notify, once.
pub async fn an_approval_is_escalated_once_and_only_while_pending(
    store: &dyn Store,
) -> Result<(), String> {
    let open = effects(
        "conf-1",
        EventKind::ApprovalDecision,
        1_000,
        vec![Effect::InsertApproval(Box::new(sample_approval(
            "ap-e", 100_000,
        )))],
    );
    store.write(open).await.map_err(failed)?;
    let escalate = |id: &str, at: i64| {
        effects(
            "conf-1",
            EventKind::ApprovalEscalate,
            at,
            vec![Effect::EscalateApproval { id: id.to_owned() }],
        )
    };
    store.write(escalate("ap-e", 2_000)).await.map_err(failed)?;
    match store.write(escalate("ap-e", 3_000)).await {
        Err(StoreError::Rejected(Rejection::ApprovalClosed)) => {}
        other => return Err(format!("a second escalation must reject: {other:?}")),
    }
    let read = store.approval("ap-e").await.map_err(failed)?;
    ensure(
        read.is_some_and(|a| a.escalated),
        "the approval is escalated",
    )?;
    approved(store, "ap-d").await?;
    match store.write(escalate("ap-d", 4_000)).await {
        Err(StoreError::Rejected(Rejection::ApprovalClosed)) => Ok(()),
        other => Err(format!("a decided approval cannot escalate: {other:?}")),
    }
}

/// Only an approved, unused, unexpired approval is consumed.
pub async fn only_an_approved_unexpired_approval_is_consumed(
    store: &dyn Store,
) -> Result<(), String> {
    let open = effects(
        "conf-1",
        EventKind::ApprovalDecision,
        1_000,
        vec![Effect::InsertApproval(Box::new(sample_approval(
            "ap-pending",
            100_000,
        )))],
    );
    store.write(open).await.map_err(failed)?;
    let early = effects(
        "conf-1",
        EventKind::Exchange,
        2_000,
        vec![consume("ap-pending", "jti-0")],
    );
    match store.write(early).await {
        Err(StoreError::Rejected(Rejection::ApprovalUsed)) => {}
        other => return Err(format!("a pending approval must not release: {other:?}")),
    }
    approved(store, "ap-late").await?;
    let late = effects(
        "conf-1",
        EventKind::Exchange,
        100_000,
        vec![consume("ap-late", "jti-1")],
    );
    match store.write(late).await {
        Err(StoreError::Rejected(Rejection::ApprovalUsed)) => {}
        other => return Err(format!("an expired approval must not release: {other:?}")),
    }
    let unknown = effects(
        "conf-1",
        EventKind::Exchange,
        3_000,
        vec![consume("ap-none", "jti-2")],
    );
    match store.write(unknown).await {
        Err(StoreError::Rejected(Rejection::ApprovalUsed)) => Ok(()),
        other => Err(format!("an unknown approval must not release: {other:?}")),
    }
}

/// Many exchanges racing to release one approval: exactly one is committed, every other is
/// refused whole, and the approval names the winner's `jti`.
pub async fn an_approval_is_released_once_under_concurrent_use(
    store: &dyn Store,
) -> Result<(), String> {
    open(store, "conf-1").await?;
    approved(store, "ap-1").await?;
    let before = records(store).await?;
    let racers = (0..16).map(|i| {
        let mut write = effects(
            "conf-1",
            EventKind::Exchange,
            3_000,
            vec![consume("ap-1", &format!("jti-{i}"))],
        );
        // Each racer was decided on the same snapshot; the version check alone would let only
        // one through too, so this checks the approval itself, without a task change.
        write.task = TaskWrite::None;
        store.write(write)
    });
    let results = futures_util::future::join_all(racers).await;
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    ensure(winners.len() == 1, "exactly one release commits")?;
    for result in &results {
        match result {
            Ok(_) | Err(StoreError::Rejected(Rejection::ApprovalUsed)) => {}
            Err(other) => return Err(format!("a losing release must reject: {other}")),
        }
    }
    ensure(
        records(store).await? == before + 1,
        "only the winning release appends a record",
    )?;
    let read = store
        .approval("ap-1")
        .await
        .map_err(failed)?
        .ok_or("the approval is missing")?;
    let winner = winners.first().ok_or("no winner")?;
    ensure(
        read.consumed_by == Some(format!("jti-{winner}")),
        "the approval names the winner's token",
    )
}

/// A pending approval is found by its task and request hash, listed by status and system, and
/// polls faster than the interval are told to slow down.
pub async fn approvals_are_found_by_request_and_polls_are_paced(
    store: &dyn Store,
) -> Result<(), String> {
    let open = effects(
        "conf-1",
        EventKind::ApprovalDecision,
        1_000,
        vec![Effect::InsertApproval(Box::new(sample_approval(
            "ap-1", 100_000,
        )))],
    );
    store.write(open).await.map_err(failed)?;
    let found = store
        .pending_approval(&TaskId::new("conf-1"), "hash-of-ap-1")
        .await
        .map_err(failed)?;
    ensure(
        found.map(|a| a.id) == Some("ap-1".to_owned()),
        "the pending approval is found by its request hash",
    )?;
    ensure(
        store
            .pending_approval(&TaskId::new("conf-1"), "another-request")
            .await
            .map_err(failed)?
            .is_none(),
        "another request finds no approval",
    )?;
    let listed = |status, system: &'static str| async move {
        store
            .approvals(status, Some(&SystemId::new(system)), 10)
            .await
            .map_err(failed)
            .map(|list| list.len())
    };
    ensure(
        listed(Some(ApprovalStatus::Pending), "payments").await? == 1,
        "listed as pending for its system",
    )?;
    ensure(
        listed(Some(ApprovalStatus::Approved), "payments").await? == 0,
        "not listed as approved",
    )?;
    ensure(
        listed(None, "git").await? == 0,
        "not listed for another system",
    )?;
    let poll = |at: i64| async move {
        store
            .poll_approval("ap-1", Timestamp::from_millis(at), 2)
            .await
            .map_err(failed)
    };
    ensure(poll(10_000).await?, "the first poll is on time")?;
    ensure(!poll(11_000).await?, "a poll 1 s later must slow down")?;
    ensure(
        poll(12_000).await?,
        "a poll a full interval later is on time",
    )
}

/// Expands to one `#[tokio::test]` per conformance check, each on a fresh store from
/// `$make().await`, which returns `(guard, store)`; see the [module docs](crate::conformance).
#[macro_export]
macro_rules! store_conformance {
    ($make:path) => {
        $crate::store_conformance!(@checks $make;
            a_task_reads_back_as_written,
            an_unknown_task_is_none,
            an_update_at_the_expected_version_applies,
            a_stale_update_conflicts_and_appends_nothing,
            the_chain_verifies_and_task_records_filter,
            checkpoints_read_back_in_order_and_the_head_follows_the_chain,
            policy_sets_are_kept_by_hash_and_read_back_as_kept,
            agent_facts_are_versioned_like_a_task,
            evidence_is_accepted_once,
            a_delegation_reads_back_and_its_revocation_is_seen,
            a_rejected_write_leaves_nothing_behind,
            a_write_that_raced_a_freeze_is_refused,
            the_exchange_reads_are_the_separate_reads,
            a_task_for_a_revoked_agent_is_refused,
            revoking_an_agent_revokes_its_open_tasks_and_stales_their_grants,
            revoking_a_task_stales_grants_decided_before,
            token_status_follows_its_task_its_system_and_its_own_revocation,
            tokens_and_agents_are_known_once_recorded,
            an_approval_is_decided_once_and_never_after_it_expired,
            an_approval_is_escalated_once_and_only_while_pending,
            only_an_approved_unexpired_approval_is_consumed,
            an_approval_is_released_once_under_concurrent_use,
            approvals_are_found_by_request_and_polls_are_paced,
        );
    };
    (@checks $make:path; $($check:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[allow(clippy::panic)]
            async fn $check() {
                let (_guard, store) = $make().await;
                if let Err(what) = $crate::conformance::$check(&store).await {
                    panic!("{}: {what}", stringify!($check));
                }
            }
        )+
    };
}
