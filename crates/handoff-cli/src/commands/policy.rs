//! `handoff policy test DIR`: run declarative policy test cases against a deployment.

use crate::DeploymentArgs;
use std::path::Path;
use std::process::ExitCode;

pub fn test(deployment: &DeploymentArgs, dir: &Path) -> anyhow::Result<ExitCode> {
    let loaded = match super::load_or_report(deployment) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
        files.push((path.display().to_string(), text));
    }
    if files.is_empty() {
        eprintln!("no .toml test files in `{}`", dir.display());
        return Ok(ExitCode::FAILURE);
    }
    let results = handoff_core::policy::testing::run(&loaded, &files);
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    for result in &results {
        match &result.failure {
            None => println!("ok    {}", result.name),
            Some(why) => println!("FAIL  {} ({})\n        {why}", result.name, result.file),
        }
    }
    println!("\n{} passed, {failed} failed", results.len() - failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
