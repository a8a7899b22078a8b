//! `handoff init DIR`: a commented starter deployment (config, policies, policy tests, one
//! workload identity issuer) that `handoff check` and `handoff policy test` accept as written.

use crate::EXIT_CONFIG;
use anyhow::Context as _;
use handoff_core::config::SigningAlgorithm;
use handoff_core::keys::{SigningKey, generate_pkcs8};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

/// The starter files, by their path under DIR.
const FILES: &[(&str, &str)] = &[
    ("handoff.toml", include_str!("init/handoff.toml")),
    (
        "policies/tasks.cedar",
        include_str!("init/policies/tasks.cedar"),
    ),
    (
        "policies/release.cedar",
        include_str!("init/policies/release.cedar"),
    ),
    (
        "policies/support.cedar",
        include_str!("init/policies/support.cedar"),
    ),
    (
        "policy-tests/release.toml",
        include_str!("init/policy-tests/release.toml"),
    ),
    (
        "policy-tests/support.toml",
        include_str!("init/policy-tests/support.toml"),
    ),
];

/// A JWKS with one freshly generated public key whose private half is thrown away: a
/// placeholder that verifies nobody's identity until the issuer's real JWKS replaces it.
fn placeholder_jwks() -> anyhow::Result<String> {
    let der = generate_pkcs8(SigningAlgorithm::Es256)?;
    let key = SigningKey::from_pkcs8(SigningAlgorithm::Es256, &der)?;
    Ok(serde_json::to_string_pretty(&json!({ "keys": [key.public_jwk()] }))? + "\n")
}

pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                eprintln!(
                    "error: `{}` is not empty; `handoff init` writes only into a new or empty folder",
                    dir.display()
                );
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read `{}`", dir.display()));
        }
    }
    let mut files: Vec<(&str, String)> = FILES
        .iter()
        .map(|(path, text)| (*path, (*text).to_owned()))
        .collect();
    files.push(("issuer-jwks.json", placeholder_jwks()?));
    for (path, text) in &files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        // create_new: never overwrite a file that appeared since the check above.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .with_context(|| format!("cannot create `{}`", target.display()))?;
        std::io::Write::write_all(&mut file, text.as_bytes())
            .with_context(|| format!("cannot write `{}`", target.display()))?;
    }
    let config = dir.join("handoff.toml");
    println!("wrote a starter deployment to {}:", dir.display());
    for (path, _) in &files {
        println!("  {path}");
    }
    println!(
        "next:\n  handoff check --config {config}\n  handoff policy test {tests} --config {config}\n  \
         handoff serve --config {config}",
        config = config.display(),
        tests = dir.join("policy-tests").display(),
    );
    Ok(ExitCode::SUCCESS)
}
