//! [`Handoff`]: everything a request needs, injected once (config, policies, keys, verifiers,
//! store, clock, randomness, notifier), and the builder that assembles it. The operations live
//! with their concepts: [`crate::exchange`], [`crate::task`], [`crate::approval`],
//! [`crate::delegation`], [`crate::containment`], [`crate::evidence`].

use crate::cache::VerifiedCache;
use crate::checkpoint::Witness;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::ServiceError;
use crate::identity::IdentityVerifier;
use crate::ids::{SystemId, TaskId};
use crate::keys::{KeyRing, SigningKey};
use crate::notify::{NoNotifier, Notifier};
use crate::policy::PolicyEngine;
use crate::random::{Randomness, new_id};
use crate::rotation::{KeySource, Keys};
use crate::store::Store;
use crate::time::Timestamp;
use crate::token::VerifiedTxn;
use futures_util::lock::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Handoff's core service: everything a request needs, injected.
pub struct Handoff {
    config: Arc<Config>,
    policies: Arc<PolicyEngine>,
    /// The signing keys, shared with every service a reload makes from this one.
    keys: Arc<Keys>,
    identities: IdentityVerifier,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Randomness>,
    /// SHA-256 (hex) of the operator credential; without one, no HTTP caller is an operator.
    operator_sha256: Option<String>,
    notifier: Arc<dyn Notifier>,
    /// Verifies people's tokens (approvers).
    approvers: Option<IdentityVerifier>,
    txn_cache: VerifiedCache<Arc<VerifiedTxn>>,
    /// Task tokens this node minted and has not seen used yet, with the claims it signed
    /// (`caller.rs`). Apart from `txn_cache` and smaller, so that opening many tasks that are not
    /// used at once does not fill the verified tokens' cache.
    minted_txn: VerifiedCache<Arc<VerifiedTxn>>,
    /// HMAC keys systems sign webhook evidence with, by system.
    evidence_secrets: BTreeMap<SystemId, Vec<u8>>,
    /// Exchanges of one task take turns on this node (striped by task id): each decides on the
    /// facts the last one wrote instead of losing the write race and deciding again, so a busy
    /// task never runs out of retries. Other nodes still meet at the store's version check.
    /// Shared with the services a reload makes from this one ([`Handoff::reconfigured`]).
    task_turns: Arc<[Mutex<()>]>,
    /// Signs audit checkpoints (never tokens); published in the JWKS with its own `use`.
    checkpoint_key: Option<Arc<SigningKey>>,
    /// Where checkpoints go as they are made, besides the store.
    witness: Option<Arc<dyn Witness>>,
}

/// Stripes of [`Handoff::task_turn`]: tasks that share one only wait for each other briefly.
const TASK_TURN_STRIPES: usize = 256;
/// Task tokens minted here kept for their first use (about 2 MiB at most): one opened and not
/// used among the next this many is verified at its first use, as one from another node is.
const MINTED_TASK_TOKENS: usize = 1_024;

impl Handoff {
    pub fn new(
        config: Arc<Config>,
        policies: Arc<PolicyEngine>,
        keys: Arc<KeyRing>,
        identities: IdentityVerifier,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Randomness>,
    ) -> Self {
        Self {
            config,
            policies,
            keys: Arc::new(Keys::new(keys)),
            identities,
            store,
            clock,
            random,
            operator_sha256: None,
            notifier: Arc::new(NoNotifier),
            approvers: None,
            txn_cache: VerifiedCache::new(crate::cache::DEFAULT_LIMIT),
            minted_txn: VerifiedCache::new(MINTED_TASK_TOKENS),
            evidence_secrets: BTreeMap::new(),
            task_turns: (0..TASK_TURN_STRIPES).map(|_| Mutex::new(())).collect(),
            checkpoint_key: None,
            witness: None,
        }
    }

    /// The same service (store, keys, clock, randomness, notifier, credentials, task turns) under
    /// another config, policy set and identity verifiers: what a reload swaps in
    /// ([`crate::live::Current::reload`]).
    pub fn reconfigured(
        &self,
        config: Arc<Config>,
        policies: Arc<PolicyEngine>,
        identities: IdentityVerifier,
        approvers: Option<IdentityVerifier>,
    ) -> Self {
        Self {
            config,
            policies,
            keys: self.keys.clone(),
            identities,
            store: self.store.clone(),
            clock: self.clock.clone(),
            random: self.random.clone(),
            operator_sha256: self.operator_sha256.clone(),
            notifier: self.notifier.clone(),
            approvers,
            txn_cache: VerifiedCache::new(crate::cache::DEFAULT_LIMIT),
            minted_txn: VerifiedCache::new(MINTED_TASK_TOKENS),
            evidence_secrets: self.evidence_secrets.clone(),
            task_turns: self.task_turns.clone(),
            checkpoint_key: self.checkpoint_key.clone(),
            witness: self.witness.clone(),
        }
    }

    /// The content hash of the policy set this service decides with (every decision's record
    /// names it as `policy_set`).
    pub fn policy_set(&self) -> &str {
        self.policies.hash()
    }

