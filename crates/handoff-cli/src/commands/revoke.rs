//! `handoff revoke|freeze|unfreeze|credentials`: containment from the command line, either through
//! the running server's admin API (`--server`, the operator credential) or on the data directory
//! directly (local access to it is the operator's authority; the running server sees each change
//! on its next exchange or introspection; feed streams within a second).

use crate::data_dir::DataDir;
use crate::{DataArgs, DeploymentArgs};
use handoff_core::containment::Operator;
use handoff_core::containment::RevocationKind;
use serde_json::{Value, json};
use std::process::ExitCode;

fn operator() -> Operator {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    Operator::local(format!("cli:{user}"))
}

pub fn revoke(
    deployment: &DeploymentArgs,
    data: &DataArgs,
    kind: RevocationKind,
    id: &str,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let deployment = match super::load_or_report(deployment) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    let dir = DataDir::existing(&data.data_dir)?;
    let handoff = super::serve::build(deployment, &dir, false)?;
    let report = super::runtime()?.block_on(handoff.revoke(&operator(), kind, id, reason));
    match report {
        Ok(done) => {
            let tasks: Vec<&str> = done.tasks.iter().map(|t| t.as_str()).collect();
            print_report(kind, &done.subject, &tasks);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// [`revoke`] through the running server's admin API.
pub fn revoke_remote(
    remote: &super::remote::Remote,
    kind: RevocationKind,
    id: &str,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let (path, body) = match kind {
        RevocationKind::Freeze => ("freeze", json!({ "system": id, "reason": reason })),
        RevocationKind::Unfreeze => ("unfreeze", json!({ "system": id, "reason": reason })),
        _ => (
            "revoke",
            json!({ "kind": kind.as_str(), "id": id, "reason": reason }),
        ),
    };
    let (status, answer) = remote.call(
        reqwest::Method::POST,
        &format!("/v1/admin/{path}"),
        Some(&body),
    )?;
    if status != 200 {
        super::remote::print_refusal(&answer);
        return Ok(ExitCode::FAILURE);
    }
    let subject = answer.get("id").and_then(Value::as_str).unwrap_or(id);
    let tasks: Vec<&str> = answer
        .get("tasks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    print_report(kind, subject, &tasks);
    Ok(ExitCode::SUCCESS)
}

/// [`credential`] through the running server's admin API.
pub fn credential_remote(remote: &super::remote::Remote, system: &str) -> anyhow::Result<ExitCode> {
    let (status, answer) = remote.call(
        reqwest::Method::POST,
        "/v1/admin/credentials",
        Some(&json!({ "system": system })),
    )?;
    match answer.get("client_secret").and_then(Value::as_str) {
        Some(secret) if status == 200 => {
            println!("{secret}");
            eprintln!(
                "the introspection credential for `{system}` (HTTP Basic `{system}:<secret>`); it is shown once"
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            super::remote::print_refusal(&answer);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_report(kind: RevocationKind, subject: &str, tasks: &[&str]) {
    let (verb, noun) = match kind {
        RevocationKind::Token => ("revoked", "token"),
        RevocationKind::Task => ("revoked", "task"),
        RevocationKind::Agent => ("revoked", "agent"),
        RevocationKind::Freeze => ("froze", "system"),
        RevocationKind::Unfreeze => ("unfroze", "system"),
        RevocationKind::Delegation => ("revoked", "delegation (and every one below it)"),
    };
    println!("{verb} {noun} `{subject}`");
    for task in tasks {
        println!("  task {task} cut");
    }
}

pub fn credential(
    deployment: &DeploymentArgs,
    data: &DataArgs,
    system: &str,
) -> anyhow::Result<ExitCode> {
    let deployment = match super::load_or_report(deployment) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    let dir = DataDir::existing(&data.data_dir)?;
    let handoff = super::serve::build(deployment, &dir, false)?;
    match super::runtime()?.block_on(handoff.register_credential(&operator(), system)) {
        Ok(secret) => {
            println!("{secret}");
            eprintln!(
                "the introspection credential for `{system}` (HTTP Basic `{system}:<secret>`); it is shown once"
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}
