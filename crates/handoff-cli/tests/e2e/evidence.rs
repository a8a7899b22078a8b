//! Signed evidence from other systems, and windowed counters: facts policy can require that the
//! agent cannot forge, and limits that span a window or an agent's tasks.

use crate::harness::{Server, ci_evidence_key, example_config, now, sign, temp_dir};
use aws_lc_rs::hmac;
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};

const TRUST_DOMAIN: &str = "https://handoff.local";

fn evidence_claims(task: &str, id: &str, kind: &str, commit: &str) -> Value {
    json!({
        "iss": "ci",
        "aud": TRUST_DOMAIN,
        "iat": now(),
        "jti": id,
        "task": task,
        "kind": kind,
        "data": { "commit": commit },
    })
}

fn signed(key: &EncodingKey, claims: &Value) -> String {
    sign(key, Some("ci-dev-1"), Some("JWT"), claims)
}

async fn post_jwt(server: &Server, jwt: &str) -> (u16, Value) {
    let response = server
        .client
        .post(format!("{}/v1/evidence", server.base))
        .header("content-type", "application/jwt")
        .body(jwt.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn post_webhook(
    server: &Server,
    body: &Value,
    secret: &[u8],
    timestamp: i64,
) -> (u16, Value) {
    post_webhook_raw(server, serde_json::to_vec(body).unwrap(), secret, timestamp).await
}

async fn post_webhook_raw(
    server: &Server,
    body: Vec<u8>,
    secret: &[u8],
    timestamp: i64,
) -> (u16, Value) {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut message = timestamp.to_string().into_bytes();
    message.push(b'.');
    message.extend_from_slice(&body);
    let tag = hmac::sign(&key, &message);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let response = server
        .client
        .post(format!("{}/v1/evidence", server.base))
        .header("content-type", "application/json")
        .header("x-handoff-timestamp", timestamp.to_string())
        .header("x-handoff-signature", format!("sha256={hex}"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn deploy(server: &Server, agent: &str, txn: &str, commit: &str) -> (u16, Value) {
    let details = json!([{ "type": "ci", "commit": commit, "environment": "production" }]);
    server
        .exchange(
            agent,
            txn,
            "ci",
            "deploy",
            &[("authorization_details", &details.to_string())],
        )
        .await
}

#[tokio::test]
async fn good_evidence_unlocks_a_deploy_of_exactly_the_tested_commit() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");

    // Tests ran, but nothing says they passed for this commit: the agent's word is not enough.
    let (status, body) = deploy(&server, &agent, &txn, "abc123").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason"], "forbidden");
    assert!(
        body["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("deploy-only-tested-commit")),
        "{body}"
    );

    let key = ci_evidence_key();
    let (status, body) = post_jwt(
        &server,
        &signed(
            &key,
            &evidence_claims(&task, "ev-1", "tests_passed", "abc123"),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["task_id"], task.as_str());

    // Exactly the tested commit ships; another commit does not.
    let (status, body) = deploy(&server, &agent, &txn, "abc123").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = deploy(&server, &agent, &txn, "def456").await;
    assert_eq!(status, 403);

    // A failure report for a commit blocks it even after a pass.
    let (status, _) = post_jwt(
        &server,
        &signed(
            &key,
            &evidence_claims(&task, "ev-2", "tests_passed", "fff000"),
        ),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = post_jwt(
        &server,
        &signed(
            &key,
            &evidence_claims(&task, "ev-3", "tests_failed", "fff000"),
        ),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = deploy(&server, &agent, &txn, "fff000").await;
    assert_eq!(status, 403, "{body}");

    // The provenance is in the trace: which system, which key, what it said.
    let output = crate::harness::cli(&["trace", &task, "--data-dir", dir.path().to_str().unwrap()]);
    let trace = crate::harness::stdout(&output);
    assert!(trace.contains("evidence"), "{trace}");
    assert!(trace.contains("ci-dev-1"), "{trace}");
}

#[tokio::test]
async fn unsigned_wrongly_signed_unregistered_stale_or_replayed_evidence_is_refused() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    let key = ci_evidence_key();

    // Unsigned: plain JSON, and a JWT with `alg: none`.
    let response = server
        .client
        .post(format!("{}/v1/evidence", server.base))
        .json(&json!({ "system": "ci", "id": "u1", "task": task, "kind": "tests_passed", "data": { "commit": "abc123" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_evidence");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(evidence_claims(&task, "n1", "tests_passed", "abc123").to_string())
    );
    let (status, body) = post_jwt(&server, &none).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_evidence"))
    );

    // Wrongly signed: the right kid, another key.
    let (status, body) = post_jwt(
        &server,
        &signed(
            &server.dev_issuer_key(),
            &evidence_claims(&task, "w1", "tests_passed", "abc123"),
        ),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_evidence")),
        "{body}"
    );

    // From a system not registered to report evidence, and from no system at all.
    for system in ["payments", "nowhere"] {
        let mut claims = evidence_claims(&task, "s1", "tests_passed", "abc123");
        claims["iss"] = json!(system);
        let (status, body) = post_jwt(&server, &signed(&key, &claims)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_evidence")),
            "{body}"
        );
    }

    // Stale, and for another audience.
    let mut stale = evidence_claims(&task, "t1", "tests_passed", "abc123");
    stale["iat"] = json!(now() - 3600);
    let (status, _) = post_jwt(&server, &signed(&key, &stale)).await;
    assert_eq!(status, 401);
    let mut foreign = evidence_claims(&task, "t2", "tests_passed", "abc123");
    foreign["aud"] = json!("https://elsewhere.example");
    let (status, _) = post_jwt(&server, &signed(&key, &foreign)).await;
    assert_eq!(status, 401);

    // A kind CI may not report, or a field it does not declare.
    let (status, body) = post_jwt(
        &server,
        &signed(&key, &evidence_claims(&task, "k1", "deployed", "abc123")),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // None of that became a fact.
    let (status, _) = deploy(&server, &agent, &txn, "abc123").await;
    assert_eq!(status, 403);

    // Replayed: the same JWT twice, and a new JWT reusing the id.
    let good = signed(
        &key,
        &evidence_claims(&task, "r1", "tests_passed", "abc123"),
    );
    assert_eq!(post_jwt(&server, &good).await.0, 201);
    let (status, body) = post_jwt(&server, &good).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("evidence_replayed"))
    );
    let reused = signed(
        &key,
        &evidence_claims(&task, "r1", "tests_passed", "999999"),
    );
    assert_eq!(post_jwt(&server, &reused).await.0, 409);
    let (status, _) = deploy(&server, &agent, &txn, "999999").await;
    assert_eq!(status, 403, "a replay adds no fact");
    // A signed but refused report is on the record; the unsigned ones are not.
    let output = crate::harness::cli(&["trace", &task, "--data-dir", dir.path().to_str().unwrap()]);
    let trace = crate::harness::stdout(&output);
    assert!(trace.contains("reason=evidence_replayed"), "{trace}");
    assert!(!trace.contains("evidence=u1:"), "{trace}");
    let (status, _) = deploy(&server, &agent, &txn, "abc123").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn hmac_signed_webhook_evidence_is_verified_and_replays_are_refused() {
    let dir = temp_dir();
    let config = example_config(dir.path(), |text| {
        text.replace(
            "max_age = \"5m\"",
            "hmac_secret_env = \"CI_EVIDENCE_SECRET\"\nmax_age = \"5m\"",
        )
    });
    let secret = b"ci-webhook-secret";
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        &[("CI_EVIDENCE_SECRET", "ci-webhook-secret")],
    );
    let agent = server.identity("release-agent");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    let body = json!({ "system": "ci", "id": "hook-1", "task": task, "kind": "tests_passed", "data": { "commit": "abc123" } });

    let (status, answer) = post_webhook(&server, &body, b"wrong-secret", now()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("invalid_evidence"))
    );
    let (status, _) = post_webhook(&server, &body, secret, now() - 3600).await;
    assert_eq!(status, 401, "stale webhooks are refused");
    let (status, answer) = post_webhook(&server, &body, secret, now()).await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = post_webhook(&server, &body, secret, now()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("evidence_replayed"))
    );
    let (status, answer) = deploy(&server, &agent, &txn, "abc123").await;
    assert_eq!(status, 200, "{answer}");

    // Signed, but naming a member twice: which copy the signer meant is not guessed.
    for (name, text) in [
        (
            "a member twice in data",
            format!(
                r#"{{"system":"ci","id":"hook-2","task":"{task}","kind":"tests_passed","data":{{"commit":"abc123","commit":"def456"}}}}"#
            ),
        ),
        (
            "the kind twice",
            format!(
                r#"{{"system":"ci","id":"hook-3","task":"{task}","kind":"tests_failed","kind":"tests_passed","data":{{"commit":"def456"}}}}"#
            ),
        ),
    ] {
        let (status, answer) = post_webhook_raw(&server, text.into_bytes(), secret, now()).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (401, Some("invalid_evidence")),
            "{name}: {answer}"
        );
    }
    let (status, answer) = deploy(&server, &agent, &txn, "def456").await;
    assert_eq!(status, 403, "no refused evidence counts: {answer}");
}

#[tokio::test]
async fn a_per_agent_counter_spans_tasks_and_holds_under_parallel_requests() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (_, txn) = server.task(&agent, "release", &["ci"]).await;
        let (status, _) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
        assert_eq!(status, 200);
        tasks.push(txn);
    }
    // Twelve deploys at once across three tasks: the limit is five a day for the agent.
    let mut handles = Vec::new();
    for i in 0..12 {
        let txn = tasks[i % tasks.len()].clone();
        let agent = agent.clone();
        let base = server.base.clone();
        handles.push(tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(format!("{base}/oauth/token"))
                .form(&[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    ("subject_token", txn.as_str()),
                    (
                        "subject_token_type",
                        "urn:ietf:params:oauth:token-type:txn_token",
                    ),
                    ("actor_token", agent.as_str()),
                    ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                    ("audience", "ci"),
                    ("scope", "deploy"),
                ])
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        }));
    }
    let mut permitted = 0;
    for handle in handles {
        let (status, body) = handle.await.unwrap();
        match status {
            200 => permitted += 1,
            403 => assert!(
                body["policies"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("deploys-per-agent-per-day")),
                "{body}"
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(permitted, 5, "exactly the daily limit, never more");

    // Another agent's count is its own.
    let other = server.identity("other-agent");
    let (_, txn) = server.task(&other, "release", &["ci"]).await;
    server.exchange(&other, &txn, "ci", "run_tests", &[]).await;
    let (status, body) = server.exchange(&other, &txn, "ci", "deploy", &[]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn evidence_with_a_null_time_claim_is_refused_like_any_unreadable_one() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    let key = ci_evidence_key();

    // `"exp": null` is not "no expiry", nor is a null `nbf` or `iat` "no limit".
    for claim in ["exp", "nbf", "iat"] {
        let mut claims = evidence_claims(&task, &format!("null-{claim}"), "tests_passed", "abc123");
        claims[claim] = Value::Null;
        let (status, body) = post_jwt(&server, &signed(&key, &claims)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_evidence")),
            "{claim}: null: {body}"
        );
    }
    let (status, body) = deploy(&server, &agent, &txn, "abc123").await;
    assert_eq!(status, 403, "no refused evidence counts: {body}");

    // The same statement with the claim absent is accepted.
    let claims = evidence_claims(&task, "absent-exp", "tests_passed", "abc123");
    assert!(claims.get("exp").is_none());
    let (status, body) = post_jwt(&server, &signed(&key, &claims)).await;
    assert_eq!(status, 201, "{body}");
}
