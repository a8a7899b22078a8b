//! The credentials the gateway injects upstream: a static secret, or an OAuth 2.0
//! client-credentials token asked for with the narrowest scope configured for the action and
//! cached only for its lifetime.

use crate::error::GatewayError;
use axum::http::{HeaderName, HeaderValue};
use handoff_core::config::{SecretSource, UpstreamCredential};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A cached token is dropped this long before the upstream said it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// An upstream credential, ready to use.
pub struct Injector {
    kind: Kind,
}

enum Kind {
    None,
    Static {
        header: HeaderName,
        value: HeaderValue,
    },
    ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        scopes: BTreeMap<String, String>,
        cache: Mutex<BTreeMap<String, (HeaderValue, Instant)>>,
        client: reqwest::Client,
    },
}

fn resolve(source: &SecretSource) -> Result<String, String> {
    match source {
        SecretSource::Env(name) => std::env::var(name)
            .map_err(|_| format!("environment variable `{name}` is not set"))
            .map(|v| v.trim().to_owned()),
        SecretSource::File(secret) => Ok(secret.expose().to_owned()),
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

impl Injector {
    /// Resolves the secrets now (at start), so a missing one stops the gateway before it serves.
    pub fn new(
        credential: Option<&UpstreamCredential>,
        client: reqwest::Client,
    ) -> Result<Self, String> {
        let kind = match credential {
            None => Kind::None,
            Some(UpstreamCredential::Header {
                header,
                prefix,
                secret,
            }) => {
                let secret = resolve(secret)?;
                let mut value =
                    HeaderValue::from_str(&format!("{prefix}{secret}")).map_err(|_| {
                        "the upstream credential is not a valid header value".to_owned()
                    })?;
                value.set_sensitive(true);
                Kind::Static {
                    header: HeaderName::from_bytes(header.as_bytes())
                        .map_err(|_| format!("`{header}` is not a header name"))?,
                    value,
                }
            }
            Some(UpstreamCredential::ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scopes,
            }) => Kind::ClientCredentials {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: resolve(client_secret)?,
                scopes: scopes.clone(),
                cache: Mutex::new(BTreeMap::new()),
                client,
            },
        };
        Ok(Self { kind })
    }

    /// The header to set for a call of `action` (short name), if any.
    pub async fn header_for(
        &self,
        action: &str,
    ) -> Result<Option<(HeaderName, HeaderValue)>, GatewayError> {
        match &self.kind {
            Kind::None => Ok(None),
            Kind::Static { header, value } => Ok(Some((header.clone(), value.clone()))),
            Kind::ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scopes,
                cache,
                client,
            } => {
                let scope = scopes.get(action).cloned().unwrap_or_default();
                let mut cache = cache.lock().await;
                if let Some((value, until)) = cache.get(&scope)
                    && Instant::now() < *until
                {
                    return Ok(Some((axum::http::header::AUTHORIZATION, value.clone())));
                }
                let mut form = vec![("grant_type", "client_credentials")];
                if !scope.is_empty() {
                    form.push(("scope", scope.as_str()));
                }
                let answer = client
                    .post(token_url)
                    .basic_auth(client_id, Some(client_secret))
                    .form(&form)
                    .send()
                    .await
                    .map_err(|e| GatewayError::Credential(e.to_string()))?;
                if !answer.status().is_success() {
                    return Err(GatewayError::Credential(format!(
                        "the token endpoint answered {}",
                        answer.status()
                    )));
                }
                let answer: TokenAnswer = answer
                    .json()
                    .await
                    .map_err(|e| GatewayError::Credential(e.to_string()))?;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", answer.access_token))
                    .map_err(|_| {
                    GatewayError::Credential("the token is not a header value".to_owned())
                })?;
                value.set_sensitive(true);
                // Cached only for the token's lifetime; a token without one is used once.
                match answer
                    .expires_in
                    .map(Duration::from_secs)
                    .and_then(|d| d.checked_sub(EXPIRY_MARGIN))
                {
                    Some(life) if !life.is_zero() => {
                        cache.insert(scope, (value.clone(), Instant::now() + life));
                    }
                    _ => {
                        cache.remove(&scope);
                    }
                }
                Ok(Some((axum::http::header::AUTHORIZATION, value)))
            }
        }
    }
}
