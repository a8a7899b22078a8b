//! `handoff trace TASK`: a task's story as a tree (core's `TaskTrace`) built from the audit
//! chain: every step in order, each use under its grant, each delegation under its parent.

use crate::DataArgs;
use crate::data_dir::DataDir;
use handoff_core::audit::{AuditEvent, EventKind, Outcome};
use handoff_core::ids::TaskId;
use handoff_core::task::TaskTrace;
use handoff_core::task::trace::{DelegationNode, MAX_TRACE_RECORDS, Step};
use handoff_core::time::Timestamp;
use std::process::ExitCode;

pub fn run(
    data: &DataArgs,
    store_url: Option<&str>,
    task: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let dir = DataDir::for_store(&data.data_dir, store_url)?;
    let trace = super::runtime()?.block_on(async {
        let store = crate::shared_store::open_store(&dir, store_url).await?;
        let trace =
            handoff_core::task::trace::read(store.as_ref(), &TaskId::new(task), MAX_TRACE_RECORDS)
                .await?;
        anyhow::Ok(trace)
    })?;
    print(task, trace.as_ref(), json)
}

/// `handoff trace --server`: the tree from the running server (`GET /v1/tasks/{id}/trace`).
pub fn run_remote(
    remote: &super::remote::Remote,
    task: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    // Task ids are `task_` and letters or digits; anything else is not a task of Handoff's.
    if task.is_empty()
        || !task
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    {
        eprintln!("no records for task `{task}`");
        return Ok(ExitCode::FAILURE);
    }
    let path = format!("/v1/tasks/{task}/trace");
    let (status, body) = remote.call(reqwest::Method::GET, &path, None)?;
    if status == 400
        && body.get("error").and_then(serde_json::Value::as_str) == Some("invalid_target")
    {
        return print(task, None, json);
    }
    if status != 200 {
        super::remote::print_refusal(&body);
        return Ok(ExitCode::FAILURE);
    }
    let trace: TaskTrace = serde_json::from_value(body)?;
    print(task, Some(&trace), json)
}

fn print(task: &str, trace: Option<&TaskTrace>, json: bool) -> anyhow::Result<ExitCode> {
    let Some(trace) = trace.filter(|t| !t.is_empty()) else {
        eprintln!("no records for task `{task}`");
        return Ok(ExitCode::FAILURE);
    };
    if json {
        println!("{}", serde_json::to_string_pretty(trace)?);
        return Ok(ExitCode::SUCCESS);
    }
    let header = &trace.task;
    println!("task {} ({})", header.id, header.state);
    println!(
        "  agent {} acting for {} (purpose {})",
        header.agent, header.user, header.purpose
    );
    println!("  intent: {:?}", header.intent);
    if !header.plan.is_empty() {
        println!("  plan: {}", header.plan.join(", "));
    }
    println!(
        "  opened {}, expires {}",
        header.created_at, header.expires_at
    );
    if trace.records_left_out > 0 {
        println!(
            "  ({} older records left out: `handoff audit query --task {}` reads them all)",
            trace.records_left_out, header.id
        );
    }
    println!();
    print_level(&trace.steps, &trace.delegations, 0);
    for seq in &trace.unreadable {
        println!("#{seq}: this record could not be read (run `handoff audit verify`)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Steps in order at `depth`, each delegation right after the step that made it (any other, such
/// as one whose record is left out, at the end), its own steps one level deeper.
fn print_level(steps: &[Step], delegations: &[DelegationNode], depth: usize) {
    let indent = "    ".repeat(depth);
    let mut pending: Vec<&DelegationNode> = delegations.iter().collect();
    for step in steps {
        println!("{indent}{}", line(step.seq, step.at, &step.event));
        for used in &step.uses {
            println!("{indent}    used: {}", line(used.seq, used.at, &used.event));
        }
        if step.event.kind == Some(EventKind::Delegate)
            && let Some(at) = pending
                .iter()
                .position(|d| step.event.delegation.as_deref() == Some(d.id.as_str()))
        {
            print_delegation(pending.remove(at), depth);
        }
    }
    for node in pending {
        print_delegation(node, depth);
    }
}

fn print_delegation(node: &DelegationNode, depth: usize) {
    let indent = "    ".repeat(depth);
    println!(
        "{indent}delegation {} to {} (depth {}, acting for {}) scope={} from {} until {}",
        node.id,
        node.delegate,
        node.depth,
        node.actors.get(1..).unwrap_or_default().join(" <- "),
        node.actions.join(","),
        node.created_at,
        node.expires_at
    );
    print_level(&node.steps, &node.delegations, depth + 1);
}

/// One line per record: when, what, where, the decision and why.
pub fn line(seq: u64, at: Timestamp, event: &AuditEvent) -> String {
    let kind = event.kind.map_or("event", EventKind::as_str);
    let decision = match event.outcome {
        Some(Outcome::Permit) => "PERMIT",
        Some(Outcome::Deny) => "DENY",
        None => "-",
    };
    let mut text = format!("{at}  #{seq:<5} {kind:<10} {decision:<6}");
    if let Some(system) = &event.system {
        text.push_str(&format!(" {system:<9}"));
    }
    if !event.actions.is_empty() {
        text.push_str(&format!(" scope={}", event.actions.join(",")));
    }
    if let Some(resource) = &event.resource {
        text.push_str(&format!(" resource={resource}"));
    }
    if let Some(details) = &event.authorization_details {
        text.push_str(&format!(" details={details}"));
    }
    if !event.policies.is_empty() {
        text.push_str(&format!(" by [{}]", event.policies.join(", ")));
    }
    if let Some(target) = &event.target {
        text.push_str(&format!(" {target}"));
    }
    if let Some(approval) = &event.approval {
        text.push_str(&format!(" approval={approval}"));
    }
    if let Some(delegation) = &event.delegation {
        text.push_str(&format!(" delegation={delegation}"));
    }
    if let Some(evidence) = &event.evidence {
        let fields: Vec<String> = evidence
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        text.push_str(&format!(
            " evidence={}:{} [{}] signed={}{} at {}",
            evidence.id,
            evidence.kind,
            fields.join(","),
            evidence.signature,
            evidence
                .key
                .as_ref()
                .map_or_else(String::new, |k| format!(" key={k}")),
            Timestamp::from_seconds(evidence.signed_at)
        ));
    }
    if let Some(actor) = &event.actor {
        text.push_str(&format!(" actor={actor}"));
    }
    if let Some(reason) = &event.reason {
        text.push_str(&format!(" reason={reason}"));
    }
    if let Some(description) = &event.description {
        text.push_str(&format!(" ({description})"));
    }
    if let Some(usage) = &event.usage {
        text.push_str(&format!(
            " call=\"{}\" status={} bytes={}/{} latency={}us",
            usage.call, usage.status, usage.bytes_in, usage.bytes_out, usage.latency_us
        ));
    }
    if let Some(token) = &event.token {
        text.push_str(&format!(
            " token={} exp={}",
            token.jti,
            Timestamp::from_seconds(token.exp)
        ));
    }
    text
}
