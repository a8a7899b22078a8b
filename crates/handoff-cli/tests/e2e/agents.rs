//! The agent examples (`examples/agents/`) run as written against the real binary: the bundled
//! gateway deployment (`examples/gateway/handoff.toml`) in front of the example's own tiny
//! upstreams (an MCP tool server and a git-host HTTP API, on free loopback ports). The "model"
//! in each example is a scripted loop, so no LLM is needed.
//!
//! Python comes from `HANDOFF_TEST_PYTHON` (scripts/test's virtualenv, with the MCP SDK and
//! httpx), else `target/mcp-venv/bin/python`; without either these tests print why and pass,
//! unless `HANDOFF_TEST_REQUIRE_PYTHON=1` (set by `scripts/test`), when they fail.

use crate::harness::{Server, temp_dir};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const GIT_TOKEN: &str = "example-git-token";
const PAYMENTS_KEY: &str = "example-payments-key";
/// How long an example may go without printing its next line (approval waits poll every 2 s).
const LINE_TIMEOUT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn examples() -> PathBuf {
    repo().join("examples/agents")
}

fn python() -> Option<PathBuf> {
    crate::harness::python_with(
        "mcp, httpx, uvicorn",
        "the MCP SDK and httpx",
        "the agent examples",
    )
}

/// A child process whose stdout lines arrive on a channel; killed on drop.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the example starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line, or `None` once the process closed its stdout; fails if it hangs.
    fn next(&self) -> Option<String> {
        match self.lines.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("no output for {LINE_TIMEOUT:?}"),
        }
    }

    fn next_json(&self) -> Value {
        let line = self.next().expect("one more line");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }

    /// Waits for the process to finish (its stdout closed) and fails unless it succeeded.
    fn finish(mut self) {
        assert_eq!(self.next(), None, "more output than expected");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the example failed: {status}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One of the example's upstreams on a free port, and the URL it printed.
fn upstream(python: &Path, script: &str) -> (Running, String) {
    let mut command = Command::new(python);
    command
        .arg(examples().join(script))
        .arg("0")
        .env("GIT_API_TOKEN", GIT_TOKEN)
        .env("PAYMENTS_API_KEY", PAYMENTS_KEY);
    let running = Running::spawn(command);
    let first = running.next().expect("the upstream prints its URL");
    let url = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_owned();
    (running, url)
}

/// `handoff serve --config examples/gateway/handoff.toml` with the upstreams' environment, the
/// config's upstream addresses swapped for the ports the upstreams got.
fn server(dir: &Path, git: &str, payments: &str) -> Server {
    let gateway = repo().join("examples/gateway");
    let text = std::fs::read_to_string(gateway.join("handoff.toml"))
        .unwrap()
        .replace("http://127.0.0.1:9000/api/v3", git)
        .replace("http://127.0.0.1:9100/mcp", payments)
        .replace(
            "policies = \"policies\"",
            &format!("policies = \"{}\"", gateway.join("policies").display()),
        );
    let config = dir.join("handoff.toml");
    std::fs::write(&config, text).unwrap();
    Server::start_env(
        dir,
        Some(&config),
        &[
            ("GIT_API_TOKEN", GIT_TOKEN),
            ("PAYMENTS_API_KEY", PAYMENTS_KEY),
        ],
    )
}

/// `python examples/agents/SCRIPT` as the README says: the agent's identity and Handoff's URL
/// in the environment, the client library importable.
fn agent(python: &Path, server: &Server, script: &str, agent: &str) -> Running {
    let mut command = Command::new(python);
    command
        .arg(examples().join(script))
        .env("HANDOFF_URL", &server.base)
        .env("HANDOFF_IDENTITY", server.identity(agent))
        .env("PYTHONPATH", repo().join("clients/python/src"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    Running::spawn(command)
}

fn payment(amount: i64) -> Value {
    json!({ "amount": amount, "currency": "EUR", "creditor": "ACME GmbH" })
}

#[tokio::test]
async fn the_mcp_agent_sees_a_result_a_denial_with_its_reason_and_waits_for_an_approval() {
    let Some(python) = python() else { return };
    let dir = temp_dir();
    let (_git, git) = upstream(&python, "git_api.py");
    let (_payments, payments) = upstream(&python, "payments_mcp_server.py");
    let server = server(dir.path(), &git, &payments);
    let run = agent(&python, &server, "mcp_agent.py", "payments-agent");

    assert_eq!(
        run.next_json(),
        json!({ "tools": ["create_payment", "list_payments"] })
    );
    assert_eq!(
        run.next_json(),
        json!({ "tool": "list_payments", "arguments": {}, "is_error": false, "text": "no payments yet" })
    );
    assert_eq!(
        run.next_json(),
        json!({ "tool": "create_payment", "arguments": payment(5000), "is_error": false,
                "text": "created payment of 5000 EUR to ACME GmbH" })
    );
    // Denied by the amount cap: a tool error the model reads, with the reason and the policy.
    let denied = run.next_json();
    assert_eq!(denied["is_error"], true, "{denied}");
    assert_eq!(denied["arguments"], payment(2_000_000), "{denied}");
    let text = denied["text"].as_str().unwrap();
    assert!(
        text.starts_with("denied by Handoff: forbidden (payments-amount-cap); decision dec_"),
        "{text}"
    );

    // Gated: the agent waits and says who must approve; an owner approves; the call goes through.
    let waiting = run.next_json();
    assert_eq!(waiting["approver_group"], "payments-owners", "{waiting}");
    let approval = waiting["waiting_for"].as_str().unwrap().to_owned();
    let owner = server.approver("olivia", &["payments-owners"]);
    let (status, pending) = server
        .approvals(&owner, "GET", &format!("/{approval}"), None)
        .await;
    assert_eq!(status, 200, "{pending}");
    let (status, decided) = server
        .approvals(
            &owner,
            "POST",
            &format!("/{approval}/approve"),
            Some(json!({ "reason": "invoice checked" })),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(
        run.next_json(),
        json!({ "tool": "create_payment", "arguments": payment(250_000), "is_error": false,
                "text": "created payment of 250000 EUR to ACME GmbH" })
    );
    run.finish();
}

#[test]
fn the_function_tools_get_a_token_per_call_and_a_denial_is_a_tool_error() {
    let Some(python) = python() else { return };
    let dir = temp_dir();
    let (_git, git) = upstream(&python, "git_api.py");
    let (_payments, payments) = upstream(&python, "payments_mcp_server.py");
    let server = server(dir.path(), &git, &payments);
    let run = agent(&python, &server, "http_tool_agent.py", "release-bot");

    // Through the gateway to the upstream, which answers only with the credential the gateway
    // injected; each call its own exchange (its own decision).
    let read = run.next_json();
    assert_eq!(
        (&read["tool"], &read["is_error"], &read["result"]),
        (
            &json!("get_repo"),
            &json!(false),
            &json!({ "full_name": "acme/app", "default_branch": "main" })
        ),
        "{read}"
    );
    // The same call again: a new exchange, not the first call's token.
    let again = run.next_json();
    assert_eq!(again["result"], read["result"], "{again}");
    let opened = run.next_json();
    assert_eq!(
        (&opened["tool"], &opened["is_error"], &opened["result"]),
        (
            &json!("open_pull_request"),
            &json!(false),
            &json!({ "number": 1, "title": "Fix the build", "repo": "acme/app" })
        ),
        "{opened}"
    );
    let decisions = [
        &read["decision_id"],
        &again["decision_id"],
        &opened["decision_id"],
    ];
    assert!(
        decisions
            .iter()
            .all(|d| d.as_str().is_some_and(|d| d.starts_with("dec_"))),
        "{decisions:?}"
    );
    assert_ne!(decisions[0], decisions[1]);
    assert_ne!(decisions[1], decisions[2]);
    // In a task whose plan does not name the git host: a tool error with the reason code.
    let denied = run.next_json();
    assert_eq!(denied["is_error"], true, "{denied}");
    let error = denied["error"].as_str().unwrap();
    assert!(
        error.starts_with("denied by Handoff: outside_plan "),
        "{error}"
    );
    run.finish();
}
