//! `handoff approver issue` (development tokens for people) and `handoff approvals ...`, which
//! call a running server's approvals API as the person whose token is given.

use crate::data_dir::DataDir;
use crate::{DataArgs, DeploymentArgs, EXIT_CONFIG};
use anyhow::bail;
use handoff_core::clock::{Clock, SystemClock};
use handoff_core::identity::issue_dev_person;
use handoff_core::time::Ttl;
use serde_json::{Value, json};
use std::process::ExitCode;

pub fn issue(
    deployment: &DeploymentArgs,
    data: &DataArgs,
    user: &str,
    groups: &[String],
    lifetime: &str,
) -> anyhow::Result<ExitCode> {
    let deployment = match super::load_or_report(deployment) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    if !deployment.config.dev_issuer {
        eprintln!("the deployment does not enable [dev_issuer]; its tokens would not be trusted");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    if user.trim().is_empty() || groups.is_empty() {
        bail!("`--user` and at least one `--group` are required");
    }
    let lifetime = Ttl::parse(lifetime).map_err(anyhow::Error::msg)?;
    let dir = DataDir::existing(&data.data_dir)?;
    let key = dir.dev_issuer_key()?;
    println!(
        "{}",
        issue_dev_person(
            &deployment.config,
            &key,
            user,
            groups,
            SystemClock.now(),
            lifetime
        )?
    );
    Ok(ExitCode::SUCCESS)
}

/// `handoff approver login`: asks the running server for a one-time console sign-in link for
/// `user` in `groups`, and prints it. The operator credential comes from `token_file`, else
/// `HANDOFF_OPERATOR_TOKEN`, else the data directory (a server on this machine).
pub fn login(
    server: &str,
    token_file: Option<&std::path::Path>,
    data: &DataArgs,
    user: &str,
    groups: &[String],
) -> anyhow::Result<ExitCode> {
    let from_env = std::env::var("HANDOFF_OPERATOR_TOKEN").is_ok_and(|t| !t.trim().is_empty());
    let remote = if token_file.is_some() || from_env {
        super::remote::Remote::new(server, token_file)?
    } else {
        let dir = DataDir::existing(&data.data_dir)?;
        super::remote::Remote::new(server, Some(&dir.operator_secret_path()))?
    };
    let (status, body) = remote.call(
        reqwest::Method::POST,
        "/console/api/admin/sign-in-links",
        Some(&json!({ "user": user, "groups": groups })),
    )?;
    if !(200..300).contains(&status) {
        super::remote::print_refusal(&body);
        return Ok(ExitCode::FAILURE);
    }
    println!("{}", text(&body, "url"));
    eprintln!(
        "a one-time sign-in link for {user} ({}), valid until {}",
        groups.join(", "),
        text(&body, "expires_at")
    );
    Ok(ExitCode::SUCCESS)
}

/// What `handoff approvals` does.
pub enum Call<'a> {
    List {
        status: Option<&'a str>,
        system: Option<&'a str>,
    },
    Show(&'a str),
    Approve(&'a str, &'a str),
    Deny(&'a str, &'a str),
}

pub fn call(server: &str, token: &str, call: Call<'_>) -> anyhow::Result<ExitCode> {
    let server = server.trim_end_matches('/');
    let client = reqwest::Client::new();
    let request = match &call {
        Call::List { status, system } => {
            let mut query = Vec::new();
            if let Some(status) = status {
                query.push(("status", *status));
            }
            if let Some(system) = system {
                query.push(("system", *system));
            }
            client.get(format!("{server}/v1/approvals")).query(&query)
        }
        Call::Show(id) => client.get(format!("{server}/v1/approvals/{id}")),
        Call::Approve(id, reason) => client
            .post(format!("{server}/v1/approvals/{id}/approve"))
            .json(&json!({ "reason": reason })),
        Call::Deny(id, reason) => client
            .post(format!("{server}/v1/approvals/{id}/deny"))
            .json(&json!({ "reason": reason })),
    };
    let (status, body) = super::remote::send(request.bearer_auth(token))?;
    if !(200..300).contains(&status) {
        eprintln!(
            "error: {} ({})",
            text(&body, "error_description"),
            text(&body, "error")
        );
        return Ok(ExitCode::FAILURE);
    }
    match call {
        Call::List { .. } => {
            let list = body
                .get("approvals")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if list.is_empty() {
                println!("no approvals");
            }
            for a in &list {
                let actions = a
                    .get("actions")
                    .and_then(Value::as_array)
                    .map(|v| {
                        v.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                println!(
                    "{}  {:<9} {:<9} {:<8} {actions} by {} for {} (task {}, group {})",
                    text(a, "id"),
                    text(a, "status"),
                    text(a, "system"),
                    text(a, "risk"),
                    text(a, "agent"),
                    text(a, "user"),
                    text(a, "task"),
                    text(a, "approver_group"),
                );
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(&body)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}
