//! `handoff serve`: load the deployment, open the data directory, and serve HTTP.

use crate::data_dir::DataDir;
use crate::{DataArgs, DeploymentArgs};
use anyhow::Context as _;
use handoff_core::Handoff;
use handoff_core::clock::SystemClock;
use handoff_core::config::Deployment;
use handoff_core::identity::IdentityVerifier;
use handoff_core::live::Current;
use handoff_core::notify::Notifier;
use handoff_core::random::SystemRandomness;
use handoff_webhook::WebhookNotifier;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

/// The gateway's relayed upstream answers are never rewritten into Handoff's refusals.
pub(crate) const PASS_THROUGH: &[&str] = &[handoff_gateway::HTTP_PREFIX];

pub fn run(
    deployment_args: &DeploymentArgs,
    data: &DataArgs,
    listen: &str,
) -> anyhow::Result<ExitCode> {
    let deployment = match super::load_or_report(deployment_args) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    super::init_logging();
    let source = crate::deployment::describe(deployment_args.config.as_deref());
    super::runtime()?.block_on(serve(deployment, deployment_args, &source, data, listen))?;
    Ok(ExitCode::SUCCESS)
}

/// Builds the service over the data directory's store and keys. With `notify`, notices go to
/// the configured webhook (this needs a Tokio runtime; the CLI's one-shot commands pass `false`).
pub fn build(deployment: Deployment, dir: &DataDir, notify: bool) -> anyhow::Result<Arc<Handoff>> {
    build_with_clock(deployment, dir, notify, Arc::new(SystemClock))
}

/// [`build`] with another clock: the end-to-end tests serve in-process on a fake one they move.
pub fn build_with_clock(
    deployment: Deployment,
    dir: &DataDir,
    notify: bool,
    clock: Arc<dyn handoff_core::clock::Clock>,
) -> anyhow::Result<Arc<Handoff>> {
    let Deployment { config, policies } = deployment;
    let store: Arc<dyn handoff_core::store::Store> = Arc::new(dir.store()?);
    let keys = Arc::new(dir.key_ring(config.tokens.algorithm)?);
    let dev_key = if config.dev_issuer {
        Some(dir.dev_issuer_key()?)
    } else {
        None
    };
    let identities = IdentityVerifier::new(&config, dev_key.as_ref());
    let approvers = IdentityVerifier::for_approvers(&config, dev_key.as_ref());
    let operator = handoff_core::hash::sha256_hex(dir.operator_secret()?.as_bytes());
    let notifier: Option<Arc<dyn Notifier>> = match (&config.notifications, notify) {
        (Some(notifications), true) => {
            let secret = match &notifications.secret_env {
                Some(name) => Some(
                    std::env::var(name)
                        .with_context(|| format!("notifications.secret_env: `{name}` is not set"))?
                        .into_bytes(),
                ),
                None => None,
            };
            Some(Arc::new(WebhookNotifier::start(
                notifications,
                secret,
                store.clone(),
                clock.clone(),
            )?))
        }
        _ => None,
    };
    // Webhook-signed evidence: each system's HMAC key, from the environment, never the config.
    let mut evidence_secrets = std::collections::BTreeMap::new();
    for system in config.systems.values() {
        let Some(name) = system
            .evidence
            .as_ref()
            .and_then(|e| e.hmac_secret_env.as_ref())
        else {
            continue;
        };
        match std::env::var(name) {
            Ok(secret) if !secret.is_empty() => {
                evidence_secrets.insert(system.id.clone(), secret.into_bytes());
            }
            // Only serving needs the keys; other commands build the service without them.
            _ if notify => anyhow::bail!(
                "systems.{}.evidence.hmac_secret_env: `{name}` is not set",
                system.id
            ),
            _ => {}
        }
    }
    let checkpoint_key = Arc::new(dir.checkpoint_key()?);
    let witness = config
        .audit
        .checkpoint_file
        .as_ref()
        .map(|file| Arc::new(super::audit::FileWitness::new(file.into())));
    let mut handoff = Handoff::new(
        Arc::new(config),
        Arc::new(policies),
        keys,
        identities,
        store,
        clock,
        Arc::new(SystemRandomness::default()),
    )
    .with_operator_credential(operator)
    .with_approvers(approvers)
    .with_evidence_secrets(evidence_secrets)
    .with_checkpoint_key(checkpoint_key);
    if let Some(witness) = witness {
        handoff = handoff.with_witness(witness);
    }
    if let Some(notifier) = notifier {
        handoff = handoff.with_notifier(notifier);
    }
    Ok(Arc::new(handoff))
}

