//! The policy scope index decides exactly as the whole policy set: the bundled example plus
//! generated policies of every scope shape (any action, `==`, `in [..]`, `in` an action group;
//! any resource, `==`, `in`, `is`), permits and forbids, conditions on the principal and on every
//! field of the exchange context (each task, request and counter field, `has` tests, a record
//! used whole, the delegation's presence), evaluated on generated requests (every system's
//! actions, task purposes, prior grants, a resource or none, a delegate or the agent) and task
//! opens. Each decision, with its reason, description, determining policies and any gate, must
//! be the same whether the engine evaluates the policies the index picks for the request, on a
//! context of only the fields those policies read, or all of them on the whole context.
//!
//! Deterministic in CI: 64 cases from a fixed seed; `PROPTEST_CASES=1000` explores further.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use handoff_core::config::{Deployment, SourceReader, load_deployment};
use handoff_core::ids::{AgentId, DecisionId, Purpose, SystemId, TaskId, UserId};
use handoff_core::policy::{Grant, RequestFacts, context_for_open};
use handoff_core::task::{Task, TaskFacts, TaskState};
use handoff_core::time::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The bundled example's folder, with one more policy file.
struct Example {
    root: PathBuf,
    extra: String,
}

impl SourceReader for Example {
    fn read(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(self.root.join(path)).map_err(|e| e.to_string())
    }

    fn policy_files(&self, folder: &str) -> Result<Vec<(String, String)>, String> {
        let mut files: Vec<_> = std::fs::read_dir(self.root.join(folder))
            .map_err(|e| e.to_string())?
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p.display().to_string(), text)
            })
            .collect();
        files.sort();
        files.push(("generated.cedar".to_owned(), self.extra.clone()));
        Ok(files)
    }
}

fn load(extra: &str) -> Deployment {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    let reader = Example {
        root,
        extra: extra.to_owned(),
    };
    load_deployment(&reader, "handoff.toml").unwrap_or_else(|p| panic!("{:?}\n{extra}", p.0))
}

const ACTIONS: &[&str] = &[
    "tickets:read",
    "tickets:close",
    "git:push",
    "git:merge",
    "ci:run_tests",
    "ci:deploy",
    "payments:create",
    "payments:approve",
    "crm:read_customer",
    "mail:send",
];
const GROUPS: &[&str] = &[
    "read", "write", "external", "pii", "deploy", "execute", "approve",
];
const SYSTEMS: &[&str] = &["tickets", "git", "ci", "payments", "crm", "mail"];
const PURPOSES: &[&str] = &["support", "release", "payments", "research"];
const AGENTS: &[&str] = &["release-bot", "support-bot"];

/// One generated policy: effect, action scope, resource scope, condition.
#[derive(Clone, Debug)]
struct Spec {
    forbid: bool,
    action: (u8, usize, usize),
    resource: (u8, usize),
    condition: (u8, usize),
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        (0u8..4, 0..ACTIONS.len(), 0..ACTIONS.len()),
        (0u8..4, 0..SYSTEMS.len()),
        (0u8..16, 0..ACTIONS.len()),
    )
        .prop_map(|(forbid, action, resource, condition)| Spec {
            forbid,
            action,
            resource,
            condition,
        })
}

fn text(specs: &[Spec]) -> String {
    let mut text = String::new();
    for (n, spec) in specs.iter().enumerate() {
        let (kind, a, b) = spec.action;
        let action = match kind {
            0 => "action".to_owned(),
            1 => format!("action == Action::\"{}\"", ACTIONS[a]),
            2 => format!(
                "action in [Action::\"{}\", Action::\"{}\"]",
                ACTIONS[a], ACTIONS[b]
            ),
            _ => format!("action in Action::\"{}\"", GROUPS[a % GROUPS.len()]),
        };
        let (kind, s) = spec.resource;
        let resource = match kind {
            0 => "resource".to_owned(),
            1 => format!("resource == System::\"{}\"", SYSTEMS[s]),
            2 => format!("resource in System::\"{}\"", SYSTEMS[s]),
            _ => "resource is System".to_owned(),
        };
        // A condition on the exchange's context only where the scope admits exchanges alone
        // (any action also covers opening a task, whose context differs).
        let exchange_only = spec.action.0 != 0 || spec.resource.0 != 0;
        let (kind, p) = spec.condition;
        let named = ACTIONS[p % ACTIONS.len()];
        let condition = match (kind, exchange_only) {
            (0, _) if !spec.forbid => "true".to_owned(),
            (1, true) => format!(
                "context.task.purpose == \"{}\"",
                PURPOSES[p % PURPOSES.len()]
            ),
            (2, true) => format!("context.task.granted.contains(\"{named}\")"),
            (3, true) => "context.task.intent == \"work\"".to_owned(),
            (4, true) => "context.task.age_seconds > 500 && context.task.id == \"task_1\" \
                          && context.task.user == \"alice\""
                .to_owned(),
            (5, true) => "context.task.agent == \"release-bot\"".to_owned(),
            (6, true) => {
                "context.task.systems.contains(\"git\") || context.task.exchanges > 1".to_owned()
            }
            (7, true) => format!(
                "context.task.last_at has \"{named}\" && context.task.counts has \"{named}\" \
                 && context.task.counts[\"{named}\"] > 0"
            ),
            (8, true) => format!(
                "context.request.scope.contains(\"{named}\") \
                 && context.request.lifetime_seconds <= 60"
            ),
            (9, true) => "context.request has resource".to_owned(),
            (10, true) => "context.counters.spend_today >= 0".to_owned(),
            // A record used whole (the example's counters, each 0 here).
            (11, true) => "context.counters == {\"deploys_today\": 0, \
                           \"payments_approved_last_hour\": 0, \"spend_today\": 0}"
                .to_owned(),
            (12, true) => "context has delegation && context.delegation.depth == 1".to_owned(),
            (13, true) => "context.task.plan.contains(\"git\") \
                           && !context.task.labels.contains(\"x\")"
                .to_owned(),
            (14, true) => "context.task.evidence has \"ci:tests_passed\"".to_owned(),
            _ => format!("principal == Agent::\"{}\"", AGENTS[p % AGENTS.len()]),
        };
        let effect = if spec.forbid { "forbid" } else { "permit" };
        text.push_str(&format!(
            "@id(\"gen-{n}\")\n{effect} (principal, {action}, {resource})\nwhen {{ {condition} }};\n\n"
        ));
    }
    text
}

