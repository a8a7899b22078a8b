//! Delegation with attenuation: a delegate acts in the parent task, never beyond what it was
//! handed, never longer, with the whole actor chain in its tokens; revoking the parent cuts it.

use crate::harness::{Server, temp_dir};
use serde_json::{Value, json};
use std::time::Duration;

/// `POST /v1/delegations` as `identity`.
pub async fn delegate(
    server: &Server,
    identity: &str,
    txn: &str,
    delegate: &str,
    scope: &[&str],
    lifetime: Option<u32>,
) -> (u16, Value) {
    let mut body = json!({ "txn_token": txn, "delegate": delegate, "scope": scope });
    if let Some(seconds) = lifetime {
        body["lifetime_seconds"] = json!(seconds);
    }
    let response = server
        .client
        .post(format!("{}/v1/delegations", server.base))
        .bearer_auth(identity)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The deny reason of a refusal, or its OAuth error code.
pub fn reason(body: &Value) -> &str {
    body["reason"]
        .as_str()
        .or_else(|| body["error"].as_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_delegate_acts_in_the_parent_task_within_its_delegation_with_a_nested_actor_chain() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let worker = server.identity("test-worker");
    let (task, txn) = server.task(&agent, "release", &["ci", "git"]).await;

    let (status, delegated) = delegate(
        &server,
        &agent,
        &txn,
        "test-worker",
        &["ci:run_tests"],
        None,
    )
    .await;
    assert_eq!(status, 201, "{delegated}");
    assert_eq!(delegated["task_id"], task.as_str());
    assert_eq!(delegated["depth"], 1);
    let child = delegated["txn_token"].as_str().unwrap();

    let (status, body) = server
        .exchange(&worker, child, "ci", "run_tests", &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let claims = server
        .verify_access_token(
            body["access_token"].as_str().unwrap(),
            "https://ci.example.com",
        )
        .await;
    assert_eq!(claims["txn"], task.as_str());
    assert_eq!(claims["client_id"], "test-worker");
    assert_eq!(claims["act"]["sub"], "test-worker");
    assert_eq!(claims["act"]["act"]["sub"], "release-agent");
    assert_eq!(claims["del"][0], delegated["delegation_id"]);

    // Never more than delegated, never as someone else, never with the parent's token.
    let (status, body) = server.exchange(&worker, child, "ci", "deploy", &[]).await;
    assert_eq!(
        (status, reason(&body)),
        (403, "outside_delegation"),
        "{body}"
    );
    let (status, body) = server.exchange(&worker, child, "git", "read", &[]).await;
    assert_eq!(
        (status, reason(&body)),
        (403, "outside_delegation"),
        "{body}"
    );
    let intruder = server.identity("intruder");
    let (status, body) = server
        .exchange(&intruder, child, "ci", "run_tests", &[])
        .await;
    assert_eq!(
        (status, reason(&body)),
        (403, "outside_delegation"),
        "{body}"
    );
    let (status, body) = server.exchange(&worker, &txn, "ci", "run_tests", &[]).await;
    assert_eq!((status, reason(&body)), (403, "not_task_agent"), "{body}");

    // The delegate's work is the task's history: the agent may now deploy.
    let (status, body) = server.exchange(&agent, &txn, "ci", "deploy", &[]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_delegate_cannot_widen_its_delegation_outlive_it_or_go_deeper_than_configured() {
    let dir = temp_dir();
    let server = Server::in_process(dir.path(), None);
    let agent = server.identity("release-agent");
    let worker = server.identity("test-worker");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let (_, first) = delegate(
        &server,
        &agent,
        &txn,
        "test-worker",
        &["ci:run_tests"],
        Some(60),
    )
    .await;
    assert!(first["expires_in"].as_i64().unwrap() <= 60, "{first}");
    let first_txn = first["txn_token"].as_str().unwrap();

    // Widening is refused; a subset goes one level deeper.
    let (status, body) = delegate(
        &server,
        &worker,
        first_txn,
        "sub-worker",
        &["ci:deploy"],
        None,
    )
    .await;
    assert_eq!(
        (status, reason(&body)),
        (403, "outside_delegation"),
        "{body}"
    );
    let (status, second) = delegate(
        &server,
        &worker,
        first_txn,
        "sub-worker",
        &["ci:run_tests"],
        Some(1_000_000),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["depth"], 2);
    // The child asked for far more than its parent's 60 s and gets no more than them (the task
    // itself lives 4 h, so only the parent's cap holds it).
    assert!(
        second["expires_in"].as_i64().unwrap() <= 60,
        "a child never outlives its parent: {second} vs {first}"
    );
    let sub = server.identity("sub-worker");
    let (status, body) = server
        .exchange(
            &sub,
            second["txn_token"].as_str().unwrap(),
            "ci",
            "run_tests",
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let claims = server
        .verify_access_token(
            body["access_token"].as_str().unwrap(),
            "https://ci.example.com",
        )
        .await;
    assert_eq!(
        claims["act"]["act"]["act"]["sub"], "release-agent",
        "three actors, nested: {claims}"
    );

    // max_depth = 2 in the example.
    let (status, body) = delegate(
        &server,
        &sub,
        second["txn_token"].as_str().unwrap(),
        "sub-sub-worker",
        &["ci:run_tests"],
        None,
    )
    .await;
    assert_eq!((status, reason(&body)), (403, "delegation_depth"), "{body}");

    // A short delegation ends on time, whatever the task's lifetime.
    let (_, brief) = delegate(
        &server,
        &agent,
        &txn,
        "test-worker",
        &["ci:run_tests"],
        Some(1),
    )
    .await;
    server.advance(Duration::from_millis(2100));
    let (status, body) = server
        .exchange(
            &worker,
            brief["txn_token"].as_str().unwrap(),
            "ci",
            "run_tests",
            &[],
        )
        .await;
    assert!(
        status == 401 || reason(&body) == "delegation_expired",
        "{status} {body}"
    );
}

#[tokio::test]
async fn revoking_a_delegation_or_the_task_cuts_every_delegate_below_it() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let worker = server.identity("test-worker");
    let sub = server.identity("sub-worker");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    let (_, first) = delegate(
        &server,
        &agent,
        &txn,
        "test-worker",
        &["ci:run_tests"],
        None,
    )
    .await;
    let first_txn = first["txn_token"].as_str().unwrap().to_owned();
    let (_, second) = delegate(
        &server,
        &worker,
        &first_txn,
        "sub-worker",
        &["ci:run_tests"],
        None,
    )
    .await;
    let second_txn = second["txn_token"].as_str().unwrap().to_owned();
    let (status, minted) = server
        .exchange(&sub, &second_txn, "ci", "run_tests", &[])
        .await;
    assert_eq!(status, 200);
    let secret = server.system_secret("ci");
    let token = minted["access_token"].as_str().unwrap();
    assert_eq!(
        server.introspect("ci", &secret, token).await.1["active"],
        true
    );

    // Revoking the first delegation cuts it and the one below it, and what they minted.
    let (status, body) = server
        .admin(
            "revoke",
            json!({ "kind": "delegation", "id": first["delegation_id"], "reason": "worker misbehaved" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .exchange(&worker, &first_txn, "ci", "run_tests", &[])
        .await;
    assert_eq!(
        (status, reason(&body)),
        (403, "delegation_revoked"),
        "{body}"
    );
    let (status, body) = server
        .exchange(&sub, &second_txn, "ci", "run_tests", &[])
        .await;
    assert_eq!(
        (status, reason(&body)),
        (403, "delegation_revoked"),
        "{body}"
    );
    assert_eq!(
        server.introspect("ci", &secret, token).await.1["active"],
        false
    );
    // The agent itself is unaffected, and may delegate afresh.
    let (status, _) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200);
    let (_, fresh) = delegate(
        &server,
        &agent,
        &txn,
        "test-worker",
        &["ci:run_tests"],
        None,
    )
    .await;
    let fresh_txn = fresh["txn_token"].as_str().unwrap();
    let (status, _) = server
        .exchange(&worker, fresh_txn, "ci", "run_tests", &[])
        .await;
    assert_eq!(status, 200);

    // Revoking the task cuts every delegate at once.
    let (status, _) = server
        .admin(
            "revoke",
            json!({ "kind": "task", "id": task, "reason": "incident" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .exchange(&worker, fresh_txn, "ci", "run_tests", &[])
        .await;
    assert_eq!((status, reason(&body)), (403, "task_revoked"), "{body}");
}

#[tokio::test]
async fn an_approval_granted_for_the_exact_request_is_usable_by_a_delegate_once() {
    const LARGE: &str =
        r#"[{"type":"payments","amount":250000,"currency":"EUR","creditor":"ACME GmbH"}]"#;
    let dir = temp_dir();
    let server = Server::in_process(dir.path(), None);
    let payer = server.identity("payments-agent");
    let (_, txn) = server.task(&payer, "payments", &["payments"]).await;
    let (status, body) = server
        .exchange(
            &payer,
            &txn,
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
            Some(json!({ "reason": "ok" })),
        )
        .await;
    assert_eq!(status, 200, "{decided}");

    // The agent hands the payment to an async worker, which makes exactly the approved request.
    let (status, delegated) = delegate(
        &server,
        &payer,
        &txn,
        "pay-worker",
        &["payments:create"],
        None,
    )
    .await;
    assert_eq!(status, 201, "{delegated}");
    let child = delegated["txn_token"].as_str().unwrap();
    let worker = server.identity("pay-worker");
    server.advance(Duration::from_millis(2100));
    let (status, body) = server
        .exchange(
            &worker,
            child,
            "payments",
            "create",
            &[("authorization_details", LARGE), ("approval_id", &approval)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let claims = server
        .verify_access_token(
            body["access_token"].as_str().unwrap(),
            "https://payments.example.com",
        )
        .await;
    assert_eq!(claims["act"]["sub"], "pay-worker");
    assert_eq!(claims["act"]["act"]["sub"], "payments-agent");

    // Single use: neither the worker nor the agent can use it again.
    server.advance(Duration::from_millis(2100));
    for (who, identity, task_token) in [("agent", &payer, txn.as_str()), ("worker", &worker, child)]
    {
        let (status, body) = server
            .exchange(
                identity,
                task_token,
                "payments",
                "create",
                &[("authorization_details", LARGE), ("approval_id", &approval)],
            )
            .await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (403, Some("approval_used")),
            "{who}: {body}"
        );
    }
}

#[tokio::test]
async fn a_delegation_outside_the_tasks_plan_or_to_an_actor_of_the_task_is_refused() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let worker = server.identity("test-worker");
    let (_, txn) = server.task(&agent, "release", &["ci", "git"]).await;

    // The plan is [ci, git]: payments cannot be handed on, alone or beside a planned action.
    for scope in [
        &["payments:approve"][..],
        &["ci:run_tests", "payments:read"][..],
    ] {
        let (status, body) = delegate(&server, &agent, &txn, "test-worker", scope, None).await;
        assert_eq!(
            (status, reason(&body)),
            (403, "outside_plan"),
            "{scope:?}: {body}"
        );
        assert!(body.get("txn_token").is_none(), "{body}");
    }

    // Never to the delegator itself, in any case.
    for delegate_id in ["release-agent", "Release-Agent"] {
        let (status, body) =
            delegate(&server, &agent, &txn, delegate_id, &["ci:run_tests"], None).await;
        assert_eq!(
            (status, reason(&body)),
            (403, "self_delegation"),
            "{delegate_id}: {body}"
        );
        assert!(body.get("txn_token").is_none(), "{body}");
    }

    // A delegate hands on neither to itself nor back up its chain.
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
    let child = first["txn_token"].as_str().unwrap();
    for delegate_id in ["test-worker", "release-agent"] {
        let (status, body) = delegate(
            &server,
            &worker,
            child,
            delegate_id,
            &["ci:run_tests"],
            None,
        )
        .await;
        assert_eq!(
            (status, reason(&body)),
            (403, "self_delegation"),
            "{delegate_id}: {body}"
        );
    }
    // Another workload, within the plan, is still delegated to.
    let (status, body) = delegate(
        &server,
        &worker,
        child,
        "sub-worker",
        &["ci:run_tests"],
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
}
