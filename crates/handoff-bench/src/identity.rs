//! Each agent's development identity, issued by the `handoff` CLI from the server's data directory.

use crate::Args;
use anyhow::{Context as _, Result, bail};
use std::process::{Child, Command, Stdio};

/// Processes run at once while issuing identities.
const PARALLEL: usize = 8;

/// One identity per agent: `bench-0`, `bench-1`, ...
pub fn issue_all(args: &Args) -> Result<Vec<String>> {
    let mut identities = Vec::with_capacity(args.agents);
    let names: Vec<String> = (0..args.agents).map(|i| format!("bench-{i}")).collect();
    for chunk in names.chunks(PARALLEL) {
        let children: Vec<(String, Child)> = chunk
            .iter()
            .map(|agent| spawn(args, agent).map(|child| (agent.clone(), child)))
            .collect::<Result<_>>()?;
        for (agent, child) in children {
            let output = child
                .wait_with_output()
                .with_context(|| format!("`handoff identity issue` for `{agent}`"))?;
            if !output.status.success() {
                bail!(
                    "`handoff identity issue --agent {agent}` failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            let token = String::from_utf8(output.stdout)
                .context("the identity is not UTF-8")?
                .trim()
                .to_owned();
            if token.split('.').count() != 3 {
                bail!("`handoff identity issue` printed no JWT for `{agent}`");
            }
            identities.push(token);
        }
    }
    Ok(identities)
}

fn spawn(args: &Args, agent: &str) -> Result<Child> {
    Command::new(&args.handoff_bin)
        .args(["identity", "issue", "--agent", agent, "--lifetime", "1h"])
        .arg("--data-dir")
        .arg(&args.data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{}`", args.handoff_bin.display()))
}
