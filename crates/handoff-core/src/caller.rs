//! Who is asking, for every operation of an agent: its identity token verified against the
//! trusted issuers, and the task token it presents verified as Handoff's own.

use crate::cache::VerifiedCache;
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::identity::VerifiedIdentity;
use crate::token::{Unverified, VerifiedTxn, verify_txn_token};
use std::sync::Arc;

impl Handoff {
    /// Verifies an agent identity token.
    pub fn authenticate(&self, token: &str) -> Result<VerifiedIdentity, ServiceError> {
        if token.is_empty() {
            return Err(ServiceError::InvalidClient(
                "an agent identity token is required".to_owned(),
            ));
        }
        self.identities()
            .verify(Unverified::new(token), self.now())
            .map_err(|e| ServiceError::InvalidClient(format!("identity token refused: {e}")))
    }

    /// The task token is Handoff's own: its signature is checked once, then recognised by hash
    /// until it expires. The task's state is read from the store on every use regardless. Shared,
    /// not copied: a cache hit is a reference count, not the claims' strings cloned again.
    pub(crate) fn verify_task_token(&self, token: &str) -> Result<Arc<VerifiedTxn>, ServiceError> {
        let now_seconds = self.now().seconds();
        let key = VerifiedCache::<Arc<VerifiedTxn>>::key(token);
        // A token minted here, at its first use: the claims it was signed with are what its
        // verification would give, and it is known as verified from now on.
        if let Some((txn, exp)) = self.minted_txn().take(&key, now_seconds) {
            self.txn_cache().insert(key, txn, exp);
        }
        if let Some(txn) = self.txn_cache().get(&key, now_seconds) {
            return Ok(txn);
        }
        let txn = verify_txn_token(
            &self.keys(),
            self.config().issuer(),
            &self.config().trust_domain,
            Unverified::new(token),
            now_seconds,
        )
        .map_err(|e| ServiceError::InvalidGrant(format!("task token refused: {e}")))?;
        let txn = Arc::new(txn);
        self.txn_cache()
            .insert(key, Arc::clone(&txn), txn.claims().exp);
        Ok(txn)
    }

    /// A task token this node has just minted and recorded, with the claims it signed: what
    /// its verification would return.
    pub(crate) fn remember_task_token(&self, token: &str, txn: VerifiedTxn) {
        let exp = txn.claims().exp;
        let key = VerifiedCache::<Arc<VerifiedTxn>>::key(token);
        self.minted_txn().insert(key, Arc::new(txn), exp);
    }
}
