//! `handoff serve`: load the deployment, open the data directory, and serve HTTP.

use crate::data_dir::DataDir;
use crate::{DataArgs, DeploymentArgs, ServeArgs};
use anyhow::Context as _;
use handoff_core::Handoff;
use handoff_core::clock::SystemClock;
use handoff_core::config::{Config, Deployment};
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
    options: &ServeArgs,
) -> anyhow::Result<ExitCode> {
    let deployment = match super::load_or_report(deployment_args) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    let _telemetry = super::init_logging(&options.log)?;
    let source = crate::deployment::describe(deployment_args.config.as_deref());
    super::runtime()?.block_on(serve(deployment, deployment_args, &source, data, options))?;
    Ok(ExitCode::SUCCESS)
}

/// Applies the flags of `serve` that override the config, at start and again on every reload
/// (so a reload sees them unchanged): `--drain`, and the issuer: `--public-url`, else
/// `[server] public_url`, else `http://<address>` (the address actually bound, so
/// `--listen 127.0.0.1:0` names its port).
pub fn apply_serve_flags(
    config: &mut Config,
    public_url: Option<&str>,
    drain: Option<&str>,
    address: std::net::SocketAddr,
) -> anyhow::Result<()> {
    if let Some(drain) = drain {
        config.server.shutdown_drain =
            handoff_core::time::Ttl::parse(drain).map_err(|e| anyhow::anyhow!("--drain: {e}"))?;
    }
    if let Some(url) = public_url {
        let url = handoff_core::config::normalize_public_url(url)
            .map_err(|problem| anyhow::anyhow!("--public-url {problem}"))?;
        config.server.public_url = Some(url);
    }
    if config.server.public_url.is_none() {
        config.server.public_url = Some(format!("http://{address}"));
    }
    Ok(())
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
    let backend = dir.sqlite_backend(deployment.config.tokens.algorithm)?;
    build_on(
        deployment,
        dir,
        backend,
        notify,
        clock,
        &handoff_core::issuer_keys::NoRemoteKeys,
    )
}

/// [`build_with_clock`] over a store and keys already open (`shared_store::open`), the keys of
/// issuers given by URL read from `remote` (`serve` passes its
/// [`handoff_issuers::IssuerFetchers`]; without them such issuers have no keys).
pub fn build_on(
    deployment: Deployment,
    dir: &DataDir,
    backend: crate::shared_store::Backend,
    notify: bool,
    clock: Arc<dyn handoff_core::clock::Clock>,
    remote: &dyn handoff_core::issuer_keys::RemoteKeyProvider,
) -> anyhow::Result<Arc<Handoff>> {
    let Deployment { config, policies } = deployment;
    let store = backend.store;
    let keys = Arc::new(backend.keys);
    let dev_key = if config.dev_issuer {
        Some(dir.dev_issuer_key()?)
    } else {
        None
    };
    let identities = IdentityVerifier::with_remote_keys(&config, dev_key.as_ref(), remote);
    let approvers =
        IdentityVerifier::for_approvers_with_remote_keys(&config, dev_key.as_ref(), remote);
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
                Some(config.issuer()),
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
    .with_checkpoint_key(checkpoint_key)
    .with_key_source(backend.key_source);
    if let Some(witness) = witness {
        handoff = handoff.with_witness(witness);
    }
    if let Some(notifier) = notifier {
        handoff = handoff.with_notifier(notifier);
    }
    Ok(Arc::new(handoff))
}

