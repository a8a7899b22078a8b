//! `handoff gateway`: the enforcement gateway as its own process, in front of the HTTP APIs the
//! deployment's `[systems.ID.gateway]` tables describe. It verifies tokens offline against the
//! JWKS Handoff serves and refuses any token the revocation feed has cut (polled every
//! `--poll-seconds`), and posts a `use` record of each call to Handoff for its audit chain. MCP
//! tool calls need the decision point, so `/mcp` is served only inside `handoff serve`.

use crate::DeploymentArgs;
use anyhow::Context as _;
use handoff_gateway::{FeedCredential, Gateway, OfflineVerifier, Recorder, Verifier};
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How the standalone gateway reaches Handoff.
pub struct Upstream<'a> {
    /// Handoff's base URL (`http://127.0.0.1:8080`).
    pub handoff: &'a str,
    /// The system whose credential reads the revocation feed, and its secret.
    pub system: &'a str,
    pub secret: &'a str,
    pub poll: Duration,
}

pub fn run(
    deployment_args: &DeploymentArgs,
    upstream: &Upstream<'_>,
    listen: &str,
    log: &crate::LogArgs,
) -> anyhow::Result<ExitCode> {
    let deployment = match super::load_or_report(deployment_args) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    let _telemetry = super::init_logging(log)?;
    super::runtime()?.block_on(serve(deployment.config, upstream, listen))?;
    Ok(ExitCode::SUCCESS)
}

/// How often the standalone gateway reads Handoff's JWKS again.
const JWKS_REFRESH: Duration = Duration::from_secs(30);

async fn serve(
    config: handoff_core::config::Config,
    upstream: &Upstream<'_>,
    listen: &str,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let jwks = handoff_gateway::fetch_jwks(&client, upstream.handoff)
        .await
        .map_err(anyhow::Error::msg)?;
    // Without a fresh read of the feed for this long, every token is refused.
    let stale_after = (upstream.poll * 10).max(Duration::from_secs(10));
    // The tokens' `iss` is whatever Handoff's metadata names (its public URL).
    let issuer = handoff_gateway::fetch_issuer(&client, upstream.handoff)
        .await
        .map_err(anyhow::Error::msg)?;
    let verifier = Arc::new(OfflineVerifier::new(issuer, jwks, stale_after));
    // Handoff's keys rotate (`handoff keys rotate`): the JWKS is read again every
    // JWKS_REFRESH, so tokens signed with a new key verify here within that; a failed read
    // keeps the keys already held.
    let refreshed = verifier.clone();
    let (jwks_client, handoff) = (client.clone(), upstream.handoff.to_owned());
    tokio::spawn(async move {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + JWKS_REFRESH, JWKS_REFRESH);
        loop {
            tick.tick().await;
            match handoff_gateway::fetch_jwks(&jwks_client, &handoff).await {
                Ok(jwks) => refreshed.set_keys(jwks),
                Err(error) => tracing::warn!(%error, "Handoff's JWKS could not be read again"),
            }
        }
    });
    handoff_gateway::follow_feed(
        client.clone(),
        upstream.handoff.to_owned(),
        FeedCredential {
            system: upstream.system.to_owned(),
            secret: upstream.secret.to_owned(),
        },
        verifier.clone(),
        upstream.poll,
    )
    .await
    .map_err(|e| anyhow::anyhow!("the revocation feed cannot be read: {e}"))?;
    // Uses are posted to Handoff with the same system credential: it records those of that
    // system's tokens (uses of other systems' tokens are refused there, and logged here).
    let recorder = Recorder::Remote(handoff_gateway::Remote::start(
        client,
        upstream.handoff.to_owned(),
        upstream.system.to_owned(),
        upstream.secret.to_owned(),
    ));
    handoff_server::metrics::install()?;
    let settings = config.server.clone();
    let gateway = Gateway::new(Arc::new(config), Verifier::offline(verifier), recorder)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on `{listen}`"))?;
    let address = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "handoff gateway listening on http://{address}");
    let _ = out.flush();
    drop(out);
    handoff_server::serve(
        listener,
        handoff_gateway::router(Arc::new(gateway)).merge(handoff_server::metrics::router()),
        &settings,
        super::serve::PASS_THROUGH,
        crate::signals::shutdown(),
    )
    .await;
    Ok(())
}
