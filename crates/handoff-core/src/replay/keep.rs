//! Keeping every policy set a service decides with, by content hash, so that each decision's
//! record can be replayed under the set it names: at start and on every reload, before the set
//! decides anything.

use crate::error::ServiceError;
use crate::handoff::Handoff;

impl Handoff {
    /// Keeps this service's policy set in the store under its hash (once per hash).
    pub async fn keep_policy_set(&self) -> Result<(), ServiceError> {
        let engine = self.policy_engine();
        self.store()
            .keep_policy_set(engine.hash(), engine.files())
            .await?;
        Ok(())
    }
}
