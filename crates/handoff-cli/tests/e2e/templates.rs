//! The example's template rules over real HTTP, each permitting and then denying in the order the
//! task's history makes them (deploy-after-tests, no-external-after-PII, read-only tasks and the
//! evidence rules have their own tests in `exchange`, `containment` and `evidence`).

use crate::delegation::{delegate, reason};
use crate::harness::{Server, temp_dir};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

fn decided_by(body: &Value, policy: &str) -> bool {
    body["policies"]
        .as_array()
        .is_some_and(|p| p.contains(&json!(policy)))
}

#[tokio::test]
async fn separation_of_duties_the_task_that_opened_a_change_cannot_merge_it() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let (_, txn) = server.task(&agent, "release", &["git"]).await;
    let (status, _) = server.exchange(&agent, &txn, "git", "merge", &[]).await;
    assert_eq!(status, 200, "merging someone else's change is fine");
    let (status, _) = server.exchange(&agent, &txn, "git", "open_pr", &[]).await;
    assert_eq!(status, 200);
    let (status, body) = server.exchange(&agent, &txn, "git", "merge", &[]).await;
    assert_eq!(status, 403, "{body}");
    assert!(decided_by(&body, "no-merge-of-own-change"), "{body}");

    // A delegate of another task may read but never merge.
    let (_, other) = server.task(&agent, "release", &["git"]).await;
    let (_, delegated) = delegate(
        &server,
        &agent,
        &other,
        "review-worker",
        &["git:read", "git:merge"],
        None,
    )
    .await;
    let child = delegated["txn_token"].as_str().unwrap();
    let worker = server.identity("review-worker");
    let (status, _) = server.exchange(&worker, child, "git", "read", &[]).await;
    assert_eq!(status, 200);
    let (status, body) = server.exchange(&worker, child, "git", "merge", &[]).await;
    assert_eq!(status, 403, "{body}");
    assert!(decided_by(&body, "delegates-never-merge"), "{body}");
}

#[tokio::test]
async fn a_per_task_rate_limit_allows_three_payments_then_denies() {
    let dir = temp_dir();
    let server = Server::in_process(dir.path(), None);
    let payer = server.identity("payments-agent");
    let (_, txn) = server.task(&payer, "payments", &["payments"]).await;
    let small = r#"[{"type":"payments","amount":1000,"currency":"EUR","creditor":"ACME"}]"#;
    for _ in 0..3 {
        // Short-lived tokens, so the live-token budget (2) never decides.
        let (status, body) = server
            .exchange(
                &payer,
                &txn,
                "payments",
                "create",
                &[
                    ("authorization_details", small),
                    ("requested_lifetime", "1"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        server.advance(Duration::from_millis(1100));
    }
    let (status, body) = server
        .exchange(
            &payer,
            &txn,
            "payments",
            "create",
            &[("authorization_details", small)],
        )
        .await;
    assert_eq!((status, reason(&body)), (403, "forbidden"), "{body}");
    assert!(decided_by(&body, "payments-per-task-limit"), "{body}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_per_agent_spend_limit_counts_the_agents_payments_across_its_tasks() {
    // The example's limit (50,000.00 a day) with a lower threshold, so a few payments reach it.
    let dir = temp_dir();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    copy_dir(&example, &dir.path().join("deployment"));
    let payments = dir.path().join("deployment/policies/payments.cedar");
    let text = std::fs::read_to_string(&payments).unwrap();
    assert!(text.contains("> 5000000"));
    std::fs::write(&payments, text.replace("> 5000000", "> 150000")).unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        Some(&dir.path().join("deployment/handoff.toml")),
    );
    let payer = server.identity("payments-agent");
    let pay = |amount: i64| {
        json!([{ "type": "payments", "amount": amount, "currency": "EUR", "creditor": "ACME" }])
            .to_string()
    };
    let (_, first) = server.task(&payer, "payments", &["payments"]).await;
    let (status, body) = server
        .exchange(
            &payer,
            &first,
            "payments",
            "create",
            &[("authorization_details", &pay(100000))],
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Another task of the same agent: its spend today is already 1,000.00.
    let (_, second) = server.task(&payer, "payments", &["payments"]).await;
    let (status, body) = server
        .exchange(
            &payer,
            &second,
            "payments",
            "create",
            &[("authorization_details", &pay(60000))],
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        decided_by(&body, "payments-spend-per-agent-per-day"),
        "{body}"
    );
    let (status, body) = server
        .exchange(
            &payer,
            &second,
            "payments",
            "create",
            &[("authorization_details", &pay(40000))],
        )
        .await;
    assert_eq!(status, 200, "what still fits is permitted: {body}");
}
