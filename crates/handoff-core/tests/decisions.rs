//! The decision point on the bundled example: context matches the generated schema, and the
//! example rules decide in the right order.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cedar_policy::{EntityUid, Request};
use handoff_core::config::{Deployment, SourceReader, load_deployment};
use handoff_core::ids::{AgentId, DecisionId, Purpose, SystemId, TaskId, UserId};
use handoff_core::policy::{
    Decision, DenyReason, DetailValue, Grant, RequestFacts, context_for_exchange, project_details,
};
use handoff_core::task::{Task, TaskFacts, TaskState};
use handoff_core::time::Timestamp;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

struct Folder(PathBuf);

impl SourceReader for Folder {
    fn read(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(self.0.join(path)).map_err(|e| e.to_string())
    }

    fn policy_files(&self, folder: &str) -> Result<Vec<(String, String)>, String> {
        let mut files: Vec<_> = std::fs::read_dir(self.0.join(folder))
            .map_err(|e| e.to_string())?
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
            .collect();
        files.sort();
        Ok(files
            .into_iter()
            .map(|p| {
                (
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect())
    }
}

fn example() -> Deployment {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    load_deployment(&Folder(root), "handoff.toml").unwrap_or_else(|p| panic!("{:?}", p.0))
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

fn task(purpose: &str, plan: &[&str]) -> Task {
    Task {
        id: TaskId::new("task_1"),
        agent_issuer: "https://handoff.local/dev-issuer".to_owned(),
        agent: AgentId::new("release-bot"),
        user: UserId::new("alice"),
        purpose: Purpose::new(purpose),
        intent: "ship it".to_owned(),
        plan: plan.iter().map(|s| SystemId::new(*s)).collect(),
        created_at: Timestamp::from_seconds(1_000),
        expires_at: Timestamp::from_seconds(10_000),
        state: TaskState::Open,
    }
}

fn decide(
    deployment: &Deployment,
    task: &Task,
    facts: &TaskFacts,
    system: &str,
    action: &str,
) -> Decision {
    let system = &deployment.config.systems[&SystemId::new(system)];
    let actions = vec![system.actions[action].clone()];
    let scope = vec![actions[0].name.to_string()];
    let details = BTreeMap::new();
    let counters = zero_counters(deployment);
    let request = RequestFacts {
        scope: &scope,
        lifetime_seconds: 60,
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
        details: None,
        issued_at: Timestamp::from_seconds(2_000),
        expires_at: Timestamp::from_seconds(2_060),
        delegation: None,
    };
    deployment.policies.decide(
        DecisionId::new("dec_1"),
        task,
        facts,
        &request,
        grant,
        Timestamp::from_seconds(2_000),
    )
}

fn grant(deployment: &Deployment, facts: &mut TaskFacts, system: &str, action: &str) {
    let system = &deployment.config.systems[&SystemId::new(system)];
    facts.record_grant(
        &system.id,
        &[system.actions[action].clone()],
        Timestamp::from_seconds(2_000),
    );
}

#[test]
fn the_context_handoff_builds_conforms_to_the_generated_schema() {
    let deployment = example();
    let payments = &deployment.config.systems[&SystemId::new("payments")];
    let details = project_details(
        payments,
        &json!([{ "type": "payments", "amount": 100, "currency": "EUR", "creditor": "ACME" }]),
    )
    .unwrap();
    assert_eq!(details["amount"], DetailValue::Long(100));
    let mut facts = TaskFacts::default();
    grant(&deployment, &mut facts, "crm", "read_customer");
    let scope = vec!["payments:create".to_owned()];
    let counters = zero_counters(&deployment);
    let request = RequestFacts {
        scope: &scope,
        lifetime_seconds: 60,
        resource: Some("invoice-7"),
        details: &details,
        counters: &counters,
        delegation: None,
    };
    let context = context_for_exchange(
        &task("payments", &["payments"]),
        &facts,
        &request,
        Timestamp::from_seconds(2_000),
    )
    .unwrap();
    let schema = deployment.policies.schema();
    // Request::new with a schema validates the context against the action's declared context type.
    Request::new(
        EntityUid::from_str(r#"Agent::"release-bot""#).unwrap(),
        EntityUid::from_str(r#"Action::"payments:create""#).unwrap(),
        EntityUid::from_str(r#"System::"payments""#).unwrap(),
        context,
        Some(schema),
    )
    .unwrap();
}

#[test]
fn details_of_the_wrong_shape_or_type_are_rejected() {
    let deployment = example();
    let payments = &deployment.config.systems[&SystemId::new("payments")];
    for bad in [
        json!({"type": "payments"}),
        json!([1]),
        json!([{"amount": 1}]),
        json!([{"type": "p", "amount": "1"}]),
        json!([{"type": "p", "amount": 1.5}]),
        json!([{"type": "payments", "amount": "1"}]),
        json!([{"type": "payments", "amount": 1.5}]),
        // Another system's type, an undeclared field, a field in two entries.
        json!([{"type": "ci", "amount": 1}]),
        json!([{"type": "payments", "amount": 1, "extra": [1]}]),
        json!([{"type": "payments", "amount": 1}, {"type": "payments", "amount": 9}]),
    ] {
        assert!(project_details(payments, &bad).is_err(), "{bad}");
    }
}

#[test]
fn deploy_is_denied_before_tests_ran_and_permitted_after() {
    let deployment = example();
    let task = task("release", &["ci"]);
    let mut facts = TaskFacts::default();
    match decide(&deployment, &task, &facts, "ci", "deploy") {
        Decision::Deny(denial) => assert_eq!(denial.reason, DenyReason::NoPermit),
        Decision::Allow(_) | Decision::Gate(_) => panic!("deploy before tests must be denied"),
    }
    grant(&deployment, &mut facts, "ci", "run_tests");
    match decide(&deployment, &task, &facts, "ci", "deploy") {
        Decision::Allow(permit) => assert_eq!(permit.policies(), ["deploy-after-tests"]),
        Decision::Deny(denial) => panic!("{denial:?}"),
        Decision::Gate(_) => panic!("not gated"),
    }
}

#[test]
fn a_forbid_wins_over_any_permit() {
    let deployment = example();
    let task = task("support", &[]);
    let mut facts = TaskFacts::default();
    assert!(matches!(
        decide(&deployment, &task, &facts, "mail", "send"),
        Decision::Allow(_)
    ));
    grant(&deployment, &mut facts, "crm", "read_customer");
    match decide(&deployment, &task, &facts, "mail", "send") {
        Decision::Deny(denial) => {
            assert_eq!(denial.reason, DenyReason::Forbidden);
            assert_eq!(denial.policies, ["no-external-after-pii"]);
        }
        Decision::Allow(_) | Decision::Gate(_) => panic!("external after pii must be denied"),
    }
}

#[test]
fn the_policy_set_hash_does_not_depend_on_where_the_files_are() {
    let deployment = example();
    let copy = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    std::fs::create_dir_all(copy.path().join("policies")).unwrap();
    std::fs::copy(root.join("handoff.toml"), copy.path().join("handoff.toml")).unwrap();
    std::fs::create_dir_all(copy.path().join("evidence")).unwrap();
    std::fs::copy(
        root.join("evidence/ci-jwks.json"),
        copy.path().join("evidence/ci-jwks.json"),
    )
    .unwrap();
    for entry in std::fs::read_dir(root.join("policies")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            copy.path().join("policies").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    let moved = load_deployment(&Folder(copy.path().to_path_buf()), "handoff.toml")
        .unwrap_or_else(|p| panic!("{:?}", p.0));
    assert_eq!(deployment.policies.hash(), moved.policies.hash());
}
