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
    use handoff_core::ids::{AgentId, Purpose, SystemId, TaskId, UserId};
    use handoff_core::store::StoreError;
    use handoff_core::task::{Task, TaskFacts, TaskState};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handoff.db");
    let store = SqliteStore::open(&path).unwrap();
    let id = TaskId::new("task-1");
    let task = Task {
        id: id.clone(),
        agent_issuer: "https://issuer.example".to_owned(),
        agent: AgentId::new("agent-1"),
        user: UserId::new("alice"),
        purpose: Purpose::new("release"),
        intent: "ship".to_owned(),
        plan: [SystemId::new("ci")].into_iter().collect(),
        created_at: Timestamp::from_millis(1_000),
        expires_at: Timestamp::from_millis(3_600_000),
        state: TaskState::Open,
    };
    store
        .write(Write {
            at: Timestamp::from_millis(1_000),
            event: AuditEvent::default(),
            task: TaskWrite::Insert(Box::new(task)),
            ..Default::default()
        })
        .await
        .unwrap();
    let key = handoff_core::counters::agent_key("https://issuer.example", "agent-1");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO agent_facts (key, facts, version) VALUES (?1, 'not json', 1)",
            [&key],
        )
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
