//! Micro-benchmarks of one handoff's CPU parts: verifying the agent's identity (first sight and
//! cached), verifying the task's Transaction Token, the Cedar decision (by task history and by
//! policy count), and minting the access token (ES256 and EdDSA).
//!
//! `cargo bench -p handoff-core --bench handoff`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark setup: any failure should stop the run loudly"
)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use handoff_core::clock::{Clock, SystemClock};
use handoff_core::config::{Deployment, SigningAlgorithm, SourceReader, load_deployment};
use handoff_core::identity::{IdentityVerifier, issue_dev_identity};
use handoff_core::ids::{AgentId, DecisionId, Purpose, SystemId, TaskId, TokenId, UserId};
use handoff_core::keys::{KeyRing, SigningKey, generate_pkcs8};
use handoff_core::policy::{Decision, Grant, Permit, RequestFacts};
use handoff_core::task::{Task, TaskFacts, TaskState};
use handoff_core::time::{Timestamp, Ttl};
use handoff_core::token::{Unverified, mint_access_token, mint_txn_token, verify_txn_token};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The bundled example deployment, with `extra` policies appended as one more file.
struct Example {
    root: PathBuf,
    extra: Option<String>,
    /// More config, appended to `handoff.toml` (more systems).
    extra_config: String,
}

impl SourceReader for Example {
    fn read(&self, path: &str) -> Result<String, String> {
        let text = std::fs::read_to_string(self.root.join(path)).map_err(|e| e.to_string())?;
        if path == "handoff.toml" {
            return Ok(format!("{text}\n{}", self.extra_config));
        }
        Ok(text)
    }

    fn policy_files(&self, folder: &str) -> Result<Vec<(String, String)>, String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.root.join(folder))
            .map_err(|e| e.to_string())?
            .map(|entry| entry.map(|e| e.path()).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        files.retain(|p| p.extension().is_some_and(|x| x == "cedar"));
        files.sort();
        let mut out = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            out.push((path.display().to_string(), text));
        }
        if let Some(extra) = &self.extra {
            out.push((format!("{folder}/zz-bench-extra.cedar"), extra.clone()));
        }
        Ok(out)
    }
}

fn example_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart")
}

fn load(extra: Option<String>) -> Deployment {
    load_with(extra, String::new())
}

fn load_with(extra: Option<String>, extra_config: String) -> Deployment {
    let reader = Example {
        root: example_root(),
        extra,
        extra_config,
    };
    load_deployment(&reader, "handoff.toml").unwrap_or_else(|p| panic!("{:?}", p.0))
}

/// Every `system:action` the example declares, in a fixed order.
fn all_actions(deployment: &Deployment) -> Vec<(SystemId, String)> {
    deployment
        .config
        .systems
        .values()
        .flat_map(|s| s.actions.keys().map(|a| (s.id.clone(), a.clone())))
        .collect()
}

/// The example's policies plus generated permits up to `total`: each names one real action and
/// a purpose no task has, so it is evaluated on every matching request and never decides.
fn with_policies(total: usize) -> Deployment {
    let base = load(None);
    let have = base.policies.len();
    if total <= have {
        return base;
    }
    let actions = all_actions(&base);
    let mut text = String::new();
    for i in 0..total - have {
        let (system, action) = &actions[i % actions.len()];
        text.push_str(&format!(
            "@id(\"bench-extra-{i}\")\npermit (principal, action == Action::\"{system}:{action}\", resource == System::\"{system}\")\nwhen {{ context.task.purpose == \"bench-{i}\" && context.task.granted.contains(\"{system}:{action}\") }};\n\n"
        ));
    }
    let deployment = load(Some(text));
    assert_eq!(deployment.policies.len(), total);
    deployment
}

/// The example with `systems` more systems (two actions each) and generated permits, spread
/// evenly over the new systems' actions, up to `total` policies: a large deployment where each
/// request's own policies are few.
fn spread_policies(systems: usize, total: usize) -> Deployment {
    let have = load(None).policies.len();
    let mut config = String::new();
    let mut text = String::new();
    for s in 0..systems {
        config.push_str(&format!(
            "[systems.bench-{s}]\naudience = \"https://bench-{s}.example.com\"\nowner = \"bench-owners\"\nescalation = \"mailto:bench@example.com\"\nrisk = \"low\"\nactions = {{ read = [\"read\"], write = [\"write\"] }}\n\n"
        ));
    }
    for i in 0..total.saturating_sub(have) {
        let system = i % systems;
        let action = if (i / systems).is_multiple_of(2) {
            "read"
        } else {
            "write"
        };
        text.push_str(&format!(
            "@id(\"bench-spread-{i}\")\npermit (principal, action == Action::\"bench-{system}:{action}\", resource == System::\"bench-{system}\")\nwhen {{ context.task.purpose == \"bench-{i}\" }};\n\n"
        ));
    }
    let deployment = load_with(Some(text), config);
    assert_eq!(deployment.policies.len(), total);
    deployment
}

