//! A real `Handoff` for tests: config text in, a service with a fake clock, fixed randomness,
//! fresh keys and a switchable store out.

use super::FailingStore;
use crate::Handoff;
use crate::clock::FakeClock;
use crate::config::{Problems, SigningAlgorithm, SourceReader, load_deployment};
use crate::identity::{IdentityVerifier, issue_dev_identity, issue_dev_person};
use crate::keys::{KeyError, KeyRing, SigningKey, generate_pkcs8};
use crate::notify::{Notice, Notifier};
use crate::random::FixedRandomness;
use crate::store::Store;
use crate::time::{Timestamp, Ttl};
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Where the kit's clock starts unless told otherwise: 2027-01-15T08:00:00Z.
pub const KIT_EPOCH: Timestamp = Timestamp::from_seconds(1_800_000_000);

#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("the deployment does not load: {0:?}")]
    Deployment(#[source] Problems),
    #[error("a key could not be made")]
    Key(#[source] KeyError),
    #[error("the kit needs a store: call `KitBuilder::store`")]
    NoStore,
}

/// Config files held in memory: `handoff.toml`, the files it names, and policy folders.
#[derive(Clone, Debug, Default)]
pub struct MemoryReader {
    files: BTreeMap<String, String>,
}

impl MemoryReader {
    pub fn file(mut self, path: &str, text: &str) -> Self {
        self.files.insert(path.to_owned(), text.to_owned());
        self
    }
}

impl SourceReader for MemoryReader {
    fn read(&self, path: &str) -> Result<String, String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| format!("`{path}` does not exist"))
    }

    fn policy_files(&self, folder: &str) -> Result<Vec<(String, String)>, String> {
        let prefix = format!("{}/", folder.trim_end_matches('/'));
        Ok(self
            .files
            .iter()
            .filter(|(path, _)| path.starts_with(&prefix) && path.ends_with(".cedar"))
            .map(|(path, text)| (path.clone(), text.clone()))
            .collect())
    }
}

/// Keeps every notice, for tests that check who was told.
#[derive(Debug, Default)]
pub struct RecordingNotifier(Mutex<Vec<Notice>>);

impl RecordingNotifier {
    pub fn notices(&self) -> Vec<Notice> {
        self.0.lock().map(|n| n.clone()).unwrap_or_default()
    }
}

impl Notifier for RecordingNotifier {
    fn notify(&self, notice: Notice) {
        if let Ok(mut notices) = self.0.lock() {
            notices.push(notice);
        }
    }
}

/// Builds a [`Kit`]: `Kit::builder(config_text).file(..).store(..).build()`.
pub struct KitBuilder {
    reader: MemoryReader,
    store: Option<Arc<dyn Store>>,
    hold: Vec<Box<dyn Any + Send + Sync>>,
    start: Timestamp,
    seed: u64,
}

impl KitBuilder {
    /// Another file of the deployment (`policies/x.cedar`, `evidence/jwks.json`).
    pub fn file(mut self, path: &str, text: &str) -> Self {
        self.reader = self.reader.file(path, text);
        self
    }

    /// The store under the kit's [`FailingStore`].
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Keeps `value` alive as long as the kit (a scratch store's temporary folder).
    pub fn hold(mut self, value: impl Any + Send + Sync) -> Self {
        self.hold.push(Box::new(value));
        self
    }

    /// Where the fake clock starts ([`KIT_EPOCH`] by default).
    pub fn starting_at(mut self, start: Timestamp) -> Self {
        self.start = start;
        self
    }

    /// The seed of the kit's [`FixedRandomness`] (1 by default).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn build(self) -> Result<Kit, KitError> {
        let deployment =
            load_deployment(&self.reader, "handoff.toml").map_err(KitError::Deployment)?;
        let inner = self.store.ok_or(KitError::NoStore)?;
        let config = Arc::new(deployment.config);
        let algorithm = config.tokens.algorithm;
        let signing = key(algorithm)?;
        let dev = key(SigningAlgorithm::Es256)?;
        let identities = IdentityVerifier::new(&config, Some(&dev));
        let approvers = IdentityVerifier::for_approvers(&config, Some(&dev));
        let clock = FakeClock::at(self.start);
        let store = Arc::new(FailingStore::new(inner));
        let notices = Arc::new(RecordingNotifier::default());
        let operator_secret = format!("kit-operator-secret-{}", self.seed);
        let handoff = Handoff::new(
            config,
            Arc::new(deployment.policies),
            Arc::new(KeyRing::new(signing, Vec::new())),
            identities,
            store.clone(),
            Arc::new(clock.clone()),
            Arc::new(FixedRandomness::seeded(self.seed)),
        )
        .with_approvers(approvers)
        .with_notifier(notices.clone())
        .with_operator_credential(crate::hash::sha256_hex(operator_secret.as_bytes()));
        Ok(Kit {
            handoff: Arc::new(handoff),
            clock,
            store,
            notices,
            dev,
            operator_secret,
            _hold: self.hold,
        })
    }
}

fn key(algorithm: SigningAlgorithm) -> Result<SigningKey, KitError> {
    let der = generate_pkcs8(algorithm).map_err(KitError::Key)?;
    SigningKey::from_pkcs8(algorithm, &der).map_err(KitError::Key)
}

/// A running service for one test, and the handles to steer it.
pub struct Kit {
    pub handoff: Arc<Handoff>,
    /// The service's clock; advance it instead of sleeping.
    pub clock: FakeClock,
    /// The service's store; switch it off to see the doors fail closed.
    pub store: Arc<FailingStore>,
    /// Every notice the service sent.
    pub notices: Arc<RecordingNotifier>,
    dev: SigningKey,
    operator_secret: String,
    _hold: Vec<Box<dyn Any + Send + Sync>>,
}

impl Kit {
    /// A kit for the deployment whose `handoff.toml` is `config`.
    pub fn builder(config: &str) -> KitBuilder {
        KitBuilder {
            reader: MemoryReader::default().file("handoff.toml", config),
            store: None,
            hold: Vec::new(),
            start: KIT_EPOCH,
            seed: 1,
        }
    }

    /// A development identity for `agent`, issued now by the fake clock, valid for an hour.
    pub fn identity(&self, agent: &str) -> Result<String, KeyError> {
        issue_dev_identity(
            self.handoff.config(),
            &self.dev,
            agent,
            self.handoff.now(),
            Ttl::from_seconds(3600),
        )
    }

    /// A development approver token for `user` in `groups`, valid for an hour.
    pub fn person(&self, user: &str, groups: &[&str]) -> Result<String, KeyError> {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        issue_dev_person(
            self.handoff.config(),
            &self.dev,
            user,
            &groups,
            self.handoff.now(),
            Ttl::from_seconds(3600),
        )
    }

    /// The bearer secret the admin API accepts as the operator.
    pub fn operator_secret(&self) -> &str {
        &self.operator_secret
    }
}
