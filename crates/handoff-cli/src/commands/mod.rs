//! One module per subcommand.

pub mod approvals;
pub mod audit;
pub mod check;
pub mod evidence;
pub mod gateway;
pub mod identity;
pub mod init;
pub mod policy;
pub mod reload;
pub mod remote;
pub mod revoke;
pub mod serve;
pub mod trace;

use crate::{DeploymentArgs, EXIT_CONFIG};
use handoff_core::config::{Deployment, Problems};
use std::process::ExitCode;

/// Loads the deployment, or prints every problem and yields the config exit code.
pub fn load_or_report(args: &DeploymentArgs) -> Result<Deployment, ExitCode> {
    crate::deployment::load(args.config.as_deref()).map_err(|Problems(problems)| {
        eprintln!(
            "{} has {} problem(s):",
            crate::deployment::describe(args.config.as_deref()),
            problems.len()
        );
        for problem in &problems {
            eprintln!("  {problem}");
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

/// A runtime for the async store from synchronous commands.
/// Logs to stderr, filtered by `RUST_LOG` (default `info`), for the long-running commands.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