fn task(purpose: &str, plan: &[&str]) -> Task {
    Task {
        id: TaskId::new("task_bench"),
        agent_issuer: "https://handoff.local/dev-issuer".to_owned(),
        agent: AgentId::new("bench-agent"),
        user: UserId::new("bench-user"),
        purpose: Purpose::new(purpose),
        intent: "ship the release".to_owned(),
        plan: plan.iter().map(|s| SystemId::new(*s)).collect(),
        created_at: Timestamp::from_seconds(1_000),
        expires_at: Timestamp::from_seconds(100_000),
        state: TaskState::Open,
    }
}

/// Facts after `grants` prior grants, spread over the release task's actions.
fn facts_after(deployment: &Deployment, grants: usize) -> TaskFacts {
    let steps = [("git", "read"), ("ci", "run_tests"), ("ci", "deploy")];
    let mut facts = TaskFacts::default();
    for i in 0..grants {
        let (system, action) = steps[i % steps.len()];
        let system = &deployment.config.systems[&SystemId::new(system)];
        let at = Timestamp::from_seconds(2_000 + i as i64);
        facts.record_grant(&system.id, &[system.actions[action].clone()], at);
    }
    facts
}

fn decide(
    deployment: &Deployment,
    task: &Task,
    facts: &TaskFacts,
    system: &str,
    action: &str,
) -> Decision {
    decide_with(deployment, task, facts, system, action, None)
}

/// `ci:deploy` of `commit` (named in its authorization details).
fn decide_deploy_of(
    deployment: &Deployment,
    task: &Task,
    facts: &TaskFacts,
    commit: &str,
) -> Decision {
    let details = serde_json::json!([{ "type": "ci", "commit": commit }]);
    decide_with(deployment, task, facts, "ci", "deploy", Some(details))
}

/// Every counter the deployment declares, at zero.
fn zero_counters(deployment: &Deployment) -> BTreeMap<String, i64> {
    deployment
        .config
        .counters
        .keys()
        .map(|name| (name.clone(), 0))
        .collect()
}

fn decide_with(
    deployment: &Deployment,
    task: &Task,
    facts: &TaskFacts,
    system: &str,
    action: &str,
    details_json: Option<serde_json::Value>,
) -> Decision {
    let system = &deployment.config.systems[&SystemId::new(system)];
    let actions = vec![system.actions[action].clone()];
    let scope = vec![actions[0].name.to_string()];
    let details = details_json.as_ref().map_or_else(BTreeMap::new, |json| {
        handoff_core::policy::project_details(system, json).unwrap()
    });
    let counters = zero_counters(deployment);
    let request = RequestFacts {
        scope: &scope,
        lifetime_seconds: 300,
        resource: None,
        details: &details,
        counters: &counters,
        delegation: None,
    };
    let grant = Grant {
        task: task.id.clone(),
        agent: task.agent.clone(),
        user: task.user.clone(),
        system: system.id.clone(),
        audience: system.audience.clone(),
        actions,
        resource: None,
        details: details_json,
        issued_at: Timestamp::from_seconds(50_000),
        expires_at: Timestamp::from_seconds(50_300),
        delegation: None,
    };
    deployment.policies.decide(
        DecisionId::new("dec_bench"),
        task,
        facts,
        &request,
        grant,
        Timestamp::from_seconds(50_000),
    )
}

fn permit(deployment: &Deployment) -> Box<Permit> {
    let release = task("release", &["git", "ci"]);
    let facts = facts_after(deployment, 10);
    match decide(deployment, &release, &facts, "ci", "deploy") {
        Decision::Allow(permit) => permit,
        _ => panic!("deploy after tests must be allowed"),
    }
}

fn key(algorithm: SigningAlgorithm) -> SigningKey {
    SigningKey::from_pkcs8(algorithm, &generate_pkcs8(algorithm).unwrap()).unwrap()
}

