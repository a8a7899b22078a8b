//! Declarative policy tests: a task, its history, a request, and the decision expected. Each case
//! goes through the checks an exchange makes on the task's own facts, in the server's order: the
//! plan and the purpose's budgets (`budget::check`), then the Cedar decision point
//! (`PolicyEngine::decide`). What depends on the live store is not simulated: revocations,
//! freezes, delegation records, approvals already given, and the task's lifetime.
//! A `deny` case must name its `reason` or its `policies`, so that a case cannot pass on a denial
//! it did not mean (a policy error, a plan the case forgot).
//!
//! ```toml
//! [[case]]
//! name = "deploy waits for tests in the same task"
//! task = { purpose = "release", plan = ["ci"] }      # agent, user, intent have defaults
//! history = ["ci:run_tests"]                          # actions granted earlier, in order
//! evidence = [{ system = "ci", kind = "tests_passed", fields = { commit = "abc123" } }]
//! counters = { deploys_today = 2 }                    # undeclared in the case: 0
//! delegated_by = "release-agent"                      # optional: a delegate asks (depth 1)
//! request = { system = "ci", actions = ["deploy"] }   # details, resource, lifetime_seconds optional
//! expect = "permit"                                   # permit | deny | approval
//! policies = ["deploy-after-tests"]                   # optional: the determining policies
//! reason = "no_permit"                                # for denials: reason, policies or both
//! ```

