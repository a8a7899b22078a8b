//! End-to-end tests: the real `handoff` binary on a loopback port, driven over HTTP, its tokens
//! checked with an ordinary JWT library against the served JWKS.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod agents;
mod approvals;
mod audit;
mod audit_format;
mod audit_query;
mod bounded;
mod check;
mod console;
mod containment;
mod crash;
mod delegation;
mod doors;
mod evidence;
mod evidence_cli;
mod exchange;
mod gateway;
mod gateway_tls;
mod golden;
mod hardening_http;
mod hardening_sod;
mod hardening_tokens;
mod harness;
mod hostile;
mod identity;
mod init;
mod inputs;
mod issuers;
mod keys;
mod mcp;
mod multi_node;
mod ocsf;
mod operations;
mod operator;
mod privileges;
mod python_client;
mod readme;
mod reload;
mod replay;
mod restart;
mod tasks;
mod templates;
mod trace_tree;
mod traces;