fn identity(c: &mut Criterion) {
    let deployment = load(None);
    let config = &deployment.config;
    let dev = key(SigningAlgorithm::Es256);
    let now = SystemClock.now();
    let lifetime = Ttl::from_seconds(3600);
    let mut group = c.benchmark_group("identity");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(4));
    // First sight: every token is new to the verifier (signature check, claims, cache insert).
    group.bench_function("verify_first_sight_ES256", |b| {
        b.iter_custom(|iters| {
            let verifier = IdentityVerifier::new(config, Some(&dev));
            let tokens: Vec<String> = (0..iters)
                .map(|i| {
                    issue_dev_identity(config, &dev, &format!("agent-{i}"), now, lifetime).unwrap()
                })
                .collect();
            let start = Instant::now();
            for token in &tokens {
                black_box(verifier.verify(Unverified::new(token), now).unwrap());
            }
            start.elapsed()
        });
    });
    // Cached: the same agent again (a SHA-256 of the token and a map lookup).
    let verifier = IdentityVerifier::new(config, Some(&dev));
    let token = issue_dev_identity(config, &dev, "agent-cached", now, lifetime).unwrap();
    verifier.verify(Unverified::new(&token), now).unwrap();
    group.bench_function("verify_cached", |b| {
        b.iter(|| black_box(verifier.verify(Unverified::new(&token), now).unwrap()));
    });
    group.finish();
}

fn txn_token(c: &mut Criterion) {
    let deployment = load(None);
    let trust_domain = deployment.config.trust_domain.clone();
    let now = Timestamp::from_seconds(50_000);
    let mut group = c.benchmark_group("txn_token");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    for algorithm in [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa] {
        let keys = KeyRing::new(key(algorithm), Vec::new());
        let token = mint_txn_token(
            &keys,
            &trust_domain,
            &trust_domain,
            &task("release", &["git", "ci"]),
        )
        .unwrap();
        verify_txn_token(
            &keys,
            &trust_domain,
            &trust_domain,
            Unverified::new(&token),
            now.seconds(),
        )
        .unwrap();
        group.bench_function(BenchmarkId::new("verify", algorithm.jws_name()), |b| {
            b.iter(|| {
                black_box(
                    verify_txn_token(
                        &keys,
                        &trust_domain,
                        &trust_domain,
                        Unverified::new(&token),
                        now.seconds(),
                    )
                    .unwrap(),
                )
            });
        });
    }
    group.finish();
}

fn decision(c: &mut Criterion) {
    let base = with_policies(20);
    let release = task("release", &["git", "ci"]);
    let mut group = c.benchmark_group("decide");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    // History: the facts are folded on every grant, so their size is bounded by the actions a
    // task can be granted, not by how many grants it had.
    for grants in [10, 100, 1000] {
        let facts = facts_after(&base, grants);
        assert!(matches!(
            decide(&base, &release, &facts, "ci", "deploy"),
            Decision::Allow(_)
        ));
        group.bench_with_input(
            BenchmarkId::new("deploy_after_tests/20_policies/grants", grants),
            &facts,
            |b, facts| b.iter(|| black_box(decide(&base, &release, facts, "ci", "deploy"))),
        );
    }
    // History with signed evidence too: N prior events, half grants and half CI reports over ten
    // commits; the deploy names one of them. Evidence is folded into per-kind sets of values.
    for events in [10, 100, 1000] {
        let mut facts = facts_after(&base, events / 2);
        for i in 0..events / 2 {
            let fields = BTreeMap::from([("commit".to_owned(), format!("c{}", i % 10))]);
            facts.record_evidence("ci:tests_passed", &fields, Timestamp::from_seconds(3_000));
        }
        assert!(matches!(
            decide_deploy_of(&base, &release, &facts, "c3"),
            Decision::Allow(_)
        ));
        group.bench_with_input(
            BenchmarkId::new("deploy_of_tested_commit/20_policies/events", events),
            &facts,
            |b, facts| b.iter(|| black_box(decide_deploy_of(&base, &release, facts, "c3"))),
        );
    }
    // The context alone (task facts and request as Cedar values), to split `decide` into building
    // the request and Cedar's evaluation.
    {
        let facts = facts_after(&base, 1000);
        let scope = vec!["ci:deploy".to_owned()];
        let details = BTreeMap::new();
        let counters = zero_counters(&base);
        group.bench_function("context_only/grants/1000", |b| {
            b.iter(|| {
                let request = RequestFacts {
                    scope: &scope,
                    lifetime_seconds: 300,
                    resource: None,
                    details: &details,
                    counters: &counters,
                    delegation: None,
                };
                black_box(
                    handoff_core::policy::context_for_exchange(
                        &release,
                        &facts,
                        &request,
                        Timestamp::from_seconds(50_000),
                    )
                    .is_ok(),
                )
            })
        });
    }
    for policies in [20, 200, 2000] {
        let deployment = with_policies(policies);
        let facts = facts_after(&deployment, 10);
        group.bench_with_input(
            BenchmarkId::new("deploy_after_tests/10_grants/policies", policies),
            &deployment,
            |b, deployment| {
                b.iter(|| black_box(decide(deployment, &release, &facts, "ci", "deploy")))
            },
        );
        // The same decision evaluating every policy (no scope index): the baseline the index
        // is measured against.
        let mut whole = with_policies(policies);
        whole.policies = whole.policies.without_index();
        group.bench_with_input(
            BenchmarkId::new("deploy_after_tests/10_grants/whole_set/policies", policies),
            &whole,
            |b, deployment| {
                b.iter(|| black_box(decide(deployment, &release, &facts, "ci", "deploy")))
            },
        );
    }
    // 2,000 policies over 200 more systems: the request's own policies are the example's.
    let spread = spread_policies(200, 2000);
    let facts = facts_after(&spread, 10);
    group.bench_function(
        "deploy_after_tests/10_grants/2000_policies_over_200_systems",
        |b| b.iter(|| black_box(decide(&spread, &release, &facts, "ci", "deploy"))),
    );
    // A forbid that wins over a permit (mail after customer PII).
    let support = task("support", &["tickets", "crm", "mail"]);
    let mut facts = TaskFacts::default();
    let crm = &base.config.systems[&SystemId::new("crm")];
    facts.record_grant(
        &crm.id,
        &[crm.actions["read_customer"].clone()],
        Timestamp::from_seconds(2_000),
    );
    assert!(matches!(
        decide(&base, &support, &facts, "mail", "send"),
        Decision::Deny(_)
    ));
    group.bench_function("mail_after_pii_forbidden/20_policies", |b| {
        b.iter(|| black_box(decide(&base, &support, &facts, "mail", "send")))
    });
    group.finish();
}

