//! A task's story as a tree: `GET /v1/tasks/{id}/trace` and `handoff trace` show every handoff of
//! a multi-system task in order with its decision and why, the delegates' work under their
//! delegation, and a sub-delegate's under its parent's.

use crate::delegation::delegate;
use crate::harness::{Server, cli, stderr, stdout, temp_dir};
use serde_json::Value;

/// `(kind, outcome, system, actions, reason)` of each step, in order.
fn shape(steps: &Value) -> Vec<(String, String, String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let e = &s["event"];
            let actions: Vec<String> = e["actions"]
                .as_array()
                .map(|a| a.iter().map(text).collect())
                .unwrap_or_default();
            (
                text(&e["kind"]),
                text(&e["outcome"]),
                text(&e["system"]),
                actions.join(","),
                text(&e["reason"]),
            )
        })
        .collect()
}

fn step(
    kind: &str,
    outcome: &str,
    system: &str,
    actions: &str,
    reason: &str,
) -> (String, String, String, String, String) {
    (
        kind.into(),
        outcome.into(),
        system.into(),
        actions.into(),
        reason.into(),
    )
}

/// Every sequence number in the tree, depth first.
fn seqs(steps: &Value) -> Vec<u64> {
    steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_multi_system_task_with_delegates_traces_as_a_tree_in_order_with_the_reasons() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let worker = server.identity("test-worker");
    let sub = server.identity("sub-worker");
    let (task, txn) = server.task(&agent, "release", &["ci", "git"]).await;

    let (read, _) = server.exchange(&agent, &txn, "git", "read", &[]).await;
    assert_eq!(read, 200);
    let (status, body) = server.exchange(&agent, &txn, "ci", "deploy", &[]).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("no_permit")),
        "{body}"
    );
    let (status, first) = delegate(
        &server,
        &agent,
        &txn,
        "test-worker",
        &["ci:run_tests"],
        None,
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let first_txn = first["txn_token"].as_str().unwrap().to_owned();
    let (status, _) = server
        .exchange(&worker, &first_txn, "ci", "run_tests", &[])
        .await;
    assert_eq!(status, 200);
    let (status, second) = delegate(
        &server,
        &worker,
        &first_txn,
        "sub-worker",
        &["ci:run_tests"],
        None,
    )
    .await;
    assert_eq!(status, 201, "{second}");
    let second_txn = second["txn_token"].as_str().unwrap().to_owned();
    let (status, minted) = server
        .exchange(&sub, &second_txn, "ci", "run_tests", &[])
        .await;
    assert_eq!(status, 200, "{minted}");
    let claims = server
        .verify_access_token(
            minted["access_token"].as_str().unwrap(),
            "https://ci.example.com",
        )
        .await;
    let (status, body) = server
        .exchange(&worker, &first_txn, "ci", "deploy", &[])
        .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("outside_delegation")),
        "{body}"
    );
    // The delegates' tests are the task's history: the agent may deploy now.
    let (status, _) = server.exchange(&agent, &txn, "ci", "deploy", &[]).await;
    assert_eq!(status, 200);

    let response = server
        .client
        .get(format!("{}/v1/tasks/{task}/trace", server.base))
        .bearer_auth(server.operator_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let trace: Value = response.json().await.unwrap();

    assert_eq!(trace["task"]["id"], task.as_str());
    assert_eq!(trace["task"]["agent"], "release-agent");
    assert_eq!(trace["task"]["purpose"], "release");
    assert_eq!(trace["task"]["plan"], serde_json::json!(["ci", "git"]));
    assert!(
        trace["task"]["created_at"].as_str().unwrap().ends_with('Z'),
        "{trace}"
    );

    // The agent's own steps, in order, with the decision and why.
    assert_eq!(
        shape(&trace["steps"]),
        [
            step("task_open", "permit", "-", "", "-"),
            step("exchange", "permit", "git", "git:read", "-"),
            step("exchange", "deny", "ci", "ci:deploy", "no_permit"),
            step("delegate", "permit", "-", "ci:run_tests", "-"),
            step("exchange", "permit", "ci", "ci:deploy", "-"),
        ],
        "{trace:#}"
    );
    let deploy = &trace["steps"][4]["event"];
    assert!(
        deploy["policies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "deploy-after-tests"),
        "{deploy}"
    );
    assert_eq!(
        trace["steps"][3]["event"]["delegation"],
        first["delegation_id"]
    );

    // The first delegate's work under its delegation, the second's under the first.
    let outer = &trace["delegations"][0];
    assert_eq!(
        trace["delegations"].as_array().unwrap().len(),
        1,
        "{trace:#}"
    );
    assert_eq!(outer["id"], first["delegation_id"]);
    assert_eq!(
        (outer["delegate"].as_str(), outer["depth"].as_u64()),
        (Some("test-worker"), Some(1))
    );
    assert_eq!(
        shape(&outer["steps"]),
        [
            step("exchange", "permit", "ci", "ci:run_tests", "-"),
            step("delegate", "permit", "-", "ci:run_tests", "-"),
            step("exchange", "deny", "ci", "ci:deploy", "outside_delegation"),
        ],
        "{trace:#}"
    );
    let inner = &outer["delegations"][0];
    assert_eq!(inner["id"], second["delegation_id"]);
    assert_eq!(
        inner["actors"],
        serde_json::json!(["sub-worker", "test-worker", "release-agent"])
    );
    assert_eq!(
        shape(&inner["steps"]),
        [step("exchange", "permit", "ci", "ci:run_tests", "-")],
        "{trace:#}"
    );
    let token = &inner["steps"][0]["event"]["token"];
    assert_eq!(token["jti"], claims["jti"]);
    assert_eq!(token["aud"], "https://ci.example.com");
    assert_eq!(token["scope"], "ci:run_tests");

    // Order holds across the tree: each delegation's steps come after the step that made it.
    let mut all: Vec<u64> = [&trace["steps"], &outer["steps"], &inner["steps"]]
        .iter()
        .flat_map(|s| seqs(s))
        .collect();
    assert!(seqs(&outer["steps"])[0] > seqs(&trace["steps"])[3]);
    assert!(seqs(&inner["steps"])[0] > seqs(&outer["steps"])[1]);
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 9, "every record once");

    // The CLI prints the same tree from the data directory and through the server, the
    // delegates' lines indented under their delegation.
    let offline = cli(&["trace", &task, "--data-dir", dir.path().to_str().unwrap()]);
    assert!(offline.status.success(), "{}", stderr(&offline));
    let text = stdout(&offline);
    let secret = dir.path().join("keys/operator-secret");
    let remote = cli(&[
        "trace",
        &task,
        "--server",
        &server.base,
        "--operator-token-file",
        secret.to_str().unwrap(),
    ]);
    assert!(remote.status.success(), "{}", stderr(&remote));
    assert_eq!(stdout(&remote), text);
    let outer_line = format!(
        "delegation {} to test-worker",
        first["delegation_id"].as_str().unwrap()
    );
    let inner_line = format!(
        "    delegation {} to sub-worker",
        second["delegation_id"].as_str().unwrap()
    );
    assert!(text.lines().any(|l| l.starts_with(&outer_line)), "{text}");
    assert!(text.lines().any(|l| l.starts_with(&inner_line)), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("        ")
            && l.contains("ci:run_tests")
            && l.contains("PERMIT")),
        "the sub-delegate's grant is nested twice: {text}"
    );
    let json = cli(&[
        "trace",
        &task,
        "--json",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let from_cli: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(from_cli, trace);
}

#[tokio::test]
async fn a_trace_is_for_operators_and_an_unknown_task_is_named() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let (task, _) = server.task(&agent, "release", &["ci"]).await;
    let get = |token: Option<String>, task: String| {
        let mut request = server
            .client
            .get(format!("{}/v1/tasks/{task}/trace", server.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = get(None, task.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (status, body) = get(Some(agent.clone()), task.clone()).await;
    assert_eq!(
        status, 401,
        "an agent's identity is no operator credential: {body}"
    );
    let (status, body) = get(Some(server.operator_secret()), "task_nope".into()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    let (status, body) = get(Some(server.operator_secret()), "bad%01id".into()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let offline = cli(&[
        "trace",
        "task_nope",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!offline.status.success());
    assert!(stderr(&offline).contains("no records for task `task_nope`"));
}