async fn serve(
    mut deployment: Deployment,
    deployment_args: &DeploymentArgs,
    source: &str,
    data: &DataArgs,
    options: &ServeArgs,
) -> anyhow::Result<()> {
    let dir = DataDir::open(&data.data_dir)?;
    let listen = &options.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on `{listen}`"))?;
    let address = listener.local_addr()?;
    apply_serve_flags(
        &mut deployment.config,
        options.public_url.as_deref(),
        options.drain.as_deref(),
        address,
    )?;
    // Before the issuers' first fetches, so they are counted.
    handoff_server::metrics::install()?;
    let issuers = Arc::new(
        handoff_issuers::IssuerFetchers::start(&deployment.config)
            .await
            .map_err(|problems| {
                anyhow::anyhow!(
                    "cannot start: {} issuer problem(s):\n  {}",
                    problems.len(),
                    problems.join("\n  ")
                )
            })?,
    );
    crate::shared_store::apply_store_flags(&mut deployment.config, options.store.as_deref())?;
    let reloads = super::reload::DiskDeployment::new(
        deployment_args,
        &dir,
        &deployment.config,
        options,
        address,
        issuers.clone(),
    )?;
    let systems = deployment.config.systems.len();
    let policies = deployment.policies.len();
    let backend = crate::shared_store::open(&dir, &deployment.config).await?;
    let (shared, store) = (backend.shared, backend.description.clone());
    let handoff = build_on(
        deployment,
        &dir,
        backend,
        true,
        Arc::new(SystemClock),
        issuers.as_ref(),
    )?;
    keep_policy_set(&handoff).await?;
    first_checkpoint(&handoff).await;
    let config = handoff.config();
    tracing::info!(
        address = %address,
        public_url = config.issuer(),
        systems,
        policies,
        "handoff started"
    );
    // Written with errors ignored: a closed stdout must not take the server down.
    let banner = banner(&Banner {
        address,
        source,
        systems,
        policies,
        public_url: config.issuer(),
        trust_domain: &config.trust_domain,
        data_dir: dir.root(),
        store: &store,
        dev_issuer: config.dev_issuer,
    });
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(banner.as_bytes());
    let _ = out.flush();
    drop(out);
    let metrics = match &options.metrics_listen {
        Some(address) => Some(serve_metrics(address, &handoff.config().server).await?),
        None => None,
    };
    let current = Current::reloadable(handoff, Arc::new(reloads));
    super::reload::on_sighup(current.clone());
    if shared {
        refresh_keys(current.clone());
    }
    let served = serve_live(listener, current, crate::signals::shutdown()).await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    served
}

/// On a shared store: reads the signing keys again every `shared_store::KEY_REFRESH`, so a
/// rotation made through another node is used here too.
fn refresh_keys(current: Arc<Current>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::shared_store::KEY_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match current.get().refresh_keys().await {
                Ok(true) => tracing::info!(
                    kid = %current.get().keys().active().kid(),
                    "the signing keys changed in the store"
                ),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "reading the signing keys again failed"),
            }
        }
    });
}

/// Serves `GET /metrics` alone on `address` (`--metrics-listen`), until the process stops.
pub(crate) async fn serve_metrics(
    address: &str,
    settings: &handoff_core::config::ServerSettings,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("--metrics-listen: cannot listen on `{address}`"))?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "serving metrics");
    let settings = settings.clone();
    Ok(tokio::spawn(async move {
        handoff_server::serve(
            listener,
            handoff_server::metrics::router(),
            &settings,
            &[],
            std::future::pending(),
        )
        .await;
    }))
}

/// Serves what `handoff serve` serves (the API, the embedded gateway, the console at `/console`
/// and the approval sweep) for `handoff` on `listener` until `shutdown` completes; then stops
/// accepting, ends event streams, lets requests in flight finish within `[server]
/// shutdown_drain` and flushes the store.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    handoff: Arc<Handoff>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    keep_policy_set(&handoff).await?;
    first_checkpoint(&handoff).await;
    serve_live(listener, Current::fixed(handoff), shutdown).await
}

/// Keeps the policy set the server starts with before it decides anything (`audit replay`
/// replays each decision under the set it names); a store that cannot keep it stops the start.
async fn keep_policy_set(handoff: &Handoff) -> anyhow::Result<()> {
    handoff
        .keep_policy_set()
        .await
        .context("cannot keep the policy set in the store")
}

/// Signs the head the server starts from, before it announces itself: even a server stopped as
/// soon as it said it was up leaves that head signed.
async fn first_checkpoint(handoff: &Handoff) {
    if let Err(error) = handoff.checkpoint().await {
        tracing::warn!(%error, "the audit checkpoint failed");
    }
}

