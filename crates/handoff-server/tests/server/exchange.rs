//! One handoff through the router: open a task, exchange it, check the token like a resource
//! server would.

use crate::harness::Harness;
use axum::http::{StatusCode, header};
use serde_json::json;

#[tokio::test]
async fn a_task_opens_and_exchanges_for_a_token_the_served_jwks_verifies() {
    let harness = Harness::example();
    let agent = harness.identity("release-bot");
    let (task, txn) = harness.task(&agent, "release", &["ci", "git"]).await;
    let answer = harness.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(answer.body["token_type"], "Bearer");
    assert_eq!(answer.body["scope"], "ci:run_tests");
    let token = answer.body["access_token"].as_str().unwrap();
    let claims = harness
        .verify_access_token(token, "https://ci.example.com")
        .await;
    assert_eq!(claims["txn"], task);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["act"]["sub"], "release-bot");
    assert_eq!(claims["scope"], "ci:run_tests");
    assert_eq!(
        claims["iat"].as_i64().unwrap(),
        harness.kit.handoff.now().seconds(),
        "minted at the kit's clock"
    );
}

#[tokio::test]
async fn a_task_opens_through_the_token_endpoint_too() {
    let harness = Harness::example();
    let agent = harness.identity("release-bot");
    let details =
        json!({ "intent": "ship it", "purpose": "release", "user": "alice", "plan": ["ci"] })
            .to_string();
    let answer = harness
        .form(
            "/oauth/token",
            None,
            &[
                ("grant_type", crate::harness::EXCHANGE),
                ("requested_token_type", crate::harness::TXN),
                ("subject_token", &agent),
                ("subject_token_type", crate::harness::JWT),
                ("scope", "release"),
                ("request_details", &details),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["issued_token_type"], crate::harness::TXN);
    assert!(answer.body["access_token"].as_str().is_some());
}

#[tokio::test]
async fn a_denied_exchange_answers_403_with_its_reason_and_is_recorded() {
    let harness = Harness::example();
    let agent = harness.identity("release-bot");
    let (_, txn) = harness.task(&agent, "release", &["ci"]).await;
    let before = harness.records().await;
    let answer = harness.exchange(&agent, &txn, "git", "push", &[]).await;
    assert_eq!(answer.code(), (403, "access_denied"), "{}", answer.body);
    assert_eq!(answer.body["reason"], "outside_plan");
    assert!(answer.body.get("access_token").is_none());
    assert_eq!(
        harness.records().await,
        before + 1,
        "the refusal is recorded"
    );
}
