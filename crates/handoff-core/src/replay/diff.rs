//! `handoff policy diff`: every recorded decision decided again under a candidate policy set,
//! and the ones whose outcome would change (allow → deny, deny → allow, a gate added or
//! removed), counted by change and by policy. Each is decided on the facts it saw; what a
//! changed decision would in turn have changed later is not simulated.

use super::{CannotReplay, Replayer, Ruling};
use crate::config::Config;
use crate::policy::PolicyEngine;
use crate::store::{Store, StoreError};
use crate::time::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Records read from the store at a time.
const PAGE: usize = 1000;

/// One decision the candidate set would make otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub seq: u64,
    pub at: Timestamp,
    pub task: Option<String>,
    pub agent: Option<String>,
    pub system: Option<String>,
    pub actions: Vec<String>,
    /// `allow->deny`, `deny->allow`, `allow->gate`, `gate->allow`, `gate->deny`, `deny->gate`.
    pub change: String,
    pub recorded: Ruling,
    pub candidate: Ruling,
}

/// What a candidate set would change in the recorded history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// The candidate set's content hash.
    pub policy_set: String,
    /// Decisions decided again.
    pub compared: usize,
    pub changes: Vec<Change>,
    /// Changed decisions by kind of change.
    pub by_change: BTreeMap<String, usize>,
    /// Changed decisions by policy: each change counts once for every policy that determined
    /// it, as recorded or under the candidate.
    pub by_policy: BTreeMap<String, usize>,
    /// Decision records that could not be decided again, by cause
    /// ([`CannotReplay::cause`]); records that are not decisions are not counted.
    pub skipped: BTreeMap<String, usize>,
}

/// Decides every decision recorded at or after `since` again under `candidate`.
pub async fn diff(
    config: &Config,
    store: &dyn Store,
    candidate: &PolicyEngine,
    since: Option<Timestamp>,
) -> Result<Diff, StoreError> {
    let mut replayer = Replayer::candidate(config, store, candidate);
    let mut diff = Diff {
        policy_set: candidate.hash().to_owned(),
        ..Diff::default()
    };
    let mut after = 0;
    loop {
        let page = store.audit_page(after, PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.seq;
        for record in page
            .iter()
            .filter(|r| since.is_none_or(|since| r.at >= since))
        {
            let replay = match replayer.replay(record).await {
                Ok(replay) => replay,
                Err(CannotReplay::NotADecision { .. }) => continue,
                Err(CannotReplay::Store(error)) => return Err(error),
                Err(other) => {
                    *diff.skipped.entry(other.cause().to_owned()).or_default() += 1;
                    continue;
                }
            };
            diff.compared += 1;
            let (was, would) = (replay.recorded.outcome(), replay.replayed.outcome());
            if was == would {
                continue;
            }
            let change = format!("{was}->{would}");
            *diff.by_change.entry(change.clone()).or_default() += 1;
            let policies: BTreeSet<&String> = replay
                .recorded
                .policies()
                .iter()
                .chain(replay.replayed.policies())
                .collect();
            for policy in policies {
                *diff.by_policy.entry(policy.clone()).or_default() += 1;
            }
            let event = record.event().unwrap_or_default();
            diff.changes.push(Change {
                seq: record.seq,
                at: record.at,
                task: event.task,
                agent: event.agent,
                system: event.system,
                actions: event.actions,
                change,
                recorded: replay.recorded,
                candidate: replay.replayed,
            });
        }
    }
    Ok(diff)
}
