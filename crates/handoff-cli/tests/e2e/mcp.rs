//! The MCP gateway with real peers: the official MCP Python SDK as the client, and an upstream
//! tool server written with the same SDK (MCPServer over Streamable HTTP). Shows allow, deny,
//! approval then retry, `tools/list` filtering, an argument-level rule, and that the client's
//! tokens never reach the upstream while the upstream credential does.
//!
//! Python comes from `HANDOFF_TEST_PYTHON` (set by `scripts/test`, which installs `mcp` into a
//! virtualenv under `target/`), else `target/mcp-venv/bin/python` when present. Without either,
//! these tests print why and pass, unless `HANDOFF_TEST_REQUIRE_PYTHON=1` (set by
//! `scripts/test`), when they fail.

use crate::gateway::{PAYMENTS_KEY, wait_for_trace};
use crate::harness::{Server, example_config, temp_dir};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/mcp")
}

/// The Python with the MCP SDK, or `None` (after saying why) when these tests cannot run here.
pub fn python() -> Option<PathBuf> {
    crate::harness::python_with("mcp", "the MCP SDK", "the MCP end-to-end tests")
}

/// The Python SDK's MCPServer on a loopback port; killed on drop.
pub struct Upstream {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Upstream {
    pub fn start(python: &Path, dir: &Path) -> Self {
        let log = dir.join("upstream-requests.jsonl");
        let mut child = Command::new(python)
            .arg(scripts().join("upstream.py"))
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the upstream MCP server starts");
        let first = crate::bounded::first_line(&mut child, crate::bounded::START_TIMEOUT)
            .unwrap_or_else(|hung| panic!("the upstream MCP server: {hung}"));
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
            .to_owned();
        Self { child, url, log }
    }