async fn serve(
    deployment: Deployment,
    deployment_args: &DeploymentArgs,
    source: &str,
    data: &DataArgs,
    listen: &str,
) -> anyhow::Result<()> {
    let dir = DataDir::open(&data.data_dir)?;
    let reloads = super::reload::DiskDeployment::new(deployment_args, &dir, &deployment.config)?;
    let systems = deployment.config.systems.len();
    let policies = deployment.policies.len();
    let dev_issuer = deployment.config.dev_issuer;
    let handoff = build(deployment, &dir, true)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on `{listen}`"))?;
    let address = listener.local_addr()?;
    // Written with errors ignored: a closed stdout must not take the server down.
    let banner = banner(
        &address,
        source,
        systems,
        policies,
        &handoff.config().trust_domain,
        dir.root(),
        dev_issuer,
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(banner.as_bytes());
    let _ = out.flush();
    drop(out);
    let current = Current::reloadable(handoff, Arc::new(reloads));
    super::reload::on_sighup(current.clone());
    serve_live(listener, current, shutdown()).await
}

/// Serves what `handoff serve` serves (the API, the embedded gateway and the approval sweep) for
/// `handoff` on `listener` until `shutdown` completes.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    handoff: Arc<Handoff>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    serve_live(listener, Current::fixed(handoff), shutdown).await
}

/// [`serve_on`] over the service `current` holds, which a reload swaps.
pub async fn serve_live(
    listener: tokio::net::TcpListener,
    current: Arc<Current>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // Approvals nobody decided in time expire, and slow ones escalate, in the background.
    let sweeper = current.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(error) = sweeper.get().sweep_approvals().await {
                tracing::warn!(%error, "the approval sweep failed");
            }
        }
    });
    // A signed checkpoint of the audit chain's head at every `[audit] checkpoint_interval`
    // (the first one when serving starts).
    let checkpointer = current.clone();
    let every = std::time::Duration::from_secs(u64::from(
        current.get().config().audit.checkpoint_interval.seconds(),
    ));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = checkpointer.get().checkpoint().await {
                tracing::warn!(%error, "the audit checkpoint failed");
            }
        }
    });
    // The enforcement gateway (`/gateway/...`, `/mcp`) runs inside the same server.
    let gateway = handoff_gateway::Gateway::embedded_live(current.clone())?;
    let settings = current.get().config().server;
    let app = handoff_server::app_live(current).merge(handoff_gateway::router(Arc::new(gateway)));
    handoff_server::serve(listener, app, &settings, PASS_THROUGH, shutdown).await;
    Ok(())
}

fn banner(
    address: &std::net::SocketAddr,
    source: &str,
    systems: usize,
    policies: usize,
    trust_domain: &str,
    data_dir: &std::path::Path,
    dev_issuer: bool,
) -> String {
    let data_dir = data_dir.display();
    let mut text = format!(
        "handoff listening on http://{address}\n  deployment: {source} ({systems} systems, {policies} policies)\n  trust domain: {trust_domain}\n  data directory: {data_dir} (SQLite store, signing keys)\n  operator credential (admin API bearer): {data_dir}/keys/operator-secret\n"
    );
    if dev_issuer {
        text.push_str(&format!(
            "  get an agent identity: handoff identity issue --agent demo-agent --data-dir {data_dir}\n"
        ));
    }
    text
}

pub(crate) async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
