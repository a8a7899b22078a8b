//! The data directory: the SQLite store and the private keys (files readable by the owner only).

use anyhow::{Context, Result};
use handoff_core::config::SigningAlgorithm;
use handoff_core::keys::{KeyError, KeyRing, SigningKey, generate_pkcs8};
use handoff_core::rotation::KeySource;
use handoff_core::time::Timestamp;
use handoff_store_sqlite::SqliteStore;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub struct DataDir {
    root: PathBuf,
    /// Whether [`DataDir::store`] may create the SQLite store (only for `serve`).
    create: bool,
}

impl DataDir {
    /// Opens `root`, creating it (mode 0700) if needed: only `serve` (and `init`) create a
    /// deployment's data directory; every other command uses [`DataDir::existing`].
    pub fn open(root: &Path) -> Result<Self> {
        let keys = root.join("keys");
        fs::create_dir_all(&keys).with_context(|| format!("cannot create `{}`", keys.display()))?;
        restrict(root, 0o700)?;
        restrict(&keys, 0o700)?;
        remove_leftover_temporaries(&keys);
        Ok(Self {
            root: root.to_path_buf(),
            create: true,
        })
    }

    /// Opens `root` only if it already holds a Handoff store (or is the data directory of a
    /// node serving on PostgreSQL: its operator credential is there), so a mistyped
    /// `--data-dir` (or a command run from the wrong folder) never creates a second, empty
    /// deployment.
    pub fn existing(root: &Path) -> Result<Self, NoStore> {
        let database = root.join("handoff.db");
        let node = root.join("keys").join("operator-secret");
        if !database.is_file() && !node.is_file() {
            return Err(NoStore {
                root: root.to_path_buf(),
            });
        }
        Ok(Self {
            root: root.to_path_buf(),
            create: false,
        })
    }

    /// Opens `root` for a command on the store at `url` (PostgreSQL): the folder must exist (it
    /// holds the keys every node shares: the operator credential, the checkpoint key, the
    /// development issuer's key), but holds no store. Without `url`, [`DataDir::existing`].
    pub fn for_store(root: &Path, url: Option<&str>) -> Result<Self> {
        if url.is_none() {
            return Ok(Self::existing(root)?);
        }
        anyhow::ensure!(
            root.join("keys").is_dir(),
            "`{}` is not a Handoff data directory (no keys/ folder)",
            root.display()
        );
        Ok(Self {
            root: root.to_path_buf(),
            create: false,
        })
    }

