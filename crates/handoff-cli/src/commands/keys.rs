//! `handoff keys rotate`: a new signing key becomes active at once, through the running server's
//! admin API (`--server`, the operator credential), or on the data directory directly when no
//! server is named (a running server on it keeps its keys until it restarts).

use crate::data_dir::DataDir;
use crate::{DataArgs, DeploymentArgs};
use handoff_core::config::SigningAlgorithm;
use serde_json::{Value, json};
use std::process::ExitCode;

/// `--algorithm`: the new key's algorithm (default: the active key's).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AlgorithmArg {
    #[value(name = "ES256")]
    Es256,
    #[value(name = "EdDSA")]
    EdDsa,
}

impl AlgorithmArg {
    fn algorithm(self) -> SigningAlgorithm {
        match self {
            Self::Es256 => SigningAlgorithm::Es256,
            Self::EdDsa => SigningAlgorithm::EdDsa,
        }
    }
}

/// Rotates through the running server.
pub fn rotate_remote(
    remote: &super::remote::Remote,
    algorithm: Option<AlgorithmArg>,
) -> anyhow::Result<ExitCode> {
    let body = match algorithm {
        Some(a) => json!({ "algorithm": a.algorithm().jws_name() }),
        None => json!({}),
    };
    let (status, answer) =
        remote.call(reqwest::Method::POST, "/v1/admin/keys/rotate", Some(&body))?;
    if status != 200 {
        super::remote::print_refusal(&answer);
        return Ok(ExitCode::FAILURE);
    }
    let text = |key: &str| answer.get(key).and_then(Value::as_str).unwrap_or("");
    print_report(
        text("kid"),
        text("algorithm"),
        text("previous_kid"),
        text("previous_published_until"),
    );
    Ok(ExitCode::SUCCESS)
}

/// Rotates on the data directory (recorded as `cli:$USER`).
pub fn rotate(
    deployment: &DeploymentArgs,
    data: &DataArgs,
    algorithm: Option<AlgorithmArg>,
) -> anyhow::Result<ExitCode> {
    let deployment = match super::load_or_report(deployment) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    let dir = DataDir::existing(&data.data_dir)?;
    let handoff = super::serve::build(deployment, &dir, false)?;
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    let rotated = super::runtime()?.block_on(handoff.rotate_keys(
        &format!("cli:{user}"),
        algorithm.map(AlgorithmArg::algorithm),
    ));
    match rotated {
        Ok(report) => {
            print_report(
                &report.kid,
                report.algorithm.jws_name(),
                &report.previous_kid,
                &report.previous_published_until.rfc3339(),
            );
            println!(
                "a server running on this data directory signs with the new key after it restarts; \
                 use --server to rotate a running one"
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_report(kid: &str, algorithm: &str, previous: &str, until: &str) {
    println!("rotated: signing key {kid} ({algorithm}) is active");
    println!("  previous key {previous} stays in the JWKS until {until}");
}