/// One generated request: who, which action, the task's purpose, prior grants, whether it
/// names a resource and whether a delegate asks.
#[derive(Clone, Debug)]
struct Ask {
    agent: usize,
    action: usize,
    purpose: usize,
    granted: Vec<usize>,
    resource: bool,
    delegated: bool,
}

fn ask() -> impl Strategy<Value = Ask> {
    (
        0..AGENTS.len(),
        0..ACTIONS.len(),
        0..PURPOSES.len(),
        proptest::collection::vec(0..ACTIONS.len(), 0..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(agent, action, purpose, granted, resource, delegated)| Ask {
                agent,
                action,
                purpose,
                granted,
                resource,
                delegated,
            },
        )
}

/// The decision on `ask`, as text: every field of it, the permit's determining policies too.
fn decide(deployment: &Deployment, ask: &Ask) -> String {
    let (system_id, short) = ACTIONS[ask.action].split_once(':').unwrap();
    let system = &deployment.config.systems[&SystemId::new(system_id)];
    let task = Task {
        id: TaskId::new("task_1"),
        agent_issuer: "https://handoff.local/dev-issuer".to_owned(),
        agent: AgentId::new(AGENTS[ask.agent]),
        user: UserId::new("alice"),
        purpose: Purpose::new(PURPOSES[ask.purpose]),
        intent: "work".to_owned(),
        plan: SYSTEMS.iter().map(|s| SystemId::new(*s)).collect(),
        created_at: Timestamp::from_seconds(1_000),
        expires_at: Timestamp::from_seconds(10_000),
        state: TaskState::Open,
    };
    let mut facts = TaskFacts::default();
    for granted in &ask.granted {
        let (s, a) = ACTIONS[*granted].split_once(':').unwrap();
        let prior = &deployment.config.systems[&SystemId::new(s)];
        facts.record_grant(
            &prior.id,
            &[prior.actions[a].clone()],
            Timestamp::from_seconds(1_500),
        );
    }
    let actions = vec![system.actions[short].clone()];
    let scope = vec![actions[0].name.to_string()];
    let details = BTreeMap::new();
    let counters: BTreeMap<String, i64> = deployment
        .config
        .counters
        .keys()
        .map(|name| (name.clone(), 0))
        .collect();
    let request = RequestFacts {
        scope: &scope,
        lifetime_seconds: 60,
        resource: ask.resource.then_some("repo-1"),
        details: &details,
        counters: &counters,
        delegation: ask.delegated.then_some((1, AGENTS[ask.agent])),
    };
    let grant = Grant {
        task: task.id.clone(),
        agent: task.agent.clone(),
        user: task.user.clone(),
        system: system.id.clone(),
        audience: system.audience.clone(),
        actions,
        resource: None,
        details: None,
        issued_at: Timestamp::from_seconds(2_000),
        expires_at: Timestamp::from_seconds(2_060),
        delegation: None,
    };
    let decision = deployment.policies.decide(
        DecisionId::new("dec_1"),
        &task,
        &facts,
        &request,
        grant,
        Timestamp::from_seconds(2_000),
    );
    format!("{decision:?}")
}

fn decide_open(deployment: &Deployment, ask: &Ask) -> String {
    let plan: Vec<String> = SYSTEMS.iter().map(|s| (*s).to_owned()).collect();
    let purpose = PURPOSES[ask.purpose];
    let context = context_for_open("work", purpose, "alice", &plan, 600);
    let decision = deployment.policies.decide_open(
        &AgentId::new(AGENTS[ask.agent]),
        &Purpose::new(purpose),
        context,
    );
    format!("{decision:?}")
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        rng_seed: RngSeed::Fixed(16),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_scope_index_decides_exactly_as_the_whole_policy_set(
        specs in proptest::collection::vec(spec(), 0..40),
        asks in proptest::collection::vec(ask(), 1..24),
    ) {
        let extra = text(&specs);
        let indexed = load(&extra);
        let mut whole = load(&extra);
        whole.policies = whole.policies.without_index();
        prop_assert!(indexed.policies.widest_evaluation() <= whole.policies.widest_evaluation());
        for ask in &asks {
            prop_assert_eq!(decide(&indexed, ask), decide(&whole, ask), "{:?}\n{}", ask, extra);
            prop_assert_eq!(decide_open(&indexed, ask), decide_open(&whole, ask), "{:?}", ask);
        }
    }
}

/// The index does narrow: in the bundled example no request evaluates every policy.
#[test]
fn in_the_bundled_example_each_request_evaluates_a_fraction_of_the_policies() {
    let example = load("");
    let all = example.policies.len();
    let widest = example.policies.widest_evaluation();
    assert!(widest * 2 < all, "{widest} of {all}");
}
