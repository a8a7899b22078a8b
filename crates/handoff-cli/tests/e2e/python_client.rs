//! The Python client (`clients/python`, package `handoff-client`) against the real binary: each
//! test starts `handoff serve` and runs one file of the client's pytest suite against it.
//!
//! Python comes from `HANDOFF_TEST_PYTHON` (set by `scripts/test`, whose virtualenv has httpx
//! and pytest from scripts/mcp-requirements.txt), else `target/mcp-venv/bin/python`. Without
//! either these tests print why and pass, unless `HANDOFF_TEST_REQUIRE_PYTHON=1` (set by
//! `scripts/test`), when they fail. The server's trust domain is its own URL, so the RFC 8414
//! metadata the client discovers its endpoints from names endpoints it can reach.

use crate::harness::{Server, example_config, temp_dir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long one file of the suite may take (approval waits poll every 2 s).
const PYTEST_TIMEOUT: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python with httpx and pytest, or `None` (after saying why) when these cannot run here.
pub fn python() -> Option<PathBuf> {
    crate::harness::python_with(
        "httpx, pytest, cryptography",
        "httpx and pytest",
        "the Python client tests",
    )
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server whose trust domain is its own base URL, with the bundled example deployment.
pub fn server(dir: &Path) -> Server {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = example_config(dir, |text| {
        text.replace(
            "trust_domain = \"https://handoff.local\"",
            &format!("trust_domain = \"{base}\""),
        )
    });
    let server = Server::start_listen(dir, Some(&config), &[], &format!("127.0.0.1:{port}"));
    assert_eq!(server.base, base);
    server
}

/// Runs `clients/python/tests/FILE` with pytest against `server`; fails with pytest's output.
fn pytest(python: &Path, server: &Server, file: &str) {
    let config = server.data_dir.join("handoff.toml");
    let key = repo().join("examples/quickstart/evidence/ci-dev-signing-key.pem");
    let mut command = Command::new(python);
    command
        .current_dir(repo())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(format!("clients/python/tests/{file}"))
        .env("HANDOFF_BIN", crate::harness::binary())
        .env("HANDOFF_URL", &server.base)
        .env("HANDOFF_DATA_DIR", &server.data_dir)
        .env("HANDOFF_CONFIG", &config)
        .env("HANDOFF_EVIDENCE_KEY", key)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let output = crate::bounded::output(command, PYTEST_TIMEOUT)
        .unwrap_or_else(|hung| panic!("pytest: {hung}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pytest {file} failed:\n{stdout}\n{stderr}"
    );
    // A run that skipped (no server reached it) or collected nothing proves nothing.
    assert!(
        stdout.contains(" passed") && !stdout.contains("skipped"),
        "pytest {file} ran no test:\n{stdout}"
    );
}

fn run(file: &str) {
    let Some(python) = python() else { return };
    let dir = temp_dir();
    let server = server(dir.path());
    pytest(&python, &server, file);
}

#[test]
fn python_client_discovers_exchanges_denies_caches_and_authenticates_calls() {
    run("test_exchange.py");
}

#[test]
fn python_client_waits_for_approvals_like_a_device_client() {
    run("test_approvals.py");
}

#[test]
fn python_client_delegates_to_a_worker() {
    run("test_delegation.py");
}

#[test]
fn python_client_signs_evidence_that_a_later_decision_counts() {
    run("test_evidence.py");
}
