//! The store a deployment runs on, and its signing keys: the embedded SQLite store with the keys
//! in the data directory (the default), or PostgreSQL shared by several nodes, with the signing
//! keys in the database too, each private key sealed with the operator's key-encryption key
//! (`[store] key_encryption_key_file`, or `HANDOFF_KEY_ENCRYPTION_KEY_FILE`).

use crate::data_dir::DataDir;
use anyhow::Context as _;
use handoff_core::config::{Config, SigningAlgorithm, store_url_problem};
use handoff_core::key_sealing::KeyEncryptionKey;
use handoff_core::keys::{KeyError, KeyRing, SigningKey, generate_pkcs8};
use handoff_core::rotation::KeySource;
use handoff_core::store::Store;
use handoff_core::time::Timestamp;
use handoff_store_postgres::{PgStore, StoredKey};
use std::path::Path;
use std::sync::Arc;

/// The environment variable naming the key-encryption key's file (overrides the config's).
pub const KEK_FILE_ENV: &str = "HANDOFF_KEY_ENCRYPTION_KEY_FILE";

/// How often a node on a shared store reads the signing keys again, so a rotation made through
/// another node is used here (published, verified, and signed with) at most this much later.
pub const KEY_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// The store and signing keys a service runs on.
pub struct Backend {
    pub store: Arc<dyn Store>,
    pub keys: KeyRing,
    pub key_source: Arc<dyn KeySource>,
    /// Whether other nodes share the store (its keys are read again every [`KEY_REFRESH`]).
    pub shared: bool,
    /// What the start banner says of the store (never a password).
    pub description: String,
}

/// Applies `--store` (or `HANDOFF_STORE`) over `[store] url`, and `HANDOFF_KEY_ENCRYPTION_KEY_FILE`
/// over `[store] key_encryption_key_file`: at start and again on every reload, so a reload sees
/// them unchanged unless the file changes.
pub fn apply_store_flags(config: &mut Config, store: Option<&str>) -> anyhow::Result<()> {
    if let Some(url) = store {
        if let Some(problem) = store_url_problem(url) {
            anyhow::bail!("--store {problem}");
        }
        config.store.url = Some(url.to_owned());
    }
    if let Some(file) = std::env::var_os(KEK_FILE_ENV).filter(|f| !f.is_empty()) {
        config.store.key_encryption_key_file = Some(file.to_string_lossy().into_owned());
    }
    Ok(())
}

/// The store and keys `config` names: PostgreSQL at `[store] url`, else the data directory's.
pub async fn open(dir: &DataDir, config: &Config) -> anyhow::Result<Backend> {
    let Some(url) = &config.store.url else {
        return dir.sqlite_backend(config.tokens.algorithm);
    };
    let Some(kek_file) = &config.store.key_encryption_key_file else {
        anyhow::bail!(
            "a PostgreSQL store keeps the signing keys sealed with a key-encryption key: set \
             [store] key_encryption_key_file or {KEK_FILE_ENV} (a file holding 64 hexadecimal \
             digits, e.g. from `openssl rand -hex 32`), the same file on every node"
        );
    };
    let kek = Arc::new(read_kek(Path::new(kek_file))?);
    let store = Arc::new(open_postgres(url).await?);
    let keys = PgKeys {
        store: store.clone(),
        kek,
    };
    let ring = keys.first(config.tokens.algorithm).await?;
    Ok(Backend {
        store,
        keys: ring,
        key_source: Arc::new(keys),
        shared: true,
        description: format!("PostgreSQL at {}", describe_url(url)),
    })
}

/// The store alone, for offline commands: PostgreSQL at `url`, else the data directory's SQLite
/// store.
pub async fn open_store(dir: &DataDir, url: Option<&str>) -> anyhow::Result<Arc<dyn Store>> {
    match url {
        Some(url) => Ok(Arc::new(open_postgres(url).await?)),
        None => Ok(Arc::new(dir.store()?)),
    }
}

async fn open_postgres(url: &str) -> anyhow::Result<PgStore> {
    if let Some(problem) = store_url_problem(url) {
        anyhow::bail!("the store URL {problem}");
    }
    PgStore::open(url)
        .await
        .with_context(|| format!("cannot open the PostgreSQL store at {}", describe_url(url)))
}

/// `url` without its password (and without its query), for messages and the banner.
pub fn describe_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let rest = rest.split('?').next().unwrap_or_default();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    format!("{scheme}://{host}/{path}")
}

fn read_kek(path: &Path) -> anyhow::Result<KeyEncryptionKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key-encryption key `{}`", path.display()))?;
    KeyEncryptionKey::from_hex(&text)
        .with_context(|| format!("the key-encryption key `{}`", path.display()))
}

