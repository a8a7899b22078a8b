//! Raw config to validated [`Config`]: every problem collected. This module only composes the
//! validators of each area (`tokens`, `issuers`, `systems`, `purposes`, `notifications`,
//! `approvals`, `counters`, `delegation`, `server`, and the gateway's) in the order their
//! problems are reported.

use super::check::Ctx;
use super::raw::RawConfig;
use super::shape::strip_unknown_keys;
use super::{Config, IssuerConfig, Problem, SourceReader, line_of};
use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;

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
    let tokens = super::tokens::validate_tokens(ctx, &raw.tokens);
    let issuers = super::issuers::validate_issuers(ctx, reader, &raw.issuers);
    let systems = super::systems::validate_systems(ctx, reader, &raw.systems, tokens.as_ref());
    let purposes = super::purposes::validate_purposes(ctx, &raw.purposes);
    if let (Some(tokens), Some(at)) = (&tokens, &raw.tokens.rotate_every) {
        check_rotation(ctx, tokens, &purposes, at);
    }
    let dev_issuer = raw.dev_issuer.is_some_and(|d| d.enabled);
    if !dev_issuer && issuers.is_empty() && raw.issuers.is_empty() {
        ctx.problems.push(Problem::in_file(
            ctx.file,
            "no identity issuer is trusted: declare [[issuers]] or enable [dev_issuer]",
        ));
    }
    let notifications =
        super::notifications::validate_notifications(ctx, raw.notifications.as_ref());
    let approvals = super::approvals::validate_approvals(ctx, &raw.approvals);
    let approver_issuers: Vec<IssuerConfig> = raw
        .approver_issuers
        .iter()
        .filter_map(|i| super::issuers::validate_issuer(ctx, reader, i))
        .collect();
    let counters = super::counters::validate_counters(ctx, &raw.counters, &systems);
    let delegation = super::delegation::validate_delegation(ctx, &raw.delegation);
    let server = super::server::validate_server(ctx, &raw.server);
    let audit = super::audit::validate_audit(ctx, &raw.audit);
    let console = super::console::validate_console(ctx, reader, &raw.console);
    let store = super::store::validate_store(ctx, &raw.store);
    Some(Config {
        store,
        server,
        audit,
        console,
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

/// `[tokens] rotate_every` no shorter than the longest lifetime of a token Handoff signs (an
/// access token's `tokens.max_lifetime`, a task's Transaction Token's purpose lifetime): each
/// retired key stays published until its last token expires, so a shorter schedule only piles up
/// published keys.
fn check_rotation(
    ctx: &mut Ctx<'_>,
    tokens: &super::TokenSettings,
    purposes: &std::collections::BTreeMap<crate::ids::Purpose, super::PurposeConfig>,
    at: &Spanned<String>,
) {
    let Some(every) = tokens.rotate_every else {
        return;
    };
    let (longest, what) = purposes
        .iter()
        .map(|(id, p)| (p.lifetime, format!("purposes.{id}.lifetime")))
        .chain(std::iter::once((
            tokens.max_lifetime,
            "tokens.max_lifetime".to_owned(),
        )))
        .max_by_key(|(lifetime, _)| *lifetime)
        .unwrap_or((tokens.max_lifetime, "tokens.max_lifetime".to_owned()));
    if every < longest {
        ctx.report(
            at,
            format!(
                "tokens.rotate_every ({}s) is shorter than the longest token lifetime ({}s, \
                 {what}); rotate at most that often",
                every.seconds(),
                longest.seconds()
            ),
        );
    }
}
