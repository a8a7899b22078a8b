//! The storage conformance suite: every `Store` backend runs these same checks (SQLite now,
//! PostgreSQL when it lands), so the core can rely on one contract.
//!
//! Each check returns `Err` with what went wrong rather than panicking, so backends can call them
//! from ordinary tests: `conformance::run_all(&store).await.unwrap()`.

use crate::audit::{AuditEvent, ChainVerifier, EventKind, Outcome};
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

/// Runs every check against `store`, which must be empty.
pub async fn run_all(store: &dyn Store) -> Result<(), String> {
    a_task_reads_back_as_written(store).await?;
    an_unknown_task_is_none(store).await?;
    an_update_at_the_expected_version_applies(store).await?;
    a_stale_update_conflicts_and_appends_nothing(store).await?;
    the_chain_verifies_and_task_records_filter(store).await?;
    agent_facts_are_versioned_like_a_task(store).await?;
    evidence_is_accepted_once(store).await?;
    a_delegation_reads_back_and_its_revocation_is_seen(store).await?;
    Ok(())
}

async fn agent_facts_are_versioned_like_a_task(store: &dyn Store) -> Result<(), String> {
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

async fn evidence_is_accepted_once(store: &dyn Store) -> Result<(), String> {
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

async fn a_delegation_reads_back_and_its_revocation_is_seen(
    store: &dyn Store,
) -> Result<(), String> {
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

async fn a_task_reads_back_as_written(store: &dyn Store) -> Result<(), String> {
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

async fn an_unknown_task_is_none(store: &dyn Store) -> Result<(), String> {
    let found = store
        .task(&TaskId::new("no-such-task"))
        .await
        .map_err(|e| e.to_string())?;
    ensure(found.is_none(), "an unknown task must read as None")
}

async fn an_update_at_the_expected_version_applies(store: &dyn Store) -> Result<(), String> {
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

async fn a_stale_update_conflicts_and_appends_nothing(store: &dyn Store) -> Result<(), String> {
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

async fn the_chain_verifies_and_task_records_filter(store: &dyn Store) -> Result<(), String> {
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
