//! The HTTP interface driven in-process: `app(handoff)` over a test kit (fake clock, fixed
//! randomness, a scratch SQLite store that can be switched off), one request at a time through
//! `tower::ServiceExt::oneshot`. No process, no port, no sleep.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod discovery;
mod exchange;
mod fail_closed;
mod golden;
mod harness;
mod races;
mod time;
