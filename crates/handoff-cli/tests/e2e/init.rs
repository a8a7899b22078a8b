//! `handoff init DIR`: a starter deployment that `handoff check` and `handoff policy test`
//! accept as written, and that a folder already in use is never written into.

use crate::harness::{cli, stderr, stdout, temp_dir};

#[test]
fn init_writes_a_starter_that_check_and_policy_test_accept() {
    let dir = temp_dir();
    let target = dir.path().join("deploy");
    let output = cli(&["init", target.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    for file in [
        "handoff.toml",
        "issuer-jwks.json",
        "policies/tasks.cedar",
        "policies/release.cedar",
        "policy-tests/release.toml",
    ] {
        assert!(target.join(file).is_file(), "{file} was not written");
    }
    let config = target.join("handoff.toml");
    let config = config.to_str().unwrap();
    let check = cli(&["check", "--config", config]);
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );
    let tests = target.join("policy-tests");
    let tested = cli(&[
        "policy",
        "test",
        tests.to_str().unwrap(),
        "--config",
        config,
    ]);
    assert!(
        tested.status.success(),
        "{}{}",
        stdout(&tested),
        stderr(&tested)
    );
    assert!(
        stdout(&tested).contains("6 passed, 0 failed"),
        "{}",
        stdout(&tested)
    );

    // The placeholder issuer key is a real public key, but its private half was never kept.
    let jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(target.join("issuer-jwks.json")).unwrap())
            .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert!(jwks["keys"][0].get("d").is_none(), "{jwks}");
}

#[test]
fn init_refuses_a_folder_that_is_not_empty_and_leaves_it_alone() {
    let dir = temp_dir();
    let mine = dir.path().join("handoff.toml");
    std::fs::write(&mine, "my own config\n").unwrap();
    let output = cli(&["init", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    assert!(stderr(&output).contains("not empty"), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "my own config\n");
    assert!(!dir.path().join("policies").exists());

    // An empty folder that exists already is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let output = cli(&["init", empty.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
}
