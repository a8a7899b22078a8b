//! `[counters.NAME]`: windowed counters policy sees, per task or per agent, over declared
//! `system:action`s, counting requests or summing a long detail.

use super::check::{Ctx, is_cedar_name};
use super::raw::RawCounter;
use super::{CounterConfig, CounterScope, DetailType, SystemConfig, qualified_action};
use crate::ids::SystemId;
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

pub(super) fn validate_counters(
    ctx: &mut Ctx<'_>,
    raw: &BTreeMap<String, Spanned<RawCounter>>,
    systems: &BTreeMap<SystemId, SystemConfig>,
) -> BTreeMap<String, CounterConfig> {
    let mut counters = BTreeMap::new();
    for (name, spanned) in raw {
        let counter = spanned.get_ref();
        let mut ok = true;
        if !is_cedar_name(name) {
            ctx.report(
                spanned,
                format!(
                    "counters.{name}: the name must be a lowercase identifier ([a-z][a-z0-9_]*)"
                ),
            );
            ok = false;
        }
        let per = match counter.per.as_ref().map(|p| (p, p.get_ref().as_str())) {
            None | Some((_, "task")) => CounterScope::Task,
            Some((_, "agent")) => CounterScope::Agent,
            Some((at, other)) => {
                ctx.report(
                    at,
                    format!("counters.{name}.per `{other}` must be task or agent"),
                );
                ok = false;
                CounterScope::Task
            }
        };
        let mut actions = BTreeSet::new();
        for qualified in counter.actions.get_ref() {
            match qualified_action(systems, qualified) {
                Some((system, action)) => {
                    if let Some(field) = &counter.sum
                        && system.details.get(field.get_ref()) != Some(&DetailType::Long)
                    {
                        ctx.report(
                            field,
                            format!(
                                "counters.{name}.sum: `{}` is not a long detail of `{}`",
                                field.get_ref(),
                                system.id
                            ),
                        );
                        ok = false;
                    }
                    actions.insert(action.name.clone());
                }
                None => {
                    ctx.report(
                        &counter.actions,
                        format!(
                            "counters.{name}.actions: `{qualified}` is not a declared system:action"
                        ),
                    );
                    ok = false;
                }
            }
        }
        if counter.actions.get_ref().is_empty() {
            ctx.report(
                &counter.actions,
                format!("counters.{name}.actions is empty"),
            );
            ok = false;
        }
        let window = ctx.ttl(&counter.window, &format!("counters.{name}.window"));
        if let (true, Some(window)) = (ok, window) {
            counters.insert(
                name.clone(),
                CounterConfig {
                    name: name.clone(),
                    actions,
                    window,
                    per,
                    sum: counter.sum.as_ref().map(|s| s.get_ref().clone()),
                },
            );
        }
    }
    counters
}
