//! The keys of identity issuers given by `jwks_url` or OIDC `discovery`: fetched when `serve`
//! starts, published into the core's [`RemoteKeys`] (read lock-free on every request), refreshed
//! in the background as the responses' `Cache-Control`/`Expires` allow (clamped to the issuer's
//! `min_refresh..=max_refresh`), and refetched when a token names an unknown `kid`, at most once
//! per `min_refetch_interval`, however many such tokens arrive.
//!
//! A fetch that fails, or brings a body that is not a usable JWKS, keeps the previous key set and
//! logs a warning. Every fetch is counted in [`FETCHES`] by issuer and outcome.

pub mod freshness;

use handoff_core::config::{Config, IssuerConfig, IssuerKeySource, JwksLocation, RemoteJwks};
use handoff_core::issuer_keys::{
    IssuerKeySet, IssuerList, RefetchHint, RemoteKeyProvider, RemoteKeys,
};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The counter of key-set fetches, labelled `issuer` (the issuer's `id`) and `outcome` (`ok`,
/// `unreachable`, `http_error`, `too_large`, `invalid`).
pub const FETCHES: &str = "handoff_issuer_jwks_fetches_total";

/// A JWKS or discovery document larger than this is refused (real ones are a few KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Each fetch (connect, send, read the body) must finish within this.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The fetched keys of every issuer given by URL, by list and id, for the verifiers to read.
pub struct IssuerFetchers {
    keys: BTreeMap<(IssuerList, String), Arc<RemoteKeys>>,
}

impl RemoteKeyProvider for IssuerFetchers {
    fn remote_keys(&self, list: IssuerList, issuer: &IssuerConfig) -> Option<Arc<RemoteKeys>> {
        self.keys.get(&(list, issuer.id.clone())).cloned()
    }
}

impl IssuerFetchers {
    /// No issuer given by URL is served (the commands that verify no identities).
    pub fn none() -> Self {
        Self {
            keys: BTreeMap::new(),
        }
    }

    /// Fetches the keys of every issuer given by URL, then keeps each fresh in a task of its
    /// own on the current Tokio runtime. Fails, naming every issuer at fault, when a settings
    /// problem is found or an issuer that is not `optional` cannot be fetched; an `optional` one
    /// starts without keys (its tokens are refused with `issuer_keys_unavailable`) and is
    /// fetched again in the background.
    pub async fn start(config: &Config) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut fetchers = Vec::new();
        for (list, issuer, remote) in remote_issuers(config) {
            let what = format!("{}.{}", list.table(), issuer.id);
            let client = match client(remote) {
                Ok(client) => client,
                Err(problem) => {
                    problems.push(format!("{what}: {problem}"));
                    continue;
                }
            };
            let wake = Arc::new(Wake::default());
            let fetcher = Fetcher {
                list,
                what: what.clone(),
                id: issuer.id.clone(),
                issuer: issuer.issuer.clone(),
                remote: remote.clone(),
                client,
                keys: Arc::new(RemoteKeys::new(wake.clone())),
                wake,
            };
            let next = match fetcher.fetch().await {
                Ok(refresh) => refresh,
                Err(error) if remote.optional => {
                    tracing::warn!(
                        issuer = %what,
                        error = %error.message,
                        "the issuer's keys cannot be fetched; its tokens are refused until they are"
                    );
                    seconds(remote.min_refresh)
                }
                Err(error) => {
                    problems.push(format!(
                        "{what}: the issuer's keys cannot be fetched: {}; Handoff does not start \
                         without them (set `optional = true` to start and refuse its tokens until \
                         they arrive)",
                        error.message
                    ));
                    continue;
                }
            };
            fetchers.push((fetcher, next));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut keys = BTreeMap::new();
        for (fetcher, next) in fetchers {
            keys.insert((fetcher.list, fetcher.id.clone()), fetcher.keys.clone());
            tokio::spawn(fetcher.run(Instant::now() + next));
        }
        Ok(Self { keys })
    }
}

/// What `handoff check` adds to the config's own validation, without fetching: each issuer
/// given by URL gets a usable HTTP client (its `ca_file` parses as certificates).
pub fn check(config: &Config) -> Vec<String> {
    remote_issuers(config)
        .filter_map(|(list, issuer, remote)| {
            client(remote)
                .err()
                .map(|problem| format!("{}.{}: {problem}", list.table(), issuer.id))
        })
        .collect()
}

fn remote_issuers(
    config: &Config,
) -> impl Iterator<Item = (IssuerList, &IssuerConfig, &RemoteJwks)> {
    let agents = config.issuers.iter().map(|i| (IssuerList::Agents, i));
    let approvers = config
        .approver_issuers
        .iter()
        .map(|i| (IssuerList::Approvers, i));
    agents
        .chain(approvers)
        .filter_map(|(list, issuer)| match &issuer.keys {
            IssuerKeySource::Remote(remote) => Some((list, issuer, remote)),
            IssuerKeySource::File(_) => None,
        })
}

fn seconds(ttl: handoff_core::time::Ttl) -> Duration {
    Duration::from_secs(u64::from(ttl.seconds()))
}

/// An HTTP client for one issuer: TLS with the platform's roots and the issuer's `ca_file`,
/// `https://` only unless `danger_allow_http`, bounded in time, a few redirects (each held to
/// the same scheme rule).
fn client(remote: &RemoteJwks) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    // Roots the platform cannot parse are skipped; an empty platform store still works with
    // `ca_file`.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = &remote.ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("ca_file: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file: a certificate is unusable: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("ca_file: no certificate in it".to_owned());
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .https_only(!remote.danger_allow_http)
        .redirect(reqwest::redirect::Policy::limited(3))
        .connect_timeout(FETCH_TIMEOUT)
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| format!("no HTTP client can be built: {e}"))
}

