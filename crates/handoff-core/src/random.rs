//! Injected randomness for identifiers; tests may substitute a deterministic source.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub trait Randomness: Send + Sync {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError>;
}

#[derive(Debug, thiserror::Error)]
#[error("the system random source failed")]
pub struct RandomError;

/// The operating system's CSPRNG, through aws-lc-rs.
#[derive(Debug, Default)]
pub struct SystemRandomness(aws_lc_rs::rand::SystemRandom);

impl Randomness for SystemRandomness {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        aws_lc_rs::rand::SecureRandom::fill(&self.0, buf).map_err(|_| RandomError)
    }
}

/// Deterministic "randomness" from a seed (SplitMix64), for tests: the same seed and the same
/// sequence of calls give the same ids and `jti`s in every run. Never for production: ids would
/// be guessable.
#[cfg(feature = "test-util")]
#[derive(Debug)]
pub struct FixedRandomness(std::sync::atomic::AtomicU64);

#[cfg(feature = "test-util")]
impl FixedRandomness {
    pub fn seeded(seed: u64) -> Self {
        Self(std::sync::atomic::AtomicU64::new(seed))
    }
}

#[cfg(feature = "test-util")]
impl Randomness for FixedRandomness {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        for chunk in buf.chunks_mut(8) {
            let mut z = self
                .0
                .fetch_add(GAMMA, std::sync::atomic::Ordering::SeqCst)
                .wrapping_add(GAMMA);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            for (to, from) in chunk.iter_mut().zip(z.to_be_bytes()) {
                *to = from;
            }
        }
        Ok(())
    }
}

/// A fresh identifier that sorts by when it was made: `prefix_`, the Unix time in milliseconds as
/// 12 hex digits, then 80 random bits (base64url). Rows keyed by it are appended at one end of
/// their B-tree index, as the audit chain is, instead of dirtying a page at a random place per
/// row: the commit and the checkpoint after it write fewer pages. For row keys that are not
/// secrets (task ids, token ids; the time is in the row and the token anyway), never for secrets.
pub fn new_ordered_id(
    random: &dyn Randomness,
    prefix: &str,
    now: crate::time::Timestamp,
) -> Result<String, RandomError> {
    let mut bytes = [0u8; 10];
    random.fill(&mut bytes)?;
    let millis = u64::try_from(now.millis()).unwrap_or(0) & 0xffff_ffff_ffff;
    Ok(format!(
        "{prefix}_{millis:012x}{}",
        URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A fresh 128-bit identifier with a readable prefix: `task_3q2…`.
pub fn new_id(random: &dyn Randomness, prefix: &str) -> Result<String, RandomError> {
    let mut bytes = [0u8; 16];
    random.fill(&mut bytes)?;
    Ok(format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use super::*;

    #[test]
    fn fixed_randomness_repeats_per_seed_and_differs_between_seeds() {
        let ids = |seed| {
            let random = FixedRandomness::seeded(seed);
            [new_id(&random, "t").ok(), new_id(&random, "t").ok()]
        };
        assert_eq!(ids(7), ids(7));
        assert_ne!(ids(7), ids(8));
        let [first, second] = ids(7);
        assert_ne!(first, second);
    }

    #[test]
    fn ordered_ids_sort_by_the_time_they_were_made_and_differ_within_one_millisecond() {
        use crate::time::Timestamp;
        let random = FixedRandomness::seeded(7);
        let at = |millis| new_ordered_id(&random, "tok", Timestamp::from_millis(millis)).ok();
        let made = [
            1_796_000_000_000,
            1_796_000_000_000,
            1_796_000_000_001,
            1_796_000_001_000,
            1_900_000_000_000,
        ]
        .map(at);
        assert!(made.iter().all(Option::is_some), "{made:?}");
        let made = made.map(Option::unwrap_or_default);
        let [first, same_millisecond, next, later, much_later] = made.clone();
        assert_ne!(first, same_millisecond);
        assert!(first.clone().max(same_millisecond) < next, "{made:?}");
        assert!(next < later && later < much_later, "{made:?}");
        for id in &made {
            assert!(id.starts_with("tok_") && id.len() == 4 + 12 + 14, "{id}");
        }
    }
}
