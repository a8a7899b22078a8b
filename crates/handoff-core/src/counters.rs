//! Windowed counters declared in config: "payments approved in this task in the last hour",
//! "deploys by this agent today". Each keeps only the grants inside its window, pruned on every
//! write, so its cost is bounded by the window's traffic, never by the history's length.

use crate::config::{ActionConfig, Config, CounterConfig, CounterScope};
use crate::policy::DetailValue;
use crate::task::TaskFacts;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Grants inside one counter's window: (time in milliseconds, amount).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WindowLog(Vec<(i64, i64)>);

impl WindowLog {
    /// The total of entries newer than `now - window`.
    pub fn total(&self, now: Timestamp, window_millis: i64) -> i64 {
        let since = now.millis().saturating_sub(window_millis);
        self.0
            .iter()
            .filter(|(at, _)| *at > since)
            .fold(0_i64, |sum, (_, amount)| sum.saturating_add(*amount))
    }

    /// Adds one entry and forgets those that left the window.
    pub fn record(&mut self, at: Timestamp, amount: i64, window_millis: i64) {
        let since = at.millis().saturating_sub(window_millis);
        self.0.retain(|(t, _)| *t > since);
        self.0.push((at.millis(), amount));
    }
}

/// The facts kept per agent across its tasks, versioned like a task's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentFacts {
    pub windows: BTreeMap<String, WindowLog>,
}

/// The store key of an agent's facts: the same agent id from another issuer is another agent.
pub fn agent_key(issuer: &str, agent: &str) -> String {
    format!("{issuer}#{agent}")
}

fn window_millis(counter: &CounterConfig) -> i64 {
    i64::from(counter.window.seconds()).saturating_mul(1000)
}

/// Every declared counter's current value, for the policy context.
pub fn values(
    config: &Config,
    task: &TaskFacts,
    agent: &AgentFacts,
    now: Timestamp,
) -> BTreeMap<String, i64> {
    config
        .counters
        .values()
        .map(|counter| {
            let windows = match counter.per {
                CounterScope::Task => &task.windows,
                CounterScope::Agent => &agent.windows,
            };
            let total = windows
                .get(&counter.name)
                .map_or(0, |log| log.total(now, window_millis(counter)));
            (counter.name.clone(), total)
        })
        .collect()
}

/// Folds one permitted exchange into the counters it touches; `true` when an agent counter
/// changed (so the agent's facts must be written with the grant).
pub fn record(
    config: &Config,
    actions: &[ActionConfig],
    details: &BTreeMap<String, DetailValue>,
    task: &mut TaskFacts,
    agent: &mut AgentFacts,
    now: Timestamp,
) -> bool {
    let mut agent_changed = false;
    for counter in config.counters.values() {
        if !actions.iter().any(|a| counter.actions.contains(&a.name)) {
            continue;
        }
        let amount = match &counter.sum {
            None => 1,
            Some(field) => match details.get(field) {
                Some(DetailValue::Long(value)) => *value,
                // A sum over a field this request does not carry adds nothing.
                _ => 0,
            },
        };
        let windows = match counter.per {
            CounterScope::Task => &mut task.windows,
            CounterScope::Agent => {
                agent_changed = true;
                &mut agent.windows
            }
        };
        windows.entry(counter.name.clone()).or_default().record(
            now,
            amount,
            window_millis(counter),
        );
    }
    agent_changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_forgets_what_left_it() {
        let mut log = WindowLog::default();
        log.record(Timestamp::from_millis(1_000), 5, 10_000);
        log.record(Timestamp::from_millis(9_000), 7, 10_000);
        assert_eq!(log.total(Timestamp::from_millis(10_000), 10_000), 12);
        assert_eq!(log.total(Timestamp::from_millis(11_500), 10_000), 7);
        log.record(Timestamp::from_millis(20_000), 1, 10_000);
        assert_eq!(
            log.0.len(),
            1,
            "entries outside the window are pruned on write"
        );
    }
}
