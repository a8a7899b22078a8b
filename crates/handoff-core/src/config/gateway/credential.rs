//! `systems.ID.gateway.credential`: a static header secret or an OAuth client-credentials grant,
//! each secret named by exactly one of an environment variable or a file.

use super::raw::RawCredential;
use super::{Secret, SecretSource, UpstreamCredential};
use crate::config::SourceReader;
use std::collections::BTreeSet;

pub(super) fn validate_credential(
    reader: &dyn SourceReader,
    id: &str,
    raw: &RawCredential,
    actions: &BTreeSet<String>,
) -> Result<UpstreamCredential, String> {
    let source = |env: &Option<String>, file: &Option<String>, what: &str| match (env, file) {
        (Some(name), None) if !name.trim().is_empty() => Ok(SecretSource::Env(name.clone())),
        (None, Some(path)) => reader
            .read(path)
            .map(|text| SecretSource::File(Secret::new(text.trim().to_owned())))
            .map_err(|e| format!("systems.{id}.gateway.credential: {e}")),
        _ => Err(format!(
            "systems.{id}.gateway.credential: name exactly one of `{what}_env` and `{what}_file`"
        )),
    };
    match &raw.token_url {
        None => {
            if raw.client_id.is_some()
                || raw.client_secret_env.is_some()
                || raw.client_secret_file.is_some()
                || !raw.scopes.is_empty()
            {
                return Err(format!(
                    "systems.{id}.gateway.credential: client_id, client_secret and scopes need a `token_url`"
                ));
            }
            let header = raw
                .header
                .clone()
                .unwrap_or_else(|| "authorization".to_owned());
            if header.is_empty()
                || !header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "systems.{id}.gateway.credential: `{header}` is not a header name"
                ));
            }
            Ok(UpstreamCredential::Header {
                header: header.to_ascii_lowercase(),
                prefix: raw.prefix.clone().unwrap_or_default(),
                secret: source(&raw.value_env, &raw.value_file, "value")?,
            })
        }
        Some(token_url) => {
            if raw.header.is_some()
                || raw.prefix.is_some()
                || raw.value_env.is_some()
                || raw.value_file.is_some()
            {
                return Err(format!(
                    "systems.{id}.gateway.credential: a client-credentials grant takes no header, prefix or value"
                ));
            }
            if !token_url.starts_with("http://") && !token_url.starts_with("https://") {
                return Err(format!(
                    "systems.{id}.gateway.credential.token_url must be an http(s) URL"
                ));
            }
            let Some(client_id) = raw.client_id.clone().filter(|c| !c.is_empty()) else {
                return Err(format!(
                    "systems.{id}.gateway.credential: `client_id` is required"
                ));
            };
            if let Some(unknown) = raw.scopes.keys().find(|a| !actions.contains(*a)) {
                return Err(format!(
                    "systems.{id}.gateway.credential.scopes: `{unknown}` is not an action of `{id}`"
                ));
            }
            Ok(UpstreamCredential::ClientCredentials {
                token_url: token_url.clone(),
                client_id,
                client_secret: source(
                    &raw.client_secret_env,
                    &raw.client_secret_file,
                    "client_secret",
                )?,
                scopes: raw.scopes.clone(),
            })
        }
    }
}
