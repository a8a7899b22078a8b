//! `[console]`: the web console at `/console` (people sign in with a one-time link from
//! `handoff approver login`).
//!
//! ```toml
//! [console]
//! operator_group = "security-oncall"   # members may read task timelines and revoke / freeze
//! session_lifetime = "8h"              # a signed-in person's session (at most 24h)
//! sign_in_link_lifetime = "10m"        # a one-time sign-in link (at most 1h)
//!
//! [console.oidc]                       # people sign in through OpenID Connect (code + PKCE)
//! issuer = "https://login.example.com" # discovery at <issuer>/.well-known/openid-configuration
//! client_id = "handoff-console"
//! client_secret_file = "oidc-secret"   # optional (a public client without it)
//! groups_claim = "groups"              # the ID token claim listing the person's groups
//! user_claim = "sub"                   # the claim naming the person (default `sub`)
//! ```

use super::SourceReader;
use super::check::Ctx;
use super::gateway::Secret;
use super::shape::Shape;
use crate::time::Ttl;
use serde::Deserialize;
use toml::Spanned;

pub const DEFAULT_SESSION_LIFETIME: Ttl = Ttl::from_seconds(8 * 3600);
pub const MAX_SESSION_LIFETIME: Ttl = Ttl::from_seconds(24 * 3600);
pub const DEFAULT_SIGN_IN_LINK_LIFETIME: Ttl = Ttl::from_seconds(600);
pub const MAX_SIGN_IN_LINK_LIFETIME: Ttl = Ttl::from_seconds(3600);

const OIDC_SHAPE: Shape = Shape::Fields(&[
    ("issuer", Shape::Leaf),
    ("client_id", Shape::Leaf),
    ("client_secret_file", Shape::Leaf),
    ("groups_claim", Shape::Leaf),
    ("user_claim", Shape::Leaf),
]);

pub(super) const CONSOLE_SHAPE: Shape = Shape::Fields(&[
    ("operator_group", Shape::Leaf),
    ("session_lifetime", Shape::Leaf),
    ("sign_in_link_lifetime", Shape::Leaf),
    ("oidc", OIDC_SHAPE),
]);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    pub operator_group: Option<Spanned<String>>,
    pub session_lifetime: Option<Spanned<String>>,
    pub sign_in_link_lifetime: Option<Spanned<String>>,
    pub oidc: Option<Spanned<RawOidc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    pub issuer: Spanned<String>,
    pub client_id: Spanned<String>,
    pub client_secret_file: Option<Spanned<String>>,
    pub groups_claim: Option<Spanned<String>>,
    pub user_claim: Option<Spanned<String>>,
}

/// Sign-in through the organisation's OpenID Connect provider (`[console.oidc]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcSettings {
    /// The provider's issuer (https, or http on a loopback host); discovery is read from
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// The client secret (sent with HTTP Basic to the token endpoint), if the client has one.
    pub client_secret: Option<Secret>,
    /// The ID token claim listing the person's groups (a list or one string).
    pub groups_claim: String,
    /// The ID token claim naming the person.
    pub user_claim: String,
}

/// The web console's settings (`[console]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// Members of this group are operators in the console (task timelines, agents, revoke,
    /// freeze); without it, nobody is.
    pub operator_group: Option<String>,
    /// How long a signed-in person's session lasts.
    pub session_lifetime: Ttl,
    /// How long a one-time sign-in link can be used.
    pub sign_in_link_lifetime: Ttl,
    /// OpenID Connect sign-in, when configured.
    pub oidc: Option<OidcSettings>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            operator_group: None,
            session_lifetime: DEFAULT_SESSION_LIFETIME,
            sign_in_link_lifetime: DEFAULT_SIGN_IN_LINK_LIFETIME,
            oidc: None,
        }
    }
}

/// Whether `url` may name an OpenID provider: https, or http on a loopback host (a test's).
fn usable_issuer(url: &str) -> bool {
    if url.starts_with("https://") {
        return url.len() > "https://".len();
    }
    url.strip_prefix("http://").is_some_and(|rest| {
        let host = rest.split('/').next().unwrap_or("");
        let host = host.rsplit_once(':').map_or(host, |(name, _)| name);
        matches!(host, "127.0.0.1" | "localhost" | "[::1]")
    })
}

