//! `[tokens]`: the lifetimes and the signing algorithm of the access tokens Handoff mints, and
//! how often `serve` rotates the signing key.

use super::check::Ctx;
use super::raw::RawTokens;
use super::{SigningAlgorithm, TokenSettings};
use crate::time::Ttl;

pub(super) fn validate_tokens(ctx: &mut Ctx<'_>, raw: &RawTokens) -> Option<TokenSettings> {
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
    let rotate_every = match &raw.rotate_every {
        Some(v) => Some(ctx.ttl(v, "tokens.rotate_every")?),
        None => None,
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
        rotate_every,
    })
}
