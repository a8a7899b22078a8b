//! Raw config to validated [`Config`]: every rule, every problem collected.

use super::check::{Ctx, is_identifier, read_jwks};
use super::raw::{RawConfig, RawIssuer, RawSystem};
use super::shape::strip_unknown_keys;
use super::{
    ActionConfig, ApprovalSettings, Budgets, Config, DEFAULT_IAT_LEEWAY_SECONDS,
    DEFAULT_LEEWAY_SECONDS, DetailType, IssuerConfig, MAX_LEEWAY_SECONDS, NotificationConfig,
    OffPlan, Problem, PurposeConfig, RiskTier, SigningAlgorithm, SourceReader, SystemConfig,
    TokenSettings, WebhookFormat, line_of,
};
use crate::ids::{ActionName, Purpose, SystemId};
use crate::time::Ttl;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde::de::IntoDeserializer;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use toml::Spanned;

/// Names Handoff reserves for its own Cedar actions and entity groups.
const RESERVED_ACTIONS: &[&str] = &["open_task"];
const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// Parses and validates the config text; returns the config when it could be built at all, and
/// every problem found on the way (the config is usable only when the list is empty).
pub fn load_config(
    reader: &dyn SourceReader,
    file: &str,
    text: &str,
) -> (Option<Config>, Vec<Problem>) {
    let mut ctx = Ctx {
        file,
        text,
        problems: Vec::new(),
    };
    let mut document = match toml::de::DeTable::parse(text) {
        Ok(document) => document,
        Err(e) => {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            ctx.problems
                .push(Problem::at(file, line, e.message().to_owned()));
            return (None, ctx.problems);
        }
    };
    ctx.problems
        .extend(strip_unknown_keys(file, text, document.get_mut()));
    let raw = match RawConfig::deserialize(document.into_deserializer()) {
        Ok(raw) => raw,
        Err(e) => {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            ctx.problems
                .push(Problem::at(file, line, e.message().to_owned()));
            return (None, ctx.problems);
        }
    };
    let config = validate(&mut ctx, reader, raw);
    (config, ctx.problems)
}

fn validate(ctx: &mut Ctx<'_>, reader: &dyn SourceReader, raw: RawConfig) -> Option<Config> {
    let trust_domain = raw.trust_domain.get_ref().trim_end_matches('/').to_owned();
    if !trust_domain.starts_with("https://") && !trust_domain.starts_with("http://") {
        ctx.report(&raw.trust_domain, "trust_domain must be an http(s) URI");
    }
    let tokens = validate_tokens(ctx, &raw.tokens);
    let issuers: Vec<IssuerConfig> = raw
        .issuers
        .iter()
        .filter_map(|i| validate_issuer(ctx, reader, i))
        .collect();
    let mut seen_issuers = BTreeSet::new();
    for issuer in &raw.issuers {
        if !seen_issuers.insert(issuer.issuer.get_ref().clone()) {
            ctx.report(
                &issuer.issuer,
                format!("issuer `{}` is declared twice", issuer.issuer.get_ref()),
            );
        }
    }
    let mut systems = BTreeMap::new();
    let mut audiences: BTreeMap<String, String> = BTreeMap::new();
    for (id, system) in &raw.systems {
        if let Some(other) =
            audiences.insert(system.get_ref().audience.get_ref().clone(), id.clone())
        {
            ctx.report(
                &system.get_ref().audience,
                format!("systems `{other}` and `{id}` share an audience"),
            );
        }
        if let Some(valid) = validate_system(ctx, reader, id, system, tokens.as_ref()) {
            systems.insert(valid.id.clone(), valid);
        }
    }
    super::gateway::attach(
        ctx.file,
        ctx.text,
        reader,
        &raw.systems,
        &mut systems,
        &mut ctx.problems,
    );
    if raw.systems.is_empty() {
        ctx.problems
            .push(Problem::in_file(ctx.file, "no systems are declared"));
    }
    let mut purposes = BTreeMap::new();
    for (id, purpose) in &raw.purposes {
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
    if raw.purposes.is_empty() {
        ctx.problems
            .push(Problem::in_file(ctx.file, "no task purposes are declared"));
    }
    let dev_issuer = raw.dev_issuer.is_some_and(|d| d.enabled);
    if !dev_issuer && issuers.is_empty() && raw.issuers.is_empty() {
        ctx.problems.push(Problem::in_file(
            ctx.file,
            "no identity issuer is trusted: declare [[issuers]] or enable [dev_issuer]",
        ));
    }
    let notifications = raw.notifications.as_ref().and_then(|n| {
        let url = n.webhook_url.get_ref();
        if !url.starts_with("https://") && !url.starts_with("http://") {
            ctx.report(
                &n.webhook_url,
                "notifications.webhook_url must be an http(s) URL",
            );
            return None;
        }
        let format = match n.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None | Some((_, "json")) => WebhookFormat::Json,
            Some((_, "slack")) => WebhookFormat::Slack,
            Some((at, other)) => {
                ctx.report(
                    at,
                    format!("notifications.format `{other}` must be json or slack"),
                );
                return None;
            }
        };
        Some(NotificationConfig {
            webhook_url: url.clone(),
            format,
            secret_env: n.secret_env.as_ref().map(|s| s.get_ref().clone()),
        })
    });
    let approvals = ApprovalSettings {
        ttl: raw
            .approvals
            .ttl
            .as_ref()
            .and_then(|t| ctx.ttl(t, "approvals.ttl"))
            .unwrap_or(Ttl::from_seconds(600)),
        poll_interval_seconds: raw.approvals.poll_interval_seconds.unwrap_or(5).max(1),
        escalate_after: raw
            .approvals
            .escalate_after
            .as_ref()
            .and_then(|t| ctx.ttl(t, "approvals.escalate_after"))
            .unwrap_or(Ttl::from_seconds(300)),
    };
    let approver_issuers: Vec<IssuerConfig> = raw
        .approver_issuers
        .iter()
        .filter_map(|i| validate_issuer(ctx, reader, i))
        .collect();
    let counters = super::counters::validate_counters(ctx, &raw.counters, &systems);
    let delegation = super::delegation::validate_delegation(ctx, &raw.delegation);
    let server = super::server::validate_server(ctx, &raw.server);
    Some(Config {
        server,
        counters,
        delegation,
        approvals,
        approver_issuers,
        notifications,
        trust_domain,
        policy_folder: raw
            .policies
            .map_or_else(|| "policies".to_owned(), Spanned::into_inner),
        tokens: tokens?,
        dev_issuer,
        issuers,
        systems,
        purposes,
    })
}

