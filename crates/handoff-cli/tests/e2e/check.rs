//! `handoff check` validates a deployment without serving and reports every problem at once.

use crate::harness::{cli, stderr, stdout, temp_dir};
use std::path::Path;

fn copy_example(to: &Path) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    std::fs::create_dir_all(to.join("policies")).unwrap();
    std::fs::copy(example.join("handoff.toml"), to.join("handoff.toml")).unwrap();
    std::fs::create_dir_all(to.join("evidence")).unwrap();
    std::fs::copy(
        example.join("evidence/ci-jwks.json"),
        to.join("evidence/ci-jwks.json"),
    )
    .unwrap();
    for entry in std::fs::read_dir(example.join("policies")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join("policies").join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn the_bundled_example_and_every_example_on_disk_are_valid() {
    let output = cli(&["check"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for entry in std::fs::read_dir(examples).unwrap() {
        let config = entry.unwrap().path().join("handoff.toml");
        if config.exists() {
            let output = cli(&["check", "--config", config.to_str().unwrap()]);
            assert!(
                output.status.success(),
                "{}: {}",
                config.display(),
                stderr(&output)
            );
            assert!(stdout(&output).contains("is valid"));
        }
    }
}

#[test]
fn a_broken_deployment_is_rejected_with_all_its_problems_at_once() {
    let dir = temp_dir();
    copy_example(dir.path());
    let config = dir.path().join("handoff.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace("[tokens]\n", "[tokens]\nrefresh = true\n")
        .replace("risk = \"low\"", "risk = \"trivial\"")
        .replace("[systems.git]\n", "[systems.git]\ncolour = \"blue\"\n");
    std::fs::write(&config, text).unwrap();
    std::fs::write(
        dir.path().join("policies/broken.cedar"),
        "// a comment\n\n@id(\"unparsable\")\npermit (principal, action, resource) when { context.task.labels.contains( };\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policies/typo.cedar"),
        "@id(\"typo\")\npermit (principal, action == Action::\"git:force_push\", resource);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policies/types.cedar"),
        "@id(\"bad-type\")\npermit (principal, action == Action::\"ci:deploy\", resource)\nwhen { context.task.exchanges == \"many\" };\n",
    )
    .unwrap();

    let output = cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64));
    let report = stderr(&output);
    assert!(
        report.contains("has 6 problem(s)"),
        "only the real problems, no cascade:\n{report}"
    );
    let handoff_toml = config.display().to_string();
    for expected in [
        format!("{handoff_toml}:9: unknown key `tokens.refresh`"),
        format!("{handoff_toml}:"),
        "unknown key `systems.git.colour`".to_owned(),
        "risk `trivial` must be low, medium, high or critical".to_owned(),
        "broken.cedar:4:".to_owned(),
        "typo.cedar:2:".to_owned(),
        "unrecognized action `Action::\"git:force_push\"` (no system offers `git:force_push`; `git` offers: merge, open_pr, push, read)".to_owned(),
        "types.cedar:3:".to_owned(),
    ] {
        assert!(report.contains(&expected), "missing `{expected}` in:\n{report}");
    }
    // The server refuses to start with the same problems, before binding a port.
    let output = cli(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(64));
    assert!(!dir.path().join("data").exists());
}

#[test]
fn the_bundled_policy_tests_pass_and_a_broken_case_fails_readably() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    let config = example.join("handoff.toml");
    let tests = example.join("policy-tests");
    let output = cli(&[
        "policy",
        "test",
        tests.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(stdout(&output).contains(" 0 failed"), "{}", stdout(&output));

    let dir = temp_dir();
    std::fs::write(
        dir.path().join("broken.toml"),
        "[[case]]\nname = \"deploy right away\"\ntask = { purpose = \"release\", plan = [\"ci\"] }\nrequest = { system = \"ci\", actions = [\"deploy\"] }\nexpect = \"permit\"\n",
    )
    .unwrap();
    let output = cli(&[
        "policy",
        "test",
        dir.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let report = stdout(&output);
    assert!(report.contains("FAIL  deploy right away"), "{report}");
    assert!(report.contains("expected permit, got deny"), "{report}");
    assert!(report.contains("0 passed, 1 failed"), "{report}");
}

#[test]
fn a_policy_test_denial_must_say_why_and_plan_checks_run_before_policy() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    let config = example.join("handoff.toml");
    let dir = temp_dir();
    // The first case would pass on any denial; the second expects the policy to decide, but the
    // plan check refuses first, as it does in the server.
    std::fs::write(
        dir.path().join("cases.toml"),
        r#"
[[case]]
name = "deploy is denied somehow"
task = { purpose = "release", plan = ["ci"] }
request = { system = "ci", actions = ["deploy"] }
expect = "deny"

[[case]]
name = "pushes off the plan are the policy's call"
task = { purpose = "release", plan = ["ci"] }
request = { system = "git", actions = ["push"] }
expect = "deny"
reason = "no_permit"

[[case]]
name = "pushes off the plan are refused by the plan"
task = { purpose = "release", plan = ["ci"] }
request = { system = "git", actions = ["push"] }
expect = "deny"
reason = "outside_plan"
"#,
    )
    .unwrap();
    let output = cli(&[
        "policy",
        "test",
        dir.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let report = stdout(&output);
    assert!(
        report.contains("FAIL  deploy is denied somehow"),
        "{report}"
    );
    assert!(
        report.contains("a deny case must name its `reason` or its determining `policies`"),
        "{report}"
    );
    assert!(
        report.contains("FAIL  pushes off the plan are the policy's call"),
        "{report}"
    );
    assert!(
        report.contains("expected reason `no_permit`, got `outside_plan`"),
        "{report}"
    );
    assert!(
        report.contains("ok    pushes off the plan are refused by the plan"),
        "{report}"
    );
    assert!(report.contains("1 passed, 2 failed"), "{report}");
}

#[tokio::test]
async fn the_served_bundled_deployment_has_the_policy_set_of_examples_quickstart_on_disk() {
    // The policy tests test `examples/quickstart` from disk; `handoff serve` without `--config`
    // serves the copy compiled into the binary. They must be the same policies.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    let from_disk = handoff_cli::deployment::load(Some(&example.join("handoff.toml")))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let from_disk = from_disk.policies.hash().to_owned();
    assert_eq!(from_disk.len(), 64, "{from_disk}");

    let dir = temp_dir();
    let server = crate::harness::Server::start(dir.path());
    let agent = server.identity("release-bot");
    let (task, _) = server.task(&agent, "release", &["ci"]).await;
    // The served policy set, as the running server names it in its records.
    let output = cli(&[
        "trace",
        &task,
        "--json",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let trace: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let opened = &trace["steps"][0];
    assert_eq!(
        opened["event"]["policy_set"], from_disk,
        "the compiled-in example differs from examples/quickstart: {opened}"
    );
    // `handoff check` says the same for both.
    let bundled = stdout(&cli(&["check"]));
    let on_disk = stdout(&cli(&[
        "check",
        "--config",
        example.join("handoff.toml").to_str().unwrap(),
    ]));
    let short = format!("(set {})", &from_disk[..12]);
    assert!(bundled.contains(&short), "{bundled}");
    assert!(on_disk.contains(&short), "{on_disk}");
}
