//! Opening and ending tasks, over the JSON API and the token endpoint.

use crate::harness::{EXCHANGE, JWT, Server, TRUST_DOMAIN, TXN, temp_dir};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

fn claims(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    (header, claims)
}

#[tokio::test]
async fn opening_a_task_returns_a_transaction_token_with_the_task_context() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let (status, body) = server
        .open_task(
            &agent,
            json!({ "intent": "Ship the fix for TICKET-42", "purpose": "release", "user": "alice", "plan": ["git", "https://ci.example.com"], "lifetime_seconds": 600 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (header, claims) = claims(body["txn_token"].as_str().unwrap());
    assert_eq!(header["typ"], "txntoken+jwt");
    assert_eq!(claims["txn"], body["task_id"]);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scope"], "release");
    assert_eq!(claims["req_wl"], "release-bot");
    assert_eq!(claims["aud"], TRUST_DOMAIN);
    assert_eq!(claims["tctx"]["intent"], "Ship the fix for TICKET-42");
    assert_eq!(claims["tctx"]["plan"], json!(["ci", "git"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
}

#[tokio::test]
async fn the_token_endpoint_issues_transaction_tokens_too() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let details = json!({ "intent": "Ship it", "user": "bob", "plan": ["ci"] }).to_string();
    let (status, body) = server
        .token_form(&[
            ("grant_type", EXCHANGE),
            ("requested_token_type", TXN),
            ("subject_token", &agent),
            ("subject_token_type", JWT),
            ("scope", "release"),
            ("request_details", &details),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], TXN);
    assert_eq!(body["token_type"], "N_A");
    let txn = body["access_token"].as_str().unwrap();
    assert_eq!(claims(txn).1["sub"], "bob");
    let (status, _) = server.exchange(&agent, txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn task_requests_are_validated() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let cases = [
        (
            json!({ "purpose": "release", "user": "alice" }),
            400,
            "invalid_request",
        ),
        (
            json!({ "intent": "  ", "purpose": "release", "user": "alice" }),
            400,
            "invalid_request",
        ),
        (
            json!({ "intent": "x", "purpose": "mischief", "user": "alice" }),
            400,
            "invalid_scope",
        ),
        (
            json!({ "intent": "x", "purpose": "release", "user": "" }),
            400,
            "invalid_request",
        ),
        (
            json!({ "intent": "x", "purpose": "release", "user": "alice", "plan": ["mars"] }),
            400,
            "invalid_target",
        ),
        (
            json!({ "intent": "x", "purpose": "release", "user": "alice", "colour": "red" }),
            400,
            "invalid_request",
        ),
        (
            json!({ "intent": "x".repeat(5000), "purpose": "release", "user": "alice" }),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, error) in cases {
        let (got, answer) = server.open_task(&agent, body.clone()).await;
        assert_eq!(
            (got, answer["error"].as_str().unwrap()),
            (status, error),
            "{body}: {answer}"
        );
    }
    let response = server
        .client
        .post(format!("{}/v1/tasks", server.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn an_ended_task_mints_nothing_more() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, _) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200);

    // Only the task's agent can end it.
    let other = server.identity("other-bot");
    let url = format!("{}/v1/tasks/{task}/end", server.base);
    let response = server
        .client
        .post(&url)
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    let response = server
        .client
        .post(&url)
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["state"], "ended");
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 403);
    assert_eq!(body["reason"], "task_ended");
}

#[tokio::test]
async fn an_expired_task_mints_nothing_more() {
    let dir = temp_dir();
    let server = Server::in_process(dir.path(), None);
    let agent = server.identity("release-bot");
    let (status, body) = server
        .open_task(&agent, json!({ "intent": "brief", "purpose": "release", "user": "alice", "lifetime_seconds": 1 }))
        .await;
    assert_eq!(status, 201);
    server.advance(std::time::Duration::from_millis(2100));
    let (status, body) = server
        .exchange(
            &agent,
            body["txn_token"].as_str().unwrap(),
            "ci",
            "run_tests",
            &[],
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}