use crate::budget;
use crate::config::Deployment;
use crate::ids::{AgentId, DecisionId, Purpose, SystemId, TaskId, UserId};
use crate::policy::{Decision, Denial, Grant, RequestFacts, project_details};
use crate::task::{Task, TaskFacts, TaskState};
use crate::time::{Timestamp, Ttl};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    task: TaskSpec,
    #[serde(default)]
    history: Vec<String>,
    #[serde(default)]
    evidence: Vec<EvidenceSpec>,
    #[serde(default)]
    counters: BTreeMap<String, i64>,
    delegated_by: Option<String>,
    request: RequestSpec,
    expect: Expect,
    policies: Option<Vec<String>>,
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskSpec {
    purpose: String,
    #[serde(default)]
    plan: Vec<String>,
    agent: Option<String>,
    user: Option<String>,
    intent: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceSpec {
    system: String,
    kind: String,
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    system: String,
    actions: Vec<String>,
    resource: Option<String>,
    details: Option<toml::Value>,
    lifetime_seconds: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Expect {
    Permit,
    Deny,
    Approval,
}

/// One case's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseResult {
    pub file: String,
    pub name: String,
    /// `None` when the case passed; otherwise what went wrong, readably.
    pub failure: Option<String>,
}

/// Runs every case in `files` (path, TOML text) against `deployment`.
pub fn run(deployment: &Deployment, files: &[(String, String)]) -> Vec<CaseResult> {
    let mut results = Vec::new();
    for (path, text) in files {
        match toml::from_str::<File>(text) {
            Ok(file) if file.cases.is_empty() => results.push(CaseResult {
                file: path.clone(),
                name: "(file)".to_owned(),
                failure: Some("no [[case]] in the file".to_owned()),
            }),
            Ok(file) => {
                for case in file.cases {
                    let failure = run_case(deployment, &case).err();
                    results.push(CaseResult {
                        file: path.clone(),
                        name: case.name,
                        failure,
                    });
                }
            }
            Err(e) => results.push(CaseResult {
                file: path.clone(),
                name: "(file)".to_owned(),
                failure: Some(format!("the file does not parse: {}", e.message())),
            }),
        }
    }
    results
}

fn run_case(deployment: &Deployment, case: &Case) -> Result<(), String> {
    if case.expect == Expect::Deny && case.reason.is_none() && case.policies.is_none() {
        return Err(
            "a deny case must name its `reason` or its determining `policies`, or it passes on any denial"
                .to_owned(),
        );
    }
    let config = &deployment.config;
    let now = Timestamp::from_seconds(1_800_000_000);
    // The workload asking; with `delegated_by`, a delegate of the task's agent.
    let asking = AgentId::new(
        case.task
            .agent
            .clone()
            .unwrap_or_else(|| "test-agent".to_owned()),
    );
    let task = Task {
        id: TaskId::new("task_policy_test"),
        agent_issuer: config.dev_issuer_name(),
        agent: case
            .delegated_by
            .as_ref()
            .map_or_else(|| asking.clone(), |by| AgentId::new(by.as_str())),
        user: UserId::new(
            case.task
                .user
                .clone()
                .unwrap_or_else(|| "test-user".to_owned()),
        ),
        purpose: Purpose::new(case.task.purpose.as_str()),
        intent: case
            .task
            .intent
            .clone()
            .unwrap_or_else(|| case.name.clone()),
        plan: case
            .task
            .plan
            .iter()
            .map(|s| SystemId::new(s.as_str()))
            .collect(),
        created_at: now,
        expires_at: now.plus(Ttl::from_seconds(86_400)),
        state: TaskState::Open,
    };
    let Some(purpose) = config.purposes.get(&task.purpose) else {
        return Err(format!("purpose `{}` is not declared", task.purpose));
    };
    let mut facts = TaskFacts::default();
    for (step, granted) in case.history.iter().enumerate() {
        let (system, action) = config
            .action(granted)
            .ok_or_else(|| format!("history names unknown action `{granted}`"))?;
        let at = Timestamp::from_seconds(now.seconds() - 3600 + i64::try_from(step).unwrap_or(0));
        facts.record_grant(&system.id, std::slice::from_ref(action), at);
    }
    for (step, evidence) in case.evidence.iter().enumerate() {
        let declared = config
            .systems
            .get(&SystemId::new(evidence.system.as_str()))
            .and_then(|s| s.evidence.as_ref())
            .and_then(|e| e.kinds.get(&evidence.kind))
            .ok_or_else(|| {
                format!(
                    "evidence `{}:{}` is not declared in the config",
                    evidence.system, evidence.kind
                )
            })?;
        if let Some(field) = evidence.fields.keys().find(|f| !declared.contains(*f)) {
            return Err(format!(
                "evidence `{}:{}` declares no field `{field}`",
                evidence.system, evidence.kind
            ));
        }
        let at = Timestamp::from_seconds(now.seconds() - 1800 + i64::try_from(step).unwrap_or(0));
        facts.record_evidence(
            &format!("{}:{}", evidence.system, evidence.kind),
            &evidence.fields,
            at,
        );
    }
    let mut counters: BTreeMap<String, i64> = config
        .counters
        .keys()
        .map(|name| (name.clone(), 0))
        .collect();
    for (name, value) in &case.counters {
        let slot = counters
            .get_mut(name)
            .ok_or_else(|| format!("counter `{name}` is not declared in the config"))?;
        *slot = *value;
    }
    let system = config
        .systems
        .get(&SystemId::new(case.request.system.as_str()))
        .ok_or_else(|| format!("request names unknown system `{}`", case.request.system))?;
    let mut actions = Vec::new();
    for name in &case.request.actions {
        let short = name.split_once(':').map_or(name.as_str(), |(_, a)| a);
        actions.push(
            system
                .actions
                .get(short)
                .cloned()
                .ok_or_else(|| format!("`{name}` is not an action of `{}`", system.id))?,
        );
    }
    let details_json = case
        .request
        .details
        .as_ref()
        .map(|d| serde_json::to_value(d).map_err(|e| e.to_string()))
        .transpose()?
        .map(|mut value| {
            if let serde_json::Value::Object(map) = &mut value {
                // The system's own type, as the exchange requires.
                map.entry("type")
                    .or_insert_with(|| serde_json::Value::String(system.id.to_string()));
            }
            serde_json::Value::Array(vec![value])
        });
    let details = match &details_json {
        Some(value) => project_details(system, value).map_err(|e| e.to_string())?,
        None => BTreeMap::new(),
    };
    let scope: Vec<String> = actions.iter().map(|a| a.name.to_string()).collect();
    let lifetime = case.request.lifetime_seconds.unwrap_or(300);
    let request = RequestFacts {
        scope: &scope,
        lifetime_seconds: lifetime,
        resource: case.request.resource.as_deref(),
        details: &details,
        counters: &counters,
        delegation: case.delegated_by.as_deref().map(|by| (1, by)),
    };
    let grant = Grant {
        task: task.id.clone(),
        agent: asking,
        user: task.user.clone(),
        system: system.id.clone(),
        audience: system.audience.clone(),
        actions,
        resource: case.request.resource.clone(),
        details: details_json,
        issued_at: now,
        expires_at: now.plus(Ttl::from_seconds(lifetime)),
        delegation: None,
    };
    // Containment first, as in the exchange: a plan or budget breach denies whatever policy says.
    let contained = budget::check(
        purpose,
        &task,
        &facts,
        system,
        &grant.actions,
        now.seconds(),
    );
    let decision = match contained {
        Ok(()) => deployment.policies.decide(
            DecisionId::new("dec_test"),
            &task,
            &facts,
            &request,
            grant,
            now,
        ),
        Err((reason, description)) => Decision::Deny(Denial {
            decision_id: DecisionId::new("dec_test"),
            reason,
            description,
            policies: Vec::new(),
        }),
    };
    let (got, policies, reason) = match &decision {
        Decision::Allow(permit) => (Expect::Permit, permit.policies().to_vec(), None),
        Decision::Gate(gated) => (Expect::Approval, gated.policies().to_vec(), None),
        Decision::Deny(denial) => (
            Expect::Deny,
            denial.policies.clone(),
            Some(denial.reason.as_str().to_owned()),
        ),
    };
    let describe = |e: Expect| match e {
        Expect::Permit => "permit",
        Expect::Deny => "deny",
        Expect::Approval => "approval",
    };
    if got != case.expect {
        let why = match &decision {
            Decision::Deny(denial) => format!(" ({})", denial.description),
            _ => String::new(),
        };
        return Err(format!(
            "expected {}, got {} by [{}]{why}",
            describe(case.expect),
            describe(got),
            policies.join(", ")
        ));
    }
    if let Some(expected) = &case.policies {
        let mut want = expected.clone();
        want.sort();
        let mut have = policies.clone();
        have.sort();
        if want != have {
            return Err(format!(
                "expected determining policies [{}], got [{}]",
                want.join(", "),
                have.join(", ")
            ));
        }
    }
    if let (Some(expected), Some(got)) = (&case.reason, &reason)
        && expected != got
    {
        return Err(format!("expected reason `{expected}`, got `{got}`"));
    }
    Ok(())
}
