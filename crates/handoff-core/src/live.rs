//! Live reload: the service a request is served by, swapped whole when the deployment changes.
//!
//! [`Current`] holds the [`Handoff`] that new requests get. A reload reads the deployment again
//! through a [`DeploymentSource`] (the CLI's: the same config file and policy folder, checked as
//! completely as `handoff check` checks them), refuses it with every problem listed if it does
//! not load or changes a setting that cannot change while serving, and otherwise records the
//! change (who, old and new policy-set hash) and swaps in a service made from the old one
//! ([`Handoff::reconfigured`]: same store, keys, clock, notifier and task turns). A request
//! holds the `Arc<Handoff>` it started with, so a decision in flight finishes on the set it
//! started with, and its record names that set's hash.

use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::config::Config;
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::identity::IdentityVerifier;
use crate::policy::PolicyEngine;
use crate::store::{TaskWrite, Write};
use futures_util::lock::Mutex;
use std::sync::{Arc, RwLock};

/// A deployment read again: its config, policies and the verifiers built from them.
pub struct Reloaded {
    pub config: Config,
    pub policies: PolicyEngine,
    pub identities: IdentityVerifier,
    pub approvers: Option<IdentityVerifier>,
}

/// Where a reload reads the deployment from; every problem is one line.
pub trait DeploymentSource: Send + Sync {
    fn load(&self) -> Result<Reloaded, Vec<String>>;
}

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadReport {
    pub previous_policy_set: String,
    pub policy_set: String,
}

/// The service new requests are served by, and how to reload it.
pub struct Current {
    handoff: RwLock<Arc<Handoff>>,
    source: Option<Arc<dyn DeploymentSource>>,
    /// One reload at a time: each compares against the service the last one swapped in.
    reloading: Mutex<()>,
}

impl Current {
    /// A service that is never reloaded (tests, and tools without a deployment on disk).
    pub fn fixed(handoff: Arc<Handoff>) -> Arc<Self> {
        Arc::new(Self {
            handoff: RwLock::new(handoff),
            source: None,
            reloading: Mutex::new(()),
        })
    }

    /// A service reloaded from `source`.
    pub fn reloadable(handoff: Arc<Handoff>, source: Arc<dyn DeploymentSource>) -> Arc<Self> {
        Arc::new(Self {
            handoff: RwLock::new(handoff),
            source: Some(source),
            reloading: Mutex::new(()),
        })
    }

