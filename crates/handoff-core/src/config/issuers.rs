//! `[[issuers]]` and `[[approver_issuers]]`: the identity providers whose tokens Handoff trusts,
//! their keys, algorithms and leeways.

use super::check::{Ctx, read_jwks};
use super::raw::RawIssuer;
use super::{
    DEFAULT_IAT_LEEWAY_SECONDS, DEFAULT_LEEWAY_SECONDS, IssuerConfig, IssuerKeySource,
    JwksLocation, MAX_LEEWAY_SECONDS, RemoteJwks, SourceReader,
};
use crate::time::Ttl;
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
    let keys = key_source(ctx, reader, raw)?;
    Some(IssuerConfig {
        id: id.clone(),
        issuer: raw.issuer.get_ref().clone(),
        audience: raw.audience.get_ref().clone(),
        keys,
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

/// Exactly one of `jwks_file`, `jwks_url` and `discovery = true`; the fetch settings only with a
/// URL; every URL `https://` unless `danger_allow_http`. Nothing is fetched here: `serve` fetches.
fn key_source(
    ctx: &mut Ctx<'_>,
    reader: &dyn SourceReader,
    raw: &RawIssuer,
) -> Option<IssuerKeySource> {
    let id = raw.id.get_ref();
    let discovery = raw.discovery.as_ref().filter(|d| *d.get_ref());
    let named = [
        raw.jwks_file.is_some(),
        raw.jwks_url.is_some(),
        discovery.is_some(),
    ]
    .iter()
    .filter(|named| **named)
    .count();
    if named != 1 {
        ctx.report(
            &raw.id,
            format!(
                "issuer `{id}`: give exactly one of jwks_file, jwks_url and discovery = true \
                 ({named} given)"
            ),
        );
        return None;
    }
    if let Some(file) = &raw.jwks_file {
        for (name, given) in [
            ("optional", raw.optional.as_ref().map(Spanned::span)),
            ("min_refresh", raw.min_refresh.as_ref().map(Spanned::span)),
            ("max_refresh", raw.max_refresh.as_ref().map(Spanned::span)),
            (
                "min_refetch_interval",
                raw.min_refetch_interval.as_ref().map(Spanned::span),
            ),
            (
                "danger_allow_http",
                raw.danger_allow_http.as_ref().map(Spanned::span),
            ),
            ("ca_file", raw.ca_file.as_ref().map(Spanned::span)),
        ] {
            if given.is_some() {
                ctx.report(
                    file,
                    format!("issuer `{id}`: {name} applies only to jwks_url or discovery"),
                );
            }
        }
        return read_jwks(ctx, reader, file, &format!("issuer `{id}`")).map(IssuerKeySource::File);
    }
    let allow_http = raw.danger_allow_http.as_ref().is_some_and(|d| *d.get_ref());
    let location = match &raw.jwks_url {
        Some(url) => {
            check_url(ctx, url, "jwks_url", id, allow_http);
            JwksLocation::Url(url.get_ref().clone())
        }
        None => {
            check_url(ctx, &raw.issuer, "issuer (for discovery)", id, allow_http);
            JwksLocation::Discovery
        }
    };
    let mut ttl = |field: &str, value: Option<&Spanned<String>>, default: Ttl| match value {
        None => Some(default),
        Some(text) => ctx.ttl(text, &format!("issuer `{id}`: {field}")),
    };
    let min_refresh = ttl(
        "min_refresh",
        raw.min_refresh.as_ref(),
        RemoteJwks::DEFAULT_MIN_REFRESH,
    );
    let max_refresh = ttl(
        "max_refresh",
        raw.max_refresh.as_ref(),
        RemoteJwks::DEFAULT_MAX_REFRESH,
    );
    let min_refetch_interval = ttl(
        "min_refetch_interval",
        raw.min_refetch_interval.as_ref(),
        RemoteJwks::DEFAULT_MIN_REFETCH_INTERVAL,
    );
    if let (Some(min), Some(max)) = (min_refresh, max_refresh)
        && min > max
    {
        let at = raw.max_refresh.as_ref().or(raw.min_refresh.as_ref());
        if let Some(at) = at {
            ctx.report(
                at,
                format!(
                    "issuer `{id}`: min_refresh ({}s) is longer than max_refresh ({}s)",
                    min.seconds(),
                    max.seconds()
                ),
            );
        }
    }
    let ca_pem = match &raw.ca_file {
        None => None,
        Some(file) => match reader.read(file.get_ref()) {
            Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => Some(text),
            Ok(_) => {
                ctx.report(
                    file,
                    format!("issuer `{id}`: ca_file holds no PEM certificate"),
                );
                None
            }
            Err(e) => {
                ctx.report(file, format!("issuer `{id}`: ca_file: {e}"));
                None
            }
        },
    };
    Some(IssuerKeySource::Remote(RemoteJwks {
        location,
        optional: raw.optional.as_ref().is_some_and(|o| *o.get_ref()),
        min_refresh: min_refresh?,
        max_refresh: max_refresh?,
        min_refetch_interval: min_refetch_interval?,
        danger_allow_http: allow_http,
        ca_pem,
    }))
}

/// An absolute `https://` URL with a host (`http://` only with `danger_allow_http`).
fn check_url(ctx: &mut Ctx<'_>, url: &Spanned<String>, field: &str, id: &str, allow_http: bool) {
    let text = url.get_ref();
    let rest = if let Some(rest) = text.strip_prefix("https://") {
        rest
    } else if let Some(rest) = text.strip_prefix("http://") {
        if !allow_http {
            ctx.report(
                url,
                format!(
                    "issuer `{id}`: {field} `{text}` is plain http; keys must come over https \
                     (set danger_allow_http = true only for development)"
                ),
            );
            return;
        }
        rest
    } else {
        ctx.report(
            url,
            format!("issuer `{id}`: {field} `{text}` is not an https:// URL"),
        );
        return;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        ctx.report(
            url,
            format!("issuer `{id}`: {field} `{text}` is not a usable URL"),
        );
    }
}
