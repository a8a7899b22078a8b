//! Human approval gates: bound to the exact request, single use, expiring, never self-approved.

use crate::harness::{
    Server, cli, example_config, stdout, temp_dir, wait_for_notice, webhook_receiver,
};
use serde_json::{Value, json};
use std::time::Duration;

const LARGE: &str =
    r#"[{"type":"payments","amount":250000,"currency":"EUR","creditor":"ACME GmbH"}]"#;
/// The same request with its fields in another order: the binding is canonical.
const LARGE_REORDERED: &str =
    r#"[{"creditor":"ACME GmbH","currency":"EUR","amount":250000,"type":"payments"}]"#;
const CHANGED: &str =
    r#"[{"type":"payments","amount":990000,"currency":"EUR","creditor":"ACME GmbH"}]"#;

/// A payment waiting for approval, on a server whose approvals live `ttl` seconds.
async fn pending_payment_ttl(server: &Server, ttl: i64) -> (String, String, String) {
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
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "authorization_pending");
    assert_eq!(body["approver_group"], "payments-owners");
    assert_eq!(body["interval"], 2);
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!(expires_in > ttl - 60 && expires_in <= ttl, "{body}");
    (payer, txn, body["approval_id"].as_str().unwrap().to_owned())
}

/// A payment waiting for approval, with the example's 10-minute approvals.
async fn pending_payment(server: &Server) -> (String, String, String) {
    pending_payment_ttl(server, 600).await
}

async fn poll(
    server: &Server,
    agent: &str,
    txn: &str,
    approval: &str,
    details: &str,
) -> (u16, Value) {
    server
        .exchange(
            agent,
            txn,
            "payments",
            "create",
            &[
                ("authorization_details", details),
                ("approval_id", approval),
            ],
        )
        .await
}

