//! Live reload: `SIGHUP`, `handoff reload` and `POST /v1/admin/reload` read the same config file
//! and policy folder again ([`DiskDeployment`]) and swap them in, or refuse them with every
//! problem listed ([`handoff_core::live::Current::reload`]). SIGTERM and SIGINT are shutdown's
//! (`serve.rs`); this module handles only SIGHUP.

use crate::DeploymentArgs;
use crate::data_dir::DataDir;
use handoff_core::config::Config;
use handoff_core::identity::IdentityVerifier;
use handoff_core::keys::SigningKey;
use handoff_core::live::{Current, DeploymentSource, Reloaded};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// The deployment `handoff serve` was started with, read again from disk.
pub struct DiskDeployment {
    config: Option<PathBuf>,
    dev_key: Option<SigningKey>,
    /// `--public-url`, `--drain` and the address served: applied to what is read as at start
    /// (`serve::apply_serve_flags`), so a reload never sees them change unless the file does.
    public_url: Option<String>,
    drain: Option<String>,
    address: std::net::SocketAddr,
    /// The fetched keys of issuers given by URL: the same across reloads (such issuers cannot
    /// change while serving: `fixed_changes`).
    issuers: Arc<handoff_issuers::IssuerFetchers>,
    /// `--store`, applied the same way (`shared_store::apply_store_flags`).
    store: Option<String>,
}

impl DiskDeployment {
    pub fn new(
        args: &DeploymentArgs,
        dir: &DataDir,
        config: &Config,
        flags: &crate::ServeArgs,
        address: std::net::SocketAddr,
        issuers: Arc<handoff_issuers::IssuerFetchers>,
    ) -> anyhow::Result<Self> {
        // The dev issuer cannot be switched on by a reload (`fixed_changes`), so its key is
        // read only when it is on now.
        let dev_key = if config.dev_issuer {
            Some(dir.dev_issuer_key()?)
        } else {
            None
        };
        Ok(Self {
            config: args.config.clone(),
            dev_key,
            public_url: flags.public_url.clone(),
            drain: flags.drain.clone(),
            address,
            issuers,
            store: flags.store.clone(),
        })
    }
}

impl DeploymentSource for DiskDeployment {
    fn load(&self) -> Result<Reloaded, Vec<String>> {
        let deployment = crate::deployment::load(self.config.as_deref()).map_err(|problems| {
            problems
                .0
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        })?;
        let mut config = deployment.config;
        super::serve::apply_serve_flags(
            &mut config,
            self.public_url.as_deref(),
            self.drain.as_deref(),
            self.address,
        )
        .map_err(|problem| vec![problem.to_string()])?;
        crate::shared_store::apply_store_flags(&mut config, self.store.as_deref())
            .map_err(|problem| vec![problem.to_string()])?;
        Ok(Reloaded {
            identities: IdentityVerifier::with_remote_keys(
                &config,
                self.dev_key.as_ref(),
                self.issuers.as_ref(),
            ),
            approvers: Some(IdentityVerifier::for_approvers_with_remote_keys(
                &config,
                self.dev_key.as_ref(),
                self.issuers.as_ref(),
            )),
            config,
            policies: deployment.policies,
        })
    }
}

/// Reloads on every `SIGHUP` (recorded as `actor=signal:SIGHUP`); the outcome goes to the log.
pub fn on_sighup(current: Arc<Current>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(error) => {
                tracing::warn!(%error, "SIGHUP cannot be watched; reload through the admin API");
                return;
            }
        };
        while hangup.recv().await.is_some() {
            match current.reload("signal:SIGHUP").await {
                Ok(report) => tracing::info!(
                    policy_set = %report.policy_set,
                    previous_policy_set = %report.previous_policy_set,
                    "reloaded the deployment"
                ),
                Err(handoff_core::ServiceError::DeploymentRefused(problems)) => {
                    tracing::error!(
                        problems = %problems.join("; "),
                        "the deployment was not reloaded; the old one keeps serving"
                    );
                }
                Err(error) => tracing::error!(%error, "the reload failed"),
            }
        }
    });
    #[cfg(not(unix))]
    let _ = current;
}

/// `handoff reload`: asks the running server to reload.
pub fn run(remote: &super::remote::Remote) -> anyhow::Result<ExitCode> {
    let (status, body) = remote.call(reqwest::Method::POST, "/v1/admin/reload", None)?;
    if status != 200 {
        super::remote::print_refusal(&body);
        return Ok(ExitCode::FAILURE);
    }
    let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or("");
    if text("policy_set") == text("previous_policy_set") {
        println!("reloaded; policy set {} (unchanged)", text("policy_set"));
    } else {
        println!(
            "reloaded; policy set {} (was {})",
            text("policy_set"),
            text("previous_policy_set")
        );
    }
    Ok(ExitCode::SUCCESS)
}
