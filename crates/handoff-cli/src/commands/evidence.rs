//! `handoff evidence sign` (what a registered system such as CI runs to report an event about a
//! task: an ES256 evidence JWT signed with its own key) and `handoff evidence send` (posting one
//! to a running server's `POST /v1/evidence`).

use crate::{DeploymentArgs, EXIT_CONFIG};
use anyhow::{Context as _, bail};
use handoff_core::clock::{Clock, SystemClock};
use handoff_core::evidence::{EvidenceStatement, sign_evidence};
use handoff_core::random::{SystemRandomness, new_id};
use handoff_core::time::Ttl;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

/// What `handoff evidence sign` is told.
pub struct Sign<'a> {
    pub system: &'a str,
    pub task: &'a str,
    pub kind: &'a str,
    /// `name=value` items.
    pub fields: &'a [String],
    pub key: &'a Path,
    pub kid: Option<&'a str>,
    pub id: Option<&'a str>,
    /// Handoff's trust domain; else the deployment's.
    pub audience: Option<&'a str>,
    pub lifetime: Option<&'a str>,
}

/// The `name=value` fields as the statement's `data` (values are strings).
fn fields(items: &[String]) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut data = BTreeMap::new();
    for item in items {
        let Some((name, value)) = item.split_once('=') else {
            bail!("`--field {item}` is not NAME=VALUE");
        };
        if name.is_empty() {
            bail!("`--field {item}` has no name");
        }
        if data
            .insert(name.to_owned(), Value::from(value.to_owned()))
            .is_some()
        {
            bail!("`--field {name}` is given twice");
        }
    }
    Ok(data)
}

pub fn sign(deployment: &DeploymentArgs, args: &Sign<'_>) -> anyhow::Result<ExitCode> {
    let audience = match args.audience {
        Some(audience) => audience.trim_end_matches('/').to_owned(),
        None => match super::load_or_report(deployment) {
            Ok(deployment) => deployment.config.trust_domain.clone(),
            Err(code) => return Ok(code),
        },
    };
    for (value, name) in [
        (args.system, "--system"),
        (args.task, "--task"),
        (args.kind, "--kind"),
    ] {
        if value.trim().is_empty() {
            eprintln!("error: `{name}` must not be empty");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    }
    let data = fields(args.fields)?;
    let lifetime = args
        .lifetime
        .map(Ttl::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let key = std::fs::read(args.key)
        .with_context(|| format!("cannot read the signing key {}", args.key.display()))?;
    let id = match args.id {
        Some(id) => id.to_owned(),
        None => new_id(&SystemRandomness::default(), "ev")?,
    };
    let jwt = sign_evidence(
        &key,
        args.kid,
        &EvidenceStatement {
            system: args.system,
            audience: &audience,
            id: &id,
            task: args.task,
            kind: args.kind,
            data: &data,
            issued_at: SystemClock.now(),
            lifetime,
        },
    )
    .with_context(|| format!("signing with {}", args.key.display()))?;
    println!("{jwt}");
    Ok(ExitCode::SUCCESS)
}

/// Posts `jwt` (or, for `None` or `-`, the JWT read from standard input) to `server`.
pub fn send(server: &str, jwt: Option<&str>) -> anyhow::Result<ExitCode> {
    let jwt = match jwt {
        Some(jwt) if jwt != "-" => jwt.trim().to_owned(),
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .take(64 * 1024)
                .read_to_string(&mut text)
                .context("reading the JWT from standard input")?;
            text.trim().to_owned()
        }
    };
    if jwt.is_empty() {
        eprintln!("error: no evidence JWT given (an argument, or on standard input)");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let url = format!("{}/v1/evidence", server.trim_end_matches('/'));
    let request = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/jwt")
        .body(jwt);
    let (status, body) = super::remote::send(request)?;
    if !(200..300).contains(&status) {
        let text = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default();
        eprintln!(
            "error: {} ({}, HTTP {})",
            text("error_description"),
            text("error"),
            status
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("{}", serde_json::to_string(&body)?);
    Ok(ExitCode::SUCCESS)
}
