//! Running it in production: the issuer is the URL Handoff is reached at (metadata, JWKS, every
//! token's `iss`, the MCP resource metadata), and a client that knows only the metadata URL
//! completes an exchange.

use crate::harness::{EXCHANGE, JWT, Server, TRUST_DOMAIN, TXN, client, temp_dir};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Value, json};
use std::time::Duration;

async fn get_json(url: &str) -> Value {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

/// The unverified claims of a JWT (the test checks `iss` itself).
fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Checks that every name the server gives itself is `origin`.
async fn names_itself(server: &Server, origin: &str) {
    let metadata = get_json(&format!(
        "{}/.well-known/oauth-authorization-server",
        server.base
    ))
    .await;
    assert_eq!(metadata["issuer"], origin, "{metadata}");
    assert_eq!(
        metadata["jwks_uri"],
        format!("{origin}/.well-known/jwks.json")
    );
    assert_eq!(metadata["token_endpoint"], format!("{origin}/oauth/token"));
    let resource = get_json(&format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        server.base
    ))
    .await;
    assert_eq!(resource["resource"], format!("{origin}/mcp"), "{resource}");
    assert_eq!(resource["authorization_servers"], json!([origin]));
    let challenge = client()
        .post(format!("{}/mcp", server.base))
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    let challenge = challenge.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{origin}/.well-known/oauth-protected-resource/mcp\""
        )),
        "{challenge}"
    );

    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    // The Transaction Token is Handoff's (its issuer) for the trust domain (its audience).
    assert_eq!(claims(&txn)["iss"], origin);
    assert_eq!(claims(&txn)["aud"], TRUST_DOMAIN);
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(claims(token)["iss"], origin);
}

#[tokio::test]
async fn without_a_public_url_the_listen_address_is_the_issuer_everywhere() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    assert!(
        server.base.starts_with("http://127.0.0.1:"),
        "{}",
        server.base
    );
    names_itself(&server, &server.base).await;
}

#[tokio::test]
async fn a_public_url_is_the_issuer_everywhere_and_tokens_still_verify() {
    let dir = temp_dir();
    let public = "https://handoff.example.com";
    // Through the environment, as a service manager would set it (and a trailing slash dropped).
    let server = Server::start_env(
        dir.path(),
        None,
        &[("HANDOFF_PUBLIC_URL", "https://handoff.example.com/")],
    );
    names_itself(&server, public).await;
}

/// A client that knows only where the metadata is: every other URL, the token types and the
/// issuer to check come from RFC 8414 metadata fields.
#[tokio::test]
async fn a_discovery_driven_client_completes_an_exchange_from_the_metadata_alone() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let metadata = get_json(&format!(
        "{}/.well-known/oauth-authorization-server",
        server.base
    ))
    .await;
    let field = |name: &str| metadata[name].as_str().unwrap().to_owned();
    let (issuer, token_endpoint, jwks_uri) =
        (field("issuer"), field("token_endpoint"), field("jwks_uri"));
    let supports = |list: &str, value: &str| {
        metadata[list]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == value)
    };
    assert!(supports("grant_types_supported", EXCHANGE));
    assert!(supports(
        "token_exchange_requested_token_types_supported",
        TXN
    ));
    assert!(supports("token_exchange_actor_token_types_supported", JWT));
    // Scopes are listed qualified by their system; the request names the system as its audience.
    assert!(supports("scopes_supported", "ci:run_tests"));

    let post = |form: Vec<(&'static str, String)>| {
        let url = token_endpoint.clone();
        async move {
            let response = client().post(url).form(&form).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    // The task's Transaction Token, from the token endpoint (RFC 8693).
    let details = json!({ "intent": "Run the tests", "user": "bob", "plan": ["ci"] });
    let (status, body) = post(vec![
        ("grant_type", EXCHANGE.to_owned()),
        ("requested_token_type", TXN.to_owned()),
        ("subject_token", agent.clone()),
        ("subject_token_type", JWT.to_owned()),
        ("scope", "release".to_owned()),
        ("request_details", details.to_string()),
    ])
    .await;
    assert_eq!(status, 200, "{body}");
    let txn = body["access_token"].as_str().unwrap().to_owned();
    // Then the access token for one system.
    let (status, body) = post(vec![
        ("grant_type", EXCHANGE.to_owned()),
        ("subject_token", txn),
        ("subject_token_type", TXN.to_owned()),
        ("actor_token", agent),
        ("actor_token_type", JWT.to_owned()),
        ("audience", "ci".to_owned()),
        ("scope", "run_tests".to_owned()),
    ])
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    // Verified as any resource server would: the keys at `jwks_uri`, the metadata's issuer.
    let jwks: JwkSet = serde_json::from_value(get_json(&jwks_uri).await).unwrap();
    let header = decode_header(token).unwrap();
    let key = DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["https://ci.example.com"]);
    validation.set_issuer(&[&issuer]);
    let claims = decode::<Value>(token, &key, &validation)
        .expect("the token verifies against the discovered issuer and keys")
        .claims;
    assert_eq!(claims["scope"], "ci:run_tests");
}