/// Wakes the issuer's task when a token names an unknown key; many wakes before the task runs
/// are one.
#[derive(Default)]
struct Wake {
    pending: AtomicBool,
    notify: Notify,
}

impl RefetchHint for Wake {
    fn unknown_key(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }
}

struct Fetcher {
    list: IssuerList,
    /// `issuers.ID` or `approver_issuers.ID`, for the log.
    what: String,
    id: String,
    issuer: String,
    remote: RemoteJwks,
    client: reqwest::Client,
    keys: Arc<RemoteKeys>,
    wake: Arc<Wake>,
}

#[derive(Debug)]
struct FetchError {
    outcome: &'static str,
    message: String,
}

impl FetchError {
    fn new(outcome: &'static str, message: impl Into<String>) -> Self {
        Self {
            outcome,
            message: message.into(),
        }
    }
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct LooseJwks {
    keys: Vec<serde_json::Value>,
}

impl Fetcher {
    /// Refreshes when the key set goes stale, and sooner when a token names an unknown key:
    /// then at once if no such refetch ran in the last `min_refetch_interval`, else when that
    /// interval has passed (every wake in between is one).
    async fn run(self, mut next_refresh: Instant) {
        let interval = seconds(self.remote.min_refetch_interval);
        let mut last_hinted: Option<Instant> = None;
        loop {
            let hinted = tokio::select! {
                () = tokio::time::sleep_until(next_refresh) => false,
                () = self.wake.notify.notified() => true,
            };
            if hinted {
                if let Some(allowed) = last_hinted.map(|last| last + interval)
                    && Instant::now() < allowed
                {
                    tokio::time::sleep_until(allowed).await;
                }
                last_hinted = Some(Instant::now());
            }
            // Wakes from here on ask for the next refetch.
            self.wake.pending.store(false, Ordering::Release);
            next_refresh = Instant::now()
                + match self.fetch().await {
                    Ok(refresh) => refresh,
                    Err(error) => {
                        tracing::warn!(
                            issuer = %self.what,
                            error = %error.message,
                            keys = if self.keys.is_ready() { "the previous key set is kept" } else { "none yet; its tokens are refused" },
                            "the issuer's keys cannot be refreshed"
                        );
                        seconds(self.remote.min_refresh)
                    }
                };
        }
    }

    /// One fetch: publishes the new key set and returns when to refresh it, or fails and keeps
    /// what was published.
    async fn fetch(&self) -> Result<Duration, FetchError> {
        let result = self.fetch_uncounted().await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.outcome,
        };
        metrics::counter!(FETCHES, "issuer" => self.id.clone(), "outcome" => outcome).increment(1);
        result
    }

    async fn fetch_uncounted(&self) -> Result<Duration, FetchError> {
        let url = match &self.remote.location {
            JwksLocation::Url(url) => url.clone(),
            JwksLocation::Discovery => self.discover().await?,
        };
        let (headers, body) = self.get(&url).await?;
        let loose: LooseJwks = serde_json::from_slice(&body)
            .map_err(|e| FetchError::new("invalid", format!("`{url}` is not a JWKS: {e}")))?;
        // Keys the verifier cannot use (other types, encryption keys) are skipped, not fatal.
        let jwks = JwkSet {
            keys: loose
                .keys
                .into_iter()
                .filter_map(|key| serde_json::from_value::<Jwk>(key).ok())
                .collect(),
        };
        let set = IssuerKeySet::from_jwks(&jwks);
        if set.is_empty() {
            return Err(FetchError::new(
                "invalid",
                format!("`{url}` holds no usable key"),
            ));
        }
        let count = set.len();
        self.keys.publish(set);
        let refresh = freshness::refresh_after(
            freshness::declared(&headers, SystemTime::now()),
            seconds(self.remote.min_refresh),
            seconds(self.remote.max_refresh),
        );
        tracing::debug!(
            issuer = %self.what,
            keys = count,
            refresh_in_seconds = refresh.as_secs(),
            "fetched the issuer's keys"
        );
        Ok(refresh)
    }

    /// The `jwks_uri` of `<issuer>/.well-known/openid-configuration`, whose `issuer` must be
    /// the configured one (OpenID Connect Discovery 1.0, section 4.3).
    async fn discover(&self) -> Result<String, FetchError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let (_, body) = self.get(&url).await?;
        let document: DiscoveryDocument = serde_json::from_slice(&body).map_err(|e| {
            FetchError::new(
                "invalid",
                format!("`{url}` is not an OpenID provider configuration: {e}"),
            )
        })?;
        if document.issuer.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
            return Err(FetchError::new(
                "invalid",
                format!(
                    "`{url}` names issuer `{}`, not `{}`",
                    document.issuer, self.issuer
                ),
            ));
        }
        Ok(document.jwks_uri)
    }

    /// GETs `url`: a success status and a body of at most [`MAX_BODY_BYTES`].
    async fn get(&self, url: &str) -> Result<(reqwest::header::HeaderMap, Vec<u8>), FetchError> {
        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::new("unreachable", format!("cannot read `{url}`: {e}")))?;
        if !response.status().is_success() {
            return Err(FetchError::new(
                "http_error",
                format!("`{url}` answered {}", response.status()),
            ));
        }
        let too_large = || {
            FetchError::new(
                "too_large",
                format!("`{url}` sent more than {MAX_BODY_BYTES} bytes"),
            )
        };
        if response
            .content_length()
            .is_some_and(|length| length > MAX_BODY_BYTES as u64)
        {
            return Err(too_large());
        }
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::new("unreachable", format!("cannot read `{url}`: {e}")))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((headers, body))
    }
}
