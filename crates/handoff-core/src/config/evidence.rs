//! `[systems.ID.evidence]`: how a system signs the evidence it reports (a JWKS, an HMAC secret or
//! both), how old it may be, and the kinds and fields it may report.

use super::check::{Ctx, is_cedar_name, is_identifier, read_jwks};
use super::raw::RawEvidence;
use super::{EvidenceConfig, SourceReader};
use crate::time::Ttl;
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

/// Evidence older than this is refused unless the system says otherwise.
const DEFAULT_EVIDENCE_MAX_AGE_SECONDS: u32 = 300;

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
