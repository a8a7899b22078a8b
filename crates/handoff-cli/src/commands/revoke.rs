//! `handoff revoke|freeze|unfreeze|credentials`: containment from the command line, acting on the
//! data directory directly (local access to it is the operator's authority). The running server
//! sees each change on its next exchange or introspection; feed streams within a second.

use crate::data_dir::DataDir;
use crate::{DataArgs, DeploymentArgs};
use handoff_core::containment::Operator;
use handoff_core::containment::RevocationKind;
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
    let dir = DataDir::open(&data.data_dir)?;
    let handoff = super::serve::build(deployment, &dir, false)?;
    let report = super::runtime()?.block_on(handoff.revoke(&operator(), kind, id, reason));
    match report {
        Ok(report) => {
            let (verb, noun) = match kind {
                RevocationKind::Token => ("revoked", "token"),
                RevocationKind::Task => ("revoked", "task"),
                RevocationKind::Agent => ("revoked", "agent"),
                RevocationKind::Freeze => ("froze", "system"),
                RevocationKind::Unfreeze => ("unfroze", "system"),
                RevocationKind::Delegation => ("revoked", "delegation (and every one below it)"),
            };
            println!("{verb} {noun} `{}`", report.subject);
            for task in &report.tasks {
                println!("  task {task} cut");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
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
    let dir = DataDir::open(&data.data_dir)?;
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
