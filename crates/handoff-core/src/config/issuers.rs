//! `[[issuers]]` and `[[approver_issuers]]`: the identity providers whose tokens Handoff trusts,
//! their keys, algorithms and leeways.

use super::check::{Ctx, read_jwks};
use super::raw::RawIssuer;
use super::{
    DEFAULT_IAT_LEEWAY_SECONDS, DEFAULT_LEEWAY_SECONDS, IssuerConfig, MAX_LEEWAY_SECONDS,
    SourceReader,
};
use jsonwebtoken::Algorithm;
use std::collections::BTreeSet;
use std::str::FromStr;
use toml::Spanned;

const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// The agents' issuers: each validated, and none declared twice.
pub(super) fn validate_issuers(
    ctx: &mut Ctx<'_>,
    reader: &dyn SourceReader,
    raw: &[RawIssuer],
) -> Vec<IssuerConfig> {
    let issuers: Vec<IssuerConfig> = raw
        .iter()
        .filter_map(|i| validate_issuer(ctx, reader, i))
        .collect();
    let mut seen_issuers = BTreeSet::new();
    for issuer in raw {
        if !seen_issuers.insert(issuer.issuer.get_ref().clone()) {
            ctx.report(
                &issuer.issuer,
                format!("issuer `{}` is declared twice", issuer.issuer.get_ref()),
            );
        }
    }
    issuers
}

pub(super) fn validate_issuer(
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
