//! `handoff identity issue`: a development identity from Handoff's built-in issuer.

use crate::data_dir::DataDir;
use crate::{DataArgs, DeploymentArgs, EXIT_CONFIG};
use anyhow::bail;
use handoff_core::clock::{Clock, SystemClock};
use handoff_core::identity::issue_dev_identity;
use handoff_core::time::Ttl;
use std::process::ExitCode;

pub fn issue(
    deployment: &DeploymentArgs,
    data: &DataArgs,
    agent: &str,
    lifetime: &str,
) -> anyhow::Result<ExitCode> {
    let deployment = match super::load_or_report(deployment) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    if !deployment.config.dev_issuer {
        eprintln!(
            "the deployment does not enable [dev_issuer]; its identities would not be trusted"
        );
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    if agent.trim().is_empty() {
        bail!("`--agent` must not be empty");
    }
    let lifetime = Ttl::parse(lifetime).map_err(anyhow::Error::msg)?;
    let dir = DataDir::existing(&data.data_dir)?;
    let key = dir.dev_issuer_key()?;
    let token = issue_dev_identity(&deployment.config, &key, agent, SystemClock.now(), lifetime)?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