    /// The embedded store and the signing keys in this folder.
    pub fn sqlite_backend(
        &self,
        algorithm: SigningAlgorithm,
    ) -> Result<crate::shared_store::Backend> {
        Ok(crate::shared_store::Backend {
            store: std::sync::Arc::new(self.store()?),
            keys: self.key_ring(algorithm)?,
            key_source: std::sync::Arc::new(self.key_source()),
            shared: false,
            description: format!("SQLite in {}", self.root.display()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("handoff.db")
    }

    /// The SQLite store; only `serve` creates it (a node on PostgreSQL keeps none here).
    pub fn store(&self) -> Result<SqliteStore> {
        let path = self.database();
        anyhow::ensure!(
            self.create || path.is_file(),
            "`{}` holds no SQLite store (no handoff.db): for a deployment on PostgreSQL, give its \
             URL with --store",
            self.root.display()
        );
        SqliteStore::open(&path)
            .with_context(|| format!("cannot open the store at `{}`", path.display()))
    }

    /// The signing keys. Once a key has been rotated, `keys/signing.json` lists them (the last
    /// one active, each older one with the time it leaves the JWKS) and the config's algorithm
    /// no longer picks the active key. Before, the active key is the one for `algorithm`, and any
    /// other key on disk is kept for verification so tokens signed before a change of algorithm
    /// still verify.
    pub fn key_ring(&self, algorithm: SigningAlgorithm) -> Result<KeyRing> {
        if let Some(manifest) = self.key_manifest()? {
            return self.ring_of(&manifest);
        }
        let active = self.key(&legacy_name(algorithm), algorithm)?;
        let mut retired = Vec::new();
        for other in [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa] {
            let path = self.root.join("keys").join(legacy_name(other));
            if other != algorithm && path.exists() {
                retired.push(self.key(&legacy_name(other), other)?);
            }
        }
        Ok(KeyRing::new(active, retired))
    }

    /// The signing keys as stored here, oldest first and the active one last: each key's
    /// algorithm, its PKCS#8 document and when it leaves the JWKS (for `handoff store copy`).
    pub fn signing_key_documents(&self, algorithm: SigningAlgorithm) -> Result<Vec<KeyDocument>> {
        let entries = match self.key_manifest()? {
            Some(entries) => entries,
            None => {
                let mut entries = Vec::new();
                for other in [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa] {
                    let path = self.root.join("keys").join(legacy_name(other));
                    if other != algorithm && path.exists() {
                        entries.push(KeyEntry {
                            file: legacy_name(other),
                            algorithm: other,
                            until: None,
                        });
                    }
                }
                entries.push(KeyEntry {
                    file: legacy_name(algorithm),
                    algorithm,
                    until: None,
                });
                entries
            }
        };
        let mut documents = Vec::with_capacity(entries.len());
        for entry in entries {
            let path = self.root.join("keys").join(&entry.file);
            let der = read_private(&path)
                .with_context(|| format!("cannot use key `{}`", path.display()))?
                .with_context(|| format!("key `{}` is missing", path.display()))?;
            documents.push((entry.algorithm, der, entry.until));
        }
        Ok(documents)
    }

    /// Where rotations of the signing key are stored.
    pub fn key_source(&self) -> DiskKeys {
        DiskKeys {
            root: self.root.clone(),
        }
    }

    fn manifest_path(&self) -> PathBuf {
        self.root.join("keys").join(MANIFEST)
    }

    fn key_manifest(&self) -> Result<Option<Vec<KeyEntry>>> {
        let path = self.manifest_path();
        let Some(bytes) =
            read_private(&path).with_context(|| format!("cannot use `{}`", path.display()))?
        else {
            return Ok(None);
        };
        let bad = || format!("`{}` is not a Handoff key list", path.display());
        let value: serde_json::Value = serde_json::from_slice(&bytes).with_context(bad)?;
        let entries = value
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .with_context(bad)?;
        let mut keys = Vec::new();
        for entry in entries {
            let file = entry
                .get("file")
                .and_then(serde_json::Value::as_str)
                .filter(|f| is_key_file_name(f))
                .with_context(bad)?;
            let algorithm = entry
                .get("algorithm")
                .and_then(serde_json::Value::as_str)
                .and_then(SigningAlgorithm::from_jws_name)
                .with_context(bad)?;
            let until = match entry.get("published_until") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(Timestamp::from_millis(v.as_i64().with_context(bad)?)),
            };
            keys.push(KeyEntry {
                file: file.to_owned(),
                algorithm,
                until,
            });
        }
        anyhow::ensure!(!keys.is_empty(), "`{}` lists no key", path.display());
        Ok(Some(keys))
    }

    fn ring_of(&self, entries: &[KeyEntry]) -> Result<KeyRing> {
        let Some((active, older)) = entries.split_last() else {
            anyhow::bail!("`{}` lists no key", self.manifest_path().display());
        };
        let active = self.existing_key(&active.file, active.algorithm)?;
        let mut retired = Vec::new();
        for entry in older {
            retired.push((
                self.existing_key(&entry.file, entry.algorithm)?,
                entry.until,
            ));
        }
        Ok(KeyRing::with_retirements(active, retired))
    }

    /// A key the key list names: it must be there (never generated in its place).
    fn existing_key(&self, name: &str, algorithm: SigningAlgorithm) -> Result<SigningKey> {
        let path = self.root.join("keys").join(name);
        let der = read_private(&path)
            .with_context(|| format!("cannot use key `{}`", path.display()))?
            .with_context(|| {
                format!(
                    "key `{}` is listed in `{MANIFEST}` but missing",
                    path.display()
                )
            })?;
        SigningKey::from_pkcs8(algorithm, &der).with_context(|| format!("key `{}`", path.display()))
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

/// A signing key as stored: its algorithm, its PKCS#8 document, when it leaves the JWKS.
pub type KeyDocument = (SigningAlgorithm, Vec<u8>, Option<Timestamp>);

/// The list of signing keys once one has been rotated.
const MANIFEST: &str = "signing.json";

/// A signing key file from before any rotation (`[tokens] algorithm` picks the active one).
fn legacy_name(algorithm: SigningAlgorithm) -> String {
    format!("signing-{}.p8", algorithm.jws_name())
}

/// Key file names are Handoff's own (`signing-ALG[-KID].p8`): never a path elsewhere.
fn is_key_file_name(name: &str) -> bool {
    name.starts_with("signing-")
        && name.ends_with(".p8")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.contains("..")
}

/// One signing key of the key list.
struct KeyEntry {
    file: String,
    algorithm: SigningAlgorithm,
    /// When a retired key leaves the JWKS; `None` for the active key (and keys kept for good).
    until: Option<Timestamp>,
}

/// The data directory's `keys/` folder as the place key rotations are stored: the new key is
/// written whole (0600, never overwriting), then the key list is replaced atomically, so a crash
/// leaves either the old list or the new one, never a list naming a missing key.
pub struct DiskKeys {
    root: PathBuf,
}

#[async_trait::async_trait]
impl KeySource for DiskKeys {
    async fn rotate(
        &self,
        ring: &KeyRing,
        algorithm: SigningAlgorithm,
        retire_until: Timestamp,
        now: Timestamp,
    ) -> Result<KeyRing, KeyError> {
        let storage = |e: anyhow::Error| KeyError::Storage(format!("{e:#}"));
        let dir = DataDir {
            root: self.root.clone(),
            create: false,
        };
        // The keys as listed on disk (or, before the first rotation, the ring in use, which
        // came from the legacy files).
        let mut entries = match dir.key_manifest().map_err(storage)? {
            Some(entries) => entries,
            None => {
                let mut entries: Vec<KeyEntry> = ring
                    .retired()
                    .map(|(key, until)| KeyEntry {
                        file: legacy_name(key.algorithm()),
                        algorithm: key.algorithm(),
                        until,
                    })
                    .collect();
                entries.push(KeyEntry {
                    file: legacy_name(ring.active().algorithm()),
                    algorithm: ring.active().algorithm(),
                    until: None,
                });
                entries
            }
        };
        // Every key that signed until now stays published until its last token has expired
        // (an earlier retirement keeps its own, earlier, time); keys past theirs leave.
        for entry in &mut entries {
            entry.until = Some(match entry.until {
                Some(until) => until.min(retire_until),
                None => retire_until,
            });
        }
        let (kept, gone): (Vec<KeyEntry>, Vec<KeyEntry>) = entries
            .into_iter()
            .partition(|e| e.until.is_some_and(|until| until >= now));
        let mut entries = kept;
        let der = generate_pkcs8(algorithm)?;
        let key = SigningKey::from_pkcs8(algorithm, &der)?;
        let file = format!("signing-{}-{}.p8", algorithm.jws_name(), key.kid());
        let path = self.root.join("keys").join(&file);
        if write_private(&path, &der).map_err(storage)? != WriteOutcome::Written {
            return Err(KeyError::Storage(format!(
                "`{}` already exists",
                path.display()
            )));
        }
        entries.push(KeyEntry {
            file,
            algorithm,
            until: None,
        });
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "file": e.file,
                    "algorithm": e.algorithm.jws_name(),
                    "published_until": e.until.map(Timestamp::millis),
                })
            })
            .collect();
        let manifest = serde_json::to_vec_pretty(&serde_json::json!({ "keys": list }))
            .map_err(|e| KeyError::Storage(e.to_string()))?;
        replace_private(&dir.manifest_path(), &manifest).map_err(storage)?;
        // Keys that no token can need any more: their private halves go (a failure to delete
        // one leaves a key nothing trusts).
        for entry in gone {
            let _ = fs::remove_file(self.root.join("keys").join(entry.file));
        }
        dir.ring_of(&entries).map_err(storage)
    }
}