    /// The service a new request is served by; the request keeps it to the end.
    pub fn get(&self) -> Arc<Handoff> {
        match self.handoff.read() {
            Ok(handoff) => handoff.clone(),
            // A panic elsewhere while holding the lock cannot leave a half-written `Arc`.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, handoff: Arc<Handoff>) {
        match self.handoff.write() {
            Ok(mut slot) => *slot = handoff,
            Err(poisoned) => *poisoned.into_inner() = handoff,
        }
    }

    /// Reads the deployment again and swaps it in, or refuses it (every problem listed) and
    /// keeps serving the old one. Both outcomes are recorded with `actor`; the swap happens only
    /// after its record is durable.
    pub async fn reload(&self, actor: &str) -> Result<ReloadReport, ServiceError> {
        let _one = self.reloading.lock().await;
        let old = self.get();
        let Some(source) = &self.source else {
            return Err(ServiceError::InvalidRequest(
                "this server has no deployment on disk to reload".to_owned(),
            ));
        };
        let loaded = source
            .load()
            .and_then(|new| match fixed_changes(old.config(), &new.config) {
                changed if changed.is_empty() => Ok(new),
                changed => Err(changed),
            });
        let new = match loaded {
            Ok(new) => new,
            Err(problems) => {
                record(&old, actor, None, &problems).await?;
                return Err(ServiceError::DeploymentRefused(problems));
            }
        };
        let Reloaded {
            config,
            policies,
            identities,
            approvers,
        } = new;
        let new = old.reconfigured(Arc::new(config), Arc::new(policies), identities, approvers);
        // Kept before it decides anything, so every decision it makes can be replayed.
        new.keep_policy_set().await?;
        record(&old, actor, Some(new.policy_set()), &[]).await?;
        let report = ReloadReport {
            previous_policy_set: old.policy_set().to_owned(),
            policy_set: new.policy_set().to_owned(),
        };
        self.set(Arc::new(new));
        Ok(report)
    }
}

/// The reload's record: who, the old set's hash, and the new one's (or the problems).
async fn record(
    old: &Handoff,
    actor: &str,
    new: Option<&str>,
    problems: &[String],
) -> Result<(), ServiceError> {
    let event = AuditEvent {
        kind: Some(EventKind::Reload),
        actor: Some(actor.to_owned()),
        previous_policy_set: Some(old.policy_set().to_owned()),
        policy_set: Some(new.unwrap_or(old.policy_set()).to_owned()),
        outcome: Some(if new.is_some() {
            Outcome::Permit
        } else {
            Outcome::Deny
        }),
        reason: new.is_none().then(|| "invalid_deployment".to_owned()),
        description: (!problems.is_empty()).then(|| {
            let mut text = problems.join("; ");
            if text.chars().count() > MAX_DESCRIPTION_CHARS {
                text = text.chars().take(MAX_DESCRIPTION_CHARS).collect();
                text.push('…');
            }
            text
        }),
        ..AuditEvent::default()
    };
    old.store()
        .write(Write::new(old.now(), event, TaskWrite::None))
        .await?;
    Ok(())
}

/// Longest problem list a refused reload's record keeps (the caller gets all of it).
const MAX_DESCRIPTION_CHARS: usize = 4096;

/// The settings that are fixed while serving and differ between `old` and `new`, one problem
/// each: the trust domain, the signing algorithm, the dev issuer, `[server]`, `[audit]` (its checkpoint interval and witness), `[notifications]`,
/// and the systems' gateway and evidence tables (the listener, keys, notifier, embedded gateway
/// and evidence keys are set up once at start). The listen address and data directory are
/// command-line flags, which a reload does not read.
pub fn fixed_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let mut fixed = |name: &str, changed: bool| {
        if changed {
            problems.push(format!(
                "`{name}` cannot change while serving; restart Handoff to apply it"
            ));
        }
    };
    fixed("trust_domain", old.trust_domain != new.trust_domain);
    fixed("store.url", old.store.url != new.store.url);
    fixed(
        "store.key_encryption_key_file",
        old.store.key_encryption_key_file != new.store.key_encryption_key_file,
    );
    fixed(
        "tokens.algorithm",
        old.tokens.algorithm != new.tokens.algorithm,
    );
    fixed(
        "tokens.rotate_every",
        old.tokens.rotate_every != new.tokens.rotate_every,
    );
    fixed("dev_issuer", old.dev_issuer != new.dev_issuer);
    fixed("server", debug(&old.server) != debug(&new.server));
    fixed("audit", debug(&old.audit) != debug(&new.audit));
    fixed(
        "notifications",
        debug(&old.notifications) != debug(&new.notifications),
    );
    // An issuer given by URL is fetched by a task started with `serve`: adding, removing or
    // changing one needs a restart (issuers given by `jwks_file` reload live).
    for (table, before, after) in [
        ("issuers", &old.issuers, &new.issuers),
        (
            "approver_issuers",
            &old.approver_issuers,
            &new.approver_issuers,
        ),
    ] {
        let remote = |issuers: &[crate::config::IssuerConfig]| {
            issuers
                .iter()
                .filter_map(|issuer| match &issuer.keys {
                    crate::config::IssuerKeySource::Remote(remote) => {
                        Some((issuer.id.clone(), (issuer.issuer.clone(), remote.clone())))
                    }
                    crate::config::IssuerKeySource::File(_) => None,
                })
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let (before, after) = (remote(before), remote(after));
        let ids: std::collections::BTreeSet<_> = before.keys().chain(after.keys()).collect();
        for id in ids {
            fixed(
                &format!("{table}.{id} (an issuer given by jwks_url or discovery)"),
                before.get(id) != after.get(id),
            );
        }
    }
    let ids: std::collections::BTreeSet<_> = old.systems.keys().chain(new.systems.keys()).collect();
    for id in ids {
        let (before, after) = (old.systems.get(id), new.systems.get(id));
        fixed(
            &format!("systems.{id}.gateway"),
            debug(&before.and_then(|s| s.gateway.as_ref()))
                != debug(&after.and_then(|s| s.gateway.as_ref())),
        );
        fixed(
            &format!("systems.{id}.evidence"),
            debug(&before.and_then(|s| s.evidence.as_ref()))
                != debug(&after.and_then(|s| s.evidence.as_ref())),
        );
    }
    problems
}

/// Config types are compared through their `Debug` text: it shows every field.
fn debug(value: &impl std::fmt::Debug) -> String {
    format!("{value:?}")
}
