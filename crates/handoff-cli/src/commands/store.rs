//! `handoff store copy`: move a SQLite deployment into an empty PostgreSQL store.

use crate::DeploymentArgs;
use crate::data_dir::DataDir;
use std::path::Path;
use std::process::ExitCode;

pub fn copy(deployment: &DeploymentArgs, from: &Path, to: &str) -> anyhow::Result<ExitCode> {
    let deployment = match super::load_or_report(deployment) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    let mut config = deployment.config;
    crate::shared_store::apply_store_flags(&mut config, Some(to))?;
    let dir = DataDir::existing(from)?;
    let report = super::runtime()?.block_on(crate::shared_store::copy(&dir, &config))?;
    let records = report.rows.get("audit").copied().unwrap_or(0);
    let tasks = report.rows.get("tasks").copied().unwrap_or(0);
    println!(
        "copied into {}: {records} audit record(s), {tasks} task(s), {} signing key(s)",
        crate::shared_store::describe_url(to),
        report.keys
    );
    for (table, rows) in &report.rows {
        println!("  {table}: {rows} row(s)");
    }
    println!(
        "serve on it with --store and the same key-encryption key; keep this data directory's \
         keys/ folder (operator credential, checkpoint key) for every node"
    );
    Ok(ExitCode::SUCCESS)
}
