//! Exchanges: permits yield verifiable single-audience tokens; the example policies decide in order.

use crate::harness::{EXCHANGE, Server, now, temp_dir};
use serde_json::{Value, json};

#[tokio::test]
async fn a_permitted_exchange_yields_a_token_for_exactly_one_audience_and_the_granted_scope() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let (task, txn) = server.task(&agent, "release", &["git", "ci"]).await;

    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "ci:run_tests");
    assert!(body.get("refresh_token").is_none());
    let claims = server
        .verify_access_token(
            body["access_token"].as_str().unwrap(),
            "https://ci.example.com",
        )
        .await;
    assert_eq!(
        claims["aud"],
        json!("https://ci.example.com"),
        "one audience, as a string"
    );
    assert_eq!(claims["scope"], "ci:run_tests");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "release-bot");
    assert_eq!(claims["act"]["sub"], "release-bot");
    assert_eq!(claims["txn"], task.as_str());
    assert!(claims["jti"].as_str().unwrap().starts_with("tok_"));
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!(
        lifetime > 0 && lifetime <= 300,
        "default lifetime is 5 minutes, got {lifetime}"
    );

    // The same task, a second system: a separate token whose audience is only that system.
    let (status, body) = server
        .exchange(&agent, &txn, "https://git.example.com", "git:read", &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let claims = server
        .verify_access_token(
            body["access_token"].as_str().unwrap(),
            "https://git.example.com",
        )
        .await;
    assert_eq!(claims["aud"], json!("https://git.example.com"));
    assert_eq!(claims["scope"], "git:read");
}

#[tokio::test]
async fn a_token_for_one_system_does_not_verify_for_another() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let (_, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    let token = body["access_token"].as_str().unwrap();
    let jwks = server.jwks().await;
    let header = jsonwebtoken::decode_header(token).unwrap();
    let key =
        jsonwebtoken::DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap())
            .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["https://git.example.com"]);
    validation.set_issuer(&[&server.base]);
    assert!(jsonwebtoken::decode::<Value>(token, &key, &validation).is_err());
}

