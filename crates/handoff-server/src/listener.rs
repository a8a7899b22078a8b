//! The one way Handoff serves HTTP (`handoff serve` and `handoff gateway` alike): HTTP/1.1 over
//! hyper with the `[server]` limits: a header read timeout (which also closes idle keep-alive
//! connections), a body read timeout, a header size limit and a connection limit. When
//! `shutdown` completes it stops accepting, ends server-sent-event streams ([`crate::Draining`])
//! and gives requests in flight `[server] shutdown_drain` to finish.

use crate::refusal::{self, JsonHeadErrors};
use axum::Router;
use handoff_core::config::ServerSettings;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Serves `app` on `listener` until `shutdown` completes. Error answers that are not JSON become
/// JSON refusals, except under the `pass_through` path prefixes (the gateway's relayed answers).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &ServerSettings,
    pass_through: &'static [&'static str],
    shutdown: impl Future<Output = ()>,
) {
    let body_timeout = seconds(settings.body_read_timeout.seconds());
    let (start_draining, draining) = crate::Draining::new();
    // One stack, outermost first, applied to each route once: layered one by one, each layer
    // would box the route again, and every request would clone every box below each layer.
    let app = app.layer(
        tower::ServiceBuilder::new()
            .layer(axum::middleware::from_fn(crate::request_log::log))
            .layer(axum::middleware::from_fn(move |request, next| {
                refusal::json_refusals(pass_through, request, next)
            }))
            .layer(axum::middleware::from_fn(refusal::single_authorization))
            .layer(axum::middleware::from_fn(move |request, next| {
                refusal::body_deadline(body_timeout, request, next)
            }))
            .layer(axum::Extension(draining)),
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(seconds(settings.header_read_timeout.seconds()))
        // Also caps a head still arriving: a connection never buffers much more of one.
        .max_header_size(settings.max_header_bytes)
        .keep_alive(true);
    let max_header_bytes = settings.max_header_bytes;
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // INVARIANT: a connection is accepted only with a slot; past the limit, new connections
        // wait in the kernel's accept backlog until one closes.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match stream {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(JsonHeadErrors::new(stream, max_header_bytes));
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    // Long-lived answers (server-sent events) end now; other requests finish within the drain.
    let _ = start_draining.send(true);
    tracing::info!(
        drain_seconds = settings.shutdown_drain.seconds(),
        "stopped accepting connections; draining"
    );
    let drain = seconds(settings.shutdown_drain.seconds());
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period");
    }
}

fn seconds(n: u32) -> Duration {
    Duration::from_secs(u64::from(n))
}
