//! `handoff trace TASK`: a task's timeline rebuilt from the audit chain.

use crate::DataArgs;
use crate::data_dir::DataDir;
use handoff_core::audit::{AuditEvent, EventKind, Outcome, SealedRecord};
use handoff_core::ids::TaskId;
use handoff_core::store::Store;
use handoff_core::time::Timestamp;
use std::process::ExitCode;

pub fn run(data: &DataArgs, task: &str, json: bool) -> anyhow::Result<ExitCode> {
    let dir = DataDir::existing(&data.data_dir)?;
    let store = dir.store()?;
    let records = super::runtime()?.block_on(store.task_records(&TaskId::new(task)))?;
    print(task, &records, json)
}

/// `handoff trace --server`: the records come from the running server's admin API.
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
    let path = format!("/v1/admin/tasks/{task}/records");
    let (status, body) = remote.call(reqwest::Method::GET, &path, None)?;
    if status != 200 {
        super::remote::print_refusal(&body);
        return Ok(ExitCode::FAILURE);
    }
    let records = body
        .get("records")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| {
            let text = |key: &str| r.get(key).and_then(serde_json::Value::as_str);
            Ok(SealedRecord {
                seq: r
                    .get("seq")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0),
                at: serde_json::from_value(r.get("at").cloned().unwrap_or_default())?,
                task: Some(task.to_owned()),
                body: text("body").unwrap_or_default().to_owned(),
                prev_hash: text("prev_hash").unwrap_or_default().to_owned(),
                hash: text("hash").unwrap_or_default().to_owned(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    print(task, &records, json)
}

fn print(task: &str, records: &[SealedRecord], json: bool) -> anyhow::Result<ExitCode> {
    if records.is_empty() {
        eprintln!("no records for task `{task}`");
        return Ok(ExitCode::FAILURE);
    }
    if json {
        for record in records {
            println!("{}", record.body);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Uses of a token are shown under the grant that minted it.
    let mut granted = std::collections::BTreeSet::new();
    let mut uses = Vec::new();
    for record in records {
        let event = record.event().map_err(anyhow::Error::msg)?;
        match (event.kind, &event.token) {
            (Some(EventKind::Use), Some(_)) => uses.push((record.seq, record.at, event)),
            (Some(_), Some(token)) => {
                granted.insert(token.jti.clone());
            }
            _ => {}
        }
    }
    let mut header_done = false;
    for record in records {
        let event = record.event().map_err(anyhow::Error::msg)?;
        if !header_done {
            print_header(task, &event);
            header_done = true;
        }
        let jti = event.token.as_ref().map(|t| t.jti.as_str());
        if event.kind == Some(EventKind::Use) {
            if jti.is_some_and(|j| granted.contains(j)) {
                continue;
            }
            println!("{}", line(record.seq, record.at, &event));
            continue;
        }
        println!("{}", line(record.seq, record.at, &event));
        for (seq, at, used) in &uses {
            if used.token.as_ref().map(|t| t.jti.as_str()) == jti {
                println!("    used: {}", line(*seq, *at, used));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_header(task: &str, event: &AuditEvent) {
    println!("task {task}");
    println!(
        "  agent {} acting for {} (purpose {})",
        event.agent.as_deref().unwrap_or("?"),
        event.user.as_deref().unwrap_or("?"),
        event.purpose.as_deref().unwrap_or("?")
    );
    println!("  intent: {:?}", event.intent.as_deref().unwrap_or(""));
    println!();
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