fn minting(c: &mut Criterion) {
    let deployment = load(None);
    let permit = permit(&deployment);
    let trust_domain = deployment.config.trust_domain.clone();
    let mut group = c.benchmark_group("mint_access_token");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    for algorithm in [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa] {
        let keys = KeyRing::new(key(algorithm), Vec::new());
        let mut n: u64 = 0;
        group.bench_function(algorithm.jws_name(), |b| {
            b.iter(|| {
                n += 1;
                black_box(
                    mint_access_token(
                        &keys,
                        &trust_domain,
                        "https://handoff.local/dev-issuer",
                        &permit,
                        TokenId::new(format!("tok_{n}")),
                    )
                    .unwrap(),
                )
            });
        });
    }
    group.finish();
}

/// Sealing an exchange's record with and without `decided_on` (what a decision pins for its
/// replay): the added serialisation and hashing on the exchange path.
fn record(c: &mut Criterion) {
    use handoff_core::audit::{AuditEvent, DecidedOn, EventKind, Outcome, TokenRecord, seal};
    let deployment = load(None);
    let counters = zero_counters(&deployment);
    let event = AuditEvent {
        kind: Some(EventKind::Exchange),
        decision_id: Some("dec_0123456789abcdef".to_owned()),
        agent: Some("release-bot".to_owned()),
        agent_issuer: Some("https://handoff.local/dev".to_owned()),
        user: Some("alice".to_owned()),
        task: Some("tsk_0123456789abcdef".to_owned()),
        intent: Some("ship the fix for issue 42".to_owned()),
        purpose: Some("release".to_owned()),
        system: Some("ci".to_owned()),
        actions: vec!["ci:deploy".to_owned()],
        outcome: Some(Outcome::Permit),
        policies: vec!["deploy-after-tests".to_owned()],
        policy_set: Some("0".repeat(64)),
        token: Some(TokenRecord {
            jti: "tok_0123456789abcdef".to_owned(),
            aud: "https://ci.example.com".to_owned(),
            scope: "ci:deploy".to_owned(),
            exp: 1_900_000_000,
        }),
        kid: Some("k".repeat(43)),
        ..AuditEvent::default()
    };
    let pinned = AuditEvent {
        decided_on: Some(DecidedOn {
            exchanges: 12,
            evidence: 1,
            lifetime_seconds: Some(300),
            counters: Some(counters),
        }),
        ..event.clone()
    };
    let at = Timestamp::from_millis(1_800_000_000_000);
    let mut group = c.benchmark_group("seal_record");
    for (name, event) in [("exchange", &event), ("exchange_with_decided_on", &pinned)] {
        group.bench_function(name, |b| {
            b.iter(|| seal(black_box(7), at, &"0".repeat(64), black_box(event.clone())).unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, identity, txn_token, decision, minting, record);
criterion_main!(benches);