/// Replaces `path` with `bytes` (mode 0600) all or nothing: a temporary file in the same
/// directory, fsynced, renamed over it, and the directory fsynced.
fn replace_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let (dir, file) = private_temp_beside(path, bytes)?;
    file.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace `{}`", path.display()))?;
    sync_dir(dir)
}

/// The prefix and suffix of the temporary files secrets are written through.
const TEMPORARY_PREFIX: &str = ".handoff-secret-";
const TEMPORARY_SUFFIX: &str = ".tmp";

/// Removes the temporary files a process killed mid-write left in `keys`: never read, each holds
/// nothing, part of a secret or a whole copy of one, and would otherwise stay. Run when `serve`
/// opens the folder; a command writing a secret into it at that moment fails and can be run
/// again. A file that cannot be removed is left (the next start tries again).
fn remove_leftover_temporaries(keys: &Path) {
    let Ok(entries) = fs::read_dir(keys) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMPORARY_PREFIX) && name.ends_with(TEMPORARY_SUFFIX) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// `bytes` in a temporary file (mode 0600, fsynced) in `path`'s directory, ready to be moved
/// into place; and that directory.
fn private_temp_beside<'a>(
    path: &'a Path,
    bytes: &[u8],
) -> Result<(&'a Path, tempfile::NamedTempFile)> {
    let dir = path
        .parent()
        .with_context(|| format!("`{}` has no directory", path.display()))?;
    let mut file = tempfile::Builder::new()
        .prefix(TEMPORARY_PREFIX)
        .suffix(TEMPORARY_SUFFIX)
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in `{}`", dir.display()))?;
    restrict(file.path(), 0o600)?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("cannot write `{}`", file.path().display()))?;
    Ok((dir, file))
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
    let (dir, file) = private_temp_beside(path, bytes)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::DataDir;

    #[test]
    fn opening_for_serve_removes_what_a_killed_write_left_and_only_that() {
        let root = tempfile::tempdir().unwrap();
        let keys = root.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::write(keys.join(".handoff-secret-AbC123.tmp"), b"half a sec").unwrap();
        std::fs::write(keys.join(".handoff-secret-empty.tmp"), b"").unwrap();
        std::fs::write(keys.join("operator-secret"), b"the secret").unwrap();
        std::fs::write(keys.join("notes.tmp"), b"not ours").unwrap();
        DataDir::open(root.path()).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&keys)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["notes.tmp", "operator-secret"]);
        assert_eq!(
            std::fs::read(keys.join("operator-secret")).unwrap(),
            b"the secret"
        );
    }
}
