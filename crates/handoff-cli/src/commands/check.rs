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
    let server = &config.server;
    println!(
        "  server: header_read_timeout {}s, body_read_timeout {}s, max_header_bytes {}, max_connections {}",
        server.header_read_timeout.seconds(),
        server.body_read_timeout.seconds(),
        server.max_header_bytes,
        server.max_connections,
    );
    Ok(ExitCode::SUCCESS)
}
