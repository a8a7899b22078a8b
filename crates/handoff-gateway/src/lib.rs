//! The enforcement gateway: puts HTTP APIs and MCP tool servers that never verify Handoff tokens
//! behind Handoff, enforcing each handoff's decision and injecting the real upstream credential.
//!
//! [`router`] serves `/gateway/{system}/...` (HTTP routes) and, when built over a [`Handoff`]
//! service, `/mcp` (Streamable HTTP MCP); `handoff serve` merges it into its app and
//! `handoff gateway` runs it alone, verifying tokens offline.

mod credential;
mod details;
mod error;
mod feed;
mod http;
mod mcp;
mod metered;
mod record;
mod tls;
mod upstream_mcp;
mod uses;
mod verify;

pub use error::GatewayError;
pub use feed::{FeedCredential, FeedEntry, fetch_issuer, fetch_jwks, follow_feed};
pub use http::PREFIX as HTTP_PREFIX;
/// The gateway's path matching, for the fuzz targets (`crates/handoff-fuzz`). Not an API.
#[doc(hidden)]
pub use http::{route_for, split_path};
pub use record::Recorder;
#[doc(hidden)]
pub use upstream_mcp::read_event_stream;
pub use uses::Remote;
pub use verify::{DenyList, OfflineVerifier, Verifier};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Uri};
use axum::routing::{MethodRouter, any, get};
use bytes::Bytes;
use credential::Injector;
use handoff_core::Handoff;
use handoff_core::config::{Config, SystemConfig};
use handoff_core::ids::SystemId;
use handoff_core::live::Current;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest request body the gateway reads (to check it against the token) and forwards.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Everything a gateway request needs.
pub struct Gateway {
    config: Arc<Config>,
    verifier: Verifier,
    recorder: Recorder,
    /// Present inside `handoff serve`: MCP `tools/call` runs the exchange through it.
    handoff: Option<Arc<Current>>,
    credentials: BTreeMap<SystemId, Injector>,
    mcp: BTreeMap<SystemId, Arc<upstream_mcp::McpUpstream>>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    max_body_bytes: usize,
}

/// Why a gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("systems.{system}.gateway.credential: {message}")]
    Credential { system: String, message: String },
    /// The TLS client could not be set up (a private CA that does not parse).
    #[error("gateway TLS: {0}")]
    Tls(String),
}

impl Gateway {
    /// A gateway inside `handoff serve`: tokens checked against Handoff's keys and store, uses
    /// appended to the audit chain, MCP tool calls decided by the exchange itself.
    pub fn embedded(handoff: Arc<Handoff>) -> Result<Self, BuildError> {
        Self::embedded_live(Current::fixed(handoff))
    }

    /// [`Gateway::embedded`] over the service current at each call (swapped by a reload; the
    /// gateway's own tables are fixed while serving, so a reload may not change them).
    pub fn embedded_live(current: Arc<Current>) -> Result<Self, BuildError> {
        let config = Arc::new(current.get().config().clone());
        let mut gateway = Self::new(
            config,
            Verifier::online(current.clone()),
            Recorder::Store(current.clone()),
        )?;
        gateway.handoff = Some(current);
        Ok(gateway)
    }

    /// A gateway over any verifier and recorder (a standalone `handoff gateway`: HTTP routes only).
    pub fn new(
        config: Arc<Config>,
        verifier: Verifier,
        recorder: Recorder,
    ) -> Result<Self, BuildError> {
        let mut credentials = BTreeMap::new();
        let mut mcp = BTreeMap::new();
        let private_cas: Vec<&str> = config
            .systems
            .values()
            .filter_map(|s| s.gateway.as_ref()?.ca_pem.as_deref())
            .collect();
        let tls = tls::client_config(&private_cas).map_err(BuildError::Tls)?;
        let calls = tls::reqwest_client(&tls);
        for system in config.systems.values() {
            let Some(gateway) = &system.gateway else {
                continue;
            };
            let injector =
                Injector::new(gateway.credential.as_ref(), calls.clone()).map_err(|message| {
                    BuildError::Credential {
                        system: system.id.to_string(),
                        message,
                    }
                })?;
            credentials.insert(system.id.clone(), injector);
            if let Some(url) = &gateway.mcp {
                mcp.insert(
                    system.id.clone(),
                    Arc::new(upstream_mcp::McpUpstream::new(url, calls.clone())),
                );
            }
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // `https://` upstreams get TLS (platform roots plus `ca_file`); `http://` stays plain.
        connector.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Self {
            config,
            verifier,
            recorder,
            handoff: None,
            credentials,
            mcp,
            client,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        })
    }

    fn upstream_uri(&self, system: &SystemConfig, path: &str, query: Option<&str>) -> Option<Uri> {
        let base = system.gateway.as_ref()?.upstream.as_deref()?;
        http::join(base, path, query)
    }

    async fn credential(
        &self,
        system: &SystemConfig,
        action: &str,
    ) -> Result<Option<(HeaderName, HeaderValue)>, GatewayError> {
        match self.credentials.get(&system.id) {
            Some(injector) => injector.header_for(action).await,
            None => Ok(None),
        }
    }
}

/// The gateway's routes: HTTP systems under `/gateway/`, and the MCP endpoint with its protected
/// resource metadata (RFC 9728) when the gateway runs inside `handoff serve`.
///
/// Each route has its own body limit (the gateway's for HTTP routes and MCP calls, whose
/// arguments are the body it forwards; [`uses::MAX_BODY_BYTES`] for a batch of use records),
/// and a request declaring a `Content-Length` over it is refused with 413 before anything reads
/// the body, so a client that sent `Expect: 100-continue` never gets `100 Continue` for it.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let limit = gateway.max_body_bytes;
    let mut router = Router::new().route("/gateway/{*rest}", limited(any(http::forward), limit));
    if gateway.handoff.is_some() {
        router = router
            .route(mcp::PATH, limited(any(mcp::endpoint), limit))
            .route(mcp::METADATA_PATH, get(mcp::metadata))
            .route(
                uses::PATH,
                limited(axum::routing::post(uses::receive), uses::MAX_BODY_BYTES),
            );
    }
    router.with_state(gateway)
}

/// The first `max` characters of `text` (what the gateway echoes or records of a caller's input).
fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Microseconds since `started`, for the use record.
fn micros(started: std::time::Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// `route` with a body limit of `limit` bytes, enforced on the declared length first.
fn limited(route: MethodRouter<Arc<Gateway>>, limit: usize) -> MethodRouter<Arc<Gateway>> {
    route
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(move |request, next| {
            declared_length(limit, request, next)
        }))
}

/// Refuses a request whose declared `Content-Length` is over `limit` before the body is read.
async fn declared_length(
    limit: usize,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if http::declared_length(request.headers()).is_some_and(|n| n > limit as u64) {
        return axum::response::IntoResponse::into_response(GatewayError::BodyTooLarge(limit));
    }
    next.run(request).await
}
