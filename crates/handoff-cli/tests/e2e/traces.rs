//! OpenTelemetry traces over OTLP/HTTP to a collector on a loopback port: an exchange's span
//! continues the caller's W3C `traceparent` and holds one child span per stage; a call relayed by
//! the gateway reaches the upstream with the gateway's own span as parent, in the same trace; an
//! MCP tool call is an `execute_tool` span (OpenTelemetry GenAI conventions) over its exchange's
//! stages, and the upstream MCP server continues the trace from it.

use crate::gateway::{GIT_SECRET, PAYMENTS_KEY, gateway_config, upstream};
use crate::harness::{Server, client, exchange_form, temp_dir};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::process::Stdio;
use std::sync::Arc;
use tokio::sync::Mutex;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// An OTLP/HTTP trace receiver: every span of every export it is sent.
async fn collector() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let sink = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let export = ExportTraceServiceRequest::decode(body).unwrap();
                let mut sink = sink.lock().await;
                for resource in export.resource_spans {
                    for scope in resource.scope_spans {
                        sink.extend(scope.spans);
                    }
                }
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_and_a_relayed_call_continue_the_callers_trace_over_otlp() {
    let dir = temp_dir();
    let (otlp, spans) = collector().await;
    let (upstream_url, seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let mut server = Server::start_logged(
        dir.path(),
        Some(&config),
        &[
            ("GIT_UPSTREAM_TOKEN", GIT_SECRET),
            ("PAYMENTS_UPSTREAM_KEY", PAYMENTS_KEY),
        ],
        &["--otlp-endpoint", &otlp],
        Stdio::null(),
    );
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["git"]).await;
    let mut form = exchange_form(&agent, &txn, "git", "open_pr");
    form.push(("resource", "repo:acme/app"));
    let response = client()
        .post(format!("{}/oauth/token", server.base))
        .header("traceparent", &traceparent)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let token = response.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let relayed = client()
        .post(format!("{}/gateway/git/repos/acme/app/pulls", server.base))
        .bearer_auth(&token)
        .header("traceparent", &traceparent)
        .json(&serde_json::json!({ "title": "t", "head": "h", "base": "main" }))
        .send()
        .await
        .unwrap();
    assert_eq!(relayed.status(), 201);
    // A graceful stop sends the spans still queued.
    let stopped = server.terminate(std::time::Duration::from_secs(10));
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");

    let spans = spans.lock().await.clone();
    let named = |name: &str| -> Vec<&Span> { spans.iter().filter(|s| s.name == name).collect() };
    let exchange = named("POST /oauth/token");
    assert_eq!(
        exchange.len(),
        1,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let exchange = exchange[0];
    assert_eq!(hex(&exchange.trace_id), TRACE_ID);
    assert_eq!(hex(&exchange.parent_span_id), CALLER_SPAN);
    // Each stage is a child of the exchange's span, in the caller's trace.
    for stage in [
        "handoff.identity",
        "handoff.resolve",
        "handoff.task_load",
        "handoff.admit",
        "handoff.decide",
        "handoff.mint",
        "handoff.audit_commit",
    ] {
        let found = named(stage);
        let child = found
            .iter()
            .find(|s| s.parent_span_id == exchange.span_id)
            .unwrap_or_else(|| panic!("{stage} under the exchange: {found:?}"));
        assert_eq!(hex(&child.trace_id), TRACE_ID, "{stage}");
    }

    // The upstream saw the gateway's relay span as its parent, not the caller's span.
    let relay = named("handoff.upstream");
    assert_eq!(relay.len(), 1);
    let relay = relay[0];
    assert_eq!(hex(&relay.trace_id), TRACE_ID);
    let seen = seen.lock().await;
    let sent = seen[0]
        .header("traceparent")
        .expect("a traceparent upstream");
    assert_eq!(
        sent,
        format!("00-{TRACE_ID}-{}-01", hex(&relay.span_id)),
        "upstream traceparent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_tool_call_is_an_execute_tool_span_over_its_exchange_per_the_genai_conventions() {
    let Some(python) = crate::mcp::python() else {
        return;
    };
    let dir = temp_dir();
    let (otlp, spans) = collector().await;
    let upstream = crate::mcp::Upstream::start(&python, dir.path());
    let config = crate::mcp::config(dir.path(), &upstream.url);
    let mut server = Server::start_logged(
        dir.path(),
        Some(&config),
        &[("PAYMENTS_UPSTREAM_KEY", PAYMENTS_KEY)],
        &["--otlp-endpoint", &otlp],
        Stdio::null(),
    );
    let agent = server.identity("payments-agent");
    let (_, txn) = server.task(&agent, "payments", &["payments"]).await;
    let payment = crate::mcp::payment(5000);
    let called = crate::mcp::client(
        &python,
        &server,
        &agent,
        &txn,
        &["call", "create_payment", &payment],
    );
    assert_eq!(called["is_error"], false, "{called}");
    let denied = crate::mcp::client(
        &python,
        &server,
        &agent,
        &txn,
        &["call", "create_payment", &crate::mcp::payment(2_000_000)],
    );
    assert_eq!(denied["error"]["code"], -32001, "{denied}");
    let stopped = server.terminate(std::time::Duration::from_secs(10));
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");

    let spans = spans.lock().await.clone();
    let text = |span: &Span, key: &str| -> Option<String> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                Value::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
    };
    let tools: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "execute_tool create_payment")
        .collect();
    assert_eq!(
        tools.len(),
        2,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for tool in &tools {
        assert_eq!(
            text(tool, "gen_ai.operation.name").as_deref(),
            Some("execute_tool")
        );
        assert_eq!(
            text(tool, "gen_ai.tool.name").as_deref(),
            Some("create_payment")
        );
        assert_eq!(text(tool, "mcp.method.name").as_deref(), Some("tools/call"));
        assert!(text(tool, "gen_ai.tool.call.id").is_some());
        assert!(
            text(tool, "handoff.decision_id").is_some_and(|d| d.starts_with("dec")),
            "{tool:?}"
        );
        // The exchange's decision is a child of the tool call.
        assert!(
            spans
                .iter()
                .any(|s| s.name == "handoff.decide" && s.parent_span_id == tool.span_id),
            "no decision under {tool:?}"
        );
    }
    // The denied call says why; the permitted one carries no error.
    let errors: Vec<Option<String>> = tools.iter().map(|t| text(t, "error.type")).collect();
    assert!(
        errors.contains(&Some("access_denied".to_owned())),
        "{errors:?}"
    );
    assert!(errors.contains(&None), "{errors:?}");
    let reasons: Vec<Option<String>> = tools.iter().map(|t| text(t, "handoff.reason")).collect();
    assert!(
        reasons.contains(&Some("forbidden".to_owned())),
        "{reasons:?}"
    );
    // The upstream MCP server's request continues the trace from the permitted call's span.
    let permitted = tools
        .iter()
        .find(|t| text(t, "error.type").is_none())
        .unwrap();
    let parent = format!(
        "00-{}-{}-01",
        hex(&permitted.trace_id),
        hex(&permitted.span_id)
    );
    let requests = upstream.requests();
    assert!(
        requests
            .iter()
            .any(|r| r["headers"]["traceparent"] == serde_json::json!(parent)),
        "no upstream request under {parent}: {requests:?}"
    );
}

#[tokio::test]
async fn without_a_collector_the_callers_traceparent_passes_through_unchanged() {
    let dir = temp_dir();
    let (upstream_url, seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let server = crate::gateway::start(dir.path(), &config);
    let agent = server.identity("release-bot");
    let (_, token) = crate::gateway::git_token(&server, &agent, "open_pr", "repo:acme/app").await;
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let relayed = client()
        .post(format!("{}/gateway/git/repos/acme/app/pulls", server.base))
        .bearer_auth(&token)
        .header("traceparent", &traceparent)
        .json(&serde_json::json!({ "title": "t", "head": "h", "base": "main" }))
        .send()
        .await
        .unwrap();
    assert_eq!(relayed.status(), 201);
    assert_eq!(
        seen.lock().await[0].header("traceparent"),
        Some(traceparent.as_str())
    );
}
