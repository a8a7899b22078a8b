//! With the store down, every door answers 503 `temporarily_unavailable`, mints nothing and
//! records nothing; with it back, the same requests succeed without a restart.

use crate::harness::{Answer, Harness, LARGE};
use serde_json::json;

/// A door's answer while the store is down: 503 with the stable code, no token of any kind.
fn failed_closed(door: &str, answer: &Answer) {
    assert_eq!(
        answer.code(),
        (503, "temporarily_unavailable"),
        "{door}: {}",
        answer.body
    );
    for field in ["access_token", "txn_token", "client_secret", "task_id"] {
        assert!(
            answer.body.get(field).is_none(),
            "{door} leaked `{field}`: {}",
            answer.body
        );
    }
    assert_eq!(answer.headers["cache-control"], "no-store", "{door}");
}

/// Everything one round of doors needs, prepared while the store is up.
struct Fixture {
    agent: String,
    task: String,
    txn: String,
    approval: String,
    bob: String,
    token: String,
    basic: String,
}

async fn fixture(harness: &Harness) -> Fixture {
    let agent = harness.identity("payments-agent");
    let (task, txn) = harness.task(&agent, "payments", &["payments"]).await;
    let pending = harness
        .exchange(
            &agent,
            &txn,
            "payments",
            "create",
            &[("authorization_details", LARGE)],
        )
        .await;
    let approval = pending.body["approval_id"].as_str().unwrap().to_owned();
    let read = harness
        .exchange(&agent, &txn, "payments", "read", &[])
        .await;
    assert_eq!(read.status.as_u16(), 200, "{}", read.body);
    Fixture {
        bob: harness.kit.person("bob", &["payments-owners"]).unwrap(),
        token: read.body["access_token"].as_str().unwrap().to_owned(),
        basic: harness.system_basic("payments").await,
        agent,
        task,
        txn,
        approval,
    }
}

/// Knocks on every door once; returns each door's name and answer.
async fn every_door(harness: &Harness, f: &Fixture) -> Vec<(&'static str, Answer)> {
    let operator = harness.operator();
    let open =
        json!({ "intent": "pay", "purpose": "payments", "user": "alice", "plan": ["payments"] });
    vec![
        (
            "token exchange",
            harness
                .exchange(&f.agent, &f.txn, "payments", "read", &[])
                .await,
        ),
        (
            "approval poll",
            harness
                .exchange(
                    &f.agent,
                    &f.txn,
                    "payments",
                    "create",
                    &[("authorization_details", LARGE), ("approval_id", &f.approval)],
                )
                .await,
        ),
        (
            "task open (JSON API)",
            harness.open_task(&f.agent, open.clone()).await,
        ),
        (
            "task open (token endpoint)",
            harness
                .form(
                    "/oauth/token",
                    None,
                    &[
                        ("grant_type", crate::harness::EXCHANGE),
                        ("requested_token_type", crate::harness::TXN),
                        ("subject_token", &f.agent),
                        ("subject_token_type", crate::harness::JWT),
                        ("scope", "payments"),
                        ("request_details", &open.to_string()),
                    ],
                )
                .await,
        ),
        (
            "task end",
            harness
                .json(&format!("/v1/tasks/{}/end", f.task), Some(&f.agent), json!({}))
                .await,
        ),
        (
            "delegation",
            harness
                .json(
                    "/v1/delegations",
                    Some(&f.agent),
                    json!({ "txn_token": f.txn, "delegate": "pay-worker", "scope": ["payments:read"] }),
                )
                .await,
        ),
        (
            "approvals list",
            harness.get("/v1/approvals?status=pending", Some(&f.bob)).await,
        ),
        (
            "approval show",
            harness
                .get(&format!("/v1/approvals/{}", f.approval), Some(&f.bob))
                .await,
        ),
        (
            "approval approve",
            harness
                .json(
                    &format!("/v1/approvals/{}/approve", f.approval),
                    Some(&f.bob),
                    json!({ "reason": "ok" }),
                )
                .await,
        ),
        (
            "introspection (system)",
            harness
                .form("/oauth/introspect", Some(&f.basic), &[("token", &f.token)])
                .await,
        ),
        (
            "introspection (operator)",
            harness
                .form(
                    "/oauth/introspect",
                    Some(&format!("Bearer {operator}")),
                    &[("token", &f.token)],
                )
                .await,
        ),
        (
            "token revocation (RFC 7009)",
            harness
                .form("/oauth/revoke", Some(&f.basic), &[("token", &f.token)])
                .await,
        ),
        (
            "admin revoke",
            harness
                .json(
                    "/v1/admin/revoke",
                    Some(&operator),
                    json!({ "kind": "task", "id": f.task, "reason": "test" }),
                )
                .await,
        ),
        (
            "admin freeze",
            harness
                .json(
                    "/v1/admin/freeze",
                    Some(&operator),
                    json!({ "system": "payments", "reason": "test" }),
                )
                .await,
        ),
        (
            "admin credentials",
            harness
                .json(
                    "/v1/admin/credentials",
                    Some(&operator),
                    json!({ "system": "git" }),
                )
                .await,
        ),
        (
            "revocation feed",
            harness
                .get("/v1/revocations", Some(&operator))
                .await,
        ),
    ]
}

#[tokio::test]
async fn every_door_answers_503_and_mints_nothing_while_the_store_is_down() {
    let harness = Harness::example();
    let fixture = fixture(&harness).await;
    let records = harness.records().await;
    let writes = harness.kit.store.writes();
    harness.kit.store.fail_all(true);
    for (door, answer) in every_door(&harness, &fixture).await {
        failed_closed(door, &answer);
    }
    assert_eq!(
        harness.kit.store.writes(),
        writes,
        "nothing reached the store"
    );
    assert_eq!(harness.records().await, records, "nothing was recorded");
}

#[tokio::test]
async fn a_grant_whose_record_cannot_be_written_is_not_handed_out() {
    let harness = Harness::example();
    let fixture = fixture(&harness).await;
    let records = harness.records().await;
    // Reads work, so the exchange is decided and its token minted; only the append fails.
    harness.kit.store.fail_writes(true);
    for (door, answer) in [
        (
            "token exchange",
            harness
                .exchange(&fixture.agent, &fixture.txn, "payments", "read", &[])
                .await,
        ),
        (
            "task open",
            harness
                .open_task(
                    &fixture.agent,
                    json!({ "intent": "pay", "purpose": "payments", "user": "alice", "plan": ["payments"] }),
                )
                .await,
        ),
        (
            "a refusal whose record fails",
            harness
                .exchange(&fixture.agent, &fixture.txn, "git", "push", &[])
                .await,
        ),
    ] {
        failed_closed(door, &answer);
    }
    assert_eq!(harness.records().await, records);
}

#[tokio::test]
async fn the_doors_recover_when_the_store_comes_back_without_a_restart() {
    let harness = Harness::example();
    let fixture = fixture(&harness).await;
    harness.kit.store.fail_all(true);
    let down = harness
        .exchange(&fixture.agent, &fixture.txn, "payments", "read", &[])
        .await;
    failed_closed("token exchange", &down);
    harness.kit.store.fail_all(false);
    let up = harness
        .exchange(&fixture.agent, &fixture.txn, "payments", "read", &[])
        .await;
    assert_eq!(up.status.as_u16(), 200, "{}", up.body);
    assert!(up.body["access_token"].as_str().is_some());
}