/// [`serve_on`] over the service `current` holds, which a reload swaps.
pub async fn serve_live(
    listener: tokio::net::TcpListener,
    current: Arc<Current>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // `/metrics` samples the caches of the service serving now.
    handoff_server::metrics::watch(current.clone());
    // Approvals nobody decided in time expire, and slow ones escalate, in the background.
    let sweeper = current.clone();
    let sweep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            match sweeper.get().sweep_approvals().await {
                Ok(swept) => handoff_server::metrics::approvals_pending(swept.pending),
                Err(error) => tracing::warn!(%error, "the approval sweep failed"),
            }
        }
    });
    // A signed checkpoint of the audit chain's head at every `[audit] checkpoint_interval`
    // after the first ([`first_checkpoint`], signed before the server says it is up).
    let checkpointer = current.clone();
    let every = std::time::Duration::from_secs(u64::from(
        current.get().config().audit.checkpoint_interval.seconds(),
    ));
    let checkpoints = tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = checkpointer.get().checkpoint().await {
                tracing::warn!(%error, "the audit checkpoint failed");
            }
        }
    });
    // `[tokens] rotate_every`: a new signing key that often, counted from this start.
    let rotations = current.get().config().tokens.rotate_every.map(|every| {
        let rotator = current.clone();
        let every = std::time::Duration::from_secs(u64::from(every.seconds()));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match rotator.get().rotate_keys("handoff:schedule", None).await {
                    Ok(report) => tracing::info!(
                        kid = %report.kid,
                        previous_kid = %report.previous_kid,
                        "rotated the signing key"
                    ),
                    Err(error) => tracing::error!(%error, "the scheduled key rotation failed"),
                }
            }
        })
    });
    // The enforcement gateway (`/gateway/...`, `/mcp`) runs inside the same server.
    let gateway = handoff_gateway::Gateway::embedded_live(current.clone())?;
    let settings = current.get().config().server.clone();
    let app = handoff_server::app_live(current.clone())
        .merge(handoff_gateway::router(Arc::new(gateway)))
        .merge(handoff_console::router(current.clone()));
    handoff_server::serve(listener, app, &settings, PASS_THROUGH, shutdown).await;
    sweep.abort();
    checkpoints.abort();
    if let Some(rotations) = rotations {
        rotations.abort();
    }
    // Every write queued (by requests that finished or were cut at the drain) is committed.
    if let Err(error) = current.get().store().flush().await {
        tracing::error!(%error, "flushing the store at shutdown failed");
    }
    tracing::info!("handoff stopped");
    Ok(())
}

/// What the start banner tells.
struct Banner<'a> {
    address: std::net::SocketAddr,
    source: &'a str,
    systems: usize,
    policies: usize,
    public_url: &'a str,
    trust_domain: &'a str,
    data_dir: &'a std::path::Path,
    store: &'a str,
    dev_issuer: bool,
}

fn banner(b: &Banner<'_>) -> String {
    let Banner {
        address,
        source,
        systems,
        policies,
        public_url,
        trust_domain,
        ..
    } = b;
    let data_dir = b.data_dir.display();
    let store = b.store;
    let mut text = format!(
        "handoff listening on http://{address}\n  public URL (issuer): {public_url}\n  deployment: {source} ({systems} systems, {policies} policies)\n  trust domain: {trust_domain}\n  data directory: {data_dir}\n  store: {store}\n  operator credential (admin API bearer): {data_dir}/keys/operator-secret\n"
    );
    if address.ip().is_unspecified() && *public_url == format!("http://{address}") {
        text.push_str("  warning: the public URL names no reachable host; set --public-url or [server] public_url\n");
    }
    if b.dev_issuer {
        text.push_str(&format!(
            "  WARNING: the development issuer is on: anyone who can read this data directory can mint agent identities; not for production\n  get an agent identity: handoff identity issue --agent demo-agent --data-dir {data_dir}\n"
        ));
    }
    text
}
