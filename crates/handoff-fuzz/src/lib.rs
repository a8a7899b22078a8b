//! The bodies of Handoff's fuzz targets: each `pub fn <target>(data: &[u8])` feeds untrusted bytes
//! to the parser or verifier production uses, and asserts what must hold of what it returns.
//!
//! `fuzz/` (cargo-fuzz, nightly) wraps each in a `fuzz_target!`; `tests/smoke.rs` (stable, in
//! CI) runs the seed corpora and a few thousand deterministic mutations of them. A panic or a
//! failed assertion is a finding. See `docs/fuzzing.md`.
#![expect(
    clippy::expect_used,
    reason = "fixtures are compiled in, so failing to build one is a bug of this crate; a fuzz \
              target reports by panicking"
)]

mod approval;
mod audit;
mod config;
mod credential;
mod fixtures;
mod form;
mod json;
mod path;
mod policy;
mod sse;
mod token;

pub use approval::approval_hash;
pub use audit::audit_record;
pub use config::config_load;
pub use credential::authorization_header;
pub use fixtures::{NOW, seed_tokens};
pub use form::exchange_form;
pub use json::json_body;
pub use path::gateway_path;
pub use policy::policy_load;
pub use sse::sse_reader;
pub use token::{token_seed_verifies, token_verify};

/// One fuzz target: its name (the folder of its corpus) and its body.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order `docs/fuzzing.md` lists them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "token_verify",
        run: token_verify,
    },
    Target {
        name: "exchange_form",
        run: exchange_form,
    },
    Target {
        name: "json_body",
        run: json_body,
    },
    Target {
        name: "config_load",
        run: config_load,
    },
    Target {
        name: "policy_load",
        run: policy_load,
    },
    Target {
        name: "audit_record",
        run: audit_record,
    },
    Target {
        name: "approval_hash",
        run: approval_hash,
    },
    Target {
        name: "gateway_path",
        run: gateway_path,
    },
    Target {
        name: "sse_reader",
        run: sse_reader,
    },
    Target {
        name: "authorization_header",
        run: authorization_header,
    },
];

/// `data` split at its first newline: (first line, the rest).
fn two_parts(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (
            data.get(..at).unwrap_or_default(),
            data.get(at + 1..).unwrap_or_default(),
        ),
        None => (data, &[]),
    }
}