/// SIGTERM with a revocation stream open: the stream ends at once and the process exits 0 long
/// before the (deliberately long) drain would cut it.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_open_streams_and_exits_zero_within_the_drain() {
    let dir = temp_dir();
    let mut server = Server::start_env(dir.path(), None, &[("HANDOFF_DRAIN", "60s")]);
    let operator = server.operator_secret();
    let mut stream = client()
        .get(format!("{}/v1/revocations/stream", server.base))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // A second request on another connection, answered before the signal: the server is live.
    let ready = client()
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let status = tokio::task::block_in_place(|| server.terminate(Duration::from_secs(20)))
        .expect("the server exits well within its 60s drain with a stream open");
    assert!(status.success(), "{status}");
    // The stream is over (ended, or its connection closed): reading it does not hang.
    while let Ok(Some(_)) = stream.chunk().await {}
    assert!(
        client()
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err(),
        "nothing listens any more"
    );
}

/// The JSON log lines written to `path` so far.
fn log_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Waits (bounded) for a log line that `matches`.
async fn wait_for_line(path: &std::path::Path, matches: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..500 {
        if let Some(line) = log_lines(path).into_iter().find(|l| matches(l)) {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no such log line in:\n{}",
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// A server whose log (stderr) goes to a file, started with `flags`; keep the folder.
fn logged_server(flags: &[&str]) -> (tempfile::TempDir, std::path::PathBuf, Server) {
    let dir = temp_dir();
    let log = dir.path().join("handoff.log");
    let server = Server::start_logged(
        &dir.path().join("data"),
        None,
        &[],
        flags,
        std::fs::File::create(&log).unwrap().into(),
    );
    (dir, log, server)
}

#[tokio::test]
async fn each_request_is_one_json_log_line_with_its_decision_and_never_a_token() {
    let (_dir, log, server) = logged_server(&["--log-format", "json", "--log-level", "info"]);
    let agent = server.identity("release-bot");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    // A deploy before any test run has no permit; the test run that follows has one.
    let (status, deny) = server.exchange(&agent, &txn, "ci", "deploy", &[]).await;
    assert_eq!(status, 403, "{deny}");
    let (status, permit) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{permit}");

    for (body, outcome) in [(&permit, "permit"), (&deny, "deny")] {
        let decision = body["decision_id"].as_str().unwrap();
        let line = wait_for_line(&log, |l| l["decision_id"] == decision).await;
        assert_eq!(line["target"], "handoff::request", "{line}");
        assert_eq!(line["method"], "POST");
        assert_eq!(line["route"], "/oauth/token");
        assert_eq!(line["outcome"], outcome, "{line}");
        assert_eq!(line["system"], "ci");
        assert!(line["latency_ms"].is_number(), "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
        // A denial names whom it refused and for which task, like a permit.
        assert_eq!(line["agent"], "release-bot", "{line}");
        assert_eq!(line["task"], task.as_str(), "{line}");
        if outcome == "permit" {
            assert_eq!(line["status"], 200);
            assert_eq!(line["actions"], "run_tests");
        } else {
            assert_eq!(line["status"], 403);
            assert_eq!(line["reason"], "no_permit", "{line}");
            assert_eq!(line["actions"], "deploy");
        }
    }
    // Startup was logged, and no token (identity, task token or access token) ever was.
    wait_for_line(&log, |l| l["message"] == "handoff started").await;
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in [
        agent.as_str(),
        txn.as_str(),
        permit["access_token"].as_str().unwrap(),
    ] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!text.contains(signature), "a token reached the log");
    }
}

/// The default text log, written to a file (as a service manager or a container runtime does),
/// is plain text: no terminal colour codes for a collector to strip.
#[tokio::test]
async fn a_text_log_written_to_a_file_has_no_colour_codes() {
    let (_dir, log, server) = logged_server(&["--log-level", "info"]);
    let agent = server.identity("release-bot");
    let (_task, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let decision = body["decision_id"].as_str().unwrap().to_owned();
    let mut text = String::new();
    for _ in 0..500 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(&decision) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        text.contains(&decision),
        "the exchange was not logged:\n{text}"
    );
    assert!(text.contains("handoff started"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file:\n{text}"
    );
}

/// The value of the sample `name` whose labels include every one of `labels` (0 when absent).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut found = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let has = |(k, v): &(&str, &str)| {
            series_labels
                .split(',')
                .any(|pair| pair == format!("{k}=\"{v}\""))
        };
        if labels.iter().all(has) {
            found += value.parse::<f64>().unwrap();
        }
    }
    found
}

