//! `handoff report privileges`: least privilege seen from the log. The records of the data
//! directory's store, folded by core's `privileges::PrivilegeLedger`, against the deployment's
//! config and policies; as text or JSON.

use crate::data_dir::DataDir;
use crate::{DataArgs, DeploymentArgs};
use handoff_core::clock::{Clock as _, SystemClock};
use handoff_core::privileges::{GrantSeen, PrivilegeLedger, PrivilegeReport};
use handoff_core::store::Store;
use handoff_core::time::Timestamp;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

const PAGE: usize = 1000;

#[derive(Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// Per agent and purpose: what policy may allow, against what was requested, granted and
    /// used through the gateway; grants never used and actions never requested (candidates to
    /// remove), and denials that recur (candidates to review).
    Privileges {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[command(flatten)]
        data: DataArgs,
        /// Only records written at or after this (RFC 3339 UTC, or epoch milliseconds).
        #[arg(long)]
        since: Option<String>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: &ReportCommand) -> anyhow::Result<ExitCode> {
    let ReportCommand::Privileges {
        deployment,
        data,
        since,
        json,
    } = command;
    let since = match since.as_deref().map(Timestamp::parse).transpose() {
        Ok(since) => since,
        Err(error) => {
            eprintln!("error: --since: {error}");
            return Ok(ExitCode::from(crate::EXIT_CONFIG));
        }
    };
    let deployment = match super::load_or_report(deployment) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    let dir = DataDir::existing(&data.data_dir)?;
    let store = dir.store()?;
    let mut ledger = PrivilegeLedger::new(since);
    super::runtime()?.block_on(async {
        let mut after = 0;
        loop {
            let page = store.audit_page(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for record in &page {
                let event = record
                    .event()
                    .map_err(|e| anyhow::anyhow!("record {} cannot be read: {e}", record.seq))?;
                ledger.add(record.seq, record.at, &event);
            }
        }
        anyhow::Ok(())
    })?;
    let report = ledger.report(&deployment.config, &deployment.policies, SystemClock.now());
    if *json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", text(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn counts(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "-".to_owned();
    }
    counts
        .iter()
        .map(|(action, n)| format!("{action} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    let items: Vec<&str> = items.into_iter().map(String::as_str).collect();
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

fn grant(grant: &GrantSeen) -> String {
    format!(
        "token {} for {} on {} (record {}, {}, task {}, decision {})",
        grant.jti,
        grant.actions.join(" "),
        grant.system,
        grant.seq,
        grant.at.rfc3339(),
        grant.task.as_deref().unwrap_or("-"),
        grant.decision_id.as_deref().unwrap_or("-"),
    )
}

/// The report as text, one block per agent and purpose.
pub fn text(report: &PrivilegeReport) -> String {
    let mut out = String::new();
    match report.since {
        Some(since) => {
            let _ = writeln!(out, "privileges seen since {}", since.rfc3339());
        }
        None => {
            let _ = writeln!(out, "privileges seen over the whole log");
        }
    }
    for scope in &report.scopes {
        let _ = writeln!(out, "\nagent {}, purpose {}", scope.agent, scope.purpose);
        let _ = writeln!(out, "  policy may allow:  {}", list(&scope.allowed));
        let _ = writeln!(out, "  requested:         {}", counts(&scope.requested));
        let _ = writeln!(out, "  granted:           {}", counts(&scope.granted));
        let _ = writeln!(out, "  used (gateway):    {}", counts(&scope.used));
        let _ = writeln!(
            out,
            "  never requested (candidates to take out of policy): {}",
            list(&scope.never_requested)
        );
        let _ = writeln!(
            out,
            "  unused grants (candidates to remove): {}",
            scope.unused_grants.len()
        );
        for unused in &scope.unused_grants {
            let _ = writeln!(out, "    {}", grant(unused));
        }
        let _ = writeln!(out, "  used grants: {}", scope.used_grants.len());
        for used in &scope.used_grants {
            let _ = writeln!(out, "    {}: {} call(s)", grant(used), used.uses);
        }
        if scope.unobserved_grants > 0 {
            let _ = writeln!(
                out,
                "  grants on systems without a gateway (their use is not recorded): {}",
                scope.unobserved_grants
            );
        }
    }
    let _ = writeln!(
        out,
        "\nrecurring denials (candidates to review): {}",
        report.recurring_denials.len()
    );
    for denial in &report.recurring_denials {
        let _ = writeln!(
            out,
            "  agent {} {} on {}: {} x{} (first {}, last {})",
            denial.agent,
            denial.action,
            denial.system,
            denial.reason,
            denial.count,
            denial.first.rfc3339(),
            denial.last.rfc3339(),
        );
    }
    out
}
