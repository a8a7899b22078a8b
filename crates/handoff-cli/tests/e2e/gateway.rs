//! The HTTP enforcement gateway in front of a real upstream that records what it received: the
//! agent's token never reaches it, the injected credential does; unmapped routes, routes outside
//! the token and bodies that differ from the token's authorization details are refused; a
//! revoked task's token, and a delegate's token whose delegation, delegate, task's agent or
//! intermediate delegate was revoked, stop working inside `handoff serve` at once and in a
//! standalone `handoff gateway` within its feed poll.

use crate::harness::{Server, binary, cli, example_config, stderr, stdout, temp_dir};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

pub const GIT_SECRET: &str = "upstream-git-secret";
pub const PAYMENTS_KEY: &str = "upstream-payments-key";

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Everything the upstream received, as text, to search for a leaked token.
    pub fn everything(&self) -> String {
        format!(
            "{} {} {:?} {}",
            self.method, self.uri, self.headers, self.body
        )
    }
}

/// An HTTP API on a loopback port that answers 201 with a JSON body and records every request.
pub async fn upstream() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let sink = seen.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let sink = sink.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            sink.lock().await.push(Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                    .collect(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            (
                axum::http::StatusCode::CREATED,
                axum::Json(json!({ "upstream": "ok", "path": parts.uri.path() })),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// The example config with the git host and the payments API behind the gateway at `upstream`.
pub fn gateway_config(dir: &Path, upstream: &str) -> std::path::PathBuf {
    let extra = format!(
        r#"
[systems.git.gateway]
upstream = "{upstream}"
credential = {{ header = "authorization", prefix = "Bearer ", value_env = "GIT_UPSTREAM_TOKEN" }}

[[systems.git.gateway.routes]]
method = "POST"
path = "/repos/{{owner}}/{{repo}}/pulls"
action = "open_pr"
resource = "repo:{{owner}}/{{repo}}"

[[systems.git.gateway.routes]]
method = "GET"
path = "/repos/{{owner}}/{{repo}}"
action = "read"
resource = "repo:{{owner}}/{{repo}}"

[systems.payments.gateway]
upstream = "{upstream}/v1"
credential = {{ header = "x-api-key", value_env = "PAYMENTS_UPSTREAM_KEY" }}

[[systems.payments.gateway.routes]]
method = "POST"
path = "/payments"
action = "create"
details = {{ amount = "/amount", currency = "/currency", creditor = "/creditor" }}
"#
    );
    example_config(dir, |text| format!("{text}\n{extra}"))
}

pub fn start(dir: &Path, config: &Path) -> Server {
    Server::start_env(
        dir,
        Some(config),
        &[
            ("GIT_UPSTREAM_TOKEN", GIT_SECRET),
            ("PAYMENTS_UPSTREAM_KEY", PAYMENTS_KEY),
        ],
    )
}

pub async fn git_token(
    server: &Server,
    agent: &str,
    scope: &str,
    resource: &str,
) -> (String, String) {
    let (task, txn) = server.task(agent, "release", &["git"]).await;
    let (status, body) = server
        .exchange(agent, &txn, "git", scope, &[("resource", resource)])
        .await;
    assert_eq!(status, 200, "{body}");
    (task, body["access_token"].as_str().unwrap().to_owned())
}

pub async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, format!("{base}/gateway{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn forwards_a_mapped_route_with_the_upstream_credential_and_never_the_agents_token() {
    let dir = temp_dir();
    let (upstream_url, seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let server = start(dir.path(), &config);
    let agent = server.identity("release-bot");
    let (task, token) = git_token(&server, &agent, "open_pr", "repo:acme/app").await;

    let (status, body) = call(
        &server.base,
        reqwest::Method::POST,
        "/git/repos/acme/app/pulls?draft=true",
        Some(&token),
        Some(json!({ "title": "Fix the build", "head": "fix", "base": "main" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["path"], "/repos/acme/app/pulls");

    let seen = seen.lock().await.clone();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.uri, "/repos/acme/app/pulls?draft=true");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {GIT_SECRET}").as_str())
    );
    assert!(request.body.contains("Fix the build"));
    // The agent's token (and the identity it was minted for) never reach the upstream.
    assert!(!request.everything().contains(&token), "{request:?}");
    assert!(!request.everything().contains(&agent));

    // The use is recorded against the grant, and the trace shows it next to it.
    let jti = server
        .verify_access_token(&token, "https://git.example.com")
        .await["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let trace = wait_for_trace(&server, &task, "POST /repos/{owner}/{repo}/pulls").await;
    assert!(trace.contains("status=201"), "{trace}");
    assert!(trace.contains(&jti), "{trace}");
    let json = stdout(&cli(&[
        "trace",
        &task,
        "--json",
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ]));
    // The use is under the grant whose token it used.
    let tree: Value = serde_json::from_str(&json).unwrap();
    let grant = tree["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["event"]["token"]["jti"] == jti.as_str())
        .expect("the grant");
    let record = &grant["uses"][0];
    assert_eq!(record["event"]["token"]["jti"], jti.as_str());
    assert_eq!(record["event"]["use"]["status"], 201);
    assert_eq!(record["event"]["resource"], "repo:acme/app");
    assert!(record["event"]["use"]["bytes_out"].as_u64().unwrap() > 0);
    assert!(!json.contains(&token));
}

/// Waits until `handoff trace TASK` mentions `needle` (use records land just after the response).
pub async fn wait_for_trace(server: &Server, task: &str, needle: &str) -> String {
    for _ in 0..100 {
        let output = cli(&[
            "trace",
            task,
            "--data-dir",
            server.data_dir.to_str().unwrap(),
        ]);
        let trace = stdout(&output);
        if trace.contains(needle) {
            return trace;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the trace of `{task}` never showed `{needle}`");
}

#[tokio::test]
async fn refuses_unmapped_routes_and_calls_outside_the_token() {
    let dir = temp_dir();
    let (upstream_url, seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let server = start(dir.path(), &config);
    let agent = server.identity("release-bot");
    let (_, token) = git_token(&server, &agent, "open_pr", "repo:acme/app").await;
    let base = &server.base;
    let (post, get, delete) = (
        reqwest::Method::POST,
        reqwest::Method::GET,
        reqwest::Method::DELETE,
    );
    let token = Some(token.as_str());
    let empty = || Some(json!({}));
    // (method, path, token, body, status, error code)
    let refusals = [
        (
            delete,
            "/git/repos/acme/app",
            token,
            None,
            403,
            "route_not_mapped",
        ),
        (
            post.clone(),
            "/git/admin",
            token,
            None,
            403,
            "route_not_mapped",
        ),
        // The token holds open_pr, not read.
        (
            get,
            "/git/repos/acme/app",
            token,
            None,
            403,
            "insufficient_scope",
        ),
        (
            post.clone(),
            "/git/repos/acme/other/pulls",
            token,
            empty(),
            403,
            "resource_mismatch",
        ),
        (
            post.clone(),
            "/git/repos/acme/app/pulls",
            None,
            None,
            401,
            "invalid_token",
        ),
        (
            post.clone(),
            "/git/repos/acme/app/pulls",
            Some("not-a-token"),
            None,
            401,
            "invalid_token",
        ),
        // A token for git is not a token for payments.
        (
            post.clone(),
            "/payments/payments",
            token,
            empty(),
            401,
            "invalid_token",
        ),
        // A system without a gateway table is not behind the gateway.
        (
            post.clone(),
            "/ci/deploy",
            token,
            None,
            404,
            "unknown_system",
        ),
    ];
    for (method, path, token, body, status_wanted, code) in refusals {
        let (status, answer) = call(base, method, path, token, body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (status_wanted, Some(code)),
            "{path}: {answer}"
        );
    }
    // Dot segments are sent raw in
    // `hardening_http::the_gateway_refuses_dot_segments_sent_raw_and_never_forwards_them`
    // (this client would resolve them before sending).
    assert!(seen.lock().await.is_empty(), "nothing reached the upstream");
}

#[tokio::test]
async fn a_body_that_differs_from_the_tokens_authorization_details_is_refused() {
    let dir = temp_dir();
    let (upstream_url, seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let server = start(dir.path(), &config);
    let payer = server.identity("payments-agent");
    let (_, txn) = server.task(&payer, "payments", &["payments"]).await;
    let details = r#"[{"type":"payments","amount":5000,"currency":"EUR","creditor":"ACME GmbH"}]"#;
    let (status, body) = server
        .exchange(
            &payer,
            &txn,
            "payments",
            "create",
            &[("authorization_details", details)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let post = reqwest::Method::POST;

    let tampered = json!({ "amount": 990000, "currency": "EUR", "creditor": "ACME GmbH" });
    let (status, body) = call(
        &server.base,
        post.clone(),
        "/payments/payments",
        Some(&token),
        Some(tampered),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("details_mismatch")),
        "{body}"
    );
    let other_creditor = json!({ "amount": 5000, "currency": "EUR", "creditor": "Mallory Ltd" });
    let (status, body) = call(
        &server.base,
        post.clone(),
        "/payments/payments",
        Some(&token),
        Some(other_creditor),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("details_mismatch")),
        "{body}"
    );
    let (status, body) = call(
        &server.base,
        post.clone(),
        "/payments/payments",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("details_mismatch")),
        "{body}"
    );
    assert!(seen.lock().await.is_empty());

    let exact =
        json!({ "amount": 5000, "currency": "EUR", "creditor": "ACME GmbH", "memo": "invoice 7" });
    let (status, body) = call(
        &server.base,
        post,
        "/payments/payments",
        Some(&token),
        Some(exact),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let seen = seen.lock().await.clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/v1/payments");
    assert_eq!(seen[0].header("x-api-key"), Some(PAYMENTS_KEY));
    assert_eq!(seen[0].header("authorization"), None);
}

#[tokio::test]
async fn a_revoked_tasks_token_stops_working_inside_handoff_serve_at_once() {
    let dir = temp_dir();
    let (upstream_url, _seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let server = start(dir.path(), &config);
    let agent = server.identity("release-bot");
    let (task, token) = git_token(&server, &agent, "open_pr", "repo:acme/app").await;
    let path = "/git/repos/acme/app/pulls";
    let (status, _) = call(
        &server.base,
        reqwest::Method::POST,
        path,
        Some(&token),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = server
        .admin(
            "revoke",
            json!({ "kind": "task", "id": task, "reason": "leaked" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &server.base,
        reqwest::Method::POST,
        path,
        Some(&token),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
}

/// A standalone `handoff gateway`, killed on drop.
pub struct Standalone {
    child: Child,
    pub base: String,
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn standalone(config: &Path, handoff: &str, system: &str, secret: &str) -> Standalone {
    let mut child = Command::new(binary())
        .args(["gateway", "--listen", "127.0.0.1:0", "--poll-seconds", "1"])
        .arg("--config")
        .arg(config)
        .args(["--handoff", handoff, "--feed-system", system])
        .env("HANDOFF_FEED_SECRET", secret)
        .env("GIT_UPSTREAM_TOKEN", GIT_SECRET)
        .env("PAYMENTS_UPSTREAM_KEY", PAYMENTS_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("handoff gateway starts");
    let first = crate::bounded::first_line(&mut child, crate::bounded::START_TIMEOUT)
        .unwrap_or_else(|hung| panic!("handoff gateway: {hung}"));
    let base = first
        .trim()
        .strip_prefix("handoff gateway listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_owned();
    Standalone { child, base }
}

#[tokio::test]
async fn a_standalone_gateway_verifies_offline_and_honours_a_revocation_within_its_poll() {
    let dir = temp_dir();
    let (upstream_url, seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let server = start(dir.path(), &config);
    let secret = server.system_secret("git");
    let gateway = standalone(&config, &server.base, "git", &secret);
    let agent = server.identity("release-bot");
    let (task, token) = git_token(&server, &agent, "open_pr", "repo:acme/app").await;
    // A second task's token, never revoked, for the gateway to check once Handoff is gone.
    let (_, other) = git_token(&server, &agent, "open_pr", "repo:acme/app").await;
    let path = "/git/repos/acme/app/pulls";

    let (status, body) = call(
        &gateway.base,
        reqwest::Method::POST,
        path,
        Some(&token),
        Some(json!({ "title": "t" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        seen.lock().await[0].header("authorization"),
        Some(format!("Bearer {GIT_SECRET}").as_str())
    );
    let (status, body) = call(
        &gateway.base,
        reqwest::Method::DELETE,
        path,
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("route_not_mapped")),
        "{body}"
    );
    // The standalone gateway posts its uses to Handoff, which records them in the chain.
    let trace = wait_for_trace(&server, &task, "actor=gateway:git").await;
    assert!(
        trace.contains("call=\"POST /repos/{owner}/{repo}/pulls\" status=201"),
        "{trace}"
    );

    let output = cli(&[
        "revoke",
        "task",
        &task,
        "--reason",
        "leaked",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let revoked = std::time::Instant::now();
    // Documented window: the poll interval (1 s here) plus one round trip of the gateway's feed
    // read. The bound allows 1.5 s beyond the poll for that round trip and for this loop's own
    // calls on a loaded machine; a token still accepted after it fails the test.
    loop {
        let (status, body) = call(
            &gateway.base,
            reqwest::Method::POST,
            path,
            Some(&token),
            Some(json!({})),
        )
        .await;
        if status == 401 {
            assert_eq!(body["error"], "invalid_token");
            break;
        }
        assert_eq!(status, 201, "{body}");
        assert!(
            revoked.elapsed() < Duration::from_millis(2500),
            "the revoked token still worked after {:?}",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Offline: with Handoff stopped, the gateway still checks tokens itself, from the keys and
    // the deny list it holds.
    server.stop();
    let stopped = std::time::Instant::now();
    let (status, body) = call(
        &gateway.base,
        reqwest::Method::POST,
        path,
        Some(&other),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201, "verified without Handoff: {body}");
    let (status, body) = call(
        &gateway.base,
        reqwest::Method::POST,
        path,
        Some(&token),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("invalid_token")),
        "{body}"
    );
    // But a deny list it cannot refresh goes stale: after 10 unread polls (at least 10 s) every
    // token is refused, the good one too.
    let deadline = stopped + Duration::from_secs(40);
    loop {
        let (status, body) = call(
            &gateway.base,
            reqwest::Method::POST,
            path,
            Some(&other),
            Some(json!({})),
        )
        .await;
        if status == 503 {
            assert_eq!(body["error"], "temporarily_unavailable", "{body}");
            break;
        }
        assert_eq!(status, 201, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "a gateway that could not read the feed for {:?} still accepted tokens",
            stopped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        stopped.elapsed() >= Duration::from_secs(8),
        "the feed went stale after only {:?}",
        stopped.elapsed()
    );
}

/// An OAuth token endpoint that grants `cc-<scope>` and records each request's form: for 60 s,
/// but `repo:read` for 7 s (the gateway keeps it 2 s, dropping it 5 s before it expires).
async fn token_endpoint() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let seen = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let sink = seen.clone();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                let basic = headers["authorization"].to_str().unwrap().to_owned();
                sink.lock().await.push((basic, body.clone()));
                let scope = body
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("scope="))
                    .unwrap_or("none")
                    .replace("%3A", ":");
                let expires_in = if scope == "repo:read" { 7 } else { 60 };
                axum::Json(json!({
                    "access_token": format!("cc-{scope}"),
                    "token_type": "Bearer",
                    "expires_in": expires_in,
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn a_client_credentials_upstream_gets_the_narrowest_scope_once_per_token_lifetime() {
    let dir = temp_dir();
    let (upstream_url, seen) = upstream().await;
    let (token_url, grants_seen) = token_endpoint().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        r#"credential = { header = "authorization", prefix = "Bearer ", value_env = "GIT_UPSTREAM_TOKEN" }"#,
        &format!(
            r#"credential = {{ token_url = "{token_url}", client_id = "handoff", client_secret_env = "GIT_CLIENT_SECRET", scopes = {{ open_pr = "pulls:write", read = "repo:read" }} }}"#
        ),
    );
    std::fs::write(&config, text).unwrap();
    let server = Server::start_env(
        dir.path(),
        Some(&config),
        &[
            ("GIT_CLIENT_SECRET", "s3cret"),
            ("PAYMENTS_UPSTREAM_KEY", PAYMENTS_KEY),
        ],
    );
    let agent = server.identity("release-bot");
    let (_, token) = git_token(&server, &agent, "open_pr", "repo:acme/app").await;
    for _ in 0..3 {
        let (status, body) = call(
            &server.base,
            reqwest::Method::POST,
            "/git/repos/acme/app/pulls",
            Some(&token),
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let grants = grants_seen.lock().await.clone();
    assert_eq!(grants.len(), 1, "cached for its lifetime: {grants:?}");
    let (basic, form) = &grants[0];
    assert!(basic.starts_with("Basic "), "{basic}");
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(form.contains("scope=pulls%3Awrite"), "{form}");
    let seen = seen.lock().await.clone();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert_eq!(
            request.header("authorization"),
            Some("Bearer cc-pulls:write")
        );
    }

    // Once the cached token's lifetime is over, the next call asks for a fresh one.
    let (_, reader) = git_token(&server, &agent, "read", "repo:acme/app").await;
    let reads = |grants: &[(String, String)]| {
        grants
            .iter()
            .filter(|(_, form)| form.contains("scope=repo%3Aread"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = call(
            &server.base,
            reqwest::Method::GET,
            "/git/repos/acme/app",
            Some(&reader),
            None,
        )
        .await;
        assert_eq!(status, 201, "{body}");
        if reads(&grants_seen.lock().await) >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the expired upstream token was still reused"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The write scope's token has not expired, and was never asked for again.
    let all = grants_seen.lock().await.clone();
    assert_eq!(all.len() - reads(&all), 1, "{all:?}");
}

/// A `git:read` token for `repo:acme/app` held by the last of `actors`: the first opens a task,
/// each hands `git:read` to the next, the last exchanges. Its task and delegation ids come along.
struct DelegatedToken {
    task: String,
    delegations: Vec<String>,
    /// The holder's identity and Transaction Token, to exchange again.
    holder: String,
    txn: String,
    token: String,
}

async fn delegated_read(server: &Server, actors: &[&str]) -> DelegatedToken {
    let agent = server.identity(actors[0]);
    let (task, mut txn) = server.task(&agent, "release", &["git"]).await;
    let mut identity = agent;
    let mut delegations = Vec::new();
    for delegate in &actors[1..] {
        let (status, body) =
            crate::delegation::delegate(server, &identity, &txn, delegate, &["git:read"], None)
                .await;
        assert_eq!(status, 201, "{body}");
        delegations.push(body["delegation_id"].as_str().unwrap().to_owned());
        txn = body["txn_token"].as_str().unwrap().to_owned();
        identity = server.identity(delegate);
    }
    let (status, body) = server
        .exchange(
            &identity,
            &txn,
            "git",
            "read",
            &[("resource", "repo:acme/app")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    DelegatedToken {
        task,
        delegations,
        holder: identity,
        txn,
        token: body["access_token"].as_str().unwrap().to_owned(),
    }
}

/// What each case revokes, given the chain's actors and its token: `(kind, id, why)`, `why`
/// being the reason `handoff serve`'s gateway gives.
type Revoke = fn(&[&str], &DelegatedToken) -> (&'static str, String, &'static str);

/// Every way a delegate's token can lose its authority: its delegation, the delegate agent, the
/// task's own agent (one `agent` entry in the feed, no `task` entries), or a delegate between the
/// task's agent and the token's holder.
const DELEGATE_CASES: [(&[&str], Revoke); 4] = [
    (&["rv-agent-1", "rv-worker-1"], |_, t| {
        ("delegation", t.delegations[0].clone(), "delegation_revoked")
    }),
    (&["rv-agent-2", "rv-worker-2"], |a, _| {
        ("agent", a[1].to_owned(), "agent_revoked")
    }),
    (&["rv-agent-3", "rv-worker-3"], |a, _| {
        ("agent", a[0].to_owned(), "task_revoked")
    }),
    (&["rv-agent-4", "rv-worker-4", "rv-sub-4"], |a, _| {
        ("agent", a[1].to_owned(), "agent_revoked")
    }),
];

#[tokio::test]
async fn a_delegates_token_stops_at_the_gateway_inside_handoff_serve_at_once_however_it_is_cut() {
    let dir = temp_dir();
    let (upstream_url, _seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let server = start(dir.path(), &config);
    let secret = server.system_secret("git");
    let path = "/git/repos/acme/app";
    for (actors, revoke) in DELEGATE_CASES {
        let delegated = delegated_read(&server, actors).await;
        let token = delegated.token.as_str();
        let (status, body) =
            call(&server.base, reqwest::Method::GET, path, Some(token), None).await;
        assert_eq!(status, 201, "{actors:?}: {body}");

        let (kind, id, why) = revoke(actors, &delegated);
        let (status, body) = server
            .admin(
                "revoke",
                json!({ "kind": kind, "id": id, "reason": "cut the delegate" }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) =
            call(&server.base, reqwest::Method::GET, path, Some(token), None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token")),
            "{actors:?} after revoking {kind} {id}: {body}"
        );
        assert!(
            body["error_description"].as_str().unwrap().contains(why),
            "{actors:?}: {body}"
        );
        // The holder's next exchange is denied for the same reason.
        let (status, body) = server
            .exchange(
                &delegated.holder,
                &delegated.txn,
                "git",
                "read",
                &[("resource", "repo:acme/app")],
            )
            .await;
        assert_eq!(
            (status, crate::delegation::reason(&body)),
            (403, why),
            "{actors:?}: {body}"
        );
        // Introspection answers from the same check, so it agrees.
        assert_eq!(
            server.introspect("git", &secret, token).await.1["active"],
            false,
            "{actors:?} (task {})",
            delegated.task
        );
    }
}

#[tokio::test]
async fn a_delegates_token_stops_at_a_standalone_gateway_within_its_poll_however_it_is_cut() {
    let dir = temp_dir();
    let (upstream_url, _seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let server = start(dir.path(), &config);
    let secret = server.system_secret("git");
    let gateway = standalone(&config, &server.base, "git", &secret);
    let path = "/git/repos/acme/app";
    for (actors, revoke) in DELEGATE_CASES {
        let delegated = delegated_read(&server, actors).await;
        let token = delegated.token.as_str();
        let (status, body) =
            call(&gateway.base, reqwest::Method::GET, path, Some(token), None).await;
        assert_eq!(status, 201, "{actors:?}: {body}");

        let (kind, id, _) = revoke(actors, &delegated);
        let (status, body) = server
            .admin(
                "revoke",
                json!({ "kind": kind, "id": id, "reason": "cut the delegate" }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        // Documented window: the poll interval (1 s here) plus one round trip; the deadline is
        // generous for a loaded machine.
        let revoked = std::time::Instant::now();
        loop {
            let (status, body) =
                call(&gateway.base, reqwest::Method::GET, path, Some(token), None).await;
            if status == 401 {
                assert_eq!(body["error"], "invalid_token", "{body}");
                break;
            }
            assert_eq!(status, 201, "{actors:?}: {body}");
            assert!(
                revoked.elapsed() < Duration::from_secs(5),
                "{actors:?}: the token still worked offline {:?} after revoking {kind} {id}",
                revoked.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn an_ended_tasks_token_stops_at_a_standalone_gateway_within_its_poll() {
    // Ending a task writes a `task` entry (reason `ended`) to the revocation feed, so a gateway
    // that cannot call back refuses its tokens too, as introspection does.
    let dir = temp_dir();
    let (upstream_url, _seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let server = start(dir.path(), &config);
    let secret = server.system_secret("git");
    let gateway = standalone(&config, &server.base, "git", &secret);
    let agent = server.identity("release-bot");
    let (task, token) = git_token(&server, &agent, "read", "repo:acme/app").await;
    let path = "/git/repos/acme/app";
    let (status, body) = call(
        &gateway.base,
        reqwest::Method::GET,
        path,
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let response = server
        .client
        .post(format!("{}/v1/tasks/{task}/end", server.base))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let ended = std::time::Instant::now();
    loop {
        let (status, body) = call(
            &gateway.base,
            reqwest::Method::GET,
            path,
            Some(&token),
            None,
        )
        .await;
        if status == 401 {
            assert_eq!(body["error"], "invalid_token", "{body}");
            break;
        }
        assert_eq!(status, 201, "{body}");
        assert!(
            ended.elapsed() < Duration::from_secs(5),
            "the ended task's token still worked offline after {:?}",
            ended.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The task is ended, not revoked: its state and the feed entry's reason say so.
    let output = crate::harness::cli(&[
        "trace",
        &task,
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ]);
    let trace = crate::harness::stdout(&output);
    assert!(trace.contains("task_end"), "{trace}");
}

/// Posts a standalone gateway's report of uses to Handoff; `basic` is `system:secret`, `bearer`
/// a token. Returns the status, the body (null when empty) and the challenge.
async fn report(
    server: &Server,
    basic: Option<(&str, &str)>,
    bearer: Option<&str>,
    body: String,
) -> (u16, Value, Option<String>) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/gateway/uses", server.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some((system, secret)) = basic {
        request = request.basic_auth(system, Some(secret));
    }
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body, challenge)
}

fn events(records: &[Value]) -> String {
    json!({ "events": records }).to_string()
}

#[tokio::test]
async fn a_report_of_uses_is_recorded_only_when_every_record_is_a_use_of_the_reporting_systems_tokens()
 {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let secret = server.system_secret("git");
    let agent = server.identity("release-bot");
    let (task, _) = server.task(&agent, "release", &["git"]).await;
    // A use of a git token, as a standalone gateway in front of git reports it.
    let use_of = |call: &str| {
        json!({
            "kind": "use",
            "system": "git",
            "task": task,
            "agent": "release-bot",
            "actions": ["git:read"],
            "outcome": "permit",
            "token": { "jti": "at_reported", "aud": "https://git.example.com", "scope": "git:read", "exp": 4_102_444_800_i64 },
            "use": { "call": call, "status": 200, "bytes_in": 0, "bytes_out": 0, "latency_us": 1 },
        })
    };
    let with = |call: &str, name: &str, value: Value| {
        let mut record = use_of(call);
        record[name] = value;
        record
    };
    let git = Some(("git", secret.as_str()));

    // Who reports: only a system, with its own credential.
    for (basic, bearer) in [
        (None, None),
        (Some(("git", "wrong-secret")), None),
        (Some(("ci", secret.as_str())), None),
        (None, Some(secret.as_str())),
    ] {
        let (status, body, challenge) = report(
            &server,
            basic,
            bearer,
            events(&[use_of("GET /refused/caller")]),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{basic:?} {bearer:?}: {body}"
        );
        assert!(body["error_description"].is_string(), "{body}");
        assert!(
            challenge
                .as_deref()
                .is_some_and(|c| c.starts_with("Basic ")),
            "{challenge:?}"
        );
    }

    // What it reports: only use records of its own system, under tokens for its audience.
    let refused = [
        (
            "another system",
            with("GET /refused/system", "system", json!("ci")),
        ),
        (
            "not a use",
            with("GET /refused/kind", "kind", json!("exchange")),
        ),
        (
            "another system's token",
            with(
                "GET /refused/audience",
                "token",
                json!({ "jti": "at_ci", "aud": "https://ci.example.com", "scope": "ci:run_tests", "exp": 4_102_444_800_i64 }),
            ),
        ),
        ("no token", with("GET /refused/token", "token", Value::Null)),
    ];
    for (case, record) in refused {
        let (status, body, _) = report(&server, git, None, events(&[record])).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("access_denied")),
            "{case}: {body}"
        );
    }
    // One foreign record refuses the whole report: the good record before it is not kept.
    let (status, body, _) = report(
        &server,
        git,
        None,
        events(&[
            use_of("GET /refused/batch"),
            with("GET /refused/batch-foreign", "system", json!("ci")),
        ]),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("access_denied")),
        "{body}"
    );
    // At most 500 records, and a body that is a report.
    let too_many = vec![use_of("GET /refused/many"); 501];
    for (case, body) in [
        ("501 records", events(&too_many)),
        ("not a report", "{\"records\":[]}".to_owned()),
    ] {
        let (status, answer, _) = report(&server, git, None, body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_request")),
            "{case}: {answer}"
        );
    }

    let (status, body, _) = report(&server, git, None, events(&[use_of("GET /accepted")])).await;
    assert_eq!(status, 204, "{body}");
    let trace = wait_for_trace(&server, &task, "call=\"GET /accepted\"").await;
    assert!(trace.contains("actor=gateway:git"), "{trace}");
    assert!(
        !trace.contains("/refused/"),
        "a refused report was recorded: {trace}"
    );
}