pub async fn scrape(server: &Server) -> String {
    let response = client()
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("text/plain"), "{kind}");
    response.text().await.unwrap()
}

/// The request log and its counters sit outside every refusal the server makes before a
/// handler runs: a request refused for a repeated `Authorization` header is still counted under
/// its route and its status (and so also logged, by the same middleware).
#[tokio::test]
async fn a_request_refused_before_its_handler_is_still_counted_under_its_route() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let refused = [("route", "/oauth/token"), ("status", "400")];
    let before = scrape(&server).await;
    let response = client()
        .post(format!("{}/oauth/token", server.base))
        .header("authorization", "Bearer one")
        .header("authorization", "Bearer two")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    let after = scrape(&server).await;
    let delta = sample(&after, "handoff_http_requests_total", &refused)
        - sample(&before, "handoff_http_requests_total", &refused);
    assert_eq!(delta, 1.0, "{after}");
}

#[tokio::test]
async fn metrics_counters_move_by_exactly_the_requests_made() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    // Warm up once so every series exists, then measure from there.
    let (status, _) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200);
    let permits = [("system", "ci"), ("outcome", "permit"), ("reason", "none")];
    let denies = [
        ("system", "ci"),
        ("outcome", "deny"),
        ("reason", "no_permit"),
    ];
    let token_200 = [("route", "/oauth/token"), ("status", "200")];
    let before = scrape(&server).await;

    for _ in 0..3 {
        let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
        assert_eq!(status, 200, "{body}");
    }
    // A deploy in a task whose tests never ran has no permit (in `txn` it would have one now).
    let (_, untested) = server.task(&agent, "release", &["ci"]).await;
    let (status, _) = server
        .exchange(&agent, &untested, "ci", "deploy", &[])
        .await;
    assert_eq!(status, 403);
    let after = scrape(&server).await;

    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    assert_eq!(delta("handoff_exchanges_total", &permits), 3.0, "{after}");
    assert_eq!(delta("handoff_exchanges_total", &denies), 1.0, "{after}");
    assert_eq!(
        delta(
            "handoff_exchange_duration_seconds_count",
            &[("outcome", "permit")]
        ),
        3.0
    );
    assert_eq!(delta("handoff_http_requests_total", &token_200), 3.0);
    // Four exchanges and one task opened, all by one agent identity verified before: five
    // identity hits. The first task's token was known at the warm-up (three hits); the second
    // task's token is new, but this node minted it, so its first use is a hit too: no task
    // token's signature is checked here.
    let lookups = "handoff_verification_cache_lookups_total";
    assert_eq!(
        delta(lookups, &[("cache", "identity"), ("result", "hit")]),
        5.0,
        "{after}"
    );
    assert_eq!(
        delta(lookups, &[("cache", "identity"), ("result", "miss")]),
        0.0
    );
    assert_eq!(
        delta(lookups, &[("cache", "task_token"), ("result", "hit")]),
        4.0
    );
    assert_eq!(
        delta(lookups, &[("cache", "task_token"), ("result", "miss")]),
        0.0
    );
    // Each exchange's task was written by this server (opened or exchanged on) since it started:
    // all four read from what the writer last committed, none from SQLite.
    let reads = "handoff_store_exchange_reads_total";
    assert_eq!(delta(reads, &[("from", "memory")]), 4.0, "{after}");
    assert_eq!(delta(reads, &[("from", "sqlite")]), 0.0, "{after}");
    // Every exchange was decided (the deny too): four decide stages timed, three mints.
    let stage = "handoff_stage_duration_seconds_count";
    assert_eq!(delta(stage, &[("stage", "decide")]), 4.0, "{after}");
    assert_eq!(delta(stage, &[("stage", "mint")]), 3.0);
    // Five records (three permits, the task, the deny), in at most five commits.
    assert_eq!(
        delta("handoff_audit_batch_records_sum", &[]),
        5.0,
        "{after}"
    );
    let commits = delta("handoff_audit_commit_duration_seconds_count", &[]);
    assert!((1.0..=5.0).contains(&commits), "{commits}");
    assert!(
        after.contains("# TYPE handoff_exchange_duration_seconds histogram"),
        "{after}"
    );
    assert!(
        after.contains("handoff_exchange_duration_seconds_bucket{"),
        "{after}"
    );
}

