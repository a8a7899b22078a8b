//! The seam between identity verification and the issuers whose keys are fetched over HTTP.
//!
//! The core fetches nothing. For an issuer given by `jwks_url` or `discovery`, the verifier reads
//! a [`RemoteKeys`]: the latest key set a fetcher outside the core (`handoff-issuers`) published,
//! behind an `ArcSwap`, so every request reads it without a lock. When a token names a `kid` the
//! set lacks (or no set has arrived yet), the verifier calls [`RefetchHint::unknown_key`], which
//! must return at once: the fetcher decides when (and whether, under its rate limit) to fetch.
//! The token itself is refused; a retry after the refetch succeeds.

use crate::config::IssuerConfig;
use arc_swap::ArcSwapOption;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use std::sync::Arc;

/// An issuer's usable verification keys, by `kid`.
pub struct IssuerKeySet {
    keys: Vec<(Option<String>, DecodingKey)>,
}

impl IssuerKeySet {
    /// The keys of `jwks` that can verify a signature (others, such as unknown key types, are
    /// skipped).
    pub fn from_jwks(jwks: &JwkSet) -> Self {
        Self {
            keys: jwks
                .keys
                .iter()
                .filter_map(|jwk| {
                    DecodingKey::from_jwk(jwk)
                        .ok()
                        .map(|key| (jwk.common.key_id.clone(), key))
                })
                .collect(),
        }
    }

    pub(crate) fn from_keys(keys: Vec<(Option<String>, DecodingKey)>) -> Self {
        Self { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key named `kid`; without a `kid`, the only key, if there is exactly one.
    pub(crate) fn find(&self, kid: Option<&str>) -> Option<&DecodingKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|(id, _)| id.as_deref() == Some(kid))
                .map(|(_, key)| key),
            None if self.keys.len() == 1 => self.keys.first().map(|(_, key)| key),
            None => None,
        }
    }
}

/// Told when a token names a key the issuer's current set lacks. Must not block: it runs on the
/// request path, once per such token (a flood of forged `kid`s calls it for each).
pub trait RefetchHint: Send + Sync {
    fn unknown_key(&self);
}

/// The key set of an issuer given by URL, as last published by its fetcher.
pub struct RemoteKeys {
    current: ArcSwapOption<IssuerKeySet>,
    hint: Arc<dyn RefetchHint>,
}

impl RemoteKeys {
    /// No keys yet: the issuer's tokens are refused until the first [`RemoteKeys::publish`].
    pub fn new(hint: Arc<dyn RefetchHint>) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            hint,
        }
    }

    /// Replaces the key set; requests that already read the old one finish with it.
    pub fn publish(&self, keys: IssuerKeySet) {
        self.current.store(Some(Arc::new(keys)));
    }

    /// Whether a key set has arrived.
    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }

    pub(crate) fn current(&self) -> arc_swap::Guard<Option<Arc<IssuerKeySet>>> {
        self.current.load()
    }

    pub(crate) fn hint(&self) {
        self.hint.unknown_key();
    }
}

/// Which list an issuer is declared in: the same id may appear in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IssuerList {
    /// `[[issuers]]`: agents' identities.
    Agents,
    /// `[[approver_issuers]]`: people's tokens.
    Approvers,
}

impl IssuerList {
    /// The config table's name.
    pub fn table(self) -> &'static str {
        match self {
            Self::Agents => "issuers",
            Self::Approvers => "approver_issuers",
        }
    }
}

/// Hands the verifier the fetched keys of each issuer given by URL.
pub trait RemoteKeyProvider {
    /// The keys of `issuer` (declared in `list`), or `None` when no fetcher serves it: its tokens
    /// are then refused as having no keys (the offline commands, which verify no identities).
    fn remote_keys(&self, list: IssuerList, issuer: &IssuerConfig) -> Option<Arc<RemoteKeys>>;
}

/// No fetcher: issuers given by URL have no keys.
pub struct NoRemoteKeys;

impl RemoteKeyProvider for NoRemoteKeys {
    fn remote_keys(&self, _: IssuerList, _: &IssuerConfig) -> Option<Arc<RemoteKeys>> {
        None
    }
}
