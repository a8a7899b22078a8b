//! Revocation, introspection and containment that follow the credential and the task.

use crate::harness::{Server, cli, stderr, stdout, temp_dir};
use serde_json::{Value, json};
use std::time::Duration;

fn revoke_cli(server: &Server, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--data-dir", server.data_dir.to_str().unwrap()]);
    let output = cli(&all);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

#[tokio::test]
async fn a_token_introspects_active_then_inactive_after_its_task_is_revoked() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let secret = server.system_secret("ci");
    let agent = server.identity("release-bot");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    let (_, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    let token = body["access_token"].as_str().unwrap();

    let (status, answer) = server.introspect("ci", &secret, token).await;
    assert_eq!(status, 200);
    assert_eq!(answer["active"], true);
    assert_eq!(answer["aud"], "https://ci.example.com");
    assert_eq!(answer["scope"], "ci:run_tests");
    assert_eq!(answer["sub"], "alice");
    assert_eq!(answer["client_id"], "release-bot");
    assert_eq!(answer["txn"], task.as_str());
    assert!(answer["exp"].as_i64().is_some());

    let out = revoke_cli(
        &server,
        &["revoke", "task", &task, "--reason", "agent misbehaved"],
    );
    assert!(out.contains("revoked task"), "{out}");
    let (_, answer) = server.introspect("ci", &secret, token).await;
    assert_eq!(answer, json!({ "active": false }));
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 403);
    assert_eq!(body["reason"], "task_revoked");

    // The revocation is evidence: in the chain and in the task's trace, with who and why.
    let trace = stdout(&cli(&[
        "trace",
        &task,
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ]));
    assert!(
        trace.contains("revoke")
            && trace.contains("agent misbehaved")
            && trace.contains("actor=cli:"),
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
async fn introspection_needs_a_registered_system_credential() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let secret = server.system_secret("ci");
    let git_secret = server.system_secret("git");
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let (_, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    let token = body["access_token"].as_str().unwrap();

    let response = server
        .client
        .post(format!("{}/oauth/introspect", server.base))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body.get("active").is_none(),
        "an unauthenticated caller learns nothing"
    );
    let (status, _) = server.introspect("ci", "wrong", token).await;
    assert_eq!(status, 401);
    let (status, _) = server.introspect("mars", &secret, token).await;
    assert_eq!(status, 401);
    // Another system learns nothing about a token that is not for it.
    let (status, answer) = server.introspect("git", &git_secret, token).await;
    assert_eq!((status, answer), (200, json!({ "active": false })));
    // Garbage is simply inactive.
    let (_, answer) = server.introspect("ci", &secret, "not-a-token").await;
    assert_eq!(answer, json!({ "active": false }));
}

#[tokio::test]
async fn revoking_an_agent_cuts_all_its_tasks_and_keeps_it_out() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let secret = server.system_secret("ci");
    let agent = server.identity("release-bot");
    let other = server.identity("support-bot");
    let (_, first) = server.task(&agent, "release", &["ci"]).await;
    let (_, second) = server.task(&agent, "release", &["ci"]).await;
    let (_, theirs) = server.task(&other, "release", &["ci"]).await;
    let (_, a) = server
        .exchange(&agent, &first, "ci", "run_tests", &[])
        .await;
    let (_, b) = server
        .exchange(&agent, &second, "ci", "run_tests", &[])
        .await;

    let (status, report) = server
        .admin(
            "revoke",
            json!({ "kind": "agent", "id": "release-bot", "reason": "credential leaked" }),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["tasks"].as_array().unwrap().len(), 2);
    for token in [&a, &b] {
        let (_, answer) = server
            .introspect("ci", &secret, token["access_token"].as_str().unwrap())
            .await;
        assert_eq!(answer["active"], false);
    }
    for txn in [&first, &second] {
        let (status, body) = server.exchange(&agent, txn, "ci", "run_tests", &[]).await;
        assert_eq!(
            (status, body["reason"].as_str().unwrap()),
            (403, "task_revoked")
        );
    }
    let (status, body) = server
        .open_task(
            &agent,
            json!({ "intent": "again", "purpose": "release", "user": "alice" }),
        )
        .await;
    assert_eq!(
        (status, body["reason"].as_str().unwrap()),
        (403, "agent_revoked")
    );
    // Another agent's work goes on.
    let (status, _) = server
        .exchange(&other, &theirs, "ci", "run_tests", &[])
        .await;
    assert_eq!(status, 200);
    // The admin API is for operators only.
    let response = server
        .client
        .post(format!("{}/v1/admin/revoke", server.base))
        .bearer_auth(&agent)
        .json(&json!({ "kind": "agent", "id": "support-bot", "reason": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn freezing_a_system_stops_it_alone_until_it_is_unfrozen() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let secret = server.system_secret("ci");
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci", "git"]).await;
    let (_, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    let live = body["access_token"].as_str().unwrap().to_owned();

    revoke_cli(&server, &["freeze", "ci", "--reason", "incident 42"]);
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(
        (status, body["reason"].as_str().unwrap()),
        (403, "system_frozen")
    );
    let (_, answer) = server.introspect("ci", &secret, &live).await;
    assert_eq!(answer["active"], false);
    let (status, _) = server.exchange(&agent, &txn, "git", "read", &[]).await;
    assert_eq!(status, 200, "other systems keep working");

    let (status, _) = server
        .admin(
            "unfreeze",
            json!({ "system": "ci", "reason": "incident closed" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200);
    let (_, answer) = server.introspect("ci", &secret, &live).await;
    assert_eq!(answer["active"], true, "a freeze is reversible");
    let (status, _) = server
        .admin("freeze", json!({ "system": "nowhere", "reason": "x" }))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_revocation_feed_pages_from_a_cursor_and_streams_new_entries() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let secret = server.system_secret("ci");
    let agent = server.identity("release-bot");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    let (_, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    let jti = server
        .verify_access_token(
            body["access_token"].as_str().unwrap(),
            "https://ci.example.com",
        )
        .await["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .admin(
            "revoke",
            json!({ "kind": "token", "id": jti, "reason": "leaked in a log" }),
        )
        .await;
    server
        .admin(
            "freeze",
            json!({ "system": "git", "reason": "maintenance" }),
        )
        .await;
    server
        .admin(
            "revoke",
            json!({ "kind": "task", "id": task, "reason": "done badly" }),
        )
        .await;

    let feed = |after: u64| {
        let client = server.client.clone();
        let url = format!("{}/v1/revocations?after={after}", server.base);
        let secret = secret.clone();
        async move {
            client
                .get(url)
                .basic_auth("ci", Some(secret))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let page = feed(0).await;
    let kinds: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["token", "freeze", "task"]);
    assert_eq!(page["entries"][0]["id"], jti.as_str());
    assert_eq!(page["next"], 3);
    let rest = feed(1).await;
    assert_eq!(rest["entries"].as_array().unwrap().len(), 2);
    assert_eq!(rest["entries"][0]["seq"], 2);
    let response = server
        .client
        .get(format!("{}/v1/revocations", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    // A stream from the current cursor receives the next revocation as it happens.
    let mut stream = server
        .client
        .get(format!("{}/v1/revocations/stream?after=3", server.base))
        .basic_auth("ci", Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    server
        .admin(
            "revoke",
            json!({ "kind": "agent", "id": "release-bot", "reason": "retired" }),
        )
        .await;
    let mut received = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !received.contains("\"kind\":\"agent\"") {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("an event arrives")
            .unwrap()
            .unwrap();
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        received.contains("event: revocation") && received.contains("id: 4"),
        "{received}"
    );

    // A freeze made elsewhere (the CLI writes the data directory; no HTTP call wakes the
    // stream) still arrives: the stream looks for new entries on its own (`STREAM_POLL`, 1 s).
    // Waited for with a bound, not timed: on a loaded machine a timed 1 s would flake.
    revoke_cli(&server, &["freeze", "tickets", "--reason", "from the cli"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !received.contains("from the cli") {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("the CLI's freeze reaches the stream")
            .unwrap()
            .unwrap();
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(received.contains("id: 5"), "{received}");

    // A reconnecting client resumes after the last id it saw (`Last-Event-ID` wins over `after`).
    let mut resumed = server
        .client
        .get(format!("{}/v1/revocations/stream?after=0", server.base))
        .basic_auth("ci", Some(&secret))
        .header("last-event-id", "3")
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains("id: 5") {
        let chunk = tokio::time::timeout_at(deadline, resumed.chunk())
            .await
            .expect("the resumed stream sends the entries after 3")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .collect();
    assert_eq!(ids, ["4", "5"], "{text}");
}

#[tokio::test]
async fn rfc7009_revocation_accepts_unknown_tokens_and_cuts_known_ones() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let secret = server.system_secret("ci");
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let (_, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    let token = body["access_token"].as_str().unwrap();
    let revoke = |auth: Option<(&str, &str)>, token: &str| {
        let mut request = server
            .client
            .post(format!("{}/oauth/revoke", server.base))
            .form(&[("token", token)]);
        if let Some((user, pass)) = auth {
            request = request.basic_auth(user, Some(pass));
        }
        request.send()
    };
    assert_eq!(revoke(None, token).await.unwrap().status().as_u16(), 401);
    assert_eq!(
        revoke(Some(("ci", &secret)), "not-a-token")
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        revoke(Some(("ci", &secret)), &txn)
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let (_, answer) = server.introspect("ci", &secret, token).await;
    assert_eq!(
        answer["active"], true,
        "unknown and foreign tokens change nothing"
    );

    // The agent the token was minted for may revoke it (RFC 7009's client).
    let response = server
        .client
        .post(format!("{}/oauth/revoke", server.base))
        .bearer_auth(&agent)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (_, answer) = server.introspect("ci", &secret, token).await;
    assert_eq!(answer["active"], false);
    // The task itself goes on: only that token was cut.
    let (status, _) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn budgets_and_plan_deviations_deny_with_the_reason_and_notify_the_owner() {
    use axum::routing::post;
    let received = std::sync::Arc::new(tokio::sync::Mutex::new(
        Vec::<(Value, String, String)>::new(),
    ));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let value: Value = serde_json::from_str(&body).unwrap();
                let signed = format!("{}.{}", header("x-handoff-timestamp"), body);
                sink.lock()
                    .await
                    .push((value, header("x-handoff-signature"), signed));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = temp_dir();
    let config = crate::harness::example_text();
    let config = format!(
        "{config}\n[notifications]\nwebhook_url = \"{hook}\"\nsecret_env = \"TEST_HOOK_SECRET\"\n"
    );
    std::fs::write(dir.path().join("handoff.toml"), config).unwrap();
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&dir.path().join("handoff.toml")),
        &[("TEST_HOOK_SECRET", "s3cret")],
    );
    let agent = server.identity("release-bot");

    // Outside the plan.
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server.exchange(&agent, &txn, "git", "read", &[]).await;
    assert_eq!(
        (status, body["reason"].as_str().unwrap()),
        (403, "outside_plan"),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("not in the task's plan")
    );
    // A read-only purpose: any write is over budget, whatever policy says.
    let (_, research) = server.task(&agent, "research", &[]).await;
    let (status, _) = server
        .exchange(&agent, &research, "tickets", "read", &[])
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .exchange(&agent, &research, "tickets", "comment", &[])
        .await;
    assert_eq!(
        (status, body["reason"].as_str().unwrap()),
        (403, "budget_writes")
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("max_writes")
    );
    // At most two payments tokens alive at once.
    let payer = server.identity("payments-agent");
    let (_, pay) = server.task(&payer, "payments", &["payments"]).await;
    for _ in 0..2 {
        let (status, _) = server.exchange(&payer, &pay, "payments", "read", &[]).await;
        assert_eq!(status, 200);
    }
    let (status, body) = server.exchange(&payer, &pay, "payments", "read", &[]).await;
    assert_eq!(
        (status, body["reason"].as_str().unwrap()),
        (403, "budget_live_tokens")
    );

    // The owners hear about each, signed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received.lock().await.len() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let notices = received.lock().await.clone();
    let reasons: Vec<&str> = notices
        .iter()
        .map(|(v, _, _)| v["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 3, "{notices:?}");
    for expected in ["outside_plan", "budget_writes", "budget_live_tokens"] {
        assert!(reasons.contains(&expected), "{reasons:?}");
    }
    let plan = notices
        .iter()
        .find(|(v, _, _)| v["reason"] == "outside_plan")
        .unwrap();
    assert_eq!(plan.0["owner"], "platform-team");
    assert_eq!(plan.0["system"], "git");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"s3cret");
    for (_, signature, signed) in &notices {
        let tag = aws_lc_rs::hmac::sign(&key, signed.as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(signature, &format!("sha256={hex}"));
    }
    // Each delivery is recorded with its outcome.
    crate::harness::wait_for_trace(
        &server,
        &pay_task_id(&pay),
        &["notify", "webhook delivered"],
    )
    .await;
    let output = cli(&[
        "trace",
        &pay_task_id(&pay),
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ]);
    let trace = stdout(&output);
    assert!(
        trace.contains("notify") && trace.contains("webhook delivered"),
        "{trace}"
    );
}

fn pay_task_id(txn: &str) -> String {
    use base64::Engine as _;
    let payload = txn.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["txn"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn concurrent_requests_cannot_overspend_a_budget() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let payer = server.identity("payments-agent");
    let (_, txn) = server.task(&payer, "payments", &["payments"]).await;
    // payments allows at most two live tokens per task; fire twelve exchanges at once.
    let exchange = server.exchanger(&payer, &txn, "payments", "read");
    let attempts: Vec<_> = (0..12)
        .map(|_| {
            let exchange = exchange.clone();
            tokio::spawn(async move { exchange.send().await })
        })
        .collect();
    let mut permitted = 0;
    for attempt in attempts {
        let (status, body) = attempt.await.unwrap();
        match status {
            200 => permitted += 1,
            403 => assert_eq!(body["reason"], "budget_live_tokens", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(
        permitted, 2,
        "exactly the budget, however the requests interleave"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_task_answers_every_concurrent_exchange_and_never_runs_out_of_retries() {
    // Exchanges of one task take turns on a node, so none loses the version race sixteen times
    // and fails with 503 `temporarily_unavailable` (as 4 clients on one task did before).
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let exchange = server.exchanger(&agent, &txn, "ci", "run_tests");
    let clients: Vec<_> = (0..24)
        .map(|_| {
            let exchange = exchange.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..6 {
                    let (status, body) = exchange.send().await;
                    statuses.push((status, body["error"].clone()));
                }
                statuses
            })
        })
        .collect();
    for client in clients {
        for (status, error) in client.await.unwrap() {
            assert_eq!(status, 200, "{error}");
        }
    }
}

#[tokio::test]
async fn a_revocation_sends_its_notice_and_a_refused_delivery_is_retried() {
    use axum::http::StatusCode;
    use std::sync::Arc;
    // A receiver that refuses the first delivery of each notice and accepts the next.
    let attempts = Arc::new(tokio::sync::Mutex::new(Vec::<(Value, u16)>::new()));
    let sink = attempts.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let sink = sink.clone();
            async move {
                let value: Value = serde_json::from_str(&body).unwrap();
                let mut seen = sink.lock().await;
                let before = seen.iter().filter(|(v, _)| *v == value).count();
                let status = if before == 0 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                seen.push((value, status.as_u16()));
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = temp_dir();
    let config = crate::harness::example_config(dir.path(), |c| {
        format!("{c}\n[notifications]\nwebhook_url = \"{hook}\"\n")
    });
    let server = Server::start_with(&dir.path().join("data"), Some(&config));
    let agent = server.identity("release-bot");
    let (task, _) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server
        .admin(
            "revoke",
            json!({ "kind": "task", "id": task, "reason": "agent misbehaved" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .admin("freeze", json!({ "system": "ci", "reason": "incident 42" }))
        .await;
    assert_eq!(status, 200, "{body}");

    // Each notice arrives twice: refused once, then accepted. Bounded wait, no fixed sleep.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let delivered = |seen: &[(Value, u16)], reason: &str| {
        seen.iter()
            .filter(|(v, _)| v["reason"] == reason)
            .map(|(_, s)| *s)
            .collect::<Vec<u16>>()
    };
    loop {
        let seen = attempts.lock().await.clone();
        let done = ["task_revoked", "system_frozen"]
            .iter()
            .all(|r| delivered(&seen, r).contains(&200));
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the notices were not delivered (and retried) in time: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = attempts.lock().await.clone();
    for reason in ["task_revoked", "system_frozen"] {
        assert_eq!(delivered(&seen, reason), [503, 200], "{reason}: {seen:?}");
    }
    let revoked = seen
        .iter()
        .find(|(v, _)| v["reason"] == "task_revoked")
        .unwrap();
    assert_eq!(revoked.0["kind"], "revoked");
    assert_eq!(revoked.0["task"], task.as_str());
    assert_eq!(revoked.0["description"], "agent misbehaved");
    let frozen = seen
        .iter()
        .find(|(v, _)| v["reason"] == "system_frozen")
        .unwrap();
    assert_eq!(frozen.0["system"], "ci");
    assert!(frozen.0["owner"].is_string(), "{frozen:?}");
    // The delivery's record names the retry.
    crate::harness::wait_for_trace(
        &server,
        &task,
        &["webhook delivered (HTTP 200) after 2 attempt(s)"],
    )
    .await;
}
