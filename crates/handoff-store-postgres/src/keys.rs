//! The deployment's signing keys, kept in the database so every node signs and verifies with the
//! same ones and sees a rotation made through any node. The private halves arrive sealed (the
//! CLI encrypts them with the operator's key-encryption key); this store keeps opaque bytes.

use crate::{PgStore, unavailable};
use handoff_core::store::StoreError;

/// Serializes key changes between nodes (an arbitrary, fixed advisory-lock key).
pub(crate) const KEYS_LOCK: i64 = 0x0068_6b65_7973;

/// One stored signing key: its `kid`, its algorithm's JWS name, the sealed private key, and when
/// it leaves the JWKS (`None`: the active key, or a key kept for good).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub algorithm: String,
    pub sealed: Vec<u8>,
    pub published_until: Option<i64>,
}

impl PgStore {
    /// The stored signing keys, oldest first (the last one is active); empty before the first
    /// node started.
    pub async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let client = self.client().await?;
        read(&**client).await
    }

    /// Stores `first` as the active key if no key is stored yet (nodes starting together agree on
    /// one), and returns the keys as stored.
    pub async fn first_signing_key(&self, first: StoredKey) -> Result<Vec<StoredKey>, StoreError> {
        let mut client = self.client().await?;
        let client: &mut tokio_postgres::Client = &mut client;
        let tx = client.transaction().await.map_err(|e| unavailable(&e))?;
        lock(&tx).await?;
        let keys = read(&tx).await?;
        if !keys.is_empty() {
            return Ok(keys);
        }
        insert_key(&tx, &first).await?;
        let keys = read(&tx).await?;
        tx.commit().await.map_err(|e| unavailable(&e))?;
        Ok(keys)
    }

    /// Makes `new` the active key, in one transaction under the key lock: every stored key gets
    /// `retire_until` as the time it leaves the JWKS (an earlier one is kept), keys past theirs
    /// at `now` are deleted. Returns the keys as now stored. The rotation works on what is stored,
    /// never on a node's possibly older view.
    pub async fn rotate_signing_keys(
        &self,
        new: StoredKey,
        retire_until: i64,
        now: i64,
    ) -> Result<Vec<StoredKey>, StoreError> {
        let mut client = self.client().await?;
        let client: &mut tokio_postgres::Client = &mut client;
        let tx = client.transaction().await.map_err(|e| unavailable(&e))?;
        lock(&tx).await?;
        tx.execute(
            "UPDATE signing_keys SET published_until = LEAST(COALESCE(published_until, $1), $1)",
            &[&retire_until],
        )
        .await
        .map_err(|e| unavailable(&e))?;
        tx.execute(
            "DELETE FROM signing_keys WHERE published_until < $1",
            &[&now],
        )
        .await
        .map_err(|e| unavailable(&e))?;
        insert_key(&tx, &new).await?;
        let keys = read(&tx).await?;
        tx.commit().await.map_err(|e| unavailable(&e))?;
        Ok(keys)
    }
}

async fn lock(tx: &tokio_postgres::Transaction<'_>) -> Result<(), StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&KEYS_LOCK])
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(())
}

pub(crate) async fn insert_key(
    tx: &tokio_postgres::Transaction<'_>,
    key: &StoredKey,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO signing_keys (kid, algorithm, sealed, published_until) VALUES ($1, $2, $3, $4)",
        &[&key.kid, &key.algorithm, &key.sealed, &key.published_until],
    )
    .await
    .map_err(|e| unavailable(&e))?;
    Ok(())
}

async fn read(client: &impl tokio_postgres::GenericClient) -> Result<Vec<StoredKey>, StoreError> {
    let rows = client
        .query(
            "SELECT kid, algorithm, sealed, published_until FROM signing_keys ORDER BY position",
            &[],
        )
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(rows
        .iter()
        .map(|row| StoredKey {
            kid: row.get(0),
            algorithm: row.get(1),
            sealed: row.get(2),
            published_until: row.get(3),
        })
        .collect())
}
