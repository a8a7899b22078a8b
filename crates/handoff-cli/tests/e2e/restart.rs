//! Keys, tasks, history and the audit chain survive a restart.

use crate::harness::{Server, cli, stdout, temp_dir};

#[tokio::test]
async fn a_restart_keeps_keys_tasks_history_and_the_chain() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let jwks_before = serde_json::to_value(server.jwks().await).unwrap();
    server.stop();

    let server = Server::start(dir.path());
    assert_eq!(
        serde_json::to_value(server.jwks().await).unwrap(),
        jwks_before,
        "the same keys"
    );
    // A token minted before the restart still verifies against the served JWKS.
    server
        .verify_access_token(&token, "https://ci.example.com")
        .await;
    // The task and its history survive: tests ran before the restart, so deploy is allowed now.
    let (status, body) = server.exchange(&agent, &txn, "ci", "deploy", &[]).await;
    assert_eq!(status, 200, "{body}");
    let output = cli(&[
        "audit",
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(output.status.success());
    assert!(
        stdout(&output).contains("intact: 3 record(s)"),
        "{}",
        stdout(&output)
    );
    let output = cli(&["trace", &task, "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(
        stdout(&output)
            .lines()
            .filter(|l| l.contains("PERMIT"))
            .count(),
        3
    );
}

#[test]
fn private_keys_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir();
    let output = cli(&[
        "identity",
        "issue",
        "--agent",
        "a",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let mode = std::fs::metadata(dir.path().join("keys/dev-issuer-ES256.p8"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
