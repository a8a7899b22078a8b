//! One module per subcommand.

pub mod approvals;
pub mod audit;
pub mod check;
pub mod evidence;
pub mod gateway;
pub mod identity;
pub mod init;
pub mod keys;
pub mod ocsf;
pub mod policy;
pub mod reload;
pub mod remote;
pub mod replay;
pub mod report;
pub mod revoke;
pub mod serve;
pub mod store;
pub mod trace;

use crate::{DeploymentArgs, EXIT_CONFIG};
use handoff_core::config::{Deployment, Problems};
use std::process::ExitCode;

/// Loads the deployment, or prints every problem and yields the config exit code.
pub fn load_or_report(args: &DeploymentArgs) -> Result<Deployment, ExitCode> {
    crate::deployment::load(args.config.as_deref()).map_err(|Problems(problems)| {
        eprintln!(
            "{} has {} problem(s):",
            crate::deployment::describe(args.config.as_deref()),
            problems.len()
        );
        for problem in &problems {
            eprintln!("  {problem}");
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Logs to stderr for the long-running commands: text or JSON lines, filtered by `--log-level`,
/// else `RUST_LOG`, else `info`. Times the exchange's stages into `/metrics`, and exports traces
/// over OTLP where `--otlp-endpoint` names a collector. Keep the returned [`Telemetry`] until the
/// command ends: dropping it sends the spans still queued.
pub fn init_logging(args: &crate::LogArgs) -> anyhow::Result<Telemetry> {
    use tracing_subscriber::filter::{EnvFilter, Targets};
    use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};
    let filter = match &args.log_level {
        Some(level) => {
            EnvFilter::try_new(level).map_err(|e| anyhow::anyhow!("--log-level `{level}`: {e}"))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // The spans made for tracing are not log lines, whatever the filter says.
    let filter = filter.add_directive(format!("{SPAN_TARGET}=off").parse()?);
    // Colour codes only for a person at a terminal: a log file or collector gets plain text (and
    // the server formats no escape codes per line).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let fmt = match args.log_format {
        crate::LogFormat::Text => fmt.with_filter(filter).boxed(),
        crate::LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_filter(filter)
            .boxed(),
    };
    let spans = || Targets::new().with_target(SPAN_TARGET, tracing::Level::INFO);
    let (otel, provider) = match &args.otlp_endpoint {
        Some(endpoint) => {
            let provider = otlp_provider(endpoint)?;
            let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "handoff");
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(spans());
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(handoff_server::metrics::StageTimings::default().with_filter(spans()))
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(Telemetry { provider })
}

use handoff_core::trace::SPAN_TARGET;

/// The trace exporter, while a command runs; dropping it sends what is queued.
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("handoff: sending the last traces failed: {error}");
        }
    }
}

/// A tracer provider exporting to `<endpoint>/v1/traces` in batches, and the W3C propagator.
fn otlp_provider(endpoint: &str) -> anyhow::Result<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .map_err(|e| anyhow::anyhow!("--otlp-endpoint `{endpoint}`: {e}"))?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "handoff".to_owned());
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(provider)
}

/// A runtime for the async store from synchronous commands.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