    /// Stores key rotations in `source` ([`Handoff::rotate_keys`]); without one, keys cannot
    /// rotate. Set before the service is shared.
    pub fn with_key_source(mut self, source: Arc<dyn KeySource>) -> Self {
        self.keys = Arc::new(Keys::with_source(self.keys.current(), source));
        self
    }

    /// Signs audit checkpoints with `key` (its own key, never a token key).
    pub fn with_checkpoint_key(mut self, key: Arc<SigningKey>) -> Self {
        self.checkpoint_key = Some(key);
        self
    }

    /// Hands every checkpoint to `witness` as it is made.
    pub fn with_witness(mut self, witness: Arc<dyn Witness>) -> Self {
        self.witness = Some(witness);
        self
    }

    /// The HMAC keys of systems that sign evidence as webhooks (`hmac_secret_env`).
    pub fn with_evidence_secrets(mut self, secrets: BTreeMap<SystemId, Vec<u8>>) -> Self {
        self.evidence_secrets = secrets;
        self
    }

    /// Trusts `verifier` for approvers' tokens; without one, nobody can approve.
    pub fn with_approvers(mut self, verifier: IdentityVerifier) -> Self {
        self.approvers = Some(verifier);
        self
    }

    /// Sends notices (plan deviations, budget breaches, revocations) to `notifier`.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Accepts `Authorization: Bearer` callers presenting the secret whose SHA-256 (hex) this is
    /// as operators.
    pub fn with_operator_credential(mut self, sha256_hex: String) -> Self {
        self.operator_sha256 = Some(sha256_hex);
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The signing keys as they are now; a request keeps the ring it started with.
    pub fn keys(&self) -> Arc<KeyRing> {
        self.keys.current()
    }

    pub(crate) fn key_holder(&self) -> &Keys {
        &self.keys
    }

    /// The key audit checkpoints are signed with, if any.
    pub fn checkpoint_key(&self) -> Option<&SigningKey> {
        self.checkpoint_key.as_deref()
    }

    pub(crate) fn witness(&self) -> Option<&dyn Witness> {
        self.witness.as_deref()
    }

    /// The JWKS document served at `/.well-known/jwks.json`: the token keys (`use: sig`) and the
    /// checkpoint key (`use: handoff-checkpoint`).
    pub fn jwks(&self) -> serde_json::Value {
        let mut jwks = self.keys.current().jwks(self.now());
        if let (Some(key), Some(keys)) = (
            &self.checkpoint_key,
            jwks.get_mut("keys")
                .and_then(serde_json::Value::as_array_mut),
        ) {
            keys.push(key.public_jwk().clone());
        }
        jwks
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) fn policy_engine(&self) -> &PolicyEngine {
        &self.policies
    }

    pub(crate) fn identities(&self) -> &IdentityVerifier {
        &self.identities
    }

    pub(crate) fn approvers(&self) -> Option<&IdentityVerifier> {
        self.approvers.as_ref()
    }

    pub(crate) fn notifier(&self) -> &dyn Notifier {
        self.notifier.as_ref()
    }

    pub(crate) fn operator_sha256(&self) -> Option<&str> {
        self.operator_sha256.as_deref()
    }

    pub(crate) fn evidence_secret(&self, system: &SystemId) -> Option<&[u8]> {
        self.evidence_secrets.get(system).map(Vec::as_slice)
    }

    pub(crate) fn txn_cache(&self) -> &VerifiedCache<Arc<VerifiedTxn>> {
        &self.txn_cache
    }

    pub(crate) fn minted_txn(&self) -> &VerifiedCache<Arc<VerifiedTxn>> {
        &self.minted_txn
    }

    /// Hits and misses of the identity cache and of the Transaction Token cache, by name. They
    /// count from when this service was made (a reload starts them again, with empty caches).
    pub fn cache_counts(&self) -> [(&'static str, crate::cache::CacheCounts); 2] {
        [
            ("identity", self.identities.cache_counts()),
            ("task_token", self.txn_cache.counts()),
        ]
    }

    /// A fresh id with `prefix` (`dec`, `task`, `tok`, ...).
    pub(crate) fn id(&self, prefix: &str) -> Result<String, ServiceError> {
        Ok(new_id(self.random.as_ref(), prefix)?)
    }

    /// A fresh id with `prefix` that sorts by `now`, the time of the step that makes it (for
    /// task and token ids: rows keyed by them are appended to their indexes; see
    /// `random::new_ordered_id`).
    pub(crate) fn ordered_id(&self, prefix: &str, now: Timestamp) -> Result<String, ServiceError> {
        Ok(crate::random::new_ordered_id(
            self.random.as_ref(),
            prefix,
            now,
        )?)
    }

    /// A fresh unguessable 128-bit secret with `prefix`, from the injected randomness (for the
    /// doors' own secrets: sign-in links, sessions).
    pub fn new_secret(&self, prefix: &str) -> Result<String, ServiceError> {
        self.id(prefix)
    }

    /// The turn exchanges of `task` take on this node.
    pub(crate) fn task_turn(&self, task: &TaskId) -> Option<&Mutex<()>> {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        task.hash(&mut hasher);
        let stripe = usize::try_from(hasher.finish() % TASK_TURN_STRIPES as u64).ok()?;
        self.task_turns.get(stripe)
    }
}
