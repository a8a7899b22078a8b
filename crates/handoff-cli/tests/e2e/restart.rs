//! Keys, tasks, history and the audit chain survive a restart.

use crate::harness::{Server, cli, stdout, temp_dir};

#[tokio::test]
async fn a_restart_keeps_keys_tasks_history_and_the_chain() {
    let dir = temp_dir();
    // A fixed public URL: the issuer survives the restart (the listen port does not).
    let public = [("HANDOFF_PUBLIC_URL", "https://handoff.example.com")];
    let server = Server::start_env(dir.path(), None, &public);
    let agent = server.identity("release-bot");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let jwks_before = serde_json::to_value(server.jwks().await).unwrap();
    server.stop();

    let server = Server::start_env(dir.path(), None, &public);
    assert_eq!(
        serde_json::to_value(server.jwks().await).unwrap(),
        jwks_before,
        "the same keys"
    );
    // A token minted before the restart still verifies against the served JWKS.
    server
        .verify_access_token_from(&token, "https://ci.example.com", public[0].1)
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
    crate::harness::Server::start(dir.path()).stop();
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

#[test]
fn a_key_file_others_can_read_stops_the_start_and_no_temporary_file_is_left() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir();
    let data_dir = dir.path().to_str().unwrap();
    let issue = || cli(&["identity", "issue", "--agent", "a", "--data-dir", data_dir]);
    // Only `serve` creates a data directory.
    crate::harness::Server::start(dir.path()).stop();
    assert!(issue().status.success());
    // Secrets are written whole and linked into place: nothing but the secrets remains.
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "checkpoint-EdDSA.p8",
            "dev-issuer-ES256.p8",
            "operator-secret",
            "signing-ES256.p8"
        ],
        "{names:?}"
    );

    let key = dir.path().join("keys/dev-issuer-ES256.p8");
    for mode in [0o640, 0o604] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let output = issue();
        assert!(!output.status.success(), "mode {mode:o} was accepted");
        let why = crate::harness::stderr(&output);
        assert!(why.contains("readable by group or others"), "{why}");
    }

    // The server refuses the same way, before it listens.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = crate::harness::Server::start(dir.path());
    server.stop();
    let signing = dir.path().join("keys/signing-ES256.p8");
    std::fs::set_permissions(&signing, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = std::process::Command::new(crate::harness::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started on a key others can read");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut why = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut why).unwrap();
    assert!(why.contains("readable by group or others"), "{why}");
}