#[tokio::test]
async fn a_large_payment_waits_for_an_owner_and_the_approval_mints_exactly_once() {
    let dir = temp_dir();
    // Approvals live 2 minutes here, under the 5 minutes payments tokens may otherwise live: the
    // token an approval releases must not outlive it.
    let config = example_config(dir.path(), |text| {
        text.replace("ttl = \"10m\"", "ttl = \"2m\"")
    });
    let server = Server::in_process(dir.path(), Some(&config));
    let (payer, txn, approval) = pending_payment_ttl(&server, 120).await;

    // Polling like an OAuth device client: pending, and slow_down when too fast.
    let (status, body) = poll(&server, &payer, &txn, &approval, LARGE).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "authorization_pending")
    );
    let (status, body) = poll(&server, &payer, &txn, &approval, LARGE).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "slow_down")
    );

    // The owner sees what they approve: intent, for whom, history, the exact request, risk.
    let bob = server.approver("bob", &["payments-owners"]);
    let (status, list) = server.approvals(&bob, "GET", "?status=pending", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["approvals"].as_array().unwrap().len(), 1);
    let (status, shown) = server
        .approvals(&bob, "GET", &format!("/{approval}"), None)
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["task_context"]["intent"], "test a payments task");
    assert_eq!(shown["user"], "alice");
    assert_eq!(shown["risk"], "critical");
    assert_eq!(shown["authorization_details"][0]["amount"], 250000);
    assert!(
        !shown["task_context"]["history"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let (status, decided) = server
        .approvals(
            &bob,
            "POST",
            &format!("/{approval}/approve"),
            Some(json!({ "reason": "invoice 7 checked" })),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "approved");

    // A different amount on the poll is refused, approved or not.
    server.advance(Duration::from_millis(2100));
    let (status, body) = poll(&server, &payer, &txn, &approval, CHANGED).await;
    assert_eq!(
        (status, body["reason"].as_str().unwrap()),
        (403, "approval_mismatch"),
        "{body}"
    );

    let (status, body) = poll(&server, &payer, &txn, &approval, LARGE_REORDERED).await;
    assert_eq!(status, 200, "{body}");
    let claims = server
        .verify_access_token(
            body["access_token"].as_str().unwrap(),
            "https://payments.example.com",
        )
        .await;
    assert_eq!(
        claims["authorization_details"],
        serde_json::from_str::<Value>(LARGE).unwrap()
    );
    let (_, shown) = server
        .approvals(&bob, "GET", &format!("/{approval}"), None)
        .await;
    let approval_expiry = shown["expires_at"].as_str().unwrap().to_owned();
    assert_eq!(shown["used_by_token"], claims["jti"]);
    // The approval was opened before the token's `iat` and lives 120 s, so a token capped by it
    // expires within 120 s of its `iat` (uncapped it would live the payments maximum, 300 s).
    assert!(
        claims["exp"].as_i64().unwrap() <= claims["iat"].as_i64().unwrap() + 120,
        "within the approval ({approval_expiry}): {claims}"
    );

    // Single use: the same approval gets nothing new.
    let (status, body) = poll(&server, &payer, &txn, &approval, LARGE).await;
    assert_eq!(
        (status, body["reason"].as_str().unwrap()),
        (403, "approval_used")
    );

    // The trace links request, decision and token by ids.
    let task = shown["task"].as_str().unwrap();
    let trace = stdout(&cli(&[
        "trace",
        task,
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ]));
    assert!(
        trace.contains("approval_request")
            && trace.contains("approval_decision")
            && trace.contains("bob"),
        "{trace}"
    );
    assert!(
        cli(&[
            "audit",
            "verify",
            "--data-dir",
            server.data_dir.to_str().unwrap()
        ])
        .status
        .success()
    );
}

#[tokio::test]
async fn the_agent_the_user_and_non_owners_cannot_approve() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let (_, _, approval) = pending_payment(&server).await;
    let path = format!("/{approval}/approve");
    let reason = Some(json!({ "reason": "looks fine" }));
    for (who, groups) in [
        ("payments-agent", vec!["payments-owners"]),
        ("alice", vec!["payments-owners"]),
        ("carol", vec!["support-leads"]),
    ] {
        let token = server.approver(who, &groups);
        let (status, body) = server
            .approvals(&token, "POST", &path, reason.clone())
            .await;
        assert_eq!(status, 403, "{who}: {body}");
    }
    // An agent's identity is not a person's token at all.
    let agent = server.identity("payments-agent");
    let (status, _) = server
        .approvals(&agent, "POST", &path, reason.clone())
        .await;
    assert_eq!(status, 401);
    // Nor is an approver token an agent identity.
    let bob = server.approver("bob", &["payments-owners"]);
    let (status, _) = server
        .open_task(
            &bob,
            json!({ "intent": "x", "purpose": "release", "user": "bob" }),
        )
        .await;
    assert_eq!(status, 401);
    // A reason is required.
    let (status, _) = server
        .approvals(&bob, "POST", &path, Some(json!({ "reason": " " })))
        .await;
    assert_eq!(status, 400);
    // Non-owners do not even see it.
    let carol = server.approver("carol", &["support-leads"]);
    let (_, list) = server.approvals(&carol, "GET", "", None).await;
    assert!(list["approvals"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_denied_request_yields_access_denied_and_tells_the_owners() {
    let (hook, received) = webhook_receiver().await;
    let dir = temp_dir();
    let config = example_config(dir.path(), |c| {
        format!("{c}\n[notifications]\nwebhook_url = \"{hook}\"\n")
    });
    let server = Server::start_with(&dir.path().join("data"), Some(&config));
    let (payer, txn, approval) = pending_payment(&server).await;
    let requested = wait_for_notice(&received, "approval_requested").await;
    assert_eq!(requested["owner"], "payments-owners");
    assert_eq!(requested["approval_id"], approval.as_str());

    let bob = server.approver("bob", &["payments-owners"]);
    let (status, _) = server
        .approvals(
            &bob,
            "POST",
            &format!("/{approval}/deny"),
            Some(json!({ "reason": "unknown creditor" })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = poll(&server, &payer, &txn, &approval, LARGE).await;
    assert_eq!(
        (
            status,
            body["error"].as_str().unwrap(),
            body["reason"].as_str().unwrap()
        ),
        (403, "access_denied", "approval_denied")
    );
    let denied = wait_for_notice(&received, "approval_denied").await;
    assert!(
        denied["description"]
            .as_str()
            .unwrap()
            .contains("unknown creditor")
    );
    // Deciding twice is refused.
    let (status, _) = server
        .approvals(
            &bob,
            "POST",
            &format!("/{approval}/approve"),
            Some(json!({ "reason": "oops" })),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn an_undecided_request_escalates_then_expires() {
    let (hook, received) = webhook_receiver().await;
    let dir = temp_dir();
    let config = example_config(dir.path(), |c| {
        c.replace("ttl = \"10m\"", "ttl = \"3s\"")
            .replace("escalate_after = \"5m\"", "escalate_after = \"1s\"")
            + &format!("\n[notifications]\nwebhook_url = \"{hook}\"\nformat = \"slack\"\n")
    });
    let server = Server::in_process(&dir.path().join("data"), Some(&config));
    let payer = server.identity("payments-agent");
    let (_, txn) = server.task(&payer, "payments", &["payments"]).await;
    let (_, body) = server
        .exchange(
            &payer,
            &txn,
            "payments",
            "create",
            &[("authorization_details", LARGE)],
        )
        .await;
    let approval = body["approval_id"].as_str().unwrap().to_owned();

    // Slack-format notices carry text; the escalation names the escalation contact.
    server.advance(Duration::from_millis(1100));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let texts: Vec<String> = received
            .lock()
            .await
            .iter()
            .filter_map(|n| n["text"].as_str().map(str::to_owned))
            .collect();
        if texts
            .iter()
            .any(|t| t.contains("finance-oncall@example.com") && t.contains("has waited"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no escalation arrived: {texts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.advance(Duration::from_millis(3000));
    let (status, body) = poll(&server, &payer, &txn, &approval, LARGE).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "expired_token"),
        "{body}"
    );
    let bob = server.approver("bob", &["payments-owners"]);
    let (_, shown) = server
        .approvals(&bob, "GET", &format!("/{approval}"), None)
        .await;
    assert_eq!(shown["status"], "expired");
    assert_eq!(shown["escalated"], true);
}

#[tokio::test]
async fn revoking_or_ending_the_task_while_pending_makes_the_approval_useless() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let bob = server.approver("bob", &["payments-owners"]);
    let reason = Some(json!({ "reason": "ok" }));

    let (payer, txn, approval) = pending_payment(&server).await;
    let task = server
        .approvals(&bob, "GET", &format!("/{approval}"), None)
        .await
        .1["task"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = server
        .admin(
            "revoke",
            json!({ "kind": "task", "id": task, "reason": "stop" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .approvals(
            &bob,
            "POST",
            &format!("/{approval}/approve"),
            reason.clone(),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str(), body["reason"].as_str()),
        (403, Some("access_denied"), Some("task_revoked")),
        "a revoked task's approval cannot be decided: {body}"
    );
    let (_, shown) = server
        .approvals(&bob, "GET", &format!("/{approval}"), None)
        .await;
    assert_eq!(shown["status"], "pending", "{shown}");
    let (status, body) = poll(&server, &payer, &txn, &approval, LARGE).await;
    assert_eq!(
        (status, body["reason"].as_str().unwrap()),
        (403, "task_revoked")
    );

    let (payer, txn, approval) = pending_payment(&server).await;
    let task = server
        .approvals(&bob, "GET", &format!("/{approval}"), None)
        .await
        .1["task"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = server
        .client
        .post(format!("{}/v1/tasks/{task}/end", server.base))
        .bearer_auth(&payer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (status, body) = server
        .approvals(&bob, "POST", &format!("/{approval}/approve"), reason)
        .await;
    assert_eq!(
        (status, body["error"].as_str(), body["reason"].as_str()),
        (403, Some("access_denied"), Some("task_ended")),
        "an ended task's approval cannot be decided: {body}"
    );
    let (status, body) = poll(&server, &payer, &txn, &approval, LARGE).await;
    assert_eq!(
        (status, body["reason"].as_str().unwrap()),
        (403, "task_ended")
    );
}

#[tokio::test]
async fn config_can_gate_an_action_and_a_forbid_still_wins() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("support-bot");
    let (_, txn) = server.task(&agent, "support", &["crm"]).await;
    let (status, body) = server
        .exchange(&agent, &txn, "crm", "update_customer", &[])
        .await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "authorization_pending"),
        "{body}"
    );
    assert_eq!(body["approver_group"], "customer-data-owners");
    // Above the hard cap, nothing can be approved: the forbid decides first.
    let payer = server.identity("payments-agent");
    let (_, pay) = server.task(&payer, "payments", &["payments"]).await;
    let huge = r#"[{"type":"payments","amount":5000000,"currency":"EUR","creditor":"ACME GmbH"}]"#;
    let (status, body) = server
        .exchange(
            &payer,
            &pay,
            "payments",
            "create",
            &[("authorization_details", huge)],
        )
        .await;
    assert_eq!(
        (status, body["reason"].as_str().unwrap()),
        (403, "forbidden")
    );
    // The agent may cancel its own pending request.
    let approval = {
        let (_, body) = server
            .exchange(
                &payer,
                &pay,
                "payments",
                "create",
                &[("authorization_details", LARGE)],
            )
            .await;
        body["approval_id"].as_str().unwrap().to_owned()
    };
    let (status, body) = server
        .approvals(
            &payer,
            "POST",
            &format!("/{approval}/cancel"),
            Some(json!({ "reason": "not needed" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = poll(&server, &payer, &pay, &approval, LARGE).await;
    assert_eq!(
        (status, body["reason"].as_str().unwrap()),
        (403, "approval_cancelled")
    );
}

#[tokio::test]
async fn the_approvals_cli_lists_and_approves() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let (payer, txn, approval) = pending_payment(&server).await;
    let bob = server.approver("bob", &["payments-owners"]);
    let run = |args: &[&str]| {
        let mut all = vec!["approvals"];
        all.extend_from_slice(args);
        all.extend(["--server", server.base.as_str(), "--token", bob.as_str()]);
        cli(&all)
    };
    let listed = run(&["list", "--status", "pending"]);
    assert!(listed.status.success());
    assert!(stdout(&listed).contains(&approval));
    let shown = run(&["show", &approval]);
    assert!(
        stdout(&shown).contains("\"intent\": \"test a payments task\""),
        "{}",
        stdout(&shown)
    );
    let approved = run(&["approve", &approval, "--reason", "checked"]);
    assert!(approved.status.success());
    let (status, _) = poll(&server, &payer, &txn, &approval, LARGE).await;
    assert_eq!(status, 200);
}
