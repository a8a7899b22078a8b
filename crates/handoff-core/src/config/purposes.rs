//! `[purposes.ID]`: the task purposes, their lifetimes, budgets and off-plan rule.

use super::check::{Ctx, is_identifier};
use super::raw::RawPurpose;
use super::{Budgets, OffPlan, Problem, PurposeConfig};
use crate::ids::Purpose;
use std::collections::BTreeMap;
use toml::Spanned;

pub(super) fn validate_purposes(
    ctx: &mut Ctx<'_>,
    purposes_raw: &BTreeMap<String, Spanned<RawPurpose>>,
) -> BTreeMap<Purpose, PurposeConfig> {
    let mut purposes = BTreeMap::new();
    for (id, purpose) in purposes_raw {
        if !is_identifier(id) {
            ctx.report(
                purpose,
                format!("purpose `{id}` must be a lowercase identifier"),
            );
        }
        let raw = purpose.get_ref();
        let off_plan = match raw.off_plan.as_ref().map(|o| (o, o.get_ref().as_str())) {
            None | Some((_, "deny")) => OffPlan::Deny,
            Some((_, "allow")) => OffPlan::Allow,
            Some((at, other)) => {
                ctx.report(
                    at,
                    format!("purposes.{id}.off_plan `{other}` must be deny or allow"),
                );
                OffPlan::Deny
            }
        };
        let budgets = Budgets {
            max_exchanges: raw.max_exchanges,
            max_systems: raw.max_systems,
            max_writes: raw.max_writes,
            max_live_tokens: raw.max_live_tokens,
        };
        if let Some(lifetime) = ctx.ttl(&raw.lifetime, &format!("purposes.{id}.lifetime")) {
            let id = Purpose::new(id.clone());
            purposes.insert(
                id.clone(),
                PurposeConfig {
                    id,
                    description: raw.description.clone(),
                    lifetime,
                    budgets,
                    off_plan,
                },
            );
        }
    }
    if purposes_raw.is_empty() {
        ctx.problems
            .push(Problem::in_file(ctx.file, "no task purposes are declared"));
    }
    purposes
}