#[tokio::test]
async fn an_approval_waiting_shows_in_the_pending_gauge() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let payer = server.identity("payments-agent");
    let (_, txn) = server.task(&payer, "payments", &["payments"]).await;
    let large = r#"[{"type":"payments","amount":250000,"currency":"EUR","creditor":"ACME GmbH"}]"#;
    let (status, body) = server
        .exchange(
            &payer,
            &txn,
            "payments",
            "create",
            &[("authorization_details", large)],
        )
        .await;
    assert_eq!(body["error"], "authorization_pending", "{status} {body}");
    // The sweep (every second) counts what waits; give it a few rounds.
    let mut pending = 0.0;
    for _ in 0..50 {
        pending = sample(&scrape(&server).await, "handoff_approvals_pending", &[]);
        if pending == 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(pending, 1.0);
}

#[tokio::test]
async fn metrics_listen_serves_the_metrics_alone_on_its_own_address() {
    let dir = temp_dir();
    // A free loopback port, taken back just before the server binds it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let server = Server::start_logged(
        dir.path(),
        None,
        &[],
        &["--metrics-listen", &address],
        std::process::Stdio::null(),
    );
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, _) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200);
    // The metrics listener binds after the main one prints its address: wait for it.
    let metrics = format!("http://{address}/metrics");
    let mut text = None;
    for _ in 0..100 {
        if let Ok(response) = client().get(&metrics).send().await {
            assert_eq!(response.status(), 200);
            text = Some(response.text().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let text = text.expect("the metrics listener answers");
    let permits = [("system", "ci"), ("outcome", "permit")];
    assert_eq!(
        sample(&text, "handoff_exchanges_total", &permits),
        1.0,
        "{text}"
    );
    // It serves nothing else: agents reach Handoff on the main listener only.
    for path in ["/oauth/token", "/.well-known/jwks.json", "/healthz"] {
        let response = client()
            .get(format!("http://{address}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    // The main listener still serves /metrics too.
    let main = scrape(&server).await;
    assert_eq!(sample(&main, "handoff_exchanges_total", &permits), 1.0);
}
