//! W3C Trace Context (`traceparent`, `tracestate`) at Handoff's doors: a request's span continues
//! the trace its caller sent, and the gateway hands its own span's context to the upstream in
//! place of the caller's. Spans are `tracing` spans at target [`TARGET`]; they reach OpenTelemetry
//! only where `handoff serve --otlp-endpoint` installed an exporter (and with it the global
//! propagator). Where nothing listens for them, a span is disabled and both calls do nothing.

use axum::http::HeaderMap;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of every span Handoff makes for tracing: the request log leaves it out.
pub const TARGET: &str = "handoff::span";

/// Makes `span` a child of the trace context `headers` carry (none: a new trace).
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    // A span that was already entered keeps the parent it has: there is nothing to do then.
    let _ = span.set_parent(parent);
}

/// Replaces the trace context in `headers` with `span`'s, so the next hop's spans hang under it.
/// Where no trace is exported (`span` has no OpenTelemetry context), the caller's stays as sent.
pub fn propagate(span: &tracing::Span, headers: &mut HeaderMap) {
    use opentelemetry::trace::TraceContextExt;
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return;
    }
    headers.remove("traceparent");
    headers.remove("tracestate");
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut HeaderInjector(headers));
    });
}
