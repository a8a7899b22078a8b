//! The PostgreSQL store against the shared conformance suite, plus what only a shared store has:
//! several nodes (stores) on one database keep one chain and one task's version order. Each test
//! works in its own schema (unique name), dropped when the test ends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use handoff_core::audit::{AuditEvent, ChainVerifier};
use handoff_core::ids::{AgentId, Purpose, TaskId, UserId};
use handoff_core::store::{Store, StoreError, TaskWrite, Write};
use handoff_core::task::{Task, TaskState};
use handoff_core::time::Timestamp;
use handoff_store_postgres::PgStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// The test database (trust auth); `HANDOFF_TEST_POSTGRES` overrides it.
fn base_url() -> String {
    std::env::var("HANDOFF_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

/// A schema of its own, dropped (with everything in it) when the guard goes.
struct Schema {
    name: String,
}

impl Schema {
    async fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "handoff_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin(&format!("CREATE SCHEMA {name}")).await;
        Self { name }
    }

    fn url(&self) -> String {
        let sep = if base_url().contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}options=-c%20search_path%3D{}&application_name={}",
            base_url(),
            self.name,
            self.name
        )
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        // Drop runs outside any runtime's async context: use a short-lived one of its own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(admin(&sql));
        })
        .join();
    }
}

async fn admin(sql: &str) {
    let (client, connection) = tokio_postgres::connect(&base_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap();
    drop(client);
    let _ = task.await;
}

async fn scratch() -> (Schema, PgStore) {
    let schema = Schema::new().await;
    let store = PgStore::open(&schema.url()).await.unwrap();
    (schema, store)
}

/// The shared `Store` contract, one test per check (`conformance::<check>`).
mod conformance {
    handoff_core::store_conformance!(super::scratch);
}

fn plain(i: i64, task: &str) -> Write {
    Write::new(
        Timestamp::from_millis(i),
        AuditEvent {
            task: Some(task.to_owned()),
            ..AuditEvent::default()
        },
        TaskWrite::None,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_writing_at_once_keep_one_unbroken_chain() {
    let schema = Schema::new().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Arc::new(PgStore::open(&schema.url()).await.unwrap()));
    }
    let writers: Vec<_> = (0..150)
        .map(|i| {
            let node = nodes[i % 3].clone();
            tokio::spawn(async move {
                node.write(plain(i64::try_from(i).unwrap(), &format!("t{}", i % 7)))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for writer in writers {
        seqs.push(writer.await.unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=150).collect::<Vec<_>>());
    let records = nodes[1].audit_page(0, 1000).await.unwrap();
    let mut verifier = ChainVerifier::default();
    for record in &records {
        verifier.check(record).unwrap();
    }
    assert_eq!(verifier.checked(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_update_decided_on_one_node_conflicts_once_another_node_committed() {
    let (schema, a) = scratch().await;
    let b = PgStore::open(&schema.url()).await.unwrap();
    let task = Task {
        id: TaskId::new("t1"),
        agent_issuer: "https://issuer.example".to_owned(),
        agent: AgentId::new("agent-1"),
        user: UserId::new("alice"),
        purpose: Purpose::new("release"),
        intent: "ship".to_owned(),
        plan: Default::default(),
        created_at: Timestamp::from_millis(1),
        expires_at: Timestamp::from_millis(3_600_000),
        state: TaskState::Open,
    };
    a.write(Write::new(
        Timestamp::from_millis(1),
        AuditEvent::default(),
        TaskWrite::Insert(Box::new(task)),
    ))
    .await
    .unwrap();
    let update = || TaskWrite::Update {
        id: TaskId::new("t1"),
        expected_version: 1,
        facts: None,
        state: None,
    };
    let (first, second) = tokio::join!(
        a.write(Write::new(
            Timestamp::from_millis(2),
            AuditEvent::default(),
            update()
        )),
        b.write(Write::new(
            Timestamp::from_millis(2),
            AuditEvent::default(),
            update()
        )),
    );
    let outcomes = [first.is_ok(), second.is_ok()];
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{outcomes:?}");
    assert!(matches!(
        first.err().or(second.err()),
        Some(StoreError::Conflict)
    ));
    assert_eq!(
        b.task(&TaskId::new("t1")).await.unwrap().unwrap().version,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_binary_is_refused() {
    let (schema, store) = scratch().await;
    drop(store);
    admin(&format!(
        "INSERT INTO {}.handoff_schema (version) VALUES (999)",
        schema.name
    ))
    .await;
    let error = PgStore::open(&schema.url()).await.err().unwrap();
    assert!(
        error.to_string().contains("newer than this binary"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_connections_were_cut_reconnects_by_itself() {
    let (schema, store) = scratch().await;
    store.write(plain(1, "t")).await.unwrap();
    // Terminate every backend serving this schema's store (as a failover would).
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{}'",
        schema.name
    ))
    .await;
    // A call may fail closed while the pool notices; it never answers wrongly, and the store
    // recovers without being reopened.
    let mut recovered = false;
    for i in 0..20 {
        match store.write(plain(2 + i, "t")).await {
            Ok(receipt) => {
                assert!(receipt.seq >= 2);
                recovered = true;
                break;
            }
            Err(StoreError::Unavailable(_)) => {}
            Err(other) => panic!("a cut connection must read as unavailable: {other}"),
        }
    }
    assert!(recovered, "the store reconnects by itself");
    let head = store.audit_head().await.unwrap().unwrap();
    let mut verifier = ChainVerifier::default();
    for record in store.audit_page(0, 100).await.unwrap() {
        verifier.check(&record).unwrap();
    }
    assert_eq!(verifier.checked(), head.seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_refuses_to_open() {
    let error = PgStore::open("postgres://root@127.0.0.1:1/test")
        .await
        .err()
        .unwrap();
    assert!(!error.to_string().contains("postgres://"), "{error}");
}
