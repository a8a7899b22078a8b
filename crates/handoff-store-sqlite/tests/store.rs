//! The SQLite store against the shared conformance suite, plus what only a file-backed store has.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use handoff_core::audit::{AuditEvent, ChainVerifier};
use handoff_core::store::{Store, TaskWrite, Write};
use handoff_core::time::Timestamp;
use handoff_store_sqlite::SqliteStore;
use std::sync::Arc;

/// A fresh store in its own temporary folder, for one conformance check.
async fn scratch() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("handoff.db")).unwrap();
    (dir, store)
}

/// An open task of `agent` (from `https://issuer.example`), planned on `ci`.
fn sample_task(id: &str, agent: &str) -> handoff_core::task::Task {
    use handoff_core::ids::{AgentId, Purpose, SystemId, TaskId, UserId};
    handoff_core::task::Task {
        id: TaskId::new(id),
        agent_issuer: "https://issuer.example".to_owned(),
        agent: AgentId::new(agent),
        user: UserId::new("alice"),
        purpose: Purpose::new("release"),
        intent: "ship".to_owned(),
        plan: [SystemId::new("ci")].into_iter().collect(),
        created_at: Timestamp::from_millis(1_000),
        expires_at: Timestamp::from_millis(3_600_000),
        state: handoff_core::task::TaskState::Open,
    }
}

/// A write of `event` alone (no task change, no effect) at `millis`.
fn record_at(millis: i64, event: AuditEvent) -> Write {
    Write {
        at: Timestamp::from_millis(millis),
        event,
        task: TaskWrite::None,
        ..Default::default()
    }
}

/// The shared `Store` contract, one test per check (`conformance::<check>`).
mod conformance {
    handoff_core::store_conformance!(super::scratch);
}

