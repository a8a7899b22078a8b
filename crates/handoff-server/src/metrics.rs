//! Prometheus metrics (`GET /metrics`, text format): recorded here from what the handlers leave
//! on their answers ([`handoff_http::ExchangeFacts`] and the other facts) and from the few
//! handlers that count their own outcome; the core records nothing. Until [`install`] runs
//! (`handoff serve` and `handoff gateway` call it) every record is a no-op and `/metrics` is 404.
//! The names are listed in docs/operations.md.

use crate::error::ApiError;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use handoff_core::live::Current;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const EXCHANGES: &str = "handoff_exchanges_total";
pub const EXCHANGE_SECONDS: &str = "handoff_exchange_duration_seconds";
pub const REQUESTS: &str = "handoff_http_requests_total";
pub const REQUEST_SECONDS: &str = "handoff_http_request_duration_seconds";
pub const APPROVALS: &str = "handoff_approval_decisions_total";
pub const REVOCATIONS: &str = "handoff_revocations_total";
pub const FEED_SUBSCRIBERS: &str = "handoff_revocation_stream_subscribers";
pub const FORWARDS: &str = "handoff_gateway_forwards_total";
pub const TOOL_CALLS: &str = "handoff_mcp_tool_calls_total";
pub const STORE_ERRORS: &str = "handoff_store_errors_total";
pub const APPROVALS_PENDING: &str = "handoff_approvals_pending";
pub const CACHE_LOOKUPS: &str = "handoff_verification_cache_lookups_total";
pub const STAGE_SECONDS: &str = "handoff_stage_duration_seconds";
use handoff_core::store::metric_names::{
    AUDIT_BATCH_RECORDS, AUDIT_CHECKPOINT_SECONDS, AUDIT_COMMIT_SECONDS, EXCHANGE_READS,
};

/// Buckets of the batch-size histogram: records folded into one commit.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Buckets of the latency histograms, in seconds: an exchange takes about a millisecond (one
/// group commit), so the fine end matters; the coarse end catches a store under strain.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct InstallError(String);

/// Installs the process-wide recorder (once; later calls keep the first). Needs a Tokio runtime:
/// a background task keeps the histograms' memory bounded between scrapes.
pub fn install() -> Result<(), InstallError> {
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)
        .map_err(|e| InstallError(e.to_string()))?
        .set_buckets_for_metric(Matcher::Full(AUDIT_BATCH_RECORDS.to_owned()), BATCH_BUCKETS)
        .map_err(|e| InstallError(e.to_string()))?
        .install_recorder()
        .map_err(|e| InstallError(e.to_string()))?;
    metrics::describe_counter!(
        EXCHANGES,
        "Token exchanges by system, outcome and reason code."
    );
    metrics::describe_histogram!(
        EXCHANGE_SECONDS,
        metrics::Unit::Seconds,
        "Time to answer a token exchange, by outcome."
    );
    metrics::describe_counter!(REQUESTS, "HTTP requests by route, method and status.");
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request (to its head), by route."
    );
    metrics::describe_counter!(APPROVALS, "Approval requests decided, by outcome.");
    metrics::describe_counter!(REVOCATIONS, "Revocations and freezes recorded, by kind.");
    metrics::describe_gauge!(FEED_SUBSCRIBERS, "Open revocation streams.");
    metrics::describe_counter!(
        FORWARDS,
        "Calls the gateway relayed, by system and upstream status (`unreachable`)."
    );
    metrics::describe_counter!(TOOL_CALLS, "MCP tool calls, by tool.");
    metrics::describe_counter!(
        STORE_ERRORS,
        "Requests refused because the store was unavailable."
    );
    metrics::describe_gauge!(
        APPROVALS_PENDING,
        "Approval requests waiting for a decision (seen by the last sweep, at most 500)."
    );
    metrics::describe_counter!(
        CACHE_LOOKUPS,
        "Lookups of already-verified tokens, by cache (`identity`, `task_token`) and result."
    );
    metrics::describe_histogram!(
        AUDIT_BATCH_RECORDS,
        "Records folded into one audit commit (group commit)."
    );
    metrics::describe_histogram!(
        AUDIT_COMMIT_SECONDS,
        metrics::Unit::Seconds,
        "Time to commit one batch of audit records, fsync included."
    );
    metrics::describe_histogram!(
        AUDIT_CHECKPOINT_SECONDS,
        metrics::Unit::Seconds,
        "Time of one WAL checkpoint of the embedded store, run beside the writer (not in a commit)."
    );
    metrics::describe_counter!(
        EXCHANGE_READS,
        "Exchange reads of the embedded store, by where they were answered: memory (what the writer last committed) or sqlite."
    );
    metrics::describe_histogram!(
        STAGE_SECONDS,
        metrics::Unit::Seconds,
        "Time spent in each stage of an exchange (and each request and upstream call), by stage."
    );
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let _ = HANDLE.set(handle);
    Ok(())
}

/// The service whose caches `/metrics` samples when it renders ([`watch`]).
static WATCHED: OnceLock<Arc<Current>> = OnceLock::new();

/// Samples `current`'s cache counts at every render (`handoff serve` calls it once).
pub fn watch(current: Arc<Current>) {
    let _ = WATCHED.set(current);
}

