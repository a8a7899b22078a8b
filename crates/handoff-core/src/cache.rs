//! A bounded cache of verification results keyed by the SHA-256 of the token, each valid until
//! the token's own expiry: a token is verified once, then recognised for a hash and a lookup.
//! Full, it evicts the entries least worth keeping (quick_cache's CLOCK-Pro), one at a time, so a
//! flood of new tokens never empties it at once; hits and misses are counted for `/metrics`.

use crate::hash::sha256;
use std::sync::atomic::{AtomicU64, Ordering};

/// Entries the cache holds at most (about).
pub const DEFAULT_LIMIT: usize = 50_000;

pub struct VerifiedCache<T> {
    entries: quick_cache::sync::Cache<[u8; 32], (T, i64)>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Lookups answered from the cache and lookups that had to verify, since the cache was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounts {
    pub hits: u64,
    pub misses: u64,
}

impl std::ops::Add for CacheCounts {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            hits: self.hits + other.hits,
            misses: self.misses + other.misses,
        }
    }
}

impl<T: Clone> VerifiedCache<T> {
    pub fn new(limit: usize) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(limit),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn key(token: &str) -> [u8; 32] {
        sha256(token.as_bytes())
    }

    /// The cached value, if its token has not expired at `now_seconds`; an expired entry leaves.
    pub fn get(&self, key: &[u8; 32], now_seconds: i64) -> Option<T> {
        let found = match self.entries.get(key) {
            Some((value, exp)) if exp >= now_seconds => Some(value),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The value, removed, if its token has not expired at `now_seconds`; not counted as a hit
    /// or a miss.
    pub fn take(&self, key: &[u8; 32], now_seconds: i64) -> Option<(T, i64)> {
        self.entries
            .remove(key)
            .map(|(_, entry)| entry)
            .filter(|(_, exp)| *exp >= now_seconds)
    }

    pub fn insert(&self, key: [u8; 32], value: T, expires_at_seconds: i64) {
        self.entries.insert(key, (value, expires_at_seconds));
    }

    pub fn counts(&self) -> CacheCounts {
        CacheCounts {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_entry_is_gone_and_an_expired_one_is_not_given() {
        let cache = VerifiedCache::new(10);
        let key = VerifiedCache::<u32>::key("token");
        cache.insert(key, 7, 100);
        assert_eq!(cache.take(&key, 100), Some((7, 100)));
        assert_eq!(cache.take(&key, 100), None);
        cache.insert(key, 8, 100);
        assert_eq!(cache.take(&key, 101), None);
        assert!(cache.is_empty());
        assert_eq!(cache.counts(), CacheCounts::default());
    }

    #[test]
    fn a_full_cache_evicts_some_entries_not_all_and_counts_hits_and_misses() {
        let cache = VerifiedCache::new(100);
        for n in 0..1_000u32 {
            cache.insert(VerifiedCache::<u32>::key(&n.to_string()), n, 10);
        }
        // Bounded, yet not emptied the way a clear-all at the limit would leave it.
        assert!(cache.len() <= 110, "{}", cache.len());
        assert!(cache.len() >= 50, "{}", cache.len());
        let last = VerifiedCache::<u32>::key("999");
        assert_eq!(cache.get(&last, 10), Some(999));
        assert_eq!(cache.get(&last, 11), None, "expired");
        assert_eq!(cache.get(&last, 10), None, "an expired entry leaves");
        assert_eq!(cache.counts(), CacheCounts { hits: 1, misses: 2 });
    }
}
