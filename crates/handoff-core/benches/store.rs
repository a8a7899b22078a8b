//! Micro-benchmarks of the store on a handoff's path, through `SqliteStore` (WAL,
//! `synchronous = FULL`): appending audit records durably one at a time versus with many writes
//! in flight (group commit: one fsync per batch), reading a task snapshot, and the revocation
//! lookup behind introspection (`Store::token_status`).
//!
//! `cargo bench -p handoff-core --bench store`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark setup: any failure should stop the run loudly"
)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use handoff_core::audit::{AuditEvent, EventKind, Outcome, TokenRecord};
use handoff_core::containment::{Revocation, RevocationKind};
use handoff_core::ids::{AgentId, Purpose, SystemId, TaskId, UserId};
use handoff_core::store::{Effect, Store, TaskWrite, Write};
use handoff_core::task::{Task, TaskFacts, TaskState};
use handoff_core::time::Timestamp;
use handoff_store_sqlite::SqliteStore;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Tasks in the store for the lookups.
const TASKS: usize = 10_000;
/// Revoked tokens in the store for the lookups.
const REVOKED: usize = 1_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn open() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("handoff.db")).unwrap();
    (dir, Arc::new(store))
}

fn now() -> Timestamp {
    Timestamp::from_seconds(1_800_000_000)
}

/// A permitted exchange's record, as the service writes it.
fn exchange_event(task: &str, n: usize) -> AuditEvent {
    AuditEvent {
        kind: Some(EventKind::Exchange),
        decision_id: Some(format!("dec_{n:026}")),
        agent: Some("bench-7".to_owned()),
        agent_issuer: Some("https://handoff.local/dev-issuer".to_owned()),
        user: Some("bench-user".to_owned()),
        task: Some(task.to_owned()),
        intent: Some("benchmark release task 12".to_owned()),
        purpose: Some("release".to_owned()),
        system: Some("ci".to_owned()),
        actions: vec!["ci:deploy".to_owned()],
        outcome: Some(Outcome::Permit),
        policies: vec!["deploy-after-tests".to_owned()],
        policy_set: Some("7".repeat(64)),
        token: Some(TokenRecord {
            jti: format!("tok_{n:026}"),
            aud: "https://ci.example.com".to_owned(),
            scope: "ci:deploy".to_owned(),
            exp: 1_800_000_600,
        }),
        ..AuditEvent::default()
    }
}

fn task(id: &str) -> Task {
    Task {
        id: TaskId::new(id),
        agent_issuer: "https://handoff.local/dev-issuer".to_owned(),
        agent: AgentId::new("bench-7"),
        user: UserId::new("bench-user"),
        purpose: Purpose::new("release"),
        intent: "benchmark release task".to_owned(),
        plan: [SystemId::new("git"), SystemId::new("ci")].into(),
        created_at: now(),
        expires_at: Timestamp::from_seconds(1_800_014_400),
        state: TaskState::Open,
    }
}

/// Writes `writes` with at most `depth` in flight; returns the wall time.
async fn write_all(store: &Arc<SqliteStore>, writes: Vec<Write>, depth: usize) -> Duration {
    let start = Instant::now();
    let mut pending = writes.into_iter();
    let mut set = JoinSet::new();
    loop {
        while set.len() < depth {
            let Some(write) = pending.next() else { break };
            let store = store.clone();
            set.spawn(async move { store.write(write).await.unwrap() });
        }
        match set.join_next().await {
            Some(done) => {
                done.unwrap();
            }
            None => break,
        }
    }
    start.elapsed()
}

fn audit_append(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, store) = open();
    let mut group = c.benchmark_group("audit_append");
    // One write awaited at a time: every record pays a whole commit and its fsync.
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let mut n = 0;
    group.bench_function(BenchmarkId::new("in_flight", 1), |b| {
        b.iter_custom(|iters| {
            let writes: Vec<Write> = (0..iters)
                .map(|_| {
                    n += 1;
                    Write::new(now(), exchange_event("task_a", n), TaskWrite::None)
                })
                .collect();
            rt.block_on(write_all(&store, writes, 1))
        });
    });
    // Many writes in flight: the writer thread folds what is queued (up to 512) into one commit.
    for depth in [16, 64, 512] {
        group.bench_function(BenchmarkId::new("in_flight", depth), |b| {
            b.iter_custom(|iters| {
                let writes: Vec<Write> = (0..iters)
                    .map(|_| {
                        n += 1;
                        Write::new(now(), exchange_event("task_a", n), TaskWrite::None)
                    })
                    .collect();
                rt.block_on(write_all(&store, writes, depth))
            });
        });
    }
    group.finish();
}

fn lookups(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, store) = open();
    let inserts: Vec<Write> = (0..TASKS)
        .map(|i| {
            let id = format!("task_{i:08}");
            Write::new(
                now(),
                exchange_event(&id, i),
                TaskWrite::Insert(Box::new(task(&id))),
            )
        })
        .collect();
    rt.block_on(write_all(&store, inserts, 512));
    let revocations: Vec<Write> = (0..REVOKED)
        .map(|i| Write {
            effects: vec![Effect::Revoke(Revocation {
                kind: RevocationKind::Token,
                subject: format!("tok_revoked_{i:08}"),
                reason: "benchmark".to_owned(),
                actor: "operator".to_owned(),
            })],
            ..Write::new(now(), AuditEvent::default(), TaskWrite::None)
        })
        .collect();
    rt.block_on(write_all(&store, revocations, 512));
    // A task whose facts saw a few grants, as an exchange reads it.
    let hot = TaskId::new("task_00000042");
    let mut facts = TaskFacts {
        exchanges: 12,
        systems: [SystemId::new("git"), SystemId::new("ci")].into(),
        labels: ["read".to_owned(), "execute".to_owned()].into(),
        ..TaskFacts::default()
    };
    for i in 0..8 {
        facts.record_token(1_800_000_600 + i, 1_800_000_000);
    }
    rt.block_on(store.write(Write::new(
        now(),
        exchange_event(hot.as_str(), 0),
        TaskWrite::Update {
            id: hot.clone(),
            expected_version: 1,
            facts: Some(Box::new(facts)),
            state: None,
        },
    )))
    .unwrap();

    let mut group = c.benchmark_group("store_read");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("task_snapshot", |b| {
        b.iter(|| black_box(rt.block_on(store.task(&hot)).unwrap().unwrap()))
    });
    let ci = SystemId::new("ci");
    group.bench_function("token_status/live", |b| {
        b.iter(|| {
            let status = rt
                .block_on(store.token_status("tok_live_00000000000000000001", &hot, &ci))
                .unwrap();
            assert!(status.is_active());
            black_box(status)
        })
    });
    group.bench_function("token_status/revoked", |b| {
        b.iter(|| {
            let status = rt
                .block_on(store.token_status("tok_revoked_00000500", &hot, &ci))
                .unwrap();
            assert!(!status.is_active());
            black_box(status)
        })
    });
    group.finish();
}

criterion_group!(benches, audit_append, lookups);
criterion_main!(benches);