/// Sets the approvals-pending gauge (the approval sweep calls it with what it found waiting).
pub fn approvals_pending(count: usize) {
    #[expect(
        clippy::cast_precision_loss,
        reason = "a sweep lists at most 500 approvals"
    )]
    metrics::gauge!(APPROVALS_PENDING).set(count as f64);
}

/// Copies the watched service's cache counts into their counters.
fn sample() {
    let Some(current) = WATCHED.get() else {
        return;
    };
    for (cache, counts) in current.get().cache_counts() {
        metrics::counter!(CACHE_LOOKUPS, "cache" => cache, "result" => "hit").absolute(counts.hits);
        metrics::counter!(CACHE_LOOKUPS, "cache" => cache, "result" => "miss")
            .absolute(counts.misses);
    }
}

/// `GET /metrics`: the Prometheus text format; 404 where no recorder was installed.
pub async fn render() -> Response {
    let Some(handle) = HANDLE.get() else {
        return ApiError::NotFound.into_response();
    };
    sample();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// One open revocation stream, counted in [`FEED_SUBSCRIBERS`] while it lives.
pub(crate) struct Subscribed;

impl Subscribed {
    pub(crate) fn new() -> Self {
        metrics::gauge!(FEED_SUBSCRIBERS).increment(1.0);
        Self
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        metrics::gauge!(FEED_SUBSCRIBERS).decrement(1.0);
    }
}

/// Counts one answered request and its latency (to the answer's head).
pub(crate) fn record_request(route: &str, method: &axum::http::Method, status: u16, seconds: f64) {
    use axum::http::Method;
    // Only the standard methods are labels: any other spelling a client sends is `other`.
    let method = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    metrics::counter!(
        REQUESTS,
        "route" => route.to_owned(),
        "method" => method,
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(REQUEST_SECONDS, "route" => route.to_owned()).record(seconds);
}

/// Counts what the handler reported: an exchange, a relayed call, an MCP tool call.
pub(crate) fn record_facts(
    exchange: Option<&handoff_http::ExchangeFacts>,
    forward: Option<&handoff_http::ForwardFacts>,
    tool: Option<&handoff_http::ToolCallFacts>,
    seconds: f64,
) {
    if let Some(exchange) = exchange {
        metrics::counter!(
            EXCHANGES,
            "system" => exchange.system.clone().unwrap_or_else(|| "unknown".to_owned()),
            "outcome" => exchange.outcome,
            "reason" => exchange.reason.unwrap_or("none")
        )
        .increment(1);
        metrics::histogram!(EXCHANGE_SECONDS, "outcome" => exchange.outcome).record(seconds);
    }
    if let Some(forward) = forward {
        let status = forward
            .upstream_status
            .map_or_else(|| "unreachable".to_owned(), |s| s.to_string());
        metrics::counter!(
            FORWARDS,
            "system" => forward.system.clone(),
            "upstream_status" => status
        )
        .increment(1);
    }
    if let Some(tool) = tool {
        metrics::counter!(TOOL_CALLS, "tool" => tool.tool.clone()).increment(1);
    }
}

/// An answer that only `/metrics` serves (the `--metrics-listen` listener).
pub fn router() -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(render))
}

/// Times every span at [`handoff_core::trace::SPAN_TARGET`] (an exchange's stages, a request, a
/// relayed call) into [`STAGE_SECONDS`], labelled with the span's (static) name. Added to the
/// subscriber by `handoff serve` and `handoff gateway`, filtered to that target. Each stage's
/// histogram is looked up in the recorder once and kept: an exchange closes eight spans, and a
/// lookup by label on every close cost more than the timing itself (docs/benchmarks.md).
#[derive(Default)]
pub struct StageTimings {
    /// The histogram of each stage seen so far, by span name (a dozen at most).
    stages: std::sync::RwLock<Vec<(&'static str, metrics::Histogram)>>,
}

impl StageTimings {
    fn histogram(&self, name: &'static str) -> Option<metrics::Histogram> {
        let found = |stages: &[(&'static str, metrics::Histogram)]| {
            stages
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, histogram)| histogram.clone())
        };
        if let Some(histogram) = self.stages.read().ok().and_then(|s| found(&s)) {
            return Some(histogram);
        }
        // Before the recorder is installed every handle is a no-op: keep none of those.
        HANDLE.get()?;
        let mut stages = self.stages.write().ok()?;
        if let Some(histogram) = found(&stages) {
            return Some(histogram);
        }
        let stage = name.strip_prefix("handoff.").unwrap_or(name);
        let histogram = metrics::histogram!(STAGE_SECONDS, "stage" => stage);
        stages.push((name, histogram.clone()));
        Some(histogram)
    }
}

/// When a timed span began.
struct Began(std::time::Instant);

impl<S> tracing_subscriber::Layer<S> for StageTimings
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        _attributes: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut()
                .insert(Began(std::time::Instant::now()));
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        if let Some(Began(at)) = span.extensions().get::<Began>()
            && let Some(histogram) = self.histogram(span.name())
        {
            histogram.record(at.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_doors_and_the_core_name_one_span_target() {
        assert_eq!(
            handoff_http::trace::TARGET,
            handoff_core::trace::SPAN_TARGET
        );
    }
}
