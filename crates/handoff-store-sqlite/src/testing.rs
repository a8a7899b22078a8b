//! Scratch stores for tests (feature `test-util`): an empty SQLite store in a temporary folder
//! that is removed when the last handle goes, and a [`Kit`] over one.

use crate::{OpenError, SqliteStore};
use handoff_core::testing::{Kit, KitBuilder, KitError};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error("cannot make a temporary folder")]
    Folder(#[source] std::io::Error),
    #[error("cannot open the scratch store")]
    Open(#[source] OpenError),
    #[error("cannot build the kit")]
    Kit(#[source] KitError),
}

/// An empty store in a fresh temporary folder; keep the folder as long as the store.
pub fn scratch_store() -> Result<(tempfile::TempDir, Arc<SqliteStore>), ScratchError> {
    let dir = tempfile::tempdir().map_err(ScratchError::Folder)?;
    let store = SqliteStore::open(&dir.path().join("handoff.db")).map_err(ScratchError::Open)?;
    Ok((dir, Arc::new(store)))
}

/// `builder` over a scratch store (the kit keeps its folder).
pub fn with_scratch_store(builder: KitBuilder) -> Result<KitBuilder, ScratchError> {
    let (dir, store) = scratch_store()?;
    Ok(builder.store(store).hold(dir))
}

/// A kit for the deployment whose `handoff.toml` is `config` (and `files`), over a scratch store.
pub fn scratch_kit(config: &str, files: &[(&str, &str)]) -> Result<Kit, ScratchError> {
    let mut builder = Kit::builder(config);
    for (path, text) in files {
        builder = builder.file(path, text);
    }
    with_scratch_store(builder)?
        .build()
        .map_err(ScratchError::Kit)
}
