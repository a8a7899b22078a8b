//! Time-dependent behaviour on the kit's fake clock: the test moves time, nothing sleeps.

use crate::harness::{Harness, LARGE};
use serde_json::json;
use std::time::Duration;

async fn pending_payment(harness: &Harness) -> (String, String, String) {
    let payer = harness.identity("payments-agent");
    let (_, txn) = harness.task(&payer, "payments", &["payments"]).await;
    let answer = harness
        .exchange(
            &payer,
            &txn,
            "payments",
            "create",
            &[("authorization_details", LARGE)],
        )
        .await;
    assert_eq!(
        answer.code(),
        (400, "authorization_pending"),
        "{}",
        answer.body
    );
    let approval = answer.body["approval_id"].as_str().unwrap().to_owned();
    (payer, txn, approval)
}

async fn poll(harness: &Harness, payer: &str, txn: &str, approval: &str) -> crate::harness::Answer {
    harness
        .exchange(
            payer,
            txn,
            "payments",
            "create",
            &[("authorization_details", LARGE), ("approval_id", approval)],
        )
        .await
}

#[tokio::test]
async fn a_task_token_stops_working_once_the_clock_passes_the_task_lifetime() {
    let harness = Harness::example();
    let agent = harness.identity("release-bot");
    let opened = harness
        .open_task(
            &agent,
            json!({ "intent": "brief", "purpose": "release", "user": "alice", "lifetime_seconds": 60 }),
        )
        .await;
    assert_eq!(opened.status.as_u16(), 201, "{}", opened.body);
    let txn = opened.body["txn_token"].as_str().unwrap();
    let answer = harness.exchange(&agent, txn, "ci", "run_tests", &[]).await;
    assert_eq!(answer.status.as_u16(), 200, "{}", answer.body);
    assert!(
        answer.body["expires_in"].as_i64().unwrap() <= 60,
        "{}",
        answer.body
    );
    harness.kit.clock.advance(Duration::from_secs(61));
    let answer = harness.exchange(&agent, txn, "ci", "run_tests", &[]).await;
    assert_eq!(answer.code(), (401, "invalid_grant"), "{}", answer.body);
}

#[tokio::test]
async fn an_access_token_introspects_inactive_once_the_clock_passes_its_expiry() {
    let harness = Harness::example();
    let agent = harness.identity("release-bot");
    let (_, txn) = harness.task(&agent, "release", &["ci"]).await;
    let answer = harness.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(answer.status.as_u16(), 200, "{}", answer.body);
    let token = answer.body["access_token"].as_str().unwrap().to_owned();
    let expires_in = answer.body["expires_in"].as_u64().unwrap();
    let basic = harness.system_basic("ci").await;
    let form = [("token", token.as_str())];
    let introspect = || harness.form("/oauth/introspect", Some(&basic), &form);
    assert_eq!(introspect().await.body["active"], true);
    harness
        .kit
        .clock
        .advance(Duration::from_secs(expires_in - 1));
    assert_eq!(
        introspect().await.body["active"],
        true,
        "a second before expiry"
    );
    harness.kit.clock.advance(Duration::from_secs(2));
    let answer = introspect().await;
    assert_eq!(answer.status.as_u16(), 200);
    assert_eq!(answer.body, json!({ "active": false }));
}

#[tokio::test]
async fn an_undecided_approval_expires_when_the_clock_passes_its_ttl() {
    let harness = Harness::example();
    let (payer, txn, approval) = pending_payment(&harness).await;
    harness.kit.clock.advance(Duration::from_secs(599));
    let answer = poll(&harness, &payer, &txn, &approval).await;
    assert_eq!(
        answer.code(),
        (400, "authorization_pending"),
        "{}",
        answer.body
    );
    harness.kit.clock.advance(Duration::from_secs(2));
    let answer = poll(&harness, &payer, &txn, &approval).await;
    assert_eq!(answer.code(), (400, "expired_token"), "{}", answer.body);
    assert!(answer.body.get("access_token").is_none());
}

#[tokio::test]
async fn polls_faster_than_the_interval_slow_down_until_the_clock_moves_on() {
    let harness = Harness::example();
    let (payer, txn, approval) = pending_payment(&harness).await;
    let answer = poll(&harness, &payer, &txn, &approval).await;
    assert_eq!(
        answer.code(),
        (400, "authorization_pending"),
        "{}",
        answer.body
    );
    let answer = poll(&harness, &payer, &txn, &approval).await;
    assert_eq!(answer.code(), (400, "slow_down"), "{}", answer.body);
    harness.kit.clock.advance(Duration::from_secs(1));
    let answer = poll(&harness, &payer, &txn, &approval).await;
    assert_eq!(
        answer.code(),
        (400, "slow_down"),
        "a second later: {}",
        answer.body
    );
    harness.kit.clock.advance(Duration::from_secs(1));
    let answer = poll(&harness, &payer, &txn, &approval).await;
    assert_eq!(
        answer.code(),
        (400, "authorization_pending"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn an_approved_payment_is_released_once_and_not_after_the_approval_expired() {
    let harness = Harness::example();
    let (payer, txn, approval) = pending_payment(&harness).await;
    let bob = harness.kit.person("bob", &["payments-owners"]).unwrap();
    let decided = harness
        .json(
            &format!("/v1/approvals/{approval}/approve"),
            Some(&bob),
            json!({ "reason": "invoice checked" }),
        )
        .await;
    assert_eq!(decided.status.as_u16(), 200, "{}", decided.body);
    // Approved, but the approval's ten minutes run out before the agent comes back.
    harness.kit.clock.advance(Duration::from_secs(601));
    let answer = poll(&harness, &payer, &txn, &approval).await;
    assert_eq!(answer.code(), (400, "expired_token"), "{}", answer.body);
}