fn claim(ctx: &mut Ctx<'_>, value: Option<&Spanned<String>>, what: &str, default: &str) -> String {
    match value {
        Some(v) if v.get_ref().trim().is_empty() => {
            ctx.report(v, format!("{what} must not be empty"));
            default.to_owned()
        }
        Some(v) => v.get_ref().trim().to_owned(),
        None => default.to_owned(),
    }
}

fn validate_oidc(
    ctx: &mut Ctx<'_>,
    reader: &dyn SourceReader,
    raw: &Spanned<RawOidc>,
) -> Option<OidcSettings> {
    let raw = raw.get_ref();
    let before = ctx.problems.len();
    let issuer = raw.issuer.get_ref().trim().trim_end_matches('/').to_owned();
    if !usable_issuer(&issuer) {
        ctx.report(
            &raw.issuer,
            "console.oidc.issuer must be an https URL (http only on a loopback host)",
        );
    }
    let client_id = raw.client_id.get_ref().trim().to_owned();
    if client_id.is_empty() {
        ctx.report(&raw.client_id, "console.oidc.client_id must not be empty");
    }
    let client_secret =
        raw.client_secret_file
            .as_ref()
            .and_then(|file| match reader.read(file.get_ref()) {
                Ok(text) if !text.trim().is_empty() => Some(Secret::new(text.trim())),
                Ok(_) => {
                    ctx.report(file, "console.oidc.client_secret_file is empty");
                    None
                }
                Err(e) => {
                    ctx.report(file, format!("console.oidc.client_secret_file: {e}"));
                    None
                }
            });
    let groups_claim = claim(
        ctx,
        raw.groups_claim.as_ref(),
        "console.oidc.groups_claim",
        "groups",
    );
    let user_claim = claim(
        ctx,
        raw.user_claim.as_ref(),
        "console.oidc.user_claim",
        "sub",
    );
    (ctx.problems.len() == before).then_some(OidcSettings {
        issuer,
        client_id,
        client_secret,
        groups_claim,
        user_claim,
    })
}

fn bounded(
    ctx: &mut Ctx<'_>,
    value: Option<&Spanned<String>>,
    what: &str,
    default: Ttl,
    max: Ttl,
) -> Ttl {
    let Some(value) = value else {
        return default;
    };
    match ctx.ttl(value, what) {
        Some(ttl) if ttl.seconds() == 0 => {
            ctx.report(value, format!("{what} must be longer than 0s"));
            default
        }
        Some(ttl) if ttl > max => {
            ctx.report(value, format!("{what} must be at most {}s", max.seconds()));
            default
        }
        Some(ttl) => ttl,
        None => default,
    }
}

pub(super) fn validate_console(
    ctx: &mut Ctx<'_>,
    reader: &dyn SourceReader,
    raw: &RawConsole,
) -> ConsoleSettings {
    let operator_group = raw.operator_group.as_ref().and_then(|group| {
        let text = group.get_ref().trim();
        if text.is_empty() || crate::text::invisible_char(text).is_some() || text.len() > 256 {
            ctx.report(
                group,
                "console.operator_group must be a group name (visible text, at most 256 bytes)",
            );
            None
        } else {
            Some(text.to_owned())
        }
    });
    ConsoleSettings {
        operator_group,
        session_lifetime: bounded(
            ctx,
            raw.session_lifetime.as_ref(),
            "console.session_lifetime",
            DEFAULT_SESSION_LIFETIME,
            MAX_SESSION_LIFETIME,
        ),
        sign_in_link_lifetime: bounded(
            ctx,
            raw.sign_in_link_lifetime.as_ref(),
            "console.sign_in_link_lifetime",
            DEFAULT_SIGN_IN_LINK_LIFETIME,
            MAX_SIGN_IN_LINK_LIFETIME,
        ),
        oidc: raw
            .oidc
            .as_ref()
            .and_then(|oidc| validate_oidc(ctx, reader, oidc)),
    }
}