    /// Every request the upstream received: path and headers.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

pub fn config(dir: &Path, upstream: &str) -> PathBuf {
    let extra = format!(
        r#"
[systems.payments.gateway]
mcp = "{upstream}"
credential = {{ header = "x-api-key", value_env = "PAYMENTS_UPSTREAM_KEY" }}

[[systems.payments.gateway.tools]]
name = "create_payment"
action = "create"
resource = "creditor:{{creditor}}"
details = {{ amount = "/amount", currency = "/currency", creditor = "/creditor" }}

[[systems.payments.gateway.tools]]
name = "list_payments"
action = "read"

[systems.tickets.gateway]
mcp = "{upstream}"

[[systems.tickets.gateway.tools]]
name = "close_ticket"
action = "close"
resource = "ticket:{{ticket}}"

[[systems.tickets.gateway.tools]]
name = "export_ticket"
action = "read"
resource = "ticket:{{ticket}}"
"#
    );
    example_config(dir, |text| format!("{text}\n{extra}"))
}

/// One run of the Python SDK client against the gateway's `/mcp`.
pub fn client(python: &Path, server: &Server, identity: &str, txn: &str, args: &[&str]) -> Value {
    let mut command = Command::new(python);
    command
        .arg(scripts().join("client.py"))
        .arg(format!("{}/mcp", server.base))
        .args([identity, txn])
        .args(args);
    let output = crate::bounded::output(command, crate::bounded::CLI_TIMEOUT)
        .unwrap_or_else(|hung| panic!("the MCP client: {hung}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "client failed: {stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("{stdout}\n{stderr}"))
}

pub fn payment(amount: i64) -> String {
    json!({ "amount": amount, "currency": "EUR", "creditor": "ACME GmbH" }).to_string()
}

#[tokio::test]
async fn tool_calls_are_handoffs_allowed_denied_or_gated_by_their_arguments() {
    let Some(python) = python() else { return };
    let dir = temp_dir();
    let upstream = Upstream::start(&python, dir.path());
    let config = config(dir.path(), &upstream.url);
    let server = Server::start_env(
        dir.path(),
        Some(&config),
        &[("PAYMENTS_UPSTREAM_KEY", PAYMENTS_KEY)],
    );
    let agent = server.identity("payments-agent");
    let (task, txn) = server.task(&agent, "payments", &["payments"]).await;
    let run = |args: &[&str]| client(&python, &server, &agent, &txn, args);

    // tools/list: only the declared tools the task's plan reaches (tickets is outside the plan,
    // and the upstream's undeclared `wipe_ledger` is never offered).
    let listed = run(&["list"]);
    assert_eq!(
        listed,
        json!({ "tools": ["create_payment", "list_payments"] })
    );

    // The same tool, allowed for one amount...
    let small = run(&["call", "create_payment", &payment(5000)]);
    assert_eq!(
        small,
        json!({ "result": "created payment of 5000 EUR to ACME GmbH", "is_error": false, "logs": [], "progress": [] })
    );
    // ...and denied for another (over the cap a forbid policy sets): AuthZEN's -32001.
    let huge = run(&["call", "create_payment", &payment(2_000_000)]);
    assert_eq!(huge["error"]["code"], -32001, "{huge}");
    assert_eq!(huge["error"]["data"]["reason"], "forbidden", "{huge}");
    assert!(
        huge["error"]["data"]["decision_id"]
            .as_str()
            .unwrap()
            .starts_with("dec")
    );
    assert!(
        huge["error"]["data"]["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("payments-amount-cap"))
    );

    // A large payment waits for a payments owner; the retry after approval goes through.
    let gated = run(&["call", "create_payment", &payment(250_000)]);
    assert_eq!(gated["error"]["code"], -32003, "{gated}");
    let approval = gated["error"]["data"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(gated["error"]["data"]["approver_group"], "payments-owners");
    let owner = server.approver("olivia", &["payments-owners"]);
    let (status, decided) = server
        .approvals(
            &owner,
            "POST",
            &format!("/{approval}/approve"),
            Some(json!({ "reason": "invoice checked" })),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    let retried = run(&["call", "create_payment", &payment(250_000), &approval]);
    assert_eq!(
        retried,
        json!({ "result": "created payment of 250000 EUR to ACME GmbH", "is_error": false, "logs": [], "progress": [] })
    );
    // The approval was for that exact request: another amount cannot ride on it.
    let other = run(&["call", "create_payment", &payment(300_000), &approval]);
    assert_eq!(other["error"]["code"], -32001, "{other}");

    // A declared tool of a system outside the plan is denied; an undeclared one is unknown.
    let ticket = run(&["call", "close_ticket", r#"{"ticket":"T-1"}"#]);
    assert_eq!(ticket["error"]["code"], -32001, "{ticket}");
    assert_eq!(
        ticket["error"]["data"]["reason"], "outside_plan",
        "{ticket}"
    );
    let wipe = run(&["call", "wipe_ledger", "{}"]);
    assert_eq!(wipe["error"]["code"], -32602, "{wipe}");

    // The upstream saw the injected credential on tool calls, and never the client's tokens.
    let requests = upstream.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        let text = request.to_string();
        assert!(!text.contains(&agent), "the identity token leaked: {text}");
        assert!(!text.contains(&txn), "the task token leaked: {text}");
        assert_eq!(request["headers"]["x-api-key"], PAYMENTS_KEY, "{text}");
    }

    // Each forwarded call is a use, next to the grant the exchange recorded.
    let trace = wait_for_trace(&server, &task, "tool:create_payment").await;
    let uses = trace.matches("call=\"tool:create_payment\"").count();
    assert_eq!(uses, 2, "{trace}");

    // Each tool call that reached a decision is counted as an exchange of its system, like a
    // `POST /oauth/token` (the unknown tool reached none).
    let metrics = crate::operations::scrape(&server).await;
    let exchanges = |system: &str, outcome: &str, reason: &str| {
        let labels = [("system", system), ("outcome", outcome), ("reason", reason)];
        crate::operations::sample(&metrics, "handoff_exchanges_total", &labels)
    };
    assert_eq!(exchanges("payments", "permit", "none"), 2.0, "{metrics}");
    assert_eq!(exchanges("payments", "deny", "forbidden"), 1.0, "{metrics}");
    assert_eq!(
        exchanges("payments", "pending", "authorization_pending"),
        1.0
    );
    assert_eq!(
        exchanges("tickets", "deny", "outside_plan"),
        1.0,
        "{metrics}"
    );
    let calls = [("tool", "create_payment")];
    let tool_calls = crate::operations::sample(&metrics, "handoff_mcp_tool_calls_total", &calls);
    assert_eq!(tool_calls, 5.0, "{metrics}");
}

#[tokio::test]
async fn the_endpoint_needs_an_identity_and_fails_closed_on_unknown_methods() {
    let dir = temp_dir();
    let config = config(dir.path(), "http://127.0.0.1:9/mcp");
    let server = Server::start_env(
        dir.path(),
        Some(&config),
        &[("PAYMENTS_UPSTREAM_KEY", PAYMENTS_KEY)],
    );
    let client = reqwest::Client::new();
    let url = format!("{}/mcp", server.base);
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });

    let response = client.post(&url).json(&ping).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    let expected = format!(
        "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        server.base
    );
    assert!(challenge.contains(&expected), "{challenge}");
    // HTTP-level refusals have the error body every door has, never cached.
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token", "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed", "{body}");
    // No sessions either: DELETE (ending a session) is refused the same way, with or without
    // an identity.
    let agent = server.identity("payments-agent");
    for request in [client.delete(&url), client.delete(&url).bearer_auth(&agent)] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed", "{body}");
    }
    let response = client.get(&url).bearer_auth(&agent).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let metadata: Value = client
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            server.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], format!("{}/mcp", server.base));
    assert_eq!(metadata["authorization_servers"], json!([server.base]));

    let agent = server.identity("payments-agent");
    let call = |body: Value| {
        client
            .post(&url)
            .bearer_auth(&agent)
            .header("accept", "application/json, text/event-stream")
            .json(&body)
            .send()
    };
    let answer: Value = call(ping).await.unwrap().json().await.unwrap();
    assert_eq!(answer["result"], json!({}));
    for method in [
        "resources/list",
        "prompts/get",
        "sampling/createMessage",
        "server/discover",
    ] {
        let answer: Value = call(json!({ "jsonrpc": "2.0", "id": 2, "method": method }))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["error"]["code"], -32601, "{method}: {answer}");
    }
    // Without a task, nothing is listed or called.
    let answer: Value = call(json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/list" }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    // Browsers (an Origin header) are refused outright.
    let response = client
        .post(&url)
        .bearer_auth(&agent)
        .header("origin", "https://evil.example")
        .json(&json!({ "jsonrpc": "2.0", "id": 4, "method": "ping" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "error": "invalid_request", "error_description": "requests from browsers are refused" })
    );
}

#[tokio::test]
async fn a_delegate_lists_exactly_the_tools_its_delegation_allows_and_calls_agree() {
    let Some(python) = python() else { return };
    let dir = temp_dir();
    let upstream = Upstream::start(&python, dir.path());
    let config = config(dir.path(), &upstream.url);
    let server = Server::start_env(
        dir.path(),
        Some(&config),
        &[("PAYMENTS_UPSTREAM_KEY", PAYMENTS_KEY)],
    );
    let agent = server.identity("payments-agent");
    let (_, txn) = server.task(&agent, "payments", &["payments"]).await;
    for (scope, listed, refused) in [
        ("payments:read", "list_payments", "create_payment"),
        ("payments:create", "create_payment", "list_payments"),
    ] {
        let (status, delegated) =
            crate::delegation::delegate(&server, &agent, &txn, "pay-worker", &[scope], None).await;
        assert_eq!(status, 201, "{delegated}");
        let child = delegated["txn_token"].as_str().unwrap();
        let worker = server.identity("pay-worker");
        let run = |args: &[&str]| client(&python, &server, &worker, child, args);

        // tools/list and tools/call are one decision: what is listed is callable, the rest is not.
        assert_eq!(run(&["list"]), json!({ "tools": [listed] }), "{scope}");
        let arguments = if listed == "create_payment" {
            payment(5000)
        } else {
            "{}".to_owned()
        };
        let called = run(&["call", listed, &arguments]);
        assert_eq!(called["is_error"], false, "{scope}: {called}");
        let other = if refused == "create_payment" {
            payment(5000)
        } else {
            "{}".to_owned()
        };
        let denied = run(&["call", refused, &other]);
        assert_eq!(
            (&denied["error"]["code"], &denied["error"]["data"]["reason"]),
            (&json!(-32001), &json!("outside_delegation")),
            "{scope}: {denied}"
        );
    }
    // A stranger presenting the delegate's child token lists nothing.
    let (_, delegated) = crate::delegation::delegate(
        &server,
        &agent,
        &txn,
        "pay-worker",
        &["payments:read"],
        None,
    )
    .await;
    let stranger = server.identity("stranger");
    let listed = client(
        &python,
        &server,
        &stranger,
        delegated["txn_token"].as_str().unwrap(),
        &["list"],
    );
    assert_eq!(
        listed["error"]["data"]["reason"], "outside_delegation",
        "{listed}"
    );
}

#[tokio::test]
async fn a_tool_that_logs_and_reports_progress_streams_them_to_the_client_before_its_result() {
    // An SDK tool that awaits `ctx.info(...)` and `ctx.report_progress(...)` answers with a
    // server-sent-event stream (CRLF-framed by the SDK): notifications first, then the result.
    let Some(python) = python() else { return };
    let dir = temp_dir();
    let upstream = Upstream::start(&python, dir.path());
    let config = config(dir.path(), &upstream.url);
    let server = Server::start_env(
        dir.path(),
        Some(&config),
        &[("PAYMENTS_UPSTREAM_KEY", PAYMENTS_KEY)],
    );
    let agent = server.identity("support-agent");
    let (task, txn) = server.task(&agent, "support", &["tickets"]).await;
    let exported = client(
        &python,
        &server,
        &agent,
        &txn,
        &["call", "export_ticket", r#"{"ticket":"T-7"}"#],
    );
    assert_eq!(
        exported,
        json!({
            "result": "exported T-7",
            "is_error": false,
            "logs": ["exporting T-7"],
            "progress": [[1.0, 2.0, "fetched"], [2.0, 2.0, "written"]],
        })
    );
    // The call was decided and recorded like any other.
    wait_for_trace(&server, &task, "tool:export_ticket").await;
}

#[tokio::test]
async fn tools_list_leaves_out_frozen_and_over_budget_tools_and_calls_agree() {
    let Some(python) = python() else { return };
    let dir = temp_dir();
    let upstream = Upstream::start(&python, dir.path());
    let config = config(dir.path(), &upstream.url);
    let server = Server::start_env(
        dir.path(),
        Some(&config),
        &[("PAYMENTS_UPSTREAM_KEY", PAYMENTS_KEY)],
    );
    // A read-only purpose (max_writes = 0): the write tool is over budget before any call.
    let agent = server.identity("release-bot");
    let (_, research) = server.task(&agent, "research", &["tickets"]).await;
    let run =
        |txn: &str, identity: &str, args: &[&str]| client(&python, &server, identity, txn, args);
    let listed = run(&research, &agent, &["list"]);
    assert_eq!(listed, json!({ "tools": ["export_ticket"] }));
    let closed = run(
        &research,
        &agent,
        &[
            "call",
            "close_ticket",
            &json!({ "ticket": "T-1" }).to_string(),
        ],
    );
    assert_eq!(closed["error"]["code"], -32001, "{closed}");
    assert_eq!(
        closed["error"]["data"]["reason"], "budget_writes",
        "{closed}"
    );

    // A frozen system's tools are not listed, and calling one is refused as frozen.
    let payer = server.identity("payments-agent");
    let (_, pay) = server.task(&payer, "payments", &["payments"]).await;
    assert_eq!(
        run(&pay, &payer, &["list"]),
        json!({ "tools": ["create_payment", "list_payments"] })
    );
    let output = crate::harness::cli(&[
        "freeze",
        "payments",
        "--reason",
        "incident 7",
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        crate::harness::stderr(&output)
    );
    assert_eq!(run(&pay, &payer, &["list"]), json!({ "tools": [] }));
    let listed = run(&pay, &payer, &["call", "list_payments", "{}"]);
    assert_eq!(listed["error"]["code"], -32001, "{listed}");
    assert_eq!(
        listed["error"]["data"]["reason"], "system_frozen",
        "{listed}"
    );
}

#[tokio::test]
async fn an_approval_named_in_the_handoff_approval_id_header_lets_the_retry_through() {
    let Some(python) = python() else { return };
    let dir = temp_dir();
    let upstream = Upstream::start(&python, dir.path());
    let config = config(dir.path(), &upstream.url);
    let server = Server::start_env(
        dir.path(),
        Some(&config),
        &[("PAYMENTS_UPSTREAM_KEY", PAYMENTS_KEY)],
    );
    let agent = server.identity("payments-agent");
    let (_, txn) = server.task(&agent, "payments", &["payments"]).await;
    let url = format!("{}/mcp", server.base);
    let arguments: Value = serde_json::from_str(&payment(250_000)).unwrap();
    let call = |approval: Option<&str>| {
        let mut request = server
            .client
            .post(&url)
            .bearer_auth(&agent)
            .header("txn-token", &txn)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": { "name": "create_payment", "arguments": arguments } }));
        if let Some(approval) = approval {
            request = request.header("Handoff-Approval-Id", approval);
        }
        async move {
            let response = request.send().await.unwrap();
            let text = response.text().await.unwrap();
            // A JSON answer, or an event stream whose last `data:` line is the answer.
            let json = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .next_back()
                .map_or(text.as_str(), str::trim);
            serde_json::from_str::<Value>(json).unwrap_or_else(|_| panic!("{text}"))
        }
    };
    let gated = call(None).await;
    assert_eq!(gated["error"]["code"], -32003, "{gated}");
    let approval = gated["error"]["data"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Before a decision the header names a pending approval: still gated.
    let pending = call(Some(&approval)).await;
    assert_eq!(pending["error"]["code"], -32003, "{pending}");
    let owner = server.approver("olivia", &["payments-owners"]);
    let (status, decided) = server
        .approvals(
            &owner,
            "POST",
            &format!("/{approval}/approve"),
            Some(json!({ "reason": "invoice checked" })),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    // Without the header the call is a new request and waits again; with it, it goes through.
    let again = call(None).await;
    assert_eq!(again["error"]["code"], -32003, "{again}");
    let retried = call(Some(&approval)).await;
    assert_eq!(retried["result"]["isError"], false, "{retried}");
    assert_eq!(
        retried["result"]["content"][0]["text"], "created payment of 250000 EUR to ACME GmbH",
        "{retried}"
    );
}
