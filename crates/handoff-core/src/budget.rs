//! Containment per task: the declared plan and the purpose's budgets, checked before policy so a
//! task that has reached its limits stops, whatever policy would say.

use crate::config::{ActionConfig, OffPlan, PurposeConfig, SystemConfig};
use crate::policy::DenyReason;
use crate::task::{Task, TaskFacts};

/// Why containment refuses, with a sentence naming the limit.
pub type Breach = (DenyReason, String);

/// Checks `system` is in the task's declared plan, when the task declared one and its purpose
/// denies off-plan requests: for an exchange, and for a delegation (which may hand on nothing the
/// task could not reach itself).
pub fn check_plan(
    purpose: &PurposeConfig,
    task: &Task,
    system: &SystemConfig,
) -> Result<(), Breach> {
    if purpose.off_plan == OffPlan::Deny && !task.plan.is_empty() && !task.plan.contains(&system.id)
    {
        return Err((
            DenyReason::OutsidePlan,
            format!(
                "`{}` is not in the task's plan ({})",
                system.id,
                join(task.plan.iter().map(|s| s.as_str()))
            ),
        ));
    }
    Ok(())
}

/// Checks one exchange of `actions` on `system` against the task's plan and budgets.
pub fn check(
    purpose: &PurposeConfig,
    task: &Task,
    facts: &TaskFacts,
    system: &SystemConfig,
    actions: &[ActionConfig],
    now_seconds: i64,
) -> Result<(), Breach> {
    check_plan(purpose, task, system)?;
    let budgets = &purpose.budgets;
    let over = |limit: Option<u64>, used: u64| limit.is_some_and(|max| used >= max);
    if over(budgets.max_exchanges, facts.exchanges) {
        return Err(spent(
            DenyReason::BudgetExchanges,
            "max_exchanges",
            budgets.max_exchanges,
        ));
    }
    if !facts.systems.contains(&system.id) && over(budgets.max_systems, len(facts.systems.len())) {
        return Err(spent(
            DenyReason::BudgetSystems,
            "max_systems",
            budgets.max_systems,
        ));
    }
    let writes = len(actions
        .iter()
        .filter(|a| a.labels.contains("write"))
        .count());
    if writes > 0
        && budgets
            .max_writes
            .is_some_and(|max| facts.writes.saturating_add(writes) > max)
    {
        return Err(spent(
            DenyReason::BudgetWrites,
            "max_writes",
            budgets.max_writes,
        ));
    }
    if over(budgets.max_live_tokens, facts.live_tokens(now_seconds)) {
        return Err(spent(
            DenyReason::BudgetLiveTokens,
            "max_live_tokens",
            budgets.max_live_tokens,
        ));
    }
    Ok(())
}

fn spent(reason: DenyReason, name: &str, limit: Option<u64>) -> Breach {
    (
        reason,
        format!(
            "the task's `{name}` budget ({}) is spent",
            limit.unwrap_or_default()
        ),
    )
}

fn len(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}
