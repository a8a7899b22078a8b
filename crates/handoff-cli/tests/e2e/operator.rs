//! The operator's command line: offline commands refuse a folder that holds no store (a typo
//! never creates a second, empty deployment), and revoking something Handoff never saw says so.

use crate::harness::{Server, cli, stderr, stdout, temp_dir};
use serde_json::json;

/// Every offline command that opens a data directory, with the folder to try it on.
fn offline_commands(dir: &str) -> Vec<Vec<&str>> {
    vec![
        vec![
            "revoke",
            "token",
            "tok_x",
            "--reason",
            "r",
            "--data-dir",
            dir,
        ],
        vec!["revoke", "agent", "bot", "--reason", "r", "--data-dir", dir],
        vec!["freeze", "ci", "--reason", "r", "--data-dir", dir],
        vec!["unfreeze", "ci", "--data-dir", dir],
        vec!["credentials", "issue", "--system", "ci", "--data-dir", dir],
        vec!["audit", "verify", "--data-dir", dir],
        vec!["trace", "task_x", "--data-dir", dir],
        vec!["identity", "issue", "--agent", "bot", "--data-dir", dir],
        vec![
            "approver",
            "issue",
            "--user",
            "u",
            "--group",
            "g",
            "--data-dir",
            dir,
        ],
    ]
}

#[test]
fn offline_commands_refuse_a_folder_that_holds_no_store_and_create_nothing() {
    let dir = temp_dir();
    let missing = dir.path().join("typo");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for folder in [&missing, &empty] {
        for args in offline_commands(folder.to_str().unwrap()) {
            let output = cli(&args);
            assert!(!output.status.success(), "{args:?} succeeded");
            assert!(
                stderr(&output).contains("holds no Handoff store"),
                "{args:?}: {}",
                stderr(&output)
            );
        }
    }
    assert!(!missing.exists(), "a mistyped folder was created");
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "something was written into a folder without a store"
    );
}

#[tokio::test]
async fn revoking_a_token_or_an_agent_handoff_never_saw_says_so_and_fails() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let data = server.data_dir.to_str().unwrap().to_owned();
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let records = || {
        let output = cli(&["audit", "verify", "--data-dir", &data]);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    let before = records();

    for (args, says) in [
        (
            ["revoke", "token", "tok_never_minted"],
            "no token with id `tok_never_minted`",
        ),
        (
            ["revoke", "agent", "ghost-bot"],
            "agent `ghost-bot` never held a task",
        ),
    ] {
        let mut all = args.to_vec();
        all.extend(["--reason", "typo", "--data-dir", &data]);
        let output = cli(&all);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // The admin API refuses the same, with a stable code.
    let (status, body) = server
        .admin(
            "revoke",
            json!({ "kind": "token", "id": "tok_never_minted", "reason": "typo" }),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    assert_eq!(records(), before, "a refused revocation wrote a record");

    // RFC 7009 still answers 200 for a token it does not know.
    let secret = server.system_secret("ci");
    let answer = server
        .client
        .post(format!("{}/oauth/revoke", server.base))
        .basic_auth("ci", Some(&secret))
        .form(&[("token", "not-a-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);

    // What Handoff did see is revoked as before.
    let output = cli(&[
        "revoke",
        "agent",
        "release-bot",
        "--reason",
        "retired",
        "--data-dir",
        &data,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
}

/// `handoff ARGS...` run in `cwd` with the server and operator credential in the environment.
fn remote_cli(cwd: &std::path::Path, server: &Server, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(crate::harness::binary());
    command
        .current_dir(cwd)
        .args(args)
        .env("HANDOFF_SERVER", &server.base)
        .env("HANDOFF_OPERATOR_TOKEN", server.operator_secret())
        .env("USER", "alice-ops");
    crate::bounded::output(command, crate::bounded::CLI_TIMEOUT).unwrap()
}

#[tokio::test]
async fn operator_commands_work_through_the_server_from_another_folder() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("data"));
    let agent = server.identity("release-bot");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    let (_, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    let jti = server
        .verify_access_token(
            body["access_token"].as_str().unwrap(),
            "https://ci.example.com",
        )
        .await["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let elsewhere = temp_dir();
    let ok = |args: &[&str]| {
        let output = remote_cli(elsewhere.path(), &server, args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        stdout(&output)
    };

    assert!(ok(&["freeze", "ci", "--reason", "incident 7"]).contains("froze system `ci`"));
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 403, "{body}");
    ok(&["unfreeze", "ci", "--reason", "incident 7 closed"]);
    assert_eq!(
        server
            .exchange(&agent, &txn, "ci", "run_tests", &[])
            .await
            .0,
        200
    );
    let secret = ok(&["credentials", "issue", "--system", "ci"]);
    let (status, _) = server.introspect("ci", secret.trim(), "x").await;
    assert_eq!(
        status, 200,
        "the credential issued through the server works"
    );
    assert!(ok(&["revoke", "token", &jti, "--reason", "leaked"]).contains(&jti));
    assert!(ok(&["reload"]).contains("reloaded; policy set"));
    assert!(ok(&["revoke", "task", &task, "--reason", "done badly"]).contains(&task));
    let trace = ok(&["trace", &task]);
    assert!(trace.contains("intent: \"test a release task\""), "{trace}");
    assert!(trace.contains("actor=operator:alice-ops"), "{trace}");
    let tree: serde_json::Value = serde_json::from_str(&ok(&["trace", &task, "--json"])).unwrap();
    assert_eq!(tree["task"]["id"], task.as_str());
    let kinds: Vec<&str> = tree["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["event"]["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds.first(), Some(&"task_open"), "{tree:#}");
    assert!(kinds.contains(&"revoke"), "{tree:#}");

    // Refusals come back as the server's, with a non-zero exit.
    let output = remote_cli(
        elsewhere.path(),
        &server,
        &["revoke", "agent", "ghost", "--reason", "x"],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("never held a task"),
        "{}",
        stderr(&output)
    );
    let output = remote_cli(elsewhere.path(), &server, &["trace", "task_unknown"]);
    assert!(!output.status.success());

    // `--server` and `--operator-token-file` work as well as the environment.
    let token_file = elsewhere.path().join("operator-token");
    std::fs::write(&token_file, server.operator_secret()).unwrap();
    let mut command = std::process::Command::new(crate::harness::binary());
    command.current_dir(elsewhere.path()).args([
        "revoke",
        "agent",
        "release-bot",
        "--reason",
        "retired",
        "--server",
        &server.base,
        "--operator-token-file",
        token_file.to_str().unwrap(),
    ]);
    let output = crate::bounded::output(command, crate::bounded::CLI_TIMEOUT).unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    // A wrong credential is refused by the server.
    let mut command = std::process::Command::new(crate::harness::binary());
    command
        .current_dir(elsewhere.path())
        .args(["freeze", "ci", "--reason", "x", "--server", &server.base])
        .env("HANDOFF_OPERATOR_TOKEN", "hop_wrong");
    let output = crate::bounded::output(command, crate::bounded::CLI_TIMEOUT).unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("invalid_client"),
        "{}",
        stderr(&output)
    );

    assert_eq!(
        std::fs::read_dir(elsewhere.path()).unwrap().count(),
        1,
        "nothing but the token file was written where the commands ran"
    );
}
