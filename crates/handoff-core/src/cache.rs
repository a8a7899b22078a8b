//! A bounded cache of verification results keyed by the SHA-256 of the token, each valid until
//! the token's own expiry: a token is verified once, then recognised for a hash and a lookup.

use crate::hash::sha256;
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries before the cache is cleared; entries are cheap to recompute, so clearing beats
/// tracking recency.
pub const DEFAULT_LIMIT: usize = 50_000;

pub struct VerifiedCache<T> {
    entries: Mutex<HashMap<[u8; 32], (T, i64)>>,
    limit: usize,
}

impl<T: Clone> VerifiedCache<T> {
    pub fn new(limit: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            limit,
        }
    }

    pub fn key(token: &str) -> [u8; 32] {
        sha256(token.as_bytes())
    }

    /// The cached value, if its token has not expired at `now_seconds`.
    pub fn get(&self, key: &[u8; 32], now_seconds: i64) -> Option<T> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(_, exp)| *exp >= now_seconds)
            .map(|(value, _)| value.clone())
    }

    pub fn insert(&self, key: [u8; 32], value: T, expires_at_seconds: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.limit {
                entries.clear();
            }
            entries.insert(key, (value, expires_at_seconds));
        }
    }
}
