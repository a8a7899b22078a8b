//! Validation of what policy may see of the past beyond a task's own grants: evidence systems
//! sign, windowed counters, and how deep delegation may go.

use super::raw::{RawCounter, RawDelegation, RawEvidence};
use super::validate::{Ctx, is_identifier, read_jwks};
use super::{
    CounterConfig, CounterScope, DelegationSettings, DetailType, EvidenceConfig, SourceReader,
    SystemConfig, qualified_action,
};
use crate::ids::SystemId;
use crate::time::Ttl;
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

/// Evidence older than this is refused unless the system says otherwise.
const DEFAULT_EVIDENCE_MAX_AGE_SECONDS: u32 = 300;
/// Delegation depth when the config names none: an agent may delegate, a delegate may not.
const DEFAULT_MAX_DEPTH: u32 = 1;
/// A delegation chain is carried in tokens and checked on every exchange; keep it short.
const MAX_DEPTH_LIMIT: u32 = 8;

/// A Cedar-safe attribute name: `context.counters.<name>` must parse.
fn is_cedar_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

pub(super) fn validate_evidence(
    ctx: &mut Ctx<'_>,
    reader: &dyn SourceReader,
    system: &str,
    spanned: &Spanned<RawEvidence>,
) -> Option<EvidenceConfig> {
    let raw = spanned.get_ref();
    let what = format!("systems.{system}.evidence");
    let mut ok = true;
    let jwks = match &raw.jwks_file {
        Some(file) => {
            let jwks = read_jwks(ctx, reader, file, &what);
            ok &= jwks.is_some();
            jwks
        }
        None => None,
    };
    let hmac_secret_env = raw.hmac_secret_env.as_ref().map(|e| e.get_ref().clone());
    if jwks.is_none() && hmac_secret_env.is_none() && raw.jwks_file.is_none() {
        ctx.report(
            spanned,
            format!("{what}: name jwks_file, hmac_secret_env or both (evidence must be signed)"),
        );
        ok = false;
    }
    let max_age = match &raw.max_age {
        Some(age) => ctx.ttl(age, &format!("{what}.max_age")),
        None => Some(Ttl::from_seconds(DEFAULT_EVIDENCE_MAX_AGE_SECONDS)),
    };
    let mut kinds = BTreeMap::new();
    for (kind, fields) in raw.kinds.get_ref() {
        if !is_identifier(kind) {
            ctx.report(
                fields,
                format!("{what}.kinds: `{kind}` must be a lowercase identifier"),
            );
            ok = false;
        }
        let mut names = BTreeSet::new();
        for field in fields.get_ref() {
            if !is_cedar_name(field) || field == "count" || field == "last_at" {
                ctx.report(
                    fields,
                    format!("{what}.kinds.{kind}: field `{field}` must be a lowercase identifier other than count and last_at"),
                );
                ok = false;
            }
            names.insert(field.clone());
        }
        kinds.insert(kind.clone(), names);
    }
    if raw.kinds.get_ref().is_empty() {
        ctx.report(&raw.kinds, format!("{what}.kinds declares no event kinds"));
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(EvidenceConfig {
        jwks,
        hmac_secret_env,
        max_age: max_age?,
        kinds,
    })
}

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

pub(super) fn validate_delegation(ctx: &mut Ctx<'_>, raw: &RawDelegation) -> DelegationSettings {
    let max_depth = match &raw.max_depth {
        Some(depth) if *depth.get_ref() > MAX_DEPTH_LIMIT => {
            ctx.report(
                depth,
                format!("delegation.max_depth must be at most {MAX_DEPTH_LIMIT}"),
            );
            MAX_DEPTH_LIMIT
        }
        Some(depth) => *depth.get_ref(),
        None => DEFAULT_MAX_DEPTH,
    };
    DelegationSettings { max_depth }
}
