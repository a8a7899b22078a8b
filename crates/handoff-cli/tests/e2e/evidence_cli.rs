//! `handoff evidence sign` and `handoff evidence send`: what a CI job runs to report
//! `tests_passed` for a commit, accepted by the server and counted by the next decision.

use crate::harness::{Server, cli, stderr, stdout, temp_dir};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn ci_key() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/quickstart/evidence/ci-dev-signing-key.pem")
}

/// `handoff evidence sign ...` for the example CI, as a CI job would run it.
fn sign(task: &str, commit: &str, extra: &[&str]) -> String {
    let key = ci_key();
    let field = format!("commit={commit}");
    let mut args = vec![
        "evidence",
        "sign",
        "--system",
        "ci",
        "--task",
        task,
        "--kind",
        "tests_passed",
        "--field",
        &field,
        "--key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = cli(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output).trim().to_owned()
}

async fn deploy(server: &Server, agent: &str, txn: &str, commit: &str) -> (u16, Value) {
    let details = json!([{ "type": "ci", "commit": commit }]).to_string();
    server
        .exchange(
            agent,
            txn,
            "ci",
            "deploy",
            &[("authorization_details", &details)],
        )
        .await
}

#[tokio::test]
async fn a_signed_and_sent_tests_passed_unlocks_a_deploy_of_that_commit_only() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = deploy(&server, &agent, &txn, "abc123").await;
    assert_eq!(status, 403, "{body}");

    // Signed with the key registered for `ci`, for the bundled deployment's trust domain.
    let jwt = sign(&task, "abc123", &["--kid", "ci-dev-1", "--lifetime", "5m"]);
    let sent = cli(&["evidence", "send", &jwt, "--server", &server.base]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    let recorded: Value = serde_json::from_str(stdout(&sent).trim()).unwrap();
    assert_eq!(recorded["task_id"], task.as_str());
    assert_eq!(recorded["kind"], "tests_passed");
    assert_eq!(recorded["system"], "ci");

    let (status, body) = deploy(&server, &agent, &txn, "abc123").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = deploy(&server, &agent, &txn, "def456").await;
    assert_eq!(status, 403, "{body}");

    // The same report again is a replay; the CLI says so and fails.
    let again = cli(&["evidence", "send", &jwt, "--server", &server.base]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("evidence_replayed"),
        "{}",
        stderr(&again)
    );

    // Without --kid the system's only key is used; each sign gets a fresh id, so it is no replay.
    let other = sign(&task, "def456", &[]);
    let sent = cli(&["evidence", "send", &other, "--server", &server.base]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    let (status, body) = deploy(&server, &agent, &txn, "def456").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn evidence_for_another_trust_domain_or_signed_with_another_key_is_refused() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let (task, _txn) = server.task(&agent, "release", &["ci"]).await;

    let elsewhere = sign(&task, "abc123", &["--audience", "https://other.example"]);
    let sent = cli(&["evidence", "send", &elsewhere, "--server", &server.base]);
    assert!(!sent.status.success());
    assert!(
        stderr(&sent).contains("invalid_evidence"),
        "{}",
        stderr(&sent)
    );

    // The dev issuer's key is an EC key too, but not one registered for `ci`.
    let foreign = dir.path().join("keys/dev-issuer-ES256.p8");
    let der = std::fs::read(&foreign).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der)
    );
    let pem_path = dir.path().join("foreign.pem");
    std::fs::write(&pem_path, pem).unwrap();
    let output = cli(&[
        "evidence",
        "sign",
        "--system",
        "ci",
        "--task",
        &task,
        "--kind",
        "tests_passed",
        "--field",
        "commit=abc123",
        "--key",
        pem_path.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let sent = cli(&[
        "evidence",
        "send",
        stdout(&output).trim(),
        "--server",
        &server.base,
    ]);
    assert!(!sent.status.success());
    assert!(
        stderr(&sent).contains("invalid_evidence"),
        "{}",
        stderr(&sent)
    );

    // A field that is not NAME=VALUE is a usage error, before anything is signed.
    let bad = cli(&[
        "evidence",
        "sign",
        "--system",
        "ci",
        "--task",
        &task,
        "--kind",
        "tests_passed",
        "--field",
        "commit",
        "--key",
        ci_key().to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("NAME=VALUE"), "{}", stderr(&bad));
}

#[tokio::test]
async fn the_ci_example_script_reports_tests_passed() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");

    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ci/report-tests-passed.sh");
    let mut command = std::process::Command::new("bash");
    command
        .arg(script)
        .env("HANDOFF", crate::harness::binary())
        .env("HANDOFF_URL", &server.base)
        .env("HANDOFF_TRUST_DOMAIN", crate::harness::TRUST_DOMAIN)
        .env("HANDOFF_TASK", &task)
        .env("HANDOFF_CI_KEY_FILE", ci_key())
        .env("COMMIT", "abc123");
    let output = crate::bounded::output(command, crate::bounded::CLI_TIMEOUT)
        .unwrap_or_else(|hung| panic!("{hung}"));
    assert!(output.status.success(), "{}", stderr(&output));
    let recorded: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(recorded["kind"], "tests_passed");

    let (status, body) = deploy(&server, &agent, &txn, "abc123").await;
    assert_eq!(status, 200, "{body}");
}
