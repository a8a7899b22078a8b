//! One structured log line per request (`handoff::request`, level `info`; `warn` for a 5xx):
//! method, route, status, latency, and what the handler left on its answer (an exchange's
//! decision, a relayed call's upstream status, an MCP tool). Never a header, body or query: no
//! token or secret can reach the log from here.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use handoff_http::{ExchangeFacts, ForwardFacts, ToolCallFacts};
use std::time::Instant;
use tracing::Instrument;

pub(crate) async fn log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // Shared, not copied: a matched path is an `Arc<str>`, a URI's path is reference-counted bytes.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let uri = request.uri().clone();
    // The request's span (exported only where OpenTelemetry is on) continues the caller's trace.
    let span = tracing::info_span!(
        target: handoff_http::trace::TARGET,
        "handoff.request",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        http.request.method = %method,
        http.route = route.as_ref().map_or("unmatched", MatchedPath::as_str),
        http.response.status_code = tracing::field::Empty,
    );
    if !span.is_disabled() {
        handoff_http::trace::continue_trace(&span, request.headers());
        let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
        span.record("otel.name", format!("{method} {route}"));
    }
    let response = next.run(request).instrument(span.clone()).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let exchange = response.extensions().get::<ExchangeFacts>();
    let forward = response.extensions().get::<ForwardFacts>();
    let tool = response.extensions().get::<ToolCallFacts>();
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                target: "handoff::request",
                method = %method,
                route = route.as_ref().map_or("unmatched", MatchedPath::as_str),
                path = uri.path(),
                status,
                latency_ms,
                decision_id = exchange.and_then(|e| e.decision_id.as_deref()),
                agent = exchange.and_then(|e| e.agent.as_deref()),
                task = exchange.and_then(|e| e.task.as_deref()),
                system = exchange
                    .and_then(|e| e.system.as_deref())
                    .or(forward.map(|f| f.system.as_str())),
                // Joined only when the line is written.
                actions = exchange.map(|e| e.actions.join(" ")).as_deref(),
                outcome = exchange.map(|e| e.outcome),
                reason = exchange.and_then(|e| e.reason),
                upstream_status = forward.and_then(|f| f.upstream_status),
                tool = tool.map(|t| t.tool.as_str()),
                "request"
            )
        };
    }
    crate::metrics::record_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        &method,
        status,
        latency_ms / 1000.0,
    );
    crate::metrics::record_facts(exchange, forward, tool, latency_ms / 1000.0);
    if response.status().is_server_error() {
        line!(warn);
    } else {
        line!(info);
    }
    response
}
