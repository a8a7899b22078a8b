//! Token times read as RFC 7519 NumericDates at every door, form input that is not UTF-8 or names
//! things with invisible characters, and token responses that are never cached.

use crate::harness::{
    EXCHANGE, JWT, Server, TRUST_DOMAIN, TXN, cli, example_config, now, sign, stderr, stdout,
    temp_dir,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, decode_header};
use serde_json::{Value, json};

fn dev_issuer() -> String {
    format!("{TRUST_DOMAIN}/dev-issuer")
}

/// The time claims every door was fooled by: only an integer `nbf` used to be enforced.
fn bad_nbfs() -> [(&'static str, Value); 4] {
    [
        ("fractional", json!(now() as f64 + 3600.5)),
        ("string", json!((now() + 3600).to_string())),
        ("huge", json!(1e10)),
        ("bool", json!(true)),
    ]
}

/// A dev-issuer identity for `agent` with `extra` claims merged over the usual ones.
fn identity(server: &Server, agent: &str, extra: Value) -> String {
    let mut claims = json!({
        "iss": dev_issuer(), "sub": agent, "aud": TRUST_DOMAIN, "iat": now(), "exp": now() + 600,
    });
    merge(&mut claims, extra);
    sign(
        &server.dev_issuer_key(),
        Some(&server.dev_issuer_kid()),
        Some("JWT"),
        &claims,
    )
}

/// A dev-issuer approver token for bob, a payments owner, with `extra` claims merged in.
fn approver(server: &Server, extra: Value) -> String {
    let mut claims = json!({
        "iss": dev_issuer(), "sub": "bob", "aud": format!("{TRUST_DOMAIN}/approvals"),
        "groups": ["payments-owners"], "iat": now(), "exp": now() + 600,
    });
    merge(&mut claims, extra);
    sign(
        &server.dev_issuer_key(),
        Some(&server.dev_issuer_kid()),
        Some("JWT"),
        &claims,
    )
}

/// `txn` re-signed with Handoff's own key, its claims changed by `extra`.
fn resigned_txn(server: &Server, txn: &str, extra: Value) -> String {
    let payload = txn.split('.').nth(1).unwrap();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    merge(&mut claims, extra);
    let der = std::fs::read(server.data_dir.join("keys/signing-ES256.p8")).unwrap();
    let kid = decode_header(txn).unwrap().kid.unwrap();
    sign(
        &EncodingKey::from_ec_der(&der),
        Some(&kid),
        Some("txntoken+jwt"),
        &claims,
    )
}

fn merge(claims: &mut Value, extra: Value) {
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
}

async fn delegate(server: &Server, identity: &str, txn: &str, delegate: &str) -> (u16, Value) {
    let response = server
        .client
        .post(format!("{}/v1/delegations", server.base))
        .bearer_auth(identity)
        .json(&json!({ "txn_token": txn, "delegate": delegate, "scope": ["ci:run_tests"] }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn txn_grant(server: &Server, identity: &str) -> reqwest::Response {
    let details = json!({ "intent": "ship it", "user": "alice", "plan": ["ci"] }).to_string();
    server
        .client
        .post(format!("{}/oauth/token", server.base))
        .form(&[
            ("grant_type", EXCHANGE),
            ("requested_token_type", TXN),
            ("subject_token", identity),
            ("subject_token_type", JWT),
            ("scope", "release"),
            ("request_details", &details),
        ])
        .send()
        .await
        .unwrap()
}

async fn post_evidence(server: &Server, jwt: &str) -> (u16, Value) {
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

fn evidence(task: &str, id: &str, extra: Value) -> String {
    let mut claims = json!({
        "iss": "ci", "aud": TRUST_DOMAIN, "iat": now(), "jti": id, "task": task,
        "kind": "tests_passed", "data": { "commit": "abc123" },
    });
    merge(&mut claims, extra);
    sign(
        &crate::harness::ci_evidence_key(),
        Some("ci-dev-1"),
        Some("JWT"),
        &claims,
    )
}

/// Every door an agent identity passes, as status codes: exchange, task, txn grant, delegation.
async fn identity_doors(server: &Server, token: &str, txn: &str) -> [(&'static str, u16); 4] {
    let (exchange, _) = server.exchange(token, txn, "ci", "run_tests", &[]).await;
    let (task, _) = server
        .open_task(
            token,
            json!({ "intent": "x", "purpose": "release", "user": "alice", "plan": ["ci"] }),
        )
        .await;
    let grant = txn_grant(server, token).await.status().as_u16();
    let (delegation, _) = delegate(server, token, txn, "test-worker").await;
    [
        ("exchange", exchange),
        ("open task", task),
        ("txn grant", grant),
        ("delegation", delegation),
    ]
}

#[tokio::test]
async fn an_nbf_that_is_fractional_a_string_or_far_ahead_is_refused_at_every_door() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;

    for (name, nbf) in bad_nbfs() {
        // Agent identities, wherever one is presented.
        let token = identity(&server, "release-agent", json!({ "nbf": nbf }));
        for (door, status) in identity_doors(&server, &token, &txn).await {
            assert_eq!(status, 401, "{name} nbf at the {door}");
        }
        // Approvers' tokens.
        let token = approver(&server, json!({ "nbf": nbf }));
        let (status, body) = server.approvals(&token, "GET", "", None).await;
        assert_eq!(status, 401, "{name} nbf on an approver token: {body}");
        // Evidence.
        let jwt = evidence(&task, &format!("ev-{name}"), json!({ "nbf": nbf }));
        let (status, body) = post_evidence(&server, &jwt).await;
        assert_eq!(status, 401, "{name} nbf on evidence: {body}");
        assert_eq!(body["error"], "invalid_evidence", "{name}");
        // Handoff's own Transaction Tokens.
        let forged = resigned_txn(&server, &txn, json!({ "nbf": nbf }));
        let (status, body) = server
            .exchange(&agent, &forged, "ci", "run_tests", &[])
            .await;
        assert_eq!(status, 401, "{name} nbf on a txn token: {body}");
        assert_eq!(body["error"], "invalid_grant", "{name}");
        let (status, body) = delegate(&server, &agent, &forged, "test-worker").await;
        assert_eq!(status, 401, "{name} nbf on a delegated txn token: {body}");
        assert_eq!(body["error"], "invalid_grant", "{name}");
    }

    // The same tokens without the bad claim pass every door: the refusals were the claim's.
    let token = identity(&server, "release-agent", json!({ "nbf": now() - 5 }));
    for (door, status) in identity_doors(&server, &token, &txn).await {
        assert!((200..300).contains(&status), "{door}: {status}");
    }
    let token = approver(&server, json!({ "nbf": now() as f64 - 0.5 }));
    assert_eq!(server.approvals(&token, "GET", "", None).await.0, 200);
    let jwt = evidence(&task, "ev-ok", json!({ "nbf": now() as f64 - 0.5 }));
    assert_eq!(post_evidence(&server, &jwt).await.0, 201);
    let resigned = resigned_txn(&server, &txn, json!({ "nbf": now() - 5 }));
    let (status, body) = server
        .exchange(&agent, &resigned, "ci", "run_tests", &[])
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_fractional_exp_is_a_valid_numeric_date_and_still_expires() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;

    let future = json!({ "exp": now() as f64 + 600.5 });
    // Beyond the issuer's 30 s leeway.
    let past = json!({ "exp": now() as f64 - 60.5 });

    let token = identity(&server, "release-agent", future.clone());
    for (door, status) in identity_doors(&server, &token, &txn).await {
        assert!((200..300).contains(&status), "{door}: {status}");
    }
    let token = identity(&server, "release-agent", past.clone());
    for (door, status) in identity_doors(&server, &token, &txn).await {
        assert_eq!(status, 401, "an expired fractional exp at the {door}");
    }

    let token = approver(&server, future.clone());
    assert_eq!(server.approvals(&token, "GET", "", None).await.0, 200);
    let token = approver(&server, past.clone());
    assert_eq!(server.approvals(&token, "GET", "", None).await.0, 401);

    let (status, body) = post_evidence(&server, &evidence(&task, "ev-1", future.clone())).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_evidence(&server, &evidence(&task, "ev-2", past.clone())).await;
    assert_eq!(status, 401, "{body}");

    let resigned = resigned_txn(&server, &txn, future);
    let (status, body) = server
        .exchange(&agent, &resigned, "ci", "run_tests", &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let resigned = resigned_txn(&server, &txn, past);
    let (status, body) = server
        .exchange(&agent, &resigned, "ci", "run_tests", &[])
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn an_iat_far_in_the_future_is_refused() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    let ahead = json!({ "iat": now() + 3600, "exp": now() + 7200 });
    let unreadable = json!({ "iat": "yesterday" });

    for claims in [ahead.clone(), unreadable] {
        let token = identity(&server, "release-agent", claims.clone());
        for (door, status) in identity_doors(&server, &token, &txn).await {
            assert_eq!(status, 401, "{claims} at the {door}");
        }
        let token = approver(&server, claims.clone());
        assert_eq!(server.approvals(&token, "GET", "", None).await.0, 401);
        let resigned = resigned_txn(&server, &txn, claims.clone());
        let (status, body) = server
            .exchange(&agent, &resigned, "ci", "run_tests", &[])
            .await;
        assert_eq!(status, 401, "{claims}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{claims}");
    }
    let (status, body) = post_evidence(&server, &evidence(&task, "ev-1", ahead)).await;
    assert_eq!(status, 401, "{body}");

    // A few seconds of skew is within the default 60 s `iat_leeway_seconds`.
    let token = identity(&server, "release-agent", json!({ "iat": now() + 5 }));
    let (status, body) = server.exchange(&token, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
}

/// `POST /oauth/token` with a body written by hand, so it can carry any bytes.
async fn raw_exchange(server: &Server, agent: &str, txn: &str, extra: &[u8]) -> (u16, Value) {
    let mut body = format!(
        "grant_type={EXCHANGE}&subject_token={txn}&subject_token_type={TXN}\
         &actor_token={agent}&actor_token_type={JWT}&audience=ci&scope=run_tests"
    )
    .into_bytes();
    body.extend_from_slice(extra);
    let response = server
        .client
        .post(format!("{}/oauth/token", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn audit_records(server: &Server) -> i64 {
    rusqlite::Connection::open(server.data_dir.join("handoff.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM audit", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn form_values_that_are_not_utf8_are_refused_and_nothing_is_minted() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let before = audit_records(&server);

    let details = "%5B%7B%22type%22%3A%22deployment%22%2C%22commit%22%3A%22abc%FF%22%7D%5D";
    let cases: [(&str, Vec<u8>); 5] = [
        ("resource", b"&resource=%FF".to_vec()),
        (
            "resource, after text",
            b"&resource=repo%3Aacme%2F%FFapp".to_vec(),
        ),
        ("an overlong encoding", b"&resource=%C0%AF".to_vec()),
        (
            "authorization_details",
            format!("&authorization_details={details}").into_bytes(),
        ),
        ("a raw byte", b"&resource=\xFF".to_vec()),
    ];
    for (name, extra) in cases {
        let (status, body) = raw_exchange(&server, &agent, &txn, &extra).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"], "invalid_request", "{name}");
        assert!(body.get("access_token").is_none(), "{name}: {body}");
    }
    assert_eq!(
        audit_records(&server),
        before,
        "nothing reached the decision point"
    );
    // The same request, decodable, mints.
    let (status, body) = raw_exchange(&server, &agent, &txn, b"&resource=repo%3Aacme%2Fapp").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn invisible_characters_in_identifiers_are_refused() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;

    for c in [
        '\u{202E}', '\u{2066}', '\u{200B}', '\u{200D}', '\u{FEFF}', '\u{00AD}',
    ] {
        let shown = format!("U+{:04X}", u32::from(c));
        let resource = format!("repo:acme/{c}app");
        let (status, body) = server
            .exchange(&agent, &txn, "ci", "run_tests", &[("resource", &resource)])
            .await;
        assert_eq!(status, 400, "{shown} in resource: {body}");
        assert_eq!(body["error"], "invalid_request", "{shown}");
        assert!(body.get("access_token").is_none());

        let details = json!([{ "type": "ci", "commit": format!("abc{c}123") }]);
        let (status, body) = server
            .exchange(
                &agent,
                &txn,
                "ci",
                "run_tests",
                &[("authorization_details", &details.to_string())],
            )
            .await;
        assert_eq!(status, 400, "{shown} in authorization_details: {body}");

        let (status, body) = server
            .open_task(
                &agent,
                json!({ "intent": "x", "purpose": "release", "user": format!("ali{c}ce") }),
            )
            .await;
        assert_eq!(status, 400, "{shown} in a task's user: {body}");
        assert_eq!(body["error"], "invalid_request", "{shown}");
        assert!(body.get("txn_token").is_none());

        let (status, body) = delegate(&server, &agent, &txn, &format!("test{c}worker")).await;
        assert_eq!(status, 400, "{shown} in a delegate: {body}");

        let token = identity(&server, &format!("release{c}agent"), json!({}));
        let (status, _) = server.exchange(&token, &txn, "ci", "run_tests", &[]).await;
        assert_eq!(status, 401, "{shown} in an agent's identity");
    }
    // The visible names still work.
    let (status, body) = server
        .exchange(
            &agent,
            &txn,
            "ci",
            "run_tests",
            &[("resource", "repo:acme/app")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

fn assert_no_store(response: &reqwest::Response, what: &str) {
    let headers = response.headers();
    assert_eq!(
        headers.get("cache-control").map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "{what}"
    );
    assert_eq!(
        headers.get("pragma").map(|v| v.to_str().unwrap()),
        Some("no-cache"),
        "{what}"
    );
}

#[tokio::test]
async fn every_response_that_carries_a_token_is_never_cached() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");

    let response = server
        .client
        .post(format!("{}/v1/tasks", server.base))
        .bearer_auth(&agent)
        .json(&json!({ "intent": "x", "purpose": "release", "user": "alice", "plan": ["ci"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_no_store(&response, "POST /v1/tasks");
    let txn = response.json::<Value>().await.unwrap()["txn_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let response = server
        .client
        .post(format!("{}/v1/delegations", server.base))
        .bearer_auth(&agent)
        .json(&json!({ "txn_token": txn, "delegate": "test-worker", "scope": ["ci:run_tests"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_no_store(&response, "POST /v1/delegations");

    let response = txn_grant(&server, &agent).await;
    assert_eq!(response.status(), 200);
    assert_no_store(&response, "the token endpoint's txn_token grant");

    let response = server
        .client
        .post(format!("{}/oauth/token", server.base))
        .form(&[
            ("grant_type", EXCHANGE),
            ("subject_token", txn.as_str()),
            ("subject_token_type", TXN),
            ("actor_token", agent.as_str()),
            ("actor_token_type", JWT),
            ("audience", "ci"),
            ("scope", "run_tests"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_no_store(&response, "the token endpoint's access token");
}

#[test]
fn an_issuer_leeway_past_ten_minutes_is_refused_at_load() {
    let dir = temp_dir();
    let jwks = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/quickstart/evidence/ci-jwks.json");
    let issuer = |leeway: u32, iat_leeway: u32| {
        format!(
            "\n[[issuers]]\nid = \"spire\"\nissuer = \"https://spire.example.org\"\n\
             jwks_file = \"{}\"\naudience = \"{TRUST_DOMAIN}\"\nalgorithms = [\"ES256\"]\n\
             leeway_seconds = {leeway}\niat_leeway_seconds = {iat_leeway}\n",
            jwks.display()
        )
    };
    let config = example_config(dir.path(), |text| text + &issuer(601, 86_400));
    let output = cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64), "{}", stdout(&output));
    let problems = stderr(&output);
    assert!(
        problems.contains("leeway_seconds must be at most 600"),
        "{problems}"
    );
    assert!(
        problems.contains("iat_leeway_seconds must be at most 600"),
        "{problems}"
    );

    let config = example_config(dir.path(), |text| text + &issuer(600, 0));
    let output = cli(&["check", "--config", config.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
}
