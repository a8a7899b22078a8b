//! One module per subcommand.

pub mod approvals;
pub mod audit;
pub mod check;
pub mod evidence;
pub mod gateway;
pub mod identity;
pub mod init;
pub mod keys;
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

/// Logs to stderr for the long-running commands: text or JSON lines, filtered by `--log-level`,
/// else `RUST_LOG`, else `info`.
pub fn init_logging(args: &crate::LogArgs) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match &args.log_level {
        Some(level) => {
            EnvFilter::try_new(level).map_err(|e| anyhow::anyhow!("--log-level `{level}`: {e}"))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match args.log_format {
        crate::LogFormat::Text => builder.try_init(),
        crate::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// A runtime for the async store from synchronous commands.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