/// `handoff store copy`: every row of the SQLite store in `from` and its signing keys (sealed
/// with the key-encryption key `config` names) into the empty PostgreSQL store `config` names.
pub async fn copy(
    from: &DataDir,
    config: &Config,
) -> anyhow::Result<handoff_store_postgres::ImportReport> {
    let (Some(url), Some(kek_file)) = (&config.store.url, &config.store.key_encryption_key_file)
    else {
        anyhow::bail!(
            "copying into PostgreSQL needs the key-encryption key the signing keys are sealed \
             with: set [store] key_encryption_key_file or {KEK_FILE_ENV}"
        );
    };
    let database = from.database();
    anyhow::ensure!(
        database.is_file(),
        "`{}` holds no SQLite store",
        from.root().display()
    );
    let kek = read_kek(Path::new(kek_file))?;
    let mut keys = Vec::new();
    for (algorithm, der, until) in from.signing_key_documents(config.tokens.algorithm)? {
        let key = SigningKey::from_pkcs8(algorithm, &der)?;
        keys.push(StoredKey {
            kid: key.kid().to_owned(),
            algorithm: algorithm.jws_name().to_owned(),
            sealed: kek.seal(key.kid(), algorithm, &der)?,
            published_until: until.map(Timestamp::millis),
        });
    }
    let tables: Vec<handoff_store_postgres::ImportTable> = handoff_store_sqlite::export(&database)
        .with_context(|| format!("cannot read `{}`", database.display()))?
        .into_iter()
        .map(|t| handoff_store_postgres::ImportTable {
            name: t.name,
            columns: t.columns,
            rows: t.rows,
        })
        .collect();
    let store = open_postgres(url).await?;
    store
        .import(&tables, &keys)
        .await
        .with_context(|| format!("cannot copy into {}", describe_url(url)))
}

/// The signing keys in the PostgreSQL store, sealed with the key-encryption key.
struct PgKeys {
    store: Arc<PgStore>,
    kek: Arc<KeyEncryptionKey>,
}

impl PgKeys {
    /// The stored keys; the first node to start stores a new key for `algorithm`.
    async fn first(&self, algorithm: SigningAlgorithm) -> anyhow::Result<KeyRing> {
        let mut stored = self.store.signing_keys().await?;
        if stored.is_empty() {
            let (row, _) = self.new_key(algorithm).map_err(anyhow::Error::new)?;
            stored = self.store.first_signing_key(row).await?;
        }
        self.ring(&stored).map_err(anyhow::Error::new)
    }

    fn new_key(&self, algorithm: SigningAlgorithm) -> Result<(StoredKey, SigningKey), KeyError> {
        let der = generate_pkcs8(algorithm)?;
        let key = SigningKey::from_pkcs8(algorithm, &der)?;
        let sealed = self
            .kek
            .seal(key.kid(), algorithm, &der)
            .map_err(|e| KeyError::Storage(e.to_string()))?;
        Ok((
            StoredKey {
                kid: key.kid().to_owned(),
                algorithm: algorithm.jws_name().to_owned(),
                sealed,
                published_until: None,
            },
            key,
        ))
    }

    fn ring(&self, stored: &[StoredKey]) -> Result<KeyRing, KeyError> {
        let open = |row: &StoredKey| {
            let algorithm = SigningAlgorithm::from_jws_name(&row.algorithm).ok_or_else(|| {
                KeyError::Storage(format!(
                    "stored signing key `{}` has an unknown algorithm `{}`",
                    row.kid, row.algorithm
                ))
            })?;
            self.kek
                .open(&row.kid, algorithm, &row.sealed)
                .map_err(|e| KeyError::Storage(e.to_string()))
        };
        let Some((active, older)) = stored.split_last() else {
            return Err(KeyError::Storage(
                "the store holds no signing key".to_owned(),
            ));
        };
        let active = open(active)?;
        let mut retired = Vec::new();
        for row in older {
            retired.push((open(row)?, row.published_until.map(Timestamp::from_millis)));
        }
        Ok(KeyRing::with_retirements(active, retired))
    }
}

#[async_trait::async_trait]
impl KeySource for PgKeys {
    async fn rotate(
        &self,
        _ring: &KeyRing,
        algorithm: SigningAlgorithm,
        retire_until: Timestamp,
        now: Timestamp,
    ) -> Result<KeyRing, KeyError> {
        let (row, _) = self.new_key(algorithm)?;
        let stored = self
            .store
            .rotate_signing_keys(row, retire_until.millis(), now.millis())
            .await
            .map_err(|e| KeyError::Storage(e.to_string()))?;
        self.ring(&stored)
    }

    async fn stored(&self) -> Result<Option<KeyRing>, KeyError> {
        let stored = self
            .store
            .signing_keys()
            .await
            .map_err(|e| KeyError::Storage(e.to_string()))?;
        self.ring(&stored).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::describe_url;

    #[test]
    fn a_described_store_url_never_shows_its_password() {
        assert_eq!(
            describe_url("postgres://handoff:s3cret@db:5432/prod?sslmode=require"),
            "postgres://handoff@db:5432/prod"
        );
        assert_eq!(describe_url("postgresql://db/prod"), "postgresql://db/prod");
    }
}
