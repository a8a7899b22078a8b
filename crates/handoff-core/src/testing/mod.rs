//! The test kit (feature `test-util`, off by default): a [`Kit`] builds a real [`crate::Handoff`]
//! from config text with a [`FakeClock`], [`FixedRandomness`], generated keys and a store wrapped
//! in a [`FailingStore`], so tests advance time instead of sleeping and switch the store off to
//! see every door fail closed. Nothing here is compiled into a default build.

mod failing_store;
mod kit;

pub use crate::clock::FakeClock;
pub use crate::random::FixedRandomness;
pub use failing_store::FailingStore;
pub use kit::{Kit, KitBuilder, KitError, MemoryReader, RecordingNotifier};
