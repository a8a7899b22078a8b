//! Injected time: every expiry, lifetime and audit timestamp reads a [`Clock`].

use crate::time::Timestamp;
#[cfg(feature = "test-util")]
use std::sync::Arc;
#[cfg(feature = "test-util")]
use std::sync::atomic::{AtomicI64, Ordering};
#[cfg(feature = "test-util")]
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp::from_millis(millis)
    }
}

/// A clock tests move by hand (feature `test-util`). Clones share one time, so a test keeps a clone and advances the
/// clock a running service reads: a token or approval expires without the test sleeping.
#[cfg(feature = "test-util")]
#[derive(Clone, Debug, Default)]
pub struct FakeClock(Arc<AtomicI64>);

#[cfg(feature = "test-util")]
impl FakeClock {
    pub fn at(time: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(time.millis())))
    }

    /// A fake clock that starts at the wall clock's now (for tokens other code checks with the
    /// real time, such as the CLI's development identities).
    pub fn starting_now() -> Self {
        Self::at(SystemClock.now())
    }

    pub fn advance(&self, by: Duration) {
        let millis = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(millis, Ordering::SeqCst);
    }

    pub fn advance_seconds(&self, seconds: i64) {
        self.0
            .fetch_add(seconds.saturating_mul(1000), Ordering::SeqCst);
    }

    pub fn set(&self, time: Timestamp) {
        self.0.store(time.millis(), Ordering::SeqCst);
    }
}

#[cfg(feature = "test-util")]
impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use super::*;

    #[test]
    fn clones_of_a_fake_clock_share_one_time() {
        let clock = FakeClock::at(Timestamp::from_seconds(100));
        let seen_by_the_service = clock.clone();
        clock.advance(Duration::from_millis(2_500));
        assert_eq!(seen_by_the_service.now(), Timestamp::from_millis(102_500));
        clock.advance_seconds(-2);
        clock.set(Timestamp::from_seconds(7));
        assert_eq!(seen_by_the_service.now(), Timestamp::from_seconds(7));
    }
}
