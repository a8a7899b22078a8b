//! Doors and options no other test walks through: the health and fallback answers, the admin
//! credential door, the use-report door's refusals, the CLI's revocations, unfreeze and approval
//! commands, identity lifetimes, the purpose budgets and `off_plan = "allow"`, and the gateway's
//! file-held credential, header stripping and records of refused calls.

use crate::delegation::{delegate, reason};
use crate::gateway::{GIT_SECRET, gateway_config, git_token, upstream, wait_for_trace};
use crate::harness::{Server, cli, example_config, stderr, stdout, temp_dir};
use base64::Engine as _;
use serde_json::{Value, json};

fn data_dir(server: &Server) -> &str {
    server.data_dir.to_str().unwrap()
}

/// `handoff ARGS... --data-dir DIR`, which must succeed; its stdout.
fn cli_ok(server: &Server, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--data-dir", data_dir(server)]);
    let output = cli(&all);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stdout(&output)
}

/// A JWT's claims, read without verifying (the server verified it; the test reads a field).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn jti(token: &str) -> String {
    claims(token)["jti"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn health_the_fallback_admin_credentials_and_use_reports_answer_as_documented() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let client = &server.client;

    let health = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({ "status": "ok" })
    );

    let missing = client
        .get(format!("{}/v1/nowhere", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"], "not_found");

    // Only the operator registers a system credential; the secret it returns authenticates.
    let url = format!("{}/v1/admin/credentials", server.base);
    let anonymous = client
        .post(&url)
        .json(&json!({ "system": "ci" }))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let (status, body) = server.admin("credentials", json!({ "system": "ci" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["system"], "ci");
    let secret = body["client_secret"].as_str().unwrap().to_owned();
    let (status, answer) = server.introspect("ci", &secret, "not-a-token").await;
    assert_eq!((status, answer), (200, json!({ "active": false })));
    let (status, _) = server.introspect("ci", "wrong-secret", "not-a-token").await;
    assert_eq!(status, 401);
    let (status, body) = server
        .admin("credentials", json!({ "system": "nowhere" }))
        .await;
    assert!((400..500).contains(&status), "{status} {body}");

    // The use-report door takes only use records, only of the caller's own system.
    let agent = server.identity("release-bot");
    let (task, _) = server.task(&agent, "release", &["ci"]).await;
    let uses = format!("{}/v1/gateway/uses", server.base);
    let report = |system: &str, secret: Option<&str>, body: String| {
        let mut request = client
            .post(&uses)
            .header("content-type", "application/json")
            .body(body);
        if let Some(secret) = secret {
            request = request.basic_auth(system, Some(secret));
        }
        async move {
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            (status, answer.text().await.unwrap())
        }
    };
    let use_of = |system: &str, kind: &str| {
        let audience = format!("https://{system}.example.com");
        let token = json!({ "jti": "jti-1", "aud": audience, "scope": "ci:read", "exp": 0 });
        json!({ "events": [{
            "kind": kind, "task": task, "system": system, "actor": "forged", "token": token
        }] })
        .to_string()
    };
    let (status, body) = report("ci", None, use_of("ci", "use")).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_client"), "{body}");
    let (status, body) = report("ci", Some("wrong"), use_of("ci", "use")).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = report("ci", Some(&secret), "{not json".to_owned()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_request"), "{body}");
    let (status, body) = report("ci", Some(&secret), use_of("git", "use")).await;
    assert_eq!(status, 403, "another system's uses: {body}");
    assert!(body.contains("access_denied"), "{body}");
    let (status, body) = report("ci", Some(&secret), use_of("ci", "revoke")).await;
    assert_eq!(status, 403, "not a use record: {body}");
    let untokened =
        json!({ "events": [{ "kind": "use", "task": task, "system": "ci" }] }).to_string();
    let (status, body) = report("ci", Some(&secret), untokened).await;
    assert_eq!(status, 403, "a use under no token: {body}");
    assert!(body.contains("names no token"), "{body}");
    let (status, body) = report("ci", Some(&secret), use_of("ci", "use")).await;
    assert_eq!(status, 204, "{body}");
    // What was accepted is recorded as the gateway's, whatever actor the body claimed.
    let trace = wait_for_trace(&server, &task, "actor=gateway:ci").await;
    assert!(!trace.contains("forged"), "{trace}");
}

#[tokio::test]
async fn the_cli_revokes_a_token_a_delegation_and_an_agent_and_unfreezes_a_system() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let secret = server.system_secret("ci");
    let agent = server.identity("release-bot");
    let worker = server.identity("test-worker");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;

    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let out = cli_ok(
        &server,
        &["revoke", "token", &jti(&token), "--reason", "leaked"],
    );
    assert!(out.contains("revoked"), "{out}");
    let (_, answer) = server.introspect("ci", &secret, &token).await;
    assert_eq!(answer, json!({ "active": false }));

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
    let worker_txn = delegated["txn_token"].as_str().unwrap();
    let (status, body) = server
        .exchange(&worker, worker_txn, "ci", "run_tests", &[])
        .await;
    assert_eq!(status, 200, "{body}");
    cli_ok(
        &server,
        &[
            "revoke",
            "delegation",
            delegated["delegation_id"].as_str().unwrap(),
            "--reason",
            "worker misbehaved",
        ],
    );
    let (status, body) = server
        .exchange(&worker, worker_txn, "ci", "run_tests", &[])
        .await;
    assert_eq!(
        (status, reason(&body)),
        (403, "delegation_revoked"),
        "{body}"
    );

    cli_ok(&server, &["freeze", "ci", "--reason", "incident"]);
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!((status, reason(&body)), (403, "system_frozen"), "{body}");
    cli_ok(&server, &["unfreeze", "ci", "--reason", "incident closed"]);
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "unfrozen: {body}");

    cli_ok(
        &server,
        &["revoke", "agent", "release-bot", "--reason", "retired"],
    );
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = server
        .open_task(
            &agent,
            json!({ "intent": "again", "purpose": "release", "user": "alice" }),
        )
        .await;
    assert_eq!((status, reason(&body)), (403, "agent_revoked"), "{body}");
}

#[tokio::test]
async fn approvals_are_listed_by_system_and_denied_from_the_cli() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let bob = server.approver("bob", &["customer-data-owners", "payments-owners"]);
    // One pending crm write and one pending payment.
    let support = server.identity("support-bot");
    let (_, txn) = server.task(&support, "support", &["crm"]).await;
    let (status, body) = server
        .exchange(&support, &txn, "crm", "update_customer", &[])
        .await;
    assert_eq!(status, 400, "{body}");
    let crm = body["approval_id"].as_str().unwrap().to_owned();
    let payer = server.identity("payments-agent");
    let (_, pay_txn) = server.task(&payer, "payments", &["payments"]).await;
    let large = r#"[{"type":"payments","amount":250000,"currency":"EUR","creditor":"ACME GmbH"}]"#;
    let (status, body) = server
        .exchange(
            &payer,
            &pay_txn,
            "payments",
            "create",
            &[("authorization_details", large)],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let payment = body["approval_id"].as_str().unwrap().to_owned();

    let approvals = |args: &[&str]| {
        let mut all = vec!["approvals"];
        all.extend_from_slice(args);
        all.extend(["--server", server.base.as_str(), "--token", bob.as_str()]);
        cli(&all)
    };
    let listed = approvals(&["list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let all = stdout(&listed);
    assert!(all.contains(&crm) && all.contains(&payment), "{all}");
    let listed = approvals(&["list", "--system", "crm"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let crm_only = stdout(&listed);
    assert!(crm_only.contains(&crm), "{crm_only}");
    assert!(!crm_only.contains(&payment), "{crm_only}");

    let denied = approvals(&["deny", &crm, "--reason", "not this customer"]);
    assert!(denied.status.success(), "{}", stderr(&denied));
    let (_, shown) = server
        .approvals(&bob, "GET", &format!("/{crm}"), None)
        .await;
    assert_eq!(shown["status"], "denied", "{shown}");
    let (status, body) = server
        .exchange(
            &support,
            &txn,
            "crm",
            "update_customer",
            &[("approval_id", crm.as_str())],
        )
        .await;
    assert_eq!((status, reason(&body)), (403, "approval_denied"), "{body}");
}

#[tokio::test]
async fn identity_lifetimes_purpose_budgets_and_off_plan_allow_are_honoured() {
    let dir = temp_dir();
    let config = example_config(dir.path(), |text| {
        text.replace(
            "lifetime = \"2h\"\nmax_exchanges = 50",
            "lifetime = \"2h\"\nmax_exchanges = 2",
        )
        .replace(
            "lifetime = \"4h\"\nmax_systems = 3",
            "lifetime = \"4h\"\nmax_systems = 1\noff_plan = \"allow\"",
        )
    });
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("max_exchanges = 2") && text.contains("off_plan = \"allow\""));
    let server = Server::start_with(&dir.path().join("data"), Some(&config));

    // `identity issue --lifetime`.
    let short = cli_ok(
        &server,
        &[
            "identity",
            "issue",
            "--agent",
            "release-bot",
            "--lifetime",
            "90s",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let claims = claims(short.trim());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        90,
        "{claims}"
    );

    // max_exchanges = 2 for support.
    let support = server.identity("support-bot");
    let (_, txn) = server.task(&support, "support", &["tickets"]).await;
    for _ in 0..2 {
        let (status, body) = server
            .exchange(&support, &txn, "tickets", "read", &[])
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = server
        .exchange(&support, &txn, "tickets", "read", &[])
        .await;
    assert_eq!((status, reason(&body)), (403, "budget_exchanges"), "{body}");

    // off_plan = "allow": a system outside the plan reaches policy, which decides.
    let agent = short.trim().to_owned();
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server.exchange(&agent, &txn, "git", "read", &[]).await;
    assert_eq!(status, 200, "off the plan, but allowed: {body}");
    // max_systems = 1: the task has reached git; ci is a second system.
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!((status, reason(&body)), (403, "budget_systems"), "{body}");
    let (status, body) = server.exchange(&agent, &txn, "git", "read", &[]).await;
    assert_eq!(status, 200, "the same system again: {body}");
}

#[tokio::test]
async fn the_gateway_reads_a_file_credential_strips_cookies_and_txn_tokens_and_records_refusals() {
    let dir = temp_dir();
    let (upstream_url, seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let secret_file = dir.path().join("git-upstream-token");
    std::fs::write(&secret_file, format!("{GIT_SECRET}-from-file\n")).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        r#"value_env = "GIT_UPSTREAM_TOKEN""#,
        &format!(r#"value_file = "{}""#, secret_file.display()),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let server = crate::gateway::start(dir.path(), &config);
    let agent = server.identity("release-bot");
    let (task, token) = git_token(&server, &agent, "read", "repo:acme/app").await;

    let response = server
        .client
        .get(format!("{}/gateway/git/repos/acme/app", server.base))
        .bearer_auth(&token)
        .header("cookie", "session=handoff-console-cookie")
        .header("txn-token", "a-transaction-token")
        .header("x-request-note", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let seen = seen.lock().await.clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {GIT_SECRET}-from-file").as_str()),
        "the credential comes from the file, trimmed"
    );
    assert_eq!(seen[0].header("cookie"), None, "{:?}", seen[0]);
    assert_eq!(seen[0].header("txn-token"), None, "{:?}", seen[0]);
    assert_eq!(seen[0].header("x-request-note"), Some("kept"));

    // A refused call is recorded with why, as a use that never reached the upstream.
    let refused = server
        .client
        .delete(format!("{}/gateway/git/repos/acme/app", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let trace = wait_for_trace(&server, &task, "route_not_mapped").await;
    assert!(trace.contains("DELETE /repos/acme/app"), "{trace}");
}
