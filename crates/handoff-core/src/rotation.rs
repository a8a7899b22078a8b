//! Rotating Handoff's own signing key without downtime.
//!
//! [`Keys`] holds the [`KeyRing`] every request signs and verifies with, shared by every service
//! a reload makes ([`crate::Handoff::reconfigured`]), so a reload never loses a rotated key. A
//! rotation ([`crate::Handoff::rotate_keys`]) asks the [`KeySource`] (the CLI's: the data
//! directory's `keys/` folder) to make a new key the active one durably, keeping every older key
//! published until each token it signed has expired ([`longest_token_lifetime`] after the
//! rotation), then swaps the new ring in and records the rotation (who, old kid, new kid).

use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::config::{Config, SigningAlgorithm};
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::keys::{KeyError, KeyRing};
use crate::store::{TaskWrite, Write};
use crate::time::{Timestamp, Ttl};
use futures_util::lock::Mutex;
use std::sync::{Arc, RwLock};

/// Where signing keys are kept: makes a new active key durable.
#[async_trait::async_trait]
pub trait KeySource: Send + Sync {
    /// Generates a key for `algorithm` and stores it as the active key, the keys of `ring` kept
    /// as retired keys published until `retire_until` (an older retirement time is kept; keys
    /// already past theirs at `now` may be dropped). Returns the ring as now stored.
    async fn rotate(
        &self,
        ring: &KeyRing,
        algorithm: SigningAlgorithm,
        retire_until: Timestamp,
        now: Timestamp,
    ) -> Result<KeyRing, KeyError>;

    /// The keys as stored now, for a source several nodes share (a rotation made through another
    /// node shows here); `None` where only this process changes them.
    async fn stored(&self) -> Result<Option<KeyRing>, KeyError> {
        Ok(None)
    }
}

/// Extra time a retired key stays published past the last expiry of a token it signed, for
/// verifiers whose clocks run a little behind.
pub const RETIREMENT_MARGIN: Ttl = Ttl::from_seconds(60);

/// The longest a token Handoff signs can live under `config`: an access token
/// (`[tokens] max_lifetime`) or a task's transaction token (its purpose's lifetime).
pub fn longest_token_lifetime(config: &Config) -> Ttl {
    config
        .purposes
        .values()
        .map(|p| p.lifetime)
        .chain(std::iter::once(config.tokens.max_lifetime))
        .max()
        .unwrap_or(config.tokens.max_lifetime)
}

/// The key ring in use, and where rotations are stored.
pub struct Keys {
    ring: RwLock<Arc<KeyRing>>,
    source: Option<Arc<dyn KeySource>>,
    /// One rotation at a time: each retires the key the last one made active.
    rotating: Mutex<()>,
}

impl Keys {
    pub fn new(ring: Arc<KeyRing>) -> Self {
        Self {
            ring: RwLock::new(ring),
            source: None,
            rotating: Mutex::new(()),
        }
    }

    pub fn with_source(ring: Arc<KeyRing>, source: Arc<dyn KeySource>) -> Self {
        Self {
            ring: RwLock::new(ring),
            source: Some(source),
            rotating: Mutex::new(()),
        }
    }

    /// The ring a request uses from start to end.
    pub fn current(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(ring) => ring.clone(),
            // A panic elsewhere while holding the lock cannot leave a half-written `Arc`.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, ring: Arc<KeyRing>) {
        match self.ring.write() {
            Ok(mut slot) => *slot = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
    }
}

/// What a rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationReport {
    pub previous_kid: String,
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    /// When the previous key leaves the JWKS.
    pub previous_published_until: Timestamp,
}

impl Handoff {
    /// Reads the keys again from a shared [`KeySource`] and swaps them in if they differ from
    /// the ring in use (a rotation through another node): true when they did. Never runs during
    /// a rotation of this node's, so it cannot put back the ring a rotation just replaced.
    pub async fn refresh_keys(&self) -> Result<bool, KeyError> {
        let keys = self.key_holder();
        let _one = keys.rotating.lock().await;
        let Some(source) = &keys.source else {
            return Ok(false);
        };
        let Some(stored) = source.stored().await? else {
            return Ok(false);
        };
        if same_keys(&stored, &keys.current()) {
            return Ok(false);
        }
        keys.set(Arc::new(stored));
        Ok(true)
    }

    /// Makes a new signing key (of `algorithm`, else the active key's) the active one at once:
    /// stored first, then recorded with `actor`, then swapped in. Tokens signed before keep
    /// verifying until they expire; the old key leaves the JWKS after that.
    pub async fn rotate_keys(
        &self,
        actor: &str,
        algorithm: Option<SigningAlgorithm>,
    ) -> Result<RotationReport, ServiceError> {
        let keys = self.key_holder();
        let _one = keys.rotating.lock().await;
        let Some(source) = &keys.source else {
            return Err(ServiceError::InvalidRequest(
                "this server has no key folder to rotate keys in".to_owned(),
            ));
        };
        let old = keys.current();
        let algorithm = algorithm.unwrap_or(old.active().algorithm());
        let now = self.now();
        let until = now
            .plus(longest_token_lifetime(self.config()))
            .plus(RETIREMENT_MARGIN);
        let ring = Arc::new(source.rotate(&old, algorithm, until, now).await?);
        let report = RotationReport {
            previous_kid: old.active().kid().to_owned(),
            kid: ring.active().kid().to_owned(),
            algorithm,
            previous_published_until: until,
        };
        // The new key is on disk (and active at the next start) whatever the record's fate, so
        // it is active here too; a record that could not be written is still reported.
        keys.set(ring);
        let event = AuditEvent {
            kind: Some(EventKind::KeyRotation),
            actor: Some(actor.to_owned()),
            previous_kid: Some(report.previous_kid.clone()),
            kid: Some(report.kid.clone()),
            outcome: Some(Outcome::Permit),
            description: Some(format!(
                "the signing key is now `{}` ({}); `{}` stays published until {}",
                report.kid,
                algorithm.jws_name(),
                report.previous_kid,
                until.rfc3339()
            )),
            ..AuditEvent::default()
        };
        self.store()
            .write(Write::new(now, event, TaskWrite::None))
            .await?;
        Ok(report)
    }
}

/// Whether two rings hold the same keys with the same retirement times, the same one active.
fn same_keys(a: &KeyRing, b: &KeyRing) -> bool {
    let list = |ring: &KeyRing| {
        ring.retired()
            .map(|(key, until)| (key.kid().to_owned(), until))
            .collect::<Vec<_>>()
    };
    a.active().kid() == b.active().kid() && list(a) == list(b)
}