fn validate_tokens(ctx: &mut Ctx<'_>, raw: &super::raw::RawTokens) -> Option<TokenSettings> {
    let default_lifetime = match &raw.default_lifetime {
        Some(v) => ctx.ttl(v, "tokens.default_lifetime")?,
        None => Ttl::from_seconds(300),
    };
    let max_lifetime = match &raw.max_lifetime {
        Some(v) => ctx.ttl(v, "tokens.max_lifetime")?,
        None => Ttl::from_seconds(3600),
    };
    let algorithm = match raw.algorithm.as_ref().map(|a| (a, a.get_ref().as_str())) {
        None | Some((_, "ES256")) => SigningAlgorithm::Es256,
        Some((_, "EdDSA")) => SigningAlgorithm::EdDsa,
        Some((at, other)) => {
            ctx.report(
                at,
                format!("tokens.algorithm `{other}` is not supported; use ES256 or EdDSA"),
            );
            return None;
        }
    };
    if let (true, Some(at)) = (default_lifetime > max_lifetime, &raw.default_lifetime) {
        {
            ctx.report(
                at,
                "tokens.default_lifetime is longer than tokens.max_lifetime",
            );
        }
    }
    Some(TokenSettings {
        default_lifetime,
        max_lifetime,
        algorithm,
    })
}

fn validate_issuer(
    ctx: &mut Ctx<'_>,
    reader: &dyn SourceReader,
    raw: &RawIssuer,
) -> Option<IssuerConfig> {
    let id = raw.id.get_ref();
    let mut algorithms = Vec::new();
    match &raw.algorithms {
        None => algorithms.extend_from_slice(DEFAULT_ALGORITHMS),
        Some(list) => {
            for name in list.get_ref() {
                match Algorithm::from_str(name) {
                    Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => ctx.report(
                        list,
                        format!("issuer `{id}`: HMAC algorithm `{name}` is never accepted for identities"),
                    ),
                    Ok(alg) => algorithms.push(alg),
                    Err(_) => ctx.report(list, format!("issuer `{id}`: unknown algorithm `{name}`")),
                }
            }
            if list.get_ref().is_empty() {
                ctx.report(list, format!("issuer `{id}`: the algorithm list is empty"));
            }
        }
    }
    let mut leeway = |field: &str, value: Option<&Spanned<u32>>, default: u32| match value {
        None => default,
        Some(spanned) if *spanned.get_ref() <= MAX_LEEWAY_SECONDS => *spanned.get_ref(),
        Some(spanned) => {
            ctx.report(
                spanned,
                format!("issuer `{id}`: {field} must be at most {MAX_LEEWAY_SECONDS}"),
            );
            default
        }
    };
    let leeway_seconds = leeway(
        "leeway_seconds",
        raw.leeway_seconds.as_ref(),
        DEFAULT_LEEWAY_SECONDS,
    );
    let iat_leeway_seconds = leeway(
        "iat_leeway_seconds",
        raw.iat_leeway_seconds.as_ref(),
        DEFAULT_IAT_LEEWAY_SECONDS,
    );
    let Some(jwks_file) = &raw.jwks_file else {
        ctx.report(&raw.id, format!("issuer `{id}`: jwks_file is required"));
        return None;
    };
    let jwks = read_jwks(ctx, reader, jwks_file, &format!("issuer `{id}`"))?;
    Some(IssuerConfig {
        id: id.clone(),
        issuer: raw.issuer.get_ref().clone(),
        audience: raw.audience.get_ref().clone(),
        jwks,
        agent_claim: raw
            .agent_claim
            .as_ref()
            .map_or_else(|| "sub".to_owned(), |c| c.get_ref().clone()),
        algorithms,
        typ: raw.typ.as_ref().map(|t| t.get_ref().clone()),
        groups_claim: raw
            .groups_claim
            .as_ref()
            .map_or_else(|| "groups".to_owned(), |c| c.get_ref().clone()),
        leeway_seconds,
        iat_leeway_seconds,
    })
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
