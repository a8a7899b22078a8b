//! The audit format of `docs/audit-format.md`, checked by a verifier written apart from the Rust
//! code (`scripts/audit_verify.py`: Python's standard library and PyJWT): it accepts the test
//! vectors of `testdata/audit/` and a live log, and refuses each kind of tampering.
//!
//! Python comes from `HANDOFF_TEST_PYTHON` (set by `scripts/test`), else
//! `target/mcp-venv/bin/python`; without one that has PyJWT these tests print why and pass,
//! unless `HANDOFF_TEST_REQUIRE_PYTHON=1` (set by `scripts/test`).

use crate::harness::{Server, cli, stdout, temp_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> Option<PathBuf> {
    crate::harness::python_with(
        "jwt, cryptography",
        "PyJWT",
        "the independent audit verifier",
    )
}

/// Runs the independent verifier; (passed, its output).
fn independent(
    python: &Path,
    chain: &Path,
    jwks: &Path,
    checkpoints: Option<&Path>,
) -> (bool, String) {
    let mut command = Command::new(python);
    command
        .arg(root().join("scripts/audit_verify.py"))
        .arg("--chain")
        .arg(chain)
        .arg("--jwks")
        .arg(jwks);
    if let Some(checkpoints) = checkpoints {
        command.arg("--checkpoints").arg(checkpoints);
    }
    let output = crate::bounded::output(command, crate::bounded::CLI_TIMEOUT).unwrap();
    (output.status.success(), stdout(&output))
}

#[test]
fn the_independent_verifier_accepts_the_vectors_and_refuses_each_tampering() {
    let Some(python) = python() else { return };
    let vectors = root().join("testdata/audit");
    let at = |name: &str| vectors.join(name);
    let jwks = at("jwks.json");
    let checkpoints = at("checkpoints.jws");

    let (ok, out) = independent(&python, &at("chain.jsonl"), &jwks, Some(&checkpoints));
    assert!(ok, "{out}");
    assert!(
        out.contains("OK:") && out.contains("3 checkpoint(s)"),
        "{out}"
    );

    for (chain, with_checkpoints, why) in [
        ("truncated.jsonl", true, "records were removed from its end"),
        ("edited.jsonl", false, "record 2 was altered"),
        ("removed.jsonl", false, "record 2 is missing"),
        ("reordered.jsonl", false, "record 2 is out of place"),
        ("rewritten.jsonl", true, "the log was rewritten"),
    ] {
        let (ok, out) = independent(
            &python,
            &at(chain),
            &jwks,
            with_checkpoints.then_some(checkpoints.as_path()),
        );
        assert!(!ok, "{chain}: {out}");
        assert!(out.contains(why), "{chain}: {out}");
    }
    // The rewritten chain links up on its own: only a checkpoint gives it away.
    let (ok, out) = independent(&python, &at("rewritten.jsonl"), &jwks, None);
    assert!(ok, "{out}");
    for forged in ["forged-key.jws", "forged-signature.jws"] {
        let (ok, out) = independent(&python, &at("chain.jsonl"), &jwks, Some(&at(forged)));
        assert!(!ok, "{forged}: {out}");
        assert!(out.contains("signature does not verify"), "{forged}: {out}");
    }
}

#[tokio::test]
async fn the_independent_verifier_accepts_a_live_log_and_sees_its_truncation() {
    let Some(python) = python() else { return };
    let dir = temp_dir();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let agent = server.identity("release-bot");
    let (_task, txn) = server.task(&agent, "release", &["ci"]).await;
    server.exchange(&agent, &txn, "ci", "deploy", &[]).await;
    server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    let response = server
        .client
        .post(format!("{}/v1/audit/checkpoints", server.base))
        .bearer_auth(server.operator_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let jwks: serde_json::Value = server
        .client
        .get(format!("{}/.well-known/jwks.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let export = |format: &str, file: &str| {
        let output = cli(&[
            "audit",
            "export",
            "--format",
            format,
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        assert!(output.status.success());
        let path = dir.path().join(file);
        std::fs::write(&path, stdout(&output)).unwrap();
        path
    };
    let checkpoints = export("checkpoints", "checkpoints.jws");
    let chain = export("chain", "chain.jsonl");
    let (ok, out) = independent(&python, &chain, &jwks_file, Some(&checkpoints));
    assert!(ok, "{out}");
    assert!(out.contains("OK: 3 record(s)"), "{out}");
    assert!(
        stdout(&cli(&[
            "audit",
            "verify",
            "--data-dir",
            data.to_str().unwrap()
        ]))
        .contains("intact: 3 record(s)")
    );

    server.stop();
    rusqlite::Connection::open(data.join("handoff.db"))
        .unwrap()
        .execute("DELETE FROM audit WHERE seq = 3", [])
        .unwrap();
    let chain = export("chain", "chain.jsonl");
    let (ok, out) = independent(&python, &chain, &jwks_file, Some(&checkpoints));
    assert!(!ok, "{out}");
    assert!(
        out.contains("covers record 3, but the log ends at record 2"),
        "{out}"
    );
}
