//! The data directory: the SQLite store and the private keys (files readable by the owner only).

use anyhow::{Context, Result};
use handoff_core::config::SigningAlgorithm;
use handoff_core::keys::{KeyRing, SigningKey, generate_pkcs8};
use handoff_store_sqlite::SqliteStore;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Opens `root`, creating it (mode 0700) if needed.
    pub fn open(root: &Path) -> Result<Self> {
        let keys = root.join("keys");
        fs::create_dir_all(&keys).with_context(|| format!("cannot create `{}`", keys.display()))?;
        restrict(root, 0o700)?;
        restrict(&keys, 0o700)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("handoff.db")
    }

    pub fn store(&self) -> Result<SqliteStore> {
        let path = self.database();
        SqliteStore::open(&path)
            .with_context(|| format!("cannot open the store at `{}`", path.display()))
    }

    /// The signing keys: the active one for `algorithm`, and any other key on disk kept for
    /// verification so tokens signed before a change of algorithm still verify.
    pub fn key_ring(&self, algorithm: SigningAlgorithm) -> Result<KeyRing> {
        let active = self.key(&format!("signing-{}.p8", algorithm.jws_name()), algorithm)?;
        let mut retired = Vec::new();
        for other in [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa] {
            let path = self
                .root
                .join("keys")
                .join(format!("signing-{}.p8", other.jws_name()));
            if other != algorithm && path.exists() {
                retired.push(self.key(&format!("signing-{}.p8", other.jws_name()), other)?);
            }
        }
        Ok(KeyRing::new(active, retired))
    }

    /// The operator credential for the HTTP admin API, created on first use (file mode 0600).
    pub fn operator_secret(&self) -> Result<String> {
        let path = self.operator_secret_path();
        match fs::read_to_string(&path) {
            Ok(secret) => Ok(secret.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let random = handoff_core::random::SystemRandomness::default();
                let secret = handoff_core::random::new_id(&random, "hop")?;
                write_private(&path, secret.as_bytes())?;
                Ok(secret)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
        }
    }

    pub fn operator_secret_path(&self) -> PathBuf {
        self.root.join("keys").join("operator-secret")
    }

    /// The development identity issuer's key.
    pub fn dev_issuer_key(&self) -> Result<SigningKey> {
        self.key("dev-issuer-ES256.p8", SigningAlgorithm::Es256)
    }

    fn key(&self, name: &str, algorithm: SigningAlgorithm) -> Result<SigningKey> {
        let path = self.root.join("keys").join(name);
        let der = match fs::read(&path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let der = generate_pkcs8(algorithm)?;
                write_private(&path, &der)?;
                der
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read key `{}`", path.display()));
            }
        };
        SigningKey::from_pkcs8(algorithm, &der).with_context(|| format!("key `{}`", path.display()))
    }
}

/// Writes a private key readable by the owner only, refusing to overwrite.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create key `{}`", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

fn restrict(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set permissions on `{}`", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}