#[tokio::test]
async fn denies_deploy_before_tests_ran_and_permits_it_after() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;

    let (status, body) = server.exchange(&agent, &txn, "ci", "deploy", &[]).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "access_denied");
    assert_eq!(body["reason"], "no_permit");
    assert!(body["decision_id"].as_str().unwrap().starts_with("dec_"));

    let (status, _) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200);
    let (status, body) = server.exchange(&agent, &txn, "ci", "deploy", &[]).await;
    assert_eq!(status, 200, "{body}");

    // Tests in another task do not count for this one.
    let (_, other) = server.task(&agent, "release", &["ci"]).await;
    let (status, _) = server.exchange(&agent, &other, "ci", "deploy", &[]).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn denies_external_send_after_pii_was_read() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("support-bot");
    let (_, txn) = server
        .task(&agent, "support", &["crm", "mail", "tickets"])
        .await;

    let (status, _) = server.exchange(&agent, &txn, "mail", "send", &[]).await;
    assert_eq!(status, 200, "external send is fine before any PII");
    let (status, _) = server
        .exchange(&agent, &txn, "crm", "read_customer", &[])
        .await;
    assert_eq!(status, 200);
    let (status, body) = server.exchange(&agent, &txn, "mail", "send", &[]).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason"], "forbidden");
    assert_eq!(body["policies"], json!(["no-external-after-pii"]));
    // Reading tickets is still fine: the label only blocks external actions.
    let (status, _) = server.exchange(&agent, &txn, "tickets", "read", &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn permits_git_pushes_only_for_tasks_whose_plan_names_git() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    // A plan that leaves git out stops the push before policy: containment refuses it.
    let (_, unplanned) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server
        .exchange(&agent, &unplanned, "git", "push", &[])
        .await;
    assert_eq!(
        (status, &body["reason"]),
        (403, &json!("outside_plan")),
        "{body}"
    );
    // A task without a plan may reach any system, so the push reaches Cedar, where
    // `git-write-when-planned` permits it only when the plan names git: nothing permits it.
    let (_, no_plan) = server.task(&agent, "release", &[]).await;
    let (status, body) = server.exchange(&agent, &no_plan, "git", "read", &[]).await;
    assert_eq!(status, 200, "the task reaches git: {body}");
    let (status, body) = server.exchange(&agent, &no_plan, "git", "push", &[]).await;
    assert_eq!(
        (status, &body["reason"]),
        (403, &json!("no_permit")),
        "{body}"
    );
    assert_eq!(body["policies"], json!([]), "{body}");
    let (_, planned) = server.task(&agent, "release", &["git"]).await;
    let (status, body) = server.exchange(&agent, &planned, "git", "push", &[]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn payments_are_forbidden_outside_payments_tasks_and_above_the_cap() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let release = server.identity("release-bot");
    let (_, txn) = server.task(&release, "release", &[]).await;
    let (status, body) = server
        .exchange(&release, &txn, "payments", "read", &[])
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        body["policies"],
        json!(["payments-only-for-payments-tasks"])
    );

    // Only the payments agent may open payments tasks.
    let (status, body) = server
        .open_task(
            &release,
            json!({ "intent": "pay", "purpose": "payments", "user": "alice" }),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    let payer = server.identity("payments-agent");
    let (_, txn) = server.task(&payer, "payments", &["payments"]).await;
    let small = r#"[{"type":"payments","amount":12000,"currency":"EUR","creditor":"ACME GmbH"}]"#;
    let (status, body) = server
        .exchange(
            &payer,
            &txn,
            "payments",
            "create",
            // An hour is within `tokens.max_lifetime`; only the system's 5 min cap holds it.
            &[
                ("authorization_details", small),
                ("requested_lifetime", "3600"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 300, "{body}");
    let claims = server
        .verify_access_token(
            body["access_token"].as_str().unwrap(),
            "https://payments.example.com",
        )
        .await;
    assert_eq!(claims["authorization_details"][0]["amount"], 12000);
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 300, "payments caps tokens at 5 minutes");

    let large = r#"[{"type":"payments","amount":5000000,"currency":"EUR","creditor":"ACME GmbH"}]"#;
    let (status, body) = server
        .exchange(
            &payer,
            &txn,
            "payments",
            "create",
            &[("authorization_details", large)],
        )
        .await;
    assert_eq!(status, 403);
    // The cap decides; above it, the agent's daily spend limit is exceeded too.
    assert!(
        body["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("payments-amount-cap")),
        "{body}"
    );
}

#[tokio::test]
async fn all_requested_actions_must_be_permitted_or_nothing_is_minted() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server
        .exchange(&agent, &txn, "ci", "run_tests deploy", &[])
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.get("access_token").is_none());
}

#[tokio::test]
async fn the_requested_lifetime_is_capped_by_the_system() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let (_, body) = server
        .exchange(
            &agent,
            &txn,
            "ci",
            "run_tests",
            &[("requested_lifetime", "86400")],
        )
        .await;
    let claims = server
        .verify_access_token(
            body["access_token"].as_str().unwrap(),
            "https://ci.example.com",
        )
        .await;
    assert!(
        claims["exp"].as_i64().unwrap() <= now() + 600 + 2,
        "ci caps tokens at 10 minutes"
    );
    let (_, body) = server
        .exchange(
            &agent,
            &txn,
            "ci",
            "run_tests",
            &[("requested_lifetime", "30")],
        )
        .await;
    assert_eq!(body["expires_in"], 30);
}

