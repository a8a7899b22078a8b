//! `handoff policy test DIR`: run declarative policy test cases against a deployment.
//! `handoff policy diff --against DIR`: every recorded decision decided again under the policies
//! in DIR, and those that would change (core's `replay::diff`).

use crate::data_dir::DataDir;
use crate::{DataArgs, DeploymentArgs, EXIT_CONFIG};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Some recorded decision would change under the candidate set.
pub const EXIT_DECISIONS_CHANGE: u8 = 1;

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The candidate policy folder (its `.cedar` files), checked against the deployment's config.
    #[arg(long, value_name = "NEW_POLICY_DIR")]
    pub against: PathBuf,
    /// Only decisions recorded at or after this time (RFC 3339, or milliseconds since the epoch).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub store: crate::StoreArg,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Exit 0 when no recorded decision would change, [`EXIT_DECISIONS_CHANGE`] when some would,
/// 64 when the candidate policies do not load.
pub fn diff(args: &DiffArgs) -> anyhow::Result<ExitCode> {
    use handoff_core::time::Timestamp;
    let deployment = match super::load_or_report(&args.deployment) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    let since = args
        .since
        .as_deref()
        .map(Timestamp::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let candidate = crate::deployment::policy_folder(&args.against)
        .map_err(|problem| vec![problem])
        .and_then(|files| {
            handoff_core::policy::PolicyEngine::load(&deployment.config, &files)
                .map_err(|problems| problems.iter().map(ToString::to_string).collect())
        });
    let candidate = match candidate {
        Ok(candidate) => candidate,
        Err(problems) => {
            eprintln!(
                "the policies in `{}` have {} problem(s):",
                args.against.display(),
                problems.len()
            );
            for problem in &problems {
                eprintln!("  {problem}");
            }
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let dir = DataDir::for_store(&args.data.data_dir, args.store.store.as_deref())?;
    let diff = super::runtime()?.block_on(async {
        let store = crate::shared_store::open_store(&dir, args.store.store.as_deref()).await?;
        anyhow::Ok(
            handoff_core::replay::diff::diff(&deployment.config, store.as_ref(), &candidate, since)
                .await?,
        )
    })?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&diff)?)?;
    } else {
        writeln!(
            out,
            "policy diff against `{}` (policy set {}): {} decision(s) decided again, {} would change",
            args.against.display(),
            diff.policy_set,
            diff.compared,
            diff.changes.len()
        )?;
        for change in &diff.changes {
            writeln!(
                out,
                "  {:>6}  {}  {}  task={} agent={}  {}: {} -> {}",
                change.seq,
                change.at.rfc3339(),
                change.change,
                change.task.as_deref().unwrap_or("-"),
                change.agent.as_deref().unwrap_or("-"),
                change.actions.join(" "),
                change.recorded.describe(),
                change.candidate.describe()
            )?;
        }
        if !diff.by_change.is_empty() {
            writeln!(out, "by change:")?;
            for (change, count) in &diff.by_change {
                writeln!(out, "  {change}  {count}")?;
            }
            writeln!(out, "by policy:")?;
            for (policy, count) in &diff.by_policy {
                writeln!(out, "  {policy}  {count}")?;
            }
        }
        for (cause, count) in &diff.skipped {
            writeln!(out, "not decided again ({cause}): {count}")?;
        }
    }
    out.flush()?;
    Ok(if diff.changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DECISIONS_CHANGE)
    })
}

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
