//! `[systems.ID]`: each system's actions, labels, detail fields, approvals and evidence; the
//! audiences systems must not share.

use super::check::{Ctx, is_identifier};
use super::raw::RawSystem;
use super::{
    ActionConfig, DetailType, Problem, RiskTier, SourceReader, SystemConfig, TokenSettings,
};
use crate::ids::{ActionName, SystemId};
use crate::time::Ttl;
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

/// Names Handoff reserves for its own Cedar actions and entity groups.
const RESERVED_ACTIONS: &[&str] = &["open_task"];

/// Every system, the audiences they must not share, and their gateway sections.
pub(super) fn validate_systems(
    ctx: &mut Ctx<'_>,
    reader: &dyn SourceReader,
    raw: &BTreeMap<String, Spanned<RawSystem>>,
    tokens: Option<&TokenSettings>,
) -> BTreeMap<SystemId, SystemConfig> {
    let mut systems = BTreeMap::new();
    let mut audiences: BTreeMap<String, String> = BTreeMap::new();
    for (id, system) in raw {
        if let Some(other) =
            audiences.insert(system.get_ref().audience.get_ref().clone(), id.clone())
        {
            ctx.report(
                &system.get_ref().audience,
                format!("systems `{other}` and `{id}` share an audience"),
            );
        }
        if let Some(valid) = validate_system(ctx, reader, id, system, tokens) {
            systems.insert(valid.id.clone(), valid);
        }
    }
    super::gateway::attach(
        ctx.file,
        ctx.text,
        reader,
        raw,
        &mut systems,
        &mut ctx.problems,
    );
    if raw.is_empty() {
        ctx.problems
            .push(Problem::in_file(ctx.file, "no systems are declared"));
    }
    systems
}

fn validate_system(
    ctx: &mut Ctx<'_>,
    reader: &dyn SourceReader,
    id: &str,
    spanned: &Spanned<RawSystem>,
    tokens: Option<&TokenSettings>,
) -> Option<SystemConfig> {
    let raw = spanned.get_ref();
    let mut ok = true;
    if !is_identifier(id) {
        ctx.report(
            spanned,
            format!("system id `{id}` must be a lowercase identifier ([a-z][a-z0-9_-]*)"),
        );
        ok = false;
    }
    let risk = RiskTier::parse(raw.risk.get_ref());
    if risk.is_none() {
        ctx.report(
            &raw.risk,
            format!(
                "systems.{id}.risk `{}` must be low, medium, high or critical",
                raw.risk.get_ref()
            ),
        );
    }
    let max_token_lifetime = match &raw.max_token_lifetime {
        Some(v) => ctx.ttl(v, &format!("systems.{id}.max_token_lifetime")),
        None => tokens.map(|t| t.max_lifetime),
    };
    let system_id = SystemId::new(id);
    let mut actions = BTreeMap::new();
    for (name, labels) in raw.actions.get_ref() {
        if !is_identifier(name) || RESERVED_ACTIONS.contains(&name.as_str()) {
            ctx.report(
                labels,
                format!("systems.{id}.actions: `{name}` is not a usable action name"),
            );
            ok = false;
            continue;
        }
        let mut set = BTreeSet::new();
        for label in labels.get_ref() {
            if !is_identifier(label) || RESERVED_ACTIONS.contains(&label.as_str()) {
                ctx.report(labels, format!("systems.{id}.actions.{name}: label `{label}` must be a lowercase identifier"));
                ok = false;
            }
            set.insert(label.clone());
        }
        actions.insert(
            name.clone(),
            ActionConfig {
                name: ActionName::qualified(&system_id, name),
                short: name.clone(),
                labels: set,
            },
        );
    }
    if actions.is_empty() && raw.actions.get_ref().is_empty() {
        ctx.report(&raw.actions, format!("system `{id}` offers no actions"));
        ok = false;
    }
    let mut details = BTreeMap::new();
    for (field, kind) in &raw.details {
        let parsed = match kind.get_ref().as_str() {
            "string" => DetailType::String,
            "long" => DetailType::Long,
            "bool" => DetailType::Bool,
            other => {
                ctx.report(
                    kind,
                    format!(
                        "systems.{id}.details.{field}: type `{other}` must be string, long or bool"
                    ),
                );
                ok = false;
                continue;
            }
        };
        if !is_identifier(field) {
            ctx.report(
                kind,
                format!("systems.{id}.details: `{field}` must be a lowercase identifier"),
            );
            ok = false;
        }
        details.insert(field.clone(), parsed);
    }
    let mut require_approval = BTreeSet::new();
    if let Some(list) = &raw.require_approval {
        for name in list.get_ref() {
            if actions.contains_key(name) {
                require_approval.insert(name.clone());
            } else {
                ctx.report(
                    list,
                    format!("systems.{id}.require_approval: `{name}` is not an action of `{id}`"),
                );
            }
        }
    }
    if raw.owner.get_ref().trim().is_empty() {
        ctx.report(&raw.owner, format!("systems.{id}.owner must not be empty"));
        ok = false;
    }
    if raw.audience.get_ref().trim().is_empty() {
        ctx.report(
            &raw.audience,
            format!("systems.{id}.audience must not be empty"),
        );
        ok = false;
    }
    let evidence = match &raw.evidence {
        Some(evidence) => {
            let valid = super::evidence::validate_evidence(ctx, reader, id, evidence);
            ok &= valid.is_some();
            valid
        }
        None => None,
    };
    if !ok {
        return None;
    }
    Some(SystemConfig {
        evidence,
        id: system_id,
        audience: raw.audience.get_ref().clone(),
        description: raw.description.clone(),
        owner: raw.owner.get_ref().clone(),
        escalation: raw.escalation.get_ref().clone(),
        // A bad risk or lifetime was reported above; the placeholder only keeps the system in the
        // registry so its policies are still checked (the config is unusable while problems exist).
        risk: risk.unwrap_or(RiskTier::Critical),
        max_token_lifetime: max_token_lifetime.unwrap_or(Ttl::from_seconds(60)),
        actions,
        details,
        require_approval,
        user_may_approve: raw.user_may_approve.unwrap_or(false),
        gateway: None,
    })
}
