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
    /// Opens `root`, creating it (mode 0700) if needed: only `serve` (and `init`) create a
    /// deployment's data directory; every other command uses [`DataDir::existing`].
    pub fn open(root: &Path) -> Result<Self> {
        let keys = root.join("keys");
        fs::create_dir_all(&keys).with_context(|| format!("cannot create `{}`", keys.display()))?;
        restrict(root, 0o700)?;
        restrict(&keys, 0o700)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Opens `root` only if it already holds a Handoff store, so a mistyped `--data-dir` (or a
    /// command run from the wrong folder) never creates a second, empty deployment.
    pub fn existing(root: &Path) -> Result<Self, NoStore> {
        let database = root.join("handoff.db");
        if !database.is_file() {
            return Err(NoStore {
                root: root.to_path_buf(),
            });
        }
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
        loop {
            let read =
                read_private(&path).with_context(|| format!("cannot use `{}`", path.display()))?;
            if let Some(bytes) = read {
                let secret = String::from_utf8(bytes)
                    .with_context(|| format!("`{}` is not UTF-8", path.display()))?;
                let secret = secret.trim();
                anyhow::ensure!(!secret.is_empty(), "`{}` is empty", path.display());
                return Ok(secret.to_owned());
            }
            let random = handoff_core::random::SystemRandomness::default();
            let secret = handoff_core::random::new_id(&random, "hop")?;
            if write_private(&path, secret.as_bytes())? == WriteOutcome::Written {
                return Ok(secret);
            }
        }
    }

    pub fn operator_secret_path(&self) -> PathBuf {
        self.root.join("keys").join("operator-secret")
    }

    /// The development identity issuer's key.
    pub fn dev_issuer_key(&self) -> Result<SigningKey> {
        self.key("dev-issuer-ES256.p8", SigningAlgorithm::Es256)
    }

    /// The key audit checkpoints are signed with (Ed25519), apart from every token key.
    pub fn checkpoint_key(&self) -> Result<SigningKey> {
        self.key_for(
            "checkpoint-EdDSA.p8",
            SigningAlgorithm::EdDsa,
            handoff_core::checkpoint::CHECKPOINT_USE,
        )
    }

    fn key(&self, name: &str, algorithm: SigningAlgorithm) -> Result<SigningKey> {
        self.key_for(name, algorithm, "sig")
    }

    fn key_for(
        &self,
        name: &str,
        algorithm: SigningAlgorithm,
        key_use: &str,
    ) -> Result<SigningKey> {
        let path = self.root.join("keys").join(name);
        let der = loop {
            let read = read_private(&path)
                .with_context(|| format!("cannot use key `{}`", path.display()))?;
            if let Some(der) = read {
                break der;
            }
            let der = generate_pkcs8(algorithm)?;
            if write_private(&path, &der)? == WriteOutcome::Written {
                break der;
            }
        };
        SigningKey::from_pkcs8_for(algorithm, &der, key_use)
            .with_context(|| format!("key `{}`", path.display()))
    }
}

/// A data directory that holds no Handoff store.
#[derive(Debug)]
pub struct NoStore {
    root: PathBuf,
}

impl std::fmt::Display for NoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` holds no Handoff store (no handoff.db): give the data directory of a deployment \
             with --data-dir, or talk to the running server with --server; only `handoff serve` \
             creates a store",
            self.root.display()
        )
    }
}

impl std::error::Error for NoStore {}

/// Writes a secret readable by the owner only, all or nothing, refusing to overwrite: the bytes
/// go to a temporary file in the same directory (mode 0600), which is fsynced, linked into place
/// only if nothing is there yet, and the directory fsynced. A kill at any moment leaves either no
/// file or the whole one, never a short key that would stop every later start. When another
/// process wrote the file first, its secret is the one kept and read back.
fn write_private(path: &Path, bytes: &[u8]) -> Result<WriteOutcome> {
    let dir = path
        .parent()
        .with_context(|| format!("`{}` has no directory", path.display()))?;
    let mut file = tempfile::Builder::new()
        .prefix(".handoff-secret-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in `{}`", dir.display()))?;
    restrict(file.path(), 0o600)?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("cannot write `{}`", file.path().display()))?;
    match file.persist_noclobber(path) {
        Ok(_) => {}
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Ok(WriteOutcome::AlreadyThere);
        }
        Err(e) => {
            return Err(e.error).with_context(|| format!("cannot create `{}`", path.display()));
        }
    }
    sync_dir(dir)?;
    Ok(WriteOutcome::Written)
}

#[derive(Debug, PartialEq, Eq)]
enum WriteOutcome {
    Written,
    AlreadyThere,
}

/// Makes a rename or link in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync `{}`", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Reads a secret, refusing one that group or others may read: a key another account could have
/// copied is not a key to keep signing with.
fn read_private(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "it is readable by group or others (mode {:o}); `chmod 600` it, and rotate \
                     the key if another account could have read it",
                    mode & 0o777
                ),
            ));
        }
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut bytes)?;
    Ok(Some(bytes))
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
