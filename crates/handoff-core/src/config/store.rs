//! `[store]`: where the deployment's state lives.
//!
//! ```toml
//! [store]
//! url = "postgres://handoff@db.internal/handoff"          # shared by several nodes
//! key_encryption_key_file = "/run/secrets/handoff-kek"   # seals the signing keys in the store
//! ```
//!
//! Without `url`, the embedded SQLite store in the data directory. `handoff serve --store` (or
//! `HANDOFF_STORE`) overrides `url`, and `HANDOFF_KEY_ENCRYPTION_KEY_FILE` overrides
//! `key_encryption_key_file`.

use super::check::Ctx;
use super::shape::Shape;
use serde::Deserialize;
use toml::Spanned;

pub(super) const STORE_SHAPE: Shape = Shape::Fields(&[
    ("url", Shape::Leaf),
    ("key_encryption_key_file", Shape::Leaf),
]);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<Spanned<String>>,
    pub key_encryption_key_file: Option<Spanned<String>>,
}

/// Where the deployment's state lives (`[store]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreSettings {
    /// A PostgreSQL connection URL; `None`: the embedded SQLite store.
    pub url: Option<String>,
    /// The file holding the key-encryption key the signing keys are sealed with in a shared
    /// store.
    pub key_encryption_key_file: Option<String>,
}

/// The problem with `url` as a store URL, if any: a `postgres://` or `postgresql://` URL naming
/// a host, with no whitespace or control characters.
pub fn store_url_problem(url: &str) -> Option<&'static str> {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return Some("must be a PostgreSQL URL (`postgres://user@host:port/database`)");
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain whitespace or control characters");
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() {
        return Some("must name a host (`postgres://user@host/database`)");
    }
    None
}

pub(super) fn validate_store(ctx: &mut Ctx<'_>, raw: &RawStore) -> StoreSettings {
    let url = raw
        .url
        .as_ref()
        .and_then(|url| match store_url_problem(url.get_ref()) {
            Some(problem) => {
                ctx.report(url, format!("store.url {problem}"));
                None
            }
            None => Some(url.get_ref().clone()),
        });
    let key_encryption_key_file = raw.key_encryption_key_file.as_ref().and_then(|file| {
        if file.get_ref().trim().is_empty() {
            ctx.report(file, "store.key_encryption_key_file must not be empty");
            None
        } else {
            Some(file.get_ref().clone())
        }
    });
    StoreSettings {
        url,
        key_encryption_key_file,
    }
}
