//! The process signals the long-running commands (`serve`, `gateway`) answer: SIGTERM and SIGINT
//! (Ctrl-C) start a graceful shutdown. Every signal handler of the binary lives here.

/// Completes at the first SIGTERM or SIGINT, logging which.
pub async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                tracing::info!(signal = "SIGINT", "shutting down");
                return;
            }
        };
        let signal = tokio::select! {
            _ = interrupt => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal, "shutting down");
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        tracing::info!(signal = "SIGINT", "shutting down");
    }
}