/// That the writes share commits (group commit) is not observable here: the store exposes no
/// commit count, so this test claims only what it checks.
#[tokio::test]
async fn concurrent_writes_each_get_one_sequence_number_and_keep_one_unbroken_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("handoff.db")).unwrap());
    let writers: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let event = AuditEvent {
                    task: Some(format!("t{}", i % 7)),
                    ..AuditEvent::default()
                };
                store.write(record_at(i, event)).await.unwrap()
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for writer in writers {
        seqs.push(writer.await.unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    let records = store.audit_page(0, 1000).await.unwrap();
    let mut verifier = ChainVerifier::default();
    for record in &records {
        verifier.check(record).unwrap();
    }
}

#[tokio::test]
async fn the_chain_continues_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handoff.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        for i in 0..3 {
            store
                .write(Write {
                    at: Timestamp::from_millis(i),
                    event: AuditEvent::default(),
                    task: TaskWrite::None,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
    }
    let store = SqliteStore::open(&path).unwrap();
    let receipt = store
        .write(Write {
            at: Timestamp::from_millis(9),
            event: AuditEvent::default(),
            task: TaskWrite::None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(receipt.seq, 4);
    let mut verifier = ChainVerifier::default();
    for record in store.audit_page(0, 10).await.unwrap() {
        verifier.check(&record).unwrap();
    }
    assert_eq!(verifier.checked(), 4);
}

/// The WAL is copied back into the database by the checkpointer thread, beside the writer: a few
/// records, far below SQLite's own automatic threshold (which the writer has off), are in the
/// database file within a few seconds, with no further write to carry a checkpoint.
#[tokio::test]
async fn the_checkpointer_copies_the_wal_back_beside_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handoff.db");
    let store = SqliteStore::open(&path).unwrap();
    // Let the start's own checkpoint pass, then measure what the records add.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let before = std::fs::metadata(&path).unwrap().len();
    for i in 0..40 {
        let event = AuditEvent {
            task: Some(format!("t{i}")),
            reason: Some("x".repeat(2000)),
            ..AuditEvent::default()
        };
        store.write(record_at(i, event)).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = std::fs::metadata(&path).unwrap().len();
        if now >= before + 40 * 2000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file is {now} bytes, {before} before 40 records of 2 KB: nothing was checkpointed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(store.audit_page(0, 100).await.unwrap().len(), 40);
}

/// A database made before migration 9 (tokens indexed through the body's JSON) gets the `jti`
/// column filled from its records when opened: the tokens it recorded are still known, an id it
/// never recorded is not, and its chain still verifies.
#[tokio::test]
async fn tokens_recorded_before_the_jti_column_are_still_known_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handoff.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        for (i, jti) in ["jti-old", "jti-older"].into_iter().enumerate() {
            let event = AuditEvent {
                task: Some("t1".to_owned()),
                token: Some(handoff_core::audit::TokenRecord {
                    jti: jti.to_owned(),
                    aud: "git".to_owned(),
                    scope: "read".to_owned(),
                    exp: 60,
                }),
                ..AuditEvent::default()
            };
            store
                .write(record_at(i64::try_from(i).unwrap(), event))
                .await
                .unwrap();
        }
        store
            .write(record_at(5, AuditEvent::default()))
            .await
            .unwrap();
    }
    // Back to schema 8, exactly as it was: no column, the expression index.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP INDEX audit_by_token;
         ALTER TABLE audit DROP COLUMN jti;
         CREATE INDEX audit_by_jti ON audit (
             CASE WHEN json_valid(body) THEN json_extract(body, '$.event.token.jti') END
         );
         PRAGMA user_version = 8;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.token_known("jti-old").await.unwrap());
    assert!(store.token_known("jti-older").await.unwrap());
    assert!(!store.token_known("jti-never").await.unwrap());
    let mut verifier = ChainVerifier::default();
    for record in store.audit_page(0, 10).await.unwrap() {
        verifier.check(&record).unwrap();
    }
    assert_eq!(verifier.checked(), 3);
}

/// An exchange's reads share one read transaction. When one of them fails (here the agent's
/// facts are not JSON), the transaction still ends: the reader it ran on sees later commits,
/// instead of holding the state it began on.
#[tokio::test]
async fn a_failed_exchange_read_leaves_no_reader_on_an_old_state() {
    use handoff_core::ids::{SystemId, TaskId};
    use handoff_core::store::StoreError;
    use handoff_core::task::TaskFacts;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handoff.db");
    let store = SqliteStore::open(&path).unwrap();
    let id = TaskId::new("task-1");
    let task = sample_task("task-1", "agent-1");
    // Before the task opens, so that the writer, which reads the agent's facts for its hot state
    // when it commits the task, cannot hold them either: the reads below go to SQLite.
    let key = handoff_core::counters::agent_key("https://issuer.example", "agent-1");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO agent_facts (key, facts, version) VALUES (?1, 'not json', 1)",
            [&key],
        )
        .unwrap();
    store
        .write(Write {
            at: Timestamp::from_millis(1_000),
            event: AuditEvent::default(),
            task: TaskWrite::Insert(Box::new(task)),
            ..Default::default()
        })
        .await
        .unwrap();
    let ci = SystemId::new("ci");
    match store.exchange_reads(&id, &ci, true).await {
        Err(StoreError::Corrupt(_)) => {}
        other => panic!("unreadable agent facts must fail the reads: {other:?}"),
    }
    store
        .write(Write {
            at: Timestamp::from_millis(2_000),
            event: AuditEvent::default(),
            task: TaskWrite::Update {
                id: id.clone(),
                expected_version: 1,
                facts: Some(Box::new(TaskFacts::default())),
                state: None,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    // One at a time, every read goes to the same (first free) reader.
    assert_eq!(store.task(&id).await.unwrap().unwrap().version, 2);
    let reads = store
        .exchange_reads(&id, &ci, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reads.snapshot.version, 2);
}

/// Tests of the hot state (`hot.rs`): what the writer last committed, answering exchange reads.
mod hot {
    use handoff_core::audit::AuditEvent;
    use handoff_core::containment::{Revocation, RevocationKind};
    use handoff_core::counters::{AgentFacts, agent_key};
    use handoff_core::ids::{SystemId, TaskId};
    use handoff_core::store::{Effect, Store, StoreError, TaskWrite, Write};
    use handoff_core::task::{TaskFacts, TaskState};
    use handoff_core::time::Timestamp;
    use handoff_store_sqlite::SqliteStore;

    const ISSUER: &str = "https://issuer.example";

    use super::sample_task as task;

    fn write(at: i64, task: TaskWrite, effects: Vec<Effect>) -> Write {
        Write {
            at: Timestamp::from_millis(at),
            event: AuditEvent::default(),
            task,
            effects,
            unless_frozen: None,
        }
    }

    fn revoke(kind: RevocationKind, subject: &str) -> Effect {
        Effect::Revoke(Revocation {
            kind,
            subject: subject.to_owned(),
            reason: "test".to_owned(),
            actor: "operator".to_owned(),
        })
    }

    /// Facts that differ with `n` (the exchange count), so a stale copy shows.
    fn facts(n: u64) -> TaskFacts {
        TaskFacts {
            exchanges: n,
            live: vec![i64::try_from(n).unwrap()],
            ..TaskFacts::default()
        }
    }

    fn agent_facts(n: i64) -> AgentFacts {
        let mut facts = AgentFacts::default();
        facts
            .windows
            .entry("deploys".to_owned())
            .or_default()
            .record(Timestamp::from_millis(1_000), n, 60_000);
        facts
    }

    /// The exchange's reads, held to the reads each made alone from SQLite.
    async fn check(store: &SqliteStore, tasks: &[&str], step: u64) {
        for id in tasks {
            let id = TaskId::new(*id);
            let alone = store.task(&id).await.unwrap();
            for system in ["ci", "git"] {
                let system = SystemId::new(system);
                let reads = store.exchange_reads(&id, &system, true).await.unwrap();
                let Some(alone) = &alone else {
                    assert!(reads.is_none(), "step {step}: {id} is unknown");
                    continue;
                };
                let reads = reads.unwrap();
                assert_eq!(reads.snapshot.as_ref(), alone, "step {step}: {id}'s task");
                assert_eq!(
                    reads.frozen,
                    store.is_frozen(&system).await.unwrap(),
                    "step {step}: {system}'s freeze"
                );
                let key = alone.task.agent_key();
                assert_eq!(
                    reads.agent,
                    Some(store.agent_facts(&key).await.unwrap()),
                    "step {step}: {id}'s agent's counters"
                );
            }
        }
    }

    /// Through every kind of write this store makes (task opens, exchanges' updates with and
    /// without the agent's counters, refused stale updates, several writes in one commit,
    /// freezes, unfreezes and revocations), an exchange's reads are what SQLite holds; and most
    /// of them were answered from the hot state.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_exchanges_reads_are_what_sqlite_holds_after_every_write() {
        let (_dir, store) = super::scratch().await;
        let tasks = ["task-a", "task-b", "task-c", "task-d"];
        let agents = ["agent-1", "agent-1", "agent-2", "agent-2"];
        // A small fixed generator: the same sequence on every run.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut at = 1_000;
        for (id, agent) in tasks.iter().zip(agents) {
            let open = write(at, TaskWrite::Insert(Box::new(task(id, agent))), vec![]);
            store.write(open).await.unwrap();
        }
        check(&store, &tasks, 0).await;
        for step in 1..=300 {
            at += 10;
            let pick = usize::try_from(next(4)).unwrap();
            let id = TaskId::new(tasks[pick]);
            let current = store.task(&id).await.unwrap().unwrap();
            let key = agent_key(ISSUER, agents[pick]);
            let (_, agent_version) = store.agent_facts(&key).await.unwrap();
            let update = |expected_version, n| TaskWrite::Update {
                id: id.clone(),
                expected_version,
                facts: Some(Box::new(facts(n))),
                state: None,
            };
            match next(20) {
                // An exchange's update, with the agent's counters half of the time.
                0..=9 => {
                    let mut effects = vec![];
                    if next(2) == 0 {
                        effects.push(Effect::AgentFacts {
                            key: key.clone(),
                            expected_version: agent_version,
                            facts: Box::new(agent_facts(at)),
                        });
                    }
                    let result = store
                        .write(write(at, update(current.version, step), effects))
                        .await;
                    // A revoked task refuses nothing here: the store checks versions only.
                    result.unwrap();
                }
                // A stale update (decided on an older version) is refused and changes nothing.
                10..=11 => {
                    let stale = write(at, update(current.version.saturating_sub(1), step), vec![]);
                    assert!(matches!(
                        store.write(stale).await,
                        Err(StoreError::Conflict)
                    ));
                }
                // Several writes at once, sharing commits: each task once, one of them stale.
                12..=14 => {
                    let mut pending = Vec::new();
                    for (i, other) in tasks.iter().enumerate() {
                        let other = TaskId::new(*other);
                        let version = store.task(&other).await.unwrap().unwrap().version;
                        let expected = if i == pick { version + 1 } else { version };
                        let update = TaskWrite::Update {
                            id: other,
                            expected_version: expected,
                            facts: (i % 2 == 0).then(|| Box::new(facts(step + 1_000))),
                            state: (i == 3).then_some(TaskState::Ended),
                        };
                        pending.push(store.write(write(at, update, vec![])));
                    }
                    let results = futures_util::future::join_all(pending).await;
                    for (i, result) in results.into_iter().enumerate() {
                        assert_eq!(result.is_ok(), i != pick, "step {step}: write {i}");
                    }
                }
                // A record with no task change and one effect: a freeze or an unfreeze, a
                // task's or an agent's revocation, or the agent's counters alone.
                kind => {
                    let effect = match kind {
                        15 => {
                            let system = if next(2) == 0 { "ci" } else { "git" };
                            let kind = if next(2) == 0 {
                                RevocationKind::Freeze
                            } else {
                                RevocationKind::Unfreeze
                            };
                            revoke(kind, system)
                        }
                        16 => revoke(RevocationKind::Task, tasks[pick]),
                        17 => revoke(RevocationKind::Agent, agents[pick]),
                        _ => Effect::AgentFacts {
                            key: key.clone(),
                            expected_version: agent_version,
                            facts: Box::new(agent_facts(at + 7)),
                        },
                    };
                    store
                        .write(write(at, TaskWrite::None, vec![effect]))
                        .await
                        .unwrap();
                }
            }
            check(&store, &tasks, step).await;
        }
        let counts = store.hot_reads();
        assert!(
            counts.hits > counts.misses,
            "most exchange reads are answered from the hot state: {counts:?}"
        );
    }

    /// Another process writing the same file (the CLI revoking a task) is not seen by the hot
    /// state until this store's next commit. An exchange decided on the old state in between
    /// cannot commit: its write names the old version and is refused; the same commit finds a
    /// chain head this store did not write and forgets what it held, so the exchange's retry
    /// reads the revocation.
    #[tokio::test]
    async fn a_revocation_by_another_process_refuses_the_stale_exchange_and_is_read_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handoff.db");
        let server = SqliteStore::open(&path).unwrap();
        let cli = SqliteStore::open(&path).unwrap();
        let id = TaskId::new("task-1");
        let ci = SystemId::new("ci");
        let open = write(
            1_000,
            TaskWrite::Insert(Box::new(task("task-1", "agent-1"))),
            vec![],
        );
        server.write(open).await.unwrap();
        let update = |expected_version, n| TaskWrite::Update {
            id: id.clone(),
            expected_version,
            facts: Some(Box::new(facts(n))),
            state: None,
        };
        server
            .write(write(2_000, update(1, 1), vec![]))
            .await
            .unwrap();
        let revocation = revoke(RevocationKind::Task, "task-1");
        cli.write(write(3_000, TaskWrite::None, vec![revocation]))
            .await
            .unwrap();
        let stale = server
            .exchange_reads(&id, &ci, true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (stale.snapshot.version, stale.snapshot.task.state),
            (2, TaskState::Open),
            "until this store commits again, it holds its own last state"
        );
        assert!(matches!(
            server.write(write(4_000, update(2, 2), vec![])).await,
            Err(StoreError::Conflict)
        ));
        let fresh = server
            .exchange_reads(&id, &ci, true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (fresh.snapshot.version, fresh.snapshot.task.state),
            (3, TaskState::Revoked)
        );
        // And a freeze by the other process is read after this store's next commit.
        let freeze = revoke(RevocationKind::Freeze, "ci");
        cli.write(write(5_000, TaskWrite::None, vec![freeze]))
            .await
            .unwrap();
        server
            .write(write(6_000, TaskWrite::None, vec![]))
            .await
            .unwrap();
        let reads = server
            .exchange_reads(&id, &ci, false)
            .await
            .unwrap()
            .unwrap();
        assert!(reads.frozen, "the other process's freeze is read");
    }
}
