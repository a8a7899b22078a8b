//! `handoff check`: load and validate a deployment without serving.

use crate::DeploymentArgs;
use std::process::ExitCode;

pub fn run(args: &DeploymentArgs) -> anyhow::Result<ExitCode> {
    let deployment = match super::load_or_report(args) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    let config = &deployment.config;
    let actions: usize = config.systems.values().map(|s| s.actions.len()).sum();
    println!(
        "{} is valid: {} systems, {} actions, {} purposes, {} issuers{}, {} policies (set {})",
        crate::deployment::describe(args.config.as_deref()),
        config.systems.len(),
        actions,
        config.purposes.len(),
        config.issuers.len(),
        if config.dev_issuer {
            " + the dev issuer"
        } else {
            ""
        },
        deployment.policies.len(),
        deployment.policies.hash().get(..12).unwrap_or_default(),
    );
    Ok(ExitCode::SUCCESS)
}
