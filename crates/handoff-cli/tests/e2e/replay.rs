//! Decision replay and policy diff: `handoff audit replay SEQ` decides a recorded decision again
//! under the policy set its record names, on the facts and request it saw, and agrees with the
//! record for every kind of decision (allow, deny by policy, gate, budget breach), even after a
//! reload changed the policies; `handoff policy diff --against DIR` lists exactly the recorded
//! decisions a changed policy flips, counted by policy; bad and unknown records say why.

use crate::harness::{
    Server, binary, ci_evidence_key, cli, example_text, now, sign, stderr, stdout, temp_dir,
    whole_log,
};
use handoff_core::store::Store as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LARGE: &str =
    r#"[{"type":"payments","amount":250000,"currency":"EUR","creditor":"ACME GmbH"}]"#;
const SMALL: &str =
    r#"[{"type":"payments","amount":5000,"currency":"EUR","creditor":"ACME GmbH"}]"#;
const FORBID_TESTS: &str = "@id(\"no-tests-today\")\n\
    forbid (principal, action == Action::\"ci:run_tests\", resource == System::\"ci\");\n";

/// `handoff audit replay SEQ --json` (with `--config` when given): exit code and answer.
fn replay(server: &Server, config: Option<&Path>, seq: &str) -> (i32, Value, String) {
    let mut args = vec![
        "audit".to_owned(),
        "replay".to_owned(),
        seq.to_owned(),
        "--json".to_owned(),
        "--data-dir".to_owned(),
        server.data_dir.display().to_string(),
    ];
    if let Some(config) = config {
        args.extend(["--config".to_owned(), config.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = cli(&args);
    let answer = stdout(&output);
    let value = serde_json::from_str(answer.trim()).unwrap_or(Value::Null);
    (output.status.code().unwrap(), value, stderr(&output))
}

/// The example deployment in `dir`, with its own copy of the policy folder at `dir/policies`.
fn deployment(dir: &Path) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/policies");
    copy_policies(&dir.join("policies"));
    let text = example_text().replace(
        &format!("policies = \"{}\"", example.display()),
        "policies = \"policies\"",
    );
    assert!(text.contains("policies = \"policies\""), "{text}");
    let config = dir.join("handoff.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// A copy of the example's policy folder at `to`.
fn copy_policies(to: &Path) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/policies");
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(&example).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test]
async fn replaying_records_of_every_decision_kind_gives_the_recorded_decisions() {
    let dir = temp_dir();
    let server = Server::in_process(dir.path(), None);

    // A release task whose decisions depend on its facts: deploy before tests (no permit),
    // tests, deploy after tests (permitted because tests ran), a push, then a deploy after an
    // untested push (forbidden: order, not just presence).
    // Signed evidence in between: a deploy naming a commit ships only a commit CI reported
    // passing (its fact rebuilt from the evidence record).
    let bot = server.identity("release-bot");
    let (release_task, txn) = server.task(&bot, "release", &["ci", "git"]).await;
    let tested = r#"[{"type":"ci","commit":"abc123"}]"#;
    let untested = r#"[{"type":"ci","commit":"def456"}]"#;
    for (system, action, details, status) in [
        ("ci", "deploy", None, 403),
        ("ci", "run_tests", None, 200),
        ("evidence", "tests_passed", None, 201),
        ("ci", "deploy", Some(tested), 200),
        ("ci", "deploy", Some(untested), 403),
        ("git", "push", None, 200),
        ("ci", "deploy", None, 403),
    ] {
        let (got, body) = if system == "evidence" {
            post_evidence(&server, &release_task, "abc123").await
        } else {
            let extra: Vec<(&str, &str)> = details
                .map(|d| ("authorization_details", d))
                .into_iter()
                .collect();
            server.exchange(&bot, &txn, system, action, &extra).await
        };
        assert_eq!(got, status, "{system}:{action} {body}");
        server.advance(Duration::from_millis(10));
    }
    // A read-only task that writes: containment refuses it before policy (budget breach).
    let (_, research) = server.task(&bot, "research", &[]).await;
    let (status, body) = server
        .exchange(&bot, &research, "tickets", "comment", &[])
        .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("budget_writes"))
    );
    // Payments: a small one alone (the per-agent spend counter in its context), a large one
    // gated behind the owners, approved and released.
    let payer = server.identity("payments-agent");
    let (_, pay) = server.task(&payer, "payments", &["payments"]).await;
    let (status, body) = server
        .exchange(
            &payer,
            &pay,
            "payments",
            "create",
            &[("authorization_details", SMALL)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .exchange(
            &payer,
            &pay,
            "payments",
            "create",
            &[("authorization_details", LARGE)],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    let approval = body["approval_id"].as_str().unwrap().to_owned();
    let bob = server.approver("bob", &["payments-owners"]);
    let (status, decided) = server
        .approvals(
            &bob,
            "POST",
            &format!("/{approval}/approve"),
            Some(json!({ "reason": "invoice checked" })),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    server.advance(Duration::from_millis(2100));
    let (status, body) = server
        .exchange(
            &payer,
            &pay,
            "payments",
            "create",
            &[("authorization_details", LARGE), ("approval_id", &approval)],
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let mut seen = Vec::new();
    for (seq, _, event) in whole_log(&server) {
        let (code, answer, err) = replay(&server, None, &seq.to_string());
        let kind = event["kind"].as_str().unwrap();
        if kind != "exchange" && kind != "approval_request" {
            assert_eq!(code, 3, "record {seq} ({kind}): {answer} {err}");
            assert_eq!(
                answer["cannot_replay"]["cause"], "not_a_decision",
                "{answer}"
            );
            assert!(
                err.contains(&format!("record {seq} is a `{kind}` record")),
                "{err}"
            );
            continue;
        }
        assert_eq!(code, 0, "record {seq}: {answer} {err}");
        assert_eq!(answer["agrees"], true, "{answer}");
        assert_eq!(answer["recorded"], answer["replayed"], "{answer}");
        assert_eq!(answer["policy_set"], event["policy_set"], "{answer}");
        let recorded = &answer["recorded"];
        let mut policies: Vec<Value> = recorded["policies"].as_array().cloned().unwrap_or_default();
        policies.sort_by_key(ToString::to_string);
        assert_eq!(
            Value::Array(policies),
            event["policies"]
                .clone()
                .as_array()
                .cloned()
                .map_or(json!([]), Value::Array),
            "the recorded policies are the record's: {answer}"
        );
        seen.push(format!(
            "{}:{}",
            recorded["decision"].as_str().unwrap(),
            recorded["reason"].as_str().unwrap_or("-")
        ));
    }
    for kind in [
        "allow:-",
        "deny:no_permit",
        "deny:forbidden",
        "gate:-",
        "breach:budget_writes",
    ] {
        assert!(
            seen.iter().any(|s| s == kind),
            "{kind} was replayed: {seen:?}"
        );
    }
    // The released approval's permit and the approval request both replay as the gate.
    assert_eq!(
        seen.iter().filter(|s| *s == "gate:-").count(),
        2,
        "{seen:?}"
    );

    // The fold a replay rebuilds facts with gives, over all of a task's records, exactly the
    // facts the store holds for it.
    let deployment = handoff_cli::deployment::load(None).unwrap();
    let store = handoff_cli::data_dir::DataDir::existing(&server.data_dir)
        .unwrap()
        .store()
        .unwrap();
    let tasks: std::collections::BTreeSet<String> = whole_log(&server)
        .iter()
        .filter_map(|(_, _, e)| e["task"].as_str().map(str::to_owned))
        .collect();
    assert!(
        tasks.contains(&release_task) && tasks.len() == 3,
        "{tasks:?}"
    );
    for task in tasks {
        let id = handoff_core::ids::TaskId::new(&task);
        let stored = store.task(&id).await.unwrap().unwrap().facts;
        let records = store.task_records(&id).await.unwrap();
        let rebuilt = handoff_core::replay::facts::rebuild_all(&deployment.config, &records);
        assert_eq!(rebuilt.as_ref(), Ok(&stored), "task {task}");
    }
    let release = store
        .task(&handoff_core::ids::TaskId::new(&release_task))
        .await
        .unwrap()
        .unwrap()
        .facts;
    assert!(release.evidence.contains_key("ci:tests_passed") && release.exchanges == 3);

    // The text form shows both decisions and their policies.
    let log = whole_log(&server);
    let forbidden = log
        .iter()
        .find(|(_, _, e)| e["policies"] == json!(["no-deploy-after-untested-push"]))
        .unwrap()
        .0;
    let output = cli(&[
        "audit",
        "replay",
        &forbidden.to_string(),
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let line = "deny (forbidden) by no-deploy-after-untested-push";
    assert!(text.contains(&format!("recorded: {line}")), "{text}");
    assert!(text.contains(&format!("replayed: {line}")), "{text}");
    assert!(text.contains("the replay agrees with the record"), "{text}");
}

/// CI's signed report that tests passed for `commit` in `task`.
async fn post_evidence(server: &Server, task: &str, commit: &str) -> (u16, Value) {
    let claims = json!({
        "iss": "ci",
        "aud": "https://handoff.local",
        "iat": now(),
        "jti": format!("ev-{commit}"),
        "task": task,
        "kind": "tests_passed",
        "data": { "commit": commit },
    });
    let response = server
        .client
        .post(format!("{}/v1/evidence", server.base))
        .header("content-type", "application/jwt")
        .body(sign(
            &ci_evidence_key(),
            Some("ci-dev-1"),
            Some("JWT"),
            &claims,
        ))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn reload(server: &Server) {
    let response = server
        .client
        .post(format!("{}/v1/admin/reload", server.base))
        .bearer_auth(server.operator_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn a_record_decided_before_a_reload_replays_under_its_own_policy_set() {
    let dir = temp_dir();
    let config = deployment(dir.path());
    let server = Server::start_with(&dir.path().join("data"), Some(&config));
    let bot = server.identity("release-bot");
    let (_, txn) = server.task(&bot, "release", &["ci"]).await;
    assert_eq!(
        server.exchange(&bot, &txn, "ci", "run_tests", &[]).await.0,
        200
    );
    std::fs::write(dir.path().join("policies/no-tests.cedar"), FORBID_TESTS).unwrap();
    reload(&server).await;
    assert_eq!(
        server.exchange(&bot, &txn, "ci", "run_tests", &[]).await.0,
        403
    );

    let log = whole_log(&server);
    let exchanges: Vec<&(u64, i64, Value)> = log
        .iter()
        .filter(|(_, _, e)| e["kind"] == "exchange")
        .collect();
    let [(before, _, first), (after, _, second)] = exchanges.as_slice() else {
        panic!("two exchanges: {log:?}");
    };
    assert_ne!(first["policy_set"], second["policy_set"]);

    // Replayed under the set that decided it: still allowed, though the current set forbids it.
    let (code, answer, err) = replay(&server, Some(&config), &before.to_string());
    assert_eq!(code, 0, "{answer} {err}");
    assert_eq!(answer["policy_set"], first["policy_set"]);
    assert_eq!(
        answer["replayed"],
        json!({ "decision": "allow", "policies": ["ci-run-tests"] })
    );
    let (code, answer, err) = replay(&server, Some(&config), &after.to_string());
    assert_eq!(code, 0, "{answer} {err}");
    assert_eq!(answer["policy_set"], second["policy_set"]);
    assert_eq!(
        answer["replayed"],
        json!({ "decision": "deny", "reason": "forbidden", "policies": ["no-tests-today"] })
    );

    // A set the store no longer holds is named, not guessed at.
    server.stop();
    let db = rusqlite::Connection::open(dir.path().join("data/handoff.db")).unwrap();
    db.execute(
        "DELETE FROM policy_sets WHERE hash = ?1",
        [first["policy_set"].as_str().unwrap()],
    )
    .unwrap();
    drop(db);
    let output = cli(&[
        "audit",
        "replay",
        &before.to_string(),
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains(&format!(
            "cannot replay: policy set `{}`, which decided record {before}, was not kept by this store",
            first["policy_set"].as_str().unwrap()
        )),
        "{}",
        stderr(&output)
    );
}

/// `handoff policy diff --against DIR --json [--since MS]` on the server's data directory.
/// `handoff policy diff --against DIR` on the server's data directory, with `extra` flags.
fn policy_diff(server: &Server, against: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "policy",
        "diff",
        "--against",
        against.to_str().unwrap(),
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ];
    args.extend(extra);
    cli(&args)
}

fn diff(server: &Server, against: &Path, since: Option<i64>) -> (i32, Value) {
    let since = since.map(|s| s.to_string());
    let mut extra = vec!["--json"];
    if let Some(since) = &since {
        extra.extend(["--since", since]);
    }
    let output = policy_diff(server, against, &extra);
    let value = serde_json::from_str(stdout(&output).trim()).unwrap_or(Value::Null);
    (output.status.code().unwrap(), value)
}

#[tokio::test]
async fn policy_diff_lists_exactly_the_decisions_a_changed_policy_flips() {
    let dir = temp_dir();
    let server = Server::in_process(&dir.path().join("data"), None);
    let bot = server.identity("release-bot");
    let (_, release) = server.task(&bot, "release", &["ci", "git"]).await;
    let helper = server.identity("support-bot");
    let (_, support) = server.task(&helper, "support", &["git", "tickets"]).await;
    for (identity, txn, system, action) in [
        (&bot, &release, "git", "read"),
        (&bot, &release, "ci", "run_tests"),
        (&helper, &support, "git", "read"),
        (&bot, &release, "git", "read"),
        (&helper, &support, "tickets", "read"),
        (&bot, &release, "ci", "deploy"),
        (&bot, &release, "git", "read"),
    ] {
        let (status, body) = server.exchange(identity, txn, system, action, &[]).await;
        assert_eq!(status, 200, "{system}:{action} {body}");
        server.advance(Duration::from_millis(10));
    }
    // The candidate: the same policies, but git reads only for support tasks.
    let candidate = dir.path().join("candidate");
    copy_policies(&candidate);
    let git = std::fs::read_to_string(candidate.join("git.cedar")).unwrap();
    let changed = git.replace(
        "@id(\"git-read\")\npermit (principal, action == Action::\"git:read\", resource == System::\"git\");",
        "@id(\"git-read\")\npermit (principal, action == Action::\"git:read\", resource == System::\"git\")\nwhen { context.task.purpose == \"support\" };",
    );
    assert_ne!(git, changed, "the git-read policy was changed");
    std::fs::write(candidate.join("git.cedar"), changed).unwrap();

    let log = whole_log(&server);
    let flipped: Vec<(u64, i64)> = log
        .iter()
        .filter(|(_, _, e)| {
            e["kind"] == "exchange"
                && e["purpose"] == "release"
                && e["actions"] == json!(["git:read"])
        })
        .map(|(seq, at, _)| (*seq, *at))
        .collect();
    assert_eq!(flipped.len(), 3);
    let (code, answer) = diff(&server, &candidate, None);
    assert_eq!(code, 1, "{answer}");
    let seqs: Vec<u64> = answer["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        flipped.iter().map(|f| f.0).collect::<Vec<_>>(),
        "{answer}"
    );
    assert_eq!(answer["by_change"], json!({ "allow->deny": 3 }), "{answer}");
    assert_eq!(answer["by_policy"], json!({ "git-read": 3 }), "{answer}");
    assert_eq!(
        answer["compared"], 7,
        "every exchange was decided again: {answer}"
    );
    assert_eq!(answer["skipped"], json!({}), "{answer}");
    let change = &answer["changes"][0];
    assert_eq!(
        change["recorded"],
        json!({ "decision": "allow", "policies": ["git-read"] })
    );
    assert_eq!(
        change["candidate"],
        json!({ "decision": "deny", "reason": "no_permit", "policies": [] })
    );

    // --since: only what was decided from then on.
    let (code, answer) = diff(&server, &candidate, Some(flipped[1].1));
    assert_eq!(code, 1, "{answer}");
    assert_eq!(answer["by_change"], json!({ "allow->deny": 2 }), "{answer}");

    // The unchanged policies change nothing; the text form says so.
    let same = dir.path().join("same");
    copy_policies(&same);
    let (code, answer) = diff(&server, &same, None);
    assert_eq!((code, &answer["changes"]), (0, &json!([])), "{answer}");
    let output = policy_diff(&server, &candidate, &[]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("7 decision(s) decided again, 3 would change"),
        "{text}"
    );
    assert!(text.contains("allow->deny  3"), "{text}");
    assert!(text.contains("git-read  3"), "{text}");

    // A candidate that does not load is refused like a deployment.
    std::fs::write(candidate.join("broken.cedar"), "permit (principal,;").unwrap();
    let output = policy_diff(&server, &candidate, &[]);
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("broken.cedar"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn replay_of_a_bad_or_unknown_record_says_why() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let bot = server.identity("release-bot");
    let (_, txn) = server.task(&bot, "release", &["ci"]).await;
    // Refused before policy: not a decision a replay can make again.
    let (status, _) = server.exchange(&bot, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200);
    let (status, body) = server
        .exchange(&bot, "not-a-token", "ci", "run_tests", &[])
        .await;
    assert_eq!(status, 401, "{body}");
    let last = whole_log(&server).last().unwrap().0;
    let (code, answer, err) = replay(&server, None, &last.to_string());
    assert_eq!(code, 3, "{answer}");
    assert_eq!(answer["cannot_replay"]["cause"], "not_decided_by_policy");
    assert!(
        err.contains(&format!("record {last} is a `invalid_grant` refusal")),
        "{err}"
    );

    let (code, answer, err) = replay(&server, None, &(last + 1000).to_string());
    assert_eq!(code, 3, "{answer}");
    assert_eq!(answer["cannot_replay"]["cause"], "no_record");
    assert!(
        err.contains(&format!(
            "cannot replay: there is no record {} (the chain ends at record {last})",
            last + 1000
        )),
        "{err}"
    );
    let (code, _, err) = replay(&server, None, "0");
    assert_eq!(code, 3);
    assert!(err.contains("there is no record 0"), "{err}");

    let output = Command::new(binary())
        .args(["audit", "replay", "seven", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid value 'seven'"),
        "{}",
        stderr(&output)
    );

    // A data directory that is not one.
    let output = cli(&[
        "audit",
        "replay",
        "1",
        "--data-dir",
        dir.path().join("nowhere").to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(stdout(&output).is_empty());
}
