//! Finding a deployment: a config file on disk, or the example compiled into the binary.

use handoff_core::config::{Deployment, Problems, SourceReader, load_deployment};
use std::path::{Path, PathBuf};

/// The bundled example, so `handoff serve` works on a fresh clone with nothing else.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../examples/quickstart/handoff.toml");
/// The public key the example's CI signs evidence with (its private key is a dev-only sample).
const EXAMPLE_CI_JWKS: &str = include_str!("../../../examples/quickstart/evidence/ci-jwks.json");
const EXAMPLE_POLICIES: &[(&str, &str)] = &[
    (
        "policies/tasks.cedar",
        include_str!("../../../examples/quickstart/policies/tasks.cedar"),
    ),
    (
        "policies/tickets.cedar",
        include_str!("../../../examples/quickstart/policies/tickets.cedar"),
    ),
    (
        "policies/git.cedar",
        include_str!("../../../examples/quickstart/policies/git.cedar"),
    ),
    (
        "policies/ci.cedar",
        include_str!("../../../examples/quickstart/policies/ci.cedar"),
    ),
    (
        "policies/payments.cedar",
        include_str!("../../../examples/quickstart/policies/payments.cedar"),
    ),
    (
        "policies/data.cedar",
        include_str!("../../../examples/quickstart/policies/data.cedar"),
    ),
];

/// Reads files relative to a config file's folder.
pub struct FolderReader {
    root: PathBuf,
}

impl FolderReader {
    fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        }
    }
}

impl SourceReader for FolderReader {
    fn read(&self, path: &str) -> Result<String, String> {
        let full = self.resolve(path);
        std::fs::read_to_string(&full).map_err(|e| format!("cannot read `{}`: {e}", full.display()))
    }

    fn policy_files(&self, folder: &str) -> Result<Vec<(String, String)>, String> {
        let dir = self.resolve(folder);
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot read folder `{}`: {e}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| format!("cannot read `{}`: {e}", p.display()))?;
                Ok((p.display().to_string(), text))
            })
            .collect()
    }
}

/// Reads the example compiled into the binary; its `handoff.toml` may be replaced (the fuzz
/// targets load other config text against the example's policies and keys).
pub struct BundledReader<'a> {
    config: &'a str,
}

impl BundledReader<'static> {
    pub const fn new() -> Self {
        Self {
            config: EXAMPLE_CONFIG,
        }
    }
}

impl Default for BundledReader<'static> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> BundledReader<'a> {
    /// The example with `config` as its `handoff.toml`.
    pub const fn with_config(config: &'a str) -> Self {
        Self { config }
    }
}

impl SourceReader for BundledReader<'_> {
    fn read(&self, path: &str) -> Result<String, String> {
        match path {
            "handoff.toml" => return Ok(self.config.to_owned()),
            "evidence/ci-jwks.json" => return Ok(EXAMPLE_CI_JWKS.to_owned()),
            _ => {}
        }
        Err(format!("the bundled example has no file `{path}`"))
    }

    fn policy_files(&self, folder: &str) -> Result<Vec<(String, String)>, String> {
        if folder != "policies" {
            return Err(format!("the bundled example has no folder `{folder}`"));
        }
        Ok(EXAMPLE_POLICIES
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect())
    }
}

/// Where a deployment came from, for messages.
pub fn describe(config: Option<&Path>) -> String {
    config.map_or_else(
        || "the bundled example deployment".to_owned(),
        |p| format!("`{}`", p.display()),
    )
}

/// Loads the deployment at `config`, or the bundled example.
pub fn load(config: Option<&Path>) -> Result<Deployment, Problems> {
    match config {
        None => load_deployment(&BundledReader::new(), "handoff.toml"),
        Some(path) => {
            let root = path
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            let reader = FolderReader {
                root: if root.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    root
                },
            };
            load_deployment(&reader, &name).map_err(|Problems(problems)| {
                // Name the config file as the user gave it.
                Problems(
                    problems
                        .into_iter()
                        .map(|mut p| {
                            if p.file == name {
                                p.file = path.display().to_string();
                            }
                            p
                        })
                        .collect(),
                )
            })
        }
    }
}

/// The `.cedar` files of a policy folder, as a deployment's would be read (`policy diff`).
pub fn policy_folder(dir: &Path) -> Result<Vec<(String, String)>, String> {
    FolderReader {
        root: dir.to_path_buf(),
    }
    .policy_files(".")
}
