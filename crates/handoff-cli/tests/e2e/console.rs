//! The web console at `/console` on the real server: embedded assets under a strict CSP,
//! one-time sign-in links, sessions, CSRF and Origin checks, the inbox and a request per group,
//! decisions through core's separation of duties, the live stream, and the operator's timeline
//! and revocations. The browser scenarios (Chromium driven by Playwright) are in
//! `console/test_console.py`, run by [`console_in_a_browser`].

use crate::harness::{
    Server, cli, example_config, stderr, stdout, temp_dir, wait_for_notice, webhook_receiver,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LARGE: &str =
    r#"[{"type":"payments","amount":250000,"currency":"EUR","creditor":"ACME GmbH"}]"#;

/// The example deployment with `security-oncall` as the console's operator group.
fn config(dir: &Path) -> PathBuf {
    example_config(dir, |text| {
        format!("{text}\n[console]\noperator_group = \"security-oncall\"\n")
    })
}

/// A client that does not follow redirects and keeps no cookies: each test names its cookie.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `handoff approver login` against `server`: the printed one-time link.
fn login_link(server: &Server, user: &str, groups: &[&str]) -> String {
    let mut args = vec![
        "approver",
        "login",
        "--user",
        user,
        "--server",
        &server.base,
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ];
    for group in groups {
        args.extend(["--group", group]);
    }
    let output = cli(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output).trim().to_owned()
}

/// A signed-in person: the session cookie and the CSRF token.
struct Person {
    cookie: String,
    csrf: String,
    origin: String,
    base: String,
    client: reqwest::Client,
}

impl Person {
    async fn sign_in(server: &Server, user: &str, groups: &[&str]) -> Self {
        let link = login_link(server, user, groups);
        let client = raw_client();
        let response = client.get(&link).send().await.unwrap();
        assert_eq!(response.status(), 303);
        let set = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        let cookie = set.split(';').next().unwrap().to_owned();
        let mut person = Self {
            cookie,
            csrf: String::new(),
            origin: server.base.clone(),
            base: server.base.clone(),
            client,
        };
        let (status, me) = person.get("/me").await;
        assert_eq!(status, 200, "{me}");
        person.csrf = me["csrf"].as_str().unwrap().to_owned();
        person
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}/console/api{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/console/api{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-handoff-csrf", &self.csrf)
            .header("origin", &self.origin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

/// A payments task whose large payment waits for `payments-owners`: (agent, txn, task, approval).
async fn pending_payment(server: &Server) -> (String, String, String, String) {
    let payer = server.identity("payments-agent");
    let (task, txn) = server.task(&payer, "payments", &["payments"]).await;
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
    let approval = body["approval_id"].as_str().unwrap().to_owned();
    (payer, txn, task, approval)
}

#[tokio::test]
async fn console_assets_are_embedded_and_served_under_a_strict_csp() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), Some(&config(dir.path())));
    let client = raw_client();
    for (path, kind) in [
        ("/console/", "text/html"),
        ("/console/assets/console.js", "text/javascript"),
        ("/console/assets/console.css", "text/css"),
    ] {
        let response = client
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        for needed in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(needed), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.text().await.unwrap();
        if path == "/console/" {
            // No inline script or style: every script has a src, no style attribute or element.
            assert_eq!(body.matches("<script").count(), 1, "{body}");
            assert!(body.contains("<script src=\"/console/assets/console.js\""));
            assert!(
                !body.contains("style=") && !body.contains("<style"),
                "{body}"
            );
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{body}"
            );
        }
    }
    let response = client
        .get(format!("{}/console", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(response.headers()["location"], "/console/");
}

#[tokio::test]
async fn console_sign_in_links_work_once_and_set_a_strict_session_cookie() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), Some(&config(dir.path())));
    let link = login_link(&server, "bob", &["payments-owners"]);
    assert!(
        link.starts_with(&format!("{}/console/sign-in?link=", server.base)),
        "{link}"
    );
    let client = raw_client();
    let response = client.get(&link).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/console/");
    let set = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=28800",
    ] {
        assert!(set.contains(attribute), "{set}");
    }
    // Served over http here: no Secure (a browser would drop the cookie).
    assert!(!set.contains("Secure"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let me: Value = client
        .get(format!("{}/console/api/me", server.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"], "bob");
    assert_eq!(me["groups"], json!(["payments-owners"]));
    assert_eq!(me["operator"], false);

    // Used once: the same link again signs nobody in.
    let again = client.get(&link).send().await.unwrap();
    assert_eq!(again.status(), 303);
    assert_eq!(again.headers()["location"], "/console/#sign-in-failed");
    assert!(again.headers().get("set-cookie").is_none());

    // No session, no answer; a made-up cookie is no session.
    let response = client
        .get(format!("{}/console/api/approvals", server.base))
        .header("cookie", "handoff_console=session_made_up")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    // Only the operator credential makes links.
    let response = client
        .post(format!("{}/console/api/admin/sign-in-links", server.base))
        .bearer_auth("not-the-operator")
        .json(&json!({ "user": "mallory", "groups": ["payments-owners"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn console_inbox_shows_a_payment_to_its_owners_only_and_an_owner_releases_it() {
    let dir = temp_dir();
    let server = Server::in_process(dir.path(), Some(&config(dir.path())));
    let (payer, txn, task, approval) = pending_payment(&server).await;

    let bob = Person::sign_in(&server, "bob", &["payments-owners"]).await;
    let (status, inbox) = bob.get("/approvals").await;
    assert_eq!(status, 200, "{inbox}");
    let pending = inbox["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{inbox}");
    assert_eq!(pending[0]["id"], approval.as_str());
    assert_eq!(pending[0]["risk"], "critical");
    assert!(pending[0]["seconds_to_expiry"].as_i64().unwrap() > 0);

    let (status, shown) = bob.get(&format!("/approvals/{approval}")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["task"], task.as_str());
    assert_eq!(shown["task_context"]["intent"], "test a payments task");
    assert_eq!(shown["user"], "alice");
    assert_eq!(shown["agent"], "payments-agent");
    assert_eq!(shown["authorization_details"][0]["amount"], 250000);
    assert_eq!(shown["authorization_details"][0]["creditor"], "ACME GmbH");
    assert_eq!(shown["gating_policies"], json!(["payments-create-large"]));

    // Another group's person sees nothing of it, in the inbox or by its id.
    let carol = Person::sign_in(&server, "carol", &["support-leads"]).await;
    let (_, inbox) = carol.get("/approvals").await;
    assert!(inbox["pending"].as_array().unwrap().is_empty(), "{inbox}");
    let (status, _) = carol.get(&format!("/approvals/{approval}")).await;
    assert_eq!(status, 400);
    let (status, refused) = carol
        .post(
            &format!("/approvals/{approval}/approve"),
            json!({ "reason": "not mine" }),
        )
        .await;
    assert_eq!(status, 403, "{refused}");

    // A reason is required.
    let (status, _) = bob
        .post(
            &format!("/approvals/{approval}/approve"),
            json!({ "reason": " " }),
        )
        .await;
    assert_eq!(status, 400);
    let (status, decided) = bob
        .post(
            &format!("/approvals/{approval}/approve"),
            json!({ "reason": "invoice 7 checked" }),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "approved");
    assert_eq!(decided["decided_by"], "bob (console-link)");

    // The agent's next poll gets the token.
    server.advance(Duration::from_millis(2100));
    let (status, body) = server
        .exchange(
            &payer,
            &txn,
            "payments",
            "create",
            &[
                ("authorization_details", LARGE),
                ("approval_id", approval.as_str()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].as_str().is_some());
}

#[tokio::test]
async fn console_changes_need_the_session_csrf_token_and_the_console_origin() {
    let dir = temp_dir();
    let server = Server::in_process(dir.path(), Some(&config(dir.path())));
    let (_, _, _, approval) = pending_payment(&server).await;
    let mut bob = Person::sign_in(&server, "bob", &["payments-owners"]).await;
    let path = format!("/approvals/{approval}/approve");
    let good = bob.csrf.clone();
    bob.csrf = "csrf_forged".to_owned();
    let (status, body) = bob.post(&path, json!({ "reason": "forged" })).await;
    assert_eq!(status, 403, "{body}");
    bob.csrf = good;
    bob.origin = "https://evil.example".to_owned();
    let (status, body) = bob.post(&path, json!({ "reason": "cross-site" })).await;
    assert_eq!(status, 403, "{body}");
    // Nothing was decided by either.
    let (_, shown) = bob.get(&format!("/approvals/{approval}")).await;
    assert_eq!(shown["status"], "pending");
}

#[tokio::test]
async fn console_refuses_the_tasks_agent_and_user_as_approvers() {
    let dir = temp_dir();
    let server = Server::in_process(dir.path(), Some(&config(dir.path())));
    let (_, _, _, approval) = pending_payment(&server).await;
    for user in ["payments-agent", "alice", "Alice"] {
        let person = Person::sign_in(&server, user, &["payments-owners"]).await;
        let (status, body) = person
            .post(
                &format!("/approvals/{approval}/approve"),
                json!({ "reason": "self-approval" }),
            )
            .await;
        assert_eq!(status, 403, "{user}: {body}");
        assert_eq!(body["reason"], "separation_of_duties", "{user}: {body}");
    }
    let bob = Person::sign_in(&server, "bob", &["payments-owners"]).await;
    let (_, shown) = bob.get(&format!("/approvals/{approval}")).await;
    assert_eq!(shown["status"], "pending");
}

/// Reads the event stream until it has sent `count` `change` events.
async fn changes(response: &mut reqwest::Response, count: usize) {
    let mut seen = String::new();
    while seen.matches("event: change").count() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(30), response.chunk())
            .await
            .expect("the stream sends a change")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn console_stream_tells_a_second_owner_when_the_first_decides() {
    let dir = temp_dir();
    let server = Server::in_process(dir.path(), Some(&config(dir.path())));
    let (_, _, _, approval) = pending_payment(&server).await;
    let bob = Person::sign_in(&server, "bob", &["payments-owners"]).await;
    let dana = Person::sign_in(&server, "dana", &["payments-owners"]).await;
    let mut stream = dana
        .client
        .get(format!(
            "{}/console/api/events?approval={approval}",
            server.base
        ))
        .header("cookie", &dana.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // The first event is the state as the stream opened; the second, bob's decision.
    changes(&mut stream, 1).await;
    let (status, _) = bob
        .post(
            &format!("/approvals/{approval}/deny"),
            json!({ "reason": "unknown creditor" }),
        )
        .await;
    assert_eq!(status, 200);
    changes(&mut stream, 1).await;
    let (_, shown) = dana.get(&format!("/approvals/{approval}")).await;
    assert_eq!(shown["status"], "denied");
    assert_eq!(shown["reason"], "unknown creditor");
}

#[tokio::test]
async fn console_operator_reads_the_timeline_and_revokes_the_task_so_its_tokens_die() {
    let dir = temp_dir();
    let server = Server::in_process(dir.path(), Some(&config(dir.path())));
    let agent = server.identity("support-agent");
    let (task, txn) = server.task(&agent, "support", &["tickets"]).await;
    let (status, granted) = server.exchange(&agent, &txn, "tickets", "read", &[]).await;
    assert_eq!(status, 200, "{granted}");
    let token = granted["access_token"].as_str().unwrap().to_owned();
    // Off the task's plan: denied, and recorded.
    let (status, denied) = server.exchange(&agent, &txn, "git", "read", &[]).await;
    assert_eq!(status, 403, "{denied}");
    let secret = server.system_secret("tickets");
    let (_, active) = server.introspect("tickets", &secret, &token).await;
    assert_eq!(active["active"], true);

    // Not an operator: no timeline, no revocation.
    let bob = Person::sign_in(&server, "bob", &["payments-owners"]).await;
    let (status, _) = bob.get(&format!("/tasks/{task}")).await;
    assert_eq!(status, 403);
    let (status, _) = bob
        .post(
            "/revoke",
            json!({ "kind": "task", "id": task, "reason": "not mine to do" }),
        )
        .await;
    assert_eq!(status, 403);

    let oncall = Person::sign_in(&server, "erin", &["security-oncall"]).await;
    let (_, me) = oncall.get("/me").await;
    assert_eq!(me["operator"], true);
    let (status, view) = oncall.get(&format!("/tasks/{task}")).await;
    assert_eq!(status, 200, "{view}");
    let kinds: Vec<&str> = view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"]["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["task_open", "exchange", "exchange"], "{view}");
    assert_eq!(view["steps"][1]["event"]["outcome"], "permit");
    assert_eq!(view["steps"][2]["event"]["outcome"], "deny");

    let (status, revoked) = oncall
        .post(
            "/revoke",
            json!({ "kind": "task", "id": task, "reason": "suspicious closes" }),
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["by"], "console:erin");
    let (_, inactive) = server.introspect("tickets", &secret, &token).await;
    assert_eq!(inactive["active"], false, "{inactive}");
    let (_, view) = oncall.get(&format!("/tasks/{task}")).await;
    assert_eq!(view["task"]["state"], "revoked");
    let last = view["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"]["kind"], "revoke", "{last}");
}

#[tokio::test]
async fn console_notices_about_an_approval_link_to_its_page() {
    let (hook, received) = webhook_receiver().await;
    let dir = temp_dir();
    let config = example_config(dir.path(), |c| {
        format!("{c}\n[notifications]\nwebhook_url = \"{hook}\"\n")
    });
    let server = Server::start_with(&dir.path().join("data"), Some(&config));
    let (_, _, _, approval) = pending_payment(&server).await;
    let requested = wait_for_notice(&received, "approval_requested").await;
    assert_eq!(
        requested["console_url"],
        format!("{}/console/#/approval/{approval}", server.base)
    );
}

/// The Python with Playwright, and Debian's Chromium, or `None` after saying why.
fn browser() -> Option<PathBuf> {
    browser_with(
        "playwright.sync_api",
        "Playwright",
        "/usr/bin/chromium",
        "chromium",
    )
}

/// The Python with `module` (`needs` names it for a person), and the browser at `path` (Debian
/// package `package`), or `None` after saying why; with `HANDOFF_TEST_REQUIRE_PYTHON=1` (as
/// `scripts/test` sets) a missing one fails instead.
fn browser_with(module: &str, needs: &str, path: &str, package: &str) -> Option<PathBuf> {
    let python = crate::harness::python_with(module, needs, "the console's browser tests")?;
    if !Path::new(path).exists() {
        assert!(
            std::env::var("HANDOFF_TEST_REQUIRE_PYTHON").as_deref() != Ok("1"),
            "no {path}: apt-get install {package} (scripts/test does when root)"
        );
        eprintln!("skipping a console browser test: no {path}");
        return None;
    }
    Some(python)
}

#[tokio::test(flavor = "multi_thread")]
async fn console_in_a_browser() {
    let Some(python) = browser() else { return };
    // The OpenID provider olivia signs in through, in the browser.
    let provider = provider::start("olivia", &["payments-owners"]).await;
    let dir = temp_dir();
    let config = example_config(dir.path(), |text| {
        format!(
            "{text}\n[console]\noperator_group = \"security-oncall\"\n\n[console.oidc]\nissuer = \"{}\"\nclient_id = \"handoff-console\"\n",
            provider.base
        )
    });
    let server = Server::start_with(dir.path(), Some(&config));
    let stdout = run_browser_script(python, "test_console.py", &server, &config).await;
    assert!(
        stdout.contains("console browser scenarios passed"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn console_in_firefox() {
    let Some(python) = browser_with(
        "marionette_driver",
        "marionette_driver",
        "/usr/bin/firefox-esr",
        "firefox-esr",
    ) else {
        return;
    };
    let dir = temp_dir();
    let config = example_config(dir.path(), |text| text);
    let server = Server::start_with(dir.path(), Some(&config));
    let stdout = run_browser_script(python, "test_console_firefox.py", &server, &config).await;
    assert!(
        stdout.contains("console firefox scenarios passed"),
        "{stdout}"
    );
}

/// Runs `console/<script>` against `server`; its stdout, or a failure with both outputs.
async fn run_browser_script(
    python: PathBuf,
    script: &str,
    server: &Server,
    config: &Path,
) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut command = Command::new(python);
    command
        .current_dir(&repo)
        .arg(format!("crates/handoff-cli/tests/e2e/console/{script}"))
        .env("HANDOFF_BIN", crate::harness::binary())
        .env("HANDOFF_URL", &server.base)
        .env("HANDOFF_DATA_DIR", &server.data_dir)
        .env("HANDOFF_CONFIG", config)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    // Blocking, off the runtime the provider answers on.
    let output = tokio::task::spawn_blocking(move || {
        crate::bounded::output(command, Duration::from_secs(300))
    })
    .await
    .unwrap()
    .unwrap_or_else(|hung| panic!("the browser test: {hung}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// A tiny OpenID provider on a loopback port: discovery, an authorization endpoint that signs
/// `user` in at once, a token endpoint that checks the PKCE verifier and the redirect, the JWKS.
mod provider {
    use axum::extract::{Form, Query, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Redirect, Response};
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    pub struct Provider {
        pub base: String,
        /// Every authorization request's query, as received.
        pub authorizations: Arc<Mutex<Vec<HashMap<String, String>>>>,
    }

    struct Shared {
        base: String,
        user: String,
        groups: Vec<String>,
        /// code -> (challenge, nonce, redirect_uri)
        codes: Mutex<HashMap<String, (String, String, String)>>,
        authorizations: Arc<Mutex<Vec<HashMap<String, String>>>>,
    }

    pub async fn start(user: &str, groups: &[&str]) -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            base: base.clone(),
            user: user.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            codes: Mutex::new(HashMap::new()),
            authorizations: authorizations.clone(),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/jwks", get(jwks))
            .with_state(shared);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Provider {
            base,
            authorizations,
        }
    }

    async fn discovery(State(s): State<Arc<Shared>>) -> Json<Value> {
        Json(json!({
            "issuer": s.base,
            "authorization_endpoint": format!("{}/authorize", s.base),
            "token_endpoint": format!("{}/token", s.base),
            "jwks_uri": format!("{}/jwks", s.base),
        }))
    }

    async fn authorize(
        State(s): State<Arc<Shared>>,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        s.authorizations.lock().unwrap().push(q.clone());
        let code = format!("code-{}", s.codes.lock().unwrap().len());
        s.codes.lock().unwrap().insert(
            code.clone(),
            (
                q["code_challenge"].clone(),
                q["nonce"].clone(),
                q["redirect_uri"].clone(),
            ),
        );
        Redirect::to(&format!(
            "{}?code={code}&state={}",
            q["redirect_uri"], q["state"]
        ))
        .into_response()
    }

    async fn token(
        State(s): State<Arc<Shared>>,
        Form(form): Form<HashMap<String, String>>,
    ) -> Response {
        // A code works once, with the verifier of its challenge and the same redirect.
        let Some((challenge, nonce, redirect)) = s.codes.lock().unwrap().remove(&form["code"])
        else {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_grant"})),
            )
                .into_response();
        };
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        if URL_SAFE_NO_PAD.encode(digest.as_ref()) != challenge
            || form.get("redirect_uri") != Some(&redirect)
            || form.get("client_id").map(String::as_str) != Some("handoff-console")
        {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_grant"})),
            )
                .into_response();
        }
        let now = crate::harness::now();
        let id_token = crate::harness::sign(
            &crate::harness::ci_evidence_key(),
            Some("ci-dev-1"),
            Some("JWT"),
            &json!({
                "iss": s.base, "aud": "handoff-console", "sub": s.user, "groups": s.groups,
                "nonce": nonce, "iat": now, "exp": now + 300,
            }),
        );
        Json(json!({ "id_token": id_token, "access_token": "unused", "token_type": "Bearer" }))
            .into_response()
    }

    async fn jwks() -> Json<Value> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/quickstart/evidence/ci-jwks.json");
        Json(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
    }
}

#[tokio::test]
async fn console_signs_in_through_an_openid_provider_with_pkce() {
    let provider = provider::start("olivia", &["payments-owners", "security-oncall"]).await;
    let dir = temp_dir();
    let config = example_config(dir.path(), |text| {
        format!(
            "{text}\n[console]\noperator_group = \"security-oncall\"\n\n[console.oidc]\nissuer = \"{}\"\nclient_id = \"handoff-console\"\ngroups_claim = \"groups\"\n",
            provider.base
        )
    });
    let server = Server::start_with(&dir.path().join("data"), Some(&config));
    let client = raw_client();
    let options: Value = client
        .get(format!("{}/console/api/sign-in-options", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(options["oidc"], true);

    let started = client
        .get(format!("{}/console/oidc/start", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 303);
    let to_provider = started.headers()["location"].to_str().unwrap().to_owned();
    assert!(to_provider.starts_with(&format!("{}/authorize?", provider.base)));
    let state_cookie = started.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(state_cookie.contains("SameSite=Lax") && state_cookie.contains("HttpOnly"));
    let state_cookie = state_cookie.split(';').next().unwrap().to_owned();

    let back = client.get(&to_provider).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_owned();
    let asked = provider.authorizations.lock().unwrap()[0].clone();
    assert_eq!(asked["code_challenge_method"], "S256");
    assert_eq!(asked["response_type"], "code");
    assert_eq!(
        asked["redirect_uri"],
        format!("{}/console/oidc/callback", server.base)
    );

    // Without the browser's state cookie the callback signs nobody in (and spends nothing).
    let forged = client.get(&callback).send().await.unwrap();
    assert_eq!(forged.headers()["location"], "/console/#sign-in-failed");
    let signed = client
        .get(&callback)
        .header("cookie", &state_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    assert_eq!(signed.headers()["location"], "/console/");
    let session = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("handoff_console="))
        .unwrap();
    assert!(session.contains("SameSite=Strict") && session.contains("HttpOnly"));
    let session = session.split(';').next().unwrap().to_owned();
    let me: Value = client
        .get(format!("{}/console/api/me", server.base))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"], "olivia");
    assert_eq!(me["issuer"], provider.base.as_str());
    assert_eq!(me["groups"], json!(["payments-owners", "security-oncall"]));
    assert_eq!(me["operator"], true);

    // The same callback again: the sign-in was used.
    let replayed = client
        .get(&callback)
        .header("cookie", &state_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.headers()["location"], "/console/#sign-in-failed");
}

#[test]
fn console_config_is_strict_and_every_problem_is_reported_at_once() {
    let dir = temp_dir();
    let config = example_config(dir.path(), |text| {
        format!(
            "{text}\n[console]\noperator_group = \" \"\nsession_lifetime = \"48h\"\ncolour = \"blue\"\n\n[console.oidc]\nissuer = \"http://login.example.com\"\nclient_id = \"\"\nclient_secret_file = \"missing-secret\"\n"
        )
    });
    let output = cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64));
    let report = stderr(&output);
    for expected in [
        "unknown key `console.colour`",
        "console.operator_group must be a group name",
        "console.session_lifetime must be at most 86400s",
        "console.oidc.issuer must be an https URL",
        "console.oidc.client_id must not be empty",
        "console.oidc.client_secret_file:",
    ] {
        assert!(report.contains(expected), "missing {expected:?}:\n{report}");
    }
}