#[tokio::test]
async fn malformed_requests_get_oauth_errors_never_a_server_error() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;

    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (vec![], 400, "invalid_request"),
        (
            vec![("grant_type", "client_credentials")],
            400,
            "unsupported_grant_type",
        ),
        (vec![("grant_type", EXCHANGE)], 400, "invalid_request"),
        (
            vec![("grant_type", EXCHANGE), ("grant_type", EXCHANGE)],
            400,
            "invalid_request",
        ),
    ];
    for (form, status, error) in cases {
        let (got, body) = server.token_form(&form).await;
        assert_eq!(
            (got, body["error"].as_str().unwrap()),
            (status, error),
            "{form:?}: {body}"
        );
    }
    type Check<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let checks: Vec<Check<'_>> = vec![
        ("nowhere", "read", vec![], 400, "invalid_target"),
        ("ci", "launch_rockets", vec![], 400, "invalid_scope"),
        ("ci", "git:push", vec![], 400, "invalid_scope"),
        (
            "ci",
            "run_tests",
            vec![("authorization_details", "{not json")],
            400,
            "invalid_authorization_details",
        ),
        (
            "ci",
            "run_tests",
            vec![("authorization_details", r#"{"type":"x"}"#)],
            400,
            "invalid_authorization_details",
        ),
        (
            "ci",
            "run_tests",
            vec![("authorization_details", r#"[{"type":"x","commit":42}]"#)],
            400,
            "invalid_authorization_details",
        ),
        (
            "ci",
            "run_tests",
            vec![("requested_lifetime", "soon")],
            400,
            "invalid_request",
        ),
    ];
    for (audience, scope, extra, status, error) in checks {
        let (got, body) = server.exchange(&agent, &txn, audience, scope, &extra).await;
        assert_eq!(
            (got, body["error"].as_str().unwrap()),
            (status, error),
            "{audience} {scope}: {body}"
        );
    }
    // A garbage task token is a bad grant.
    let (status, body) = server
        .exchange(&agent, "not.a.token", "ci", "run_tests", &[])
        .await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (401, "invalid_grant")
    );
    // The wrong content type.
    let response = server
        .client
        .post(format!("{}/oauth/token", server.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
}

#[tokio::test]
async fn discovery_documents_list_the_endpoints_and_keys() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let metadata: Value = server
        .client
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            server.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The issuer is the origin this server is reached at (no public_url: its listen address).
    assert_eq!(metadata["issuer"], server.base);
    assert_eq!(metadata["grant_types_supported"], json!([EXCHANGE]));
    // Every endpoint is named under the issuer, and each is served here (a listed path that
    // answered 404 would send clients nowhere).
    for (field, path, method) in [
        ("token_endpoint", "/oauth/token", "POST"),
        ("jwks_uri", "/.well-known/jwks.json", "GET"),
        ("handoff_tasks_endpoint", "/v1/tasks", "POST"),
        ("introspection_endpoint", "/oauth/introspect", "POST"),
        ("revocation_endpoint", "/oauth/revoke", "POST"),
        ("handoff_revocation_feed", "/v1/revocations", "GET"),
    ] {
        assert_eq!(
            metadata[field],
            format!("{}{path}", server.base),
            "{field}: {metadata}"
        );
        let url = format!("{}{path}", server.base);
        let request = match method {
            "GET" => server.client.get(url),
            _ => server.client.post(url),
        };
        let status = request.send().await.unwrap().status().as_u16();
        assert_ne!(status, 404, "{field} is served");
        assert_ne!(status, 405, "{field} answers {method}");
    }
    assert_eq!(
        metadata["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic"])
    );
    assert_eq!(
        metadata["revocation_endpoint_auth_methods_supported"],
        json!(["client_secret_basic"])
    );
    // Each system's authorization details are of its own type (RFC 9396 §10), never "any".
    let types = metadata["authorization_details_types_supported"]
        .as_array()
        .unwrap();
    for system in ["ci", "git", "payments"] {
        assert!(types.contains(&json!(system)), "{metadata}");
    }
    assert!(!types.contains(&json!("*")), "{metadata}");
    // One token key (`use: sig`) and the audit checkpoint key, published for checkpoints only.
    let jwks = server.jwks().await;
    assert_eq!(jwks.keys.len(), 2);
    let key: Value = serde_json::to_value(&jwks.keys[0]).unwrap();
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "no private part is published");
    let checkpoint: Value = serde_json::to_value(&jwks.keys[1]).unwrap();
    assert_eq!(checkpoint["use"], "handoff-checkpoint");
    assert_ne!(checkpoint["kid"], key["kid"]);
    assert!(
        checkpoint.get("d").is_none(),
        "no private part is published"
    );
}
