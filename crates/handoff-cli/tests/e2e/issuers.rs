//! Identity issuers given by URL (`jwks_url`, OIDC `discovery`): a JWKS server on a loopback
//! port that rotates its key, counts its requests and declares `Cache-Control`; Handoff follows
//! the rotation without a restart, refuses forged `kid`s without fetching for each, and refuses
//! to start without a required issuer's keys.

use crate::bounded;
use crate::harness::{Server, TRUST_DOMAIN, cli, example_config, now, sign, stderr, temp_dir};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An ES256 key of the test issuer: its signer and its public JWK.
struct IssuerKey {
    kid: String,
    signer: EncodingKey,
    jwk: Value,
}

impl IssuerKey {
    fn generate(kid: &str) -> Self {
        use aws_lc_rs::signature::KeyPair as _;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
        )
        .unwrap();
        // Uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self {
            kid: kid.to_owned(),
            signer: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        }
    }
}

/// What the JWKS server serves, and what it saw.
struct Served {
    /// The body of `/jwks.json` (a JWKS, or anything a test wants served).
    body: String,
    status: u16,
    jwks_requests: usize,
    discovery_requests: usize,
}

/// A JWKS (and OIDC discovery) server on a loopback port, on its own runtime thread, so a test
/// blocked starting `handoff serve` never stalls it.
struct JwksServer {
    base: String,
    state: Arc<Mutex<Served>>,
}

impl JwksServer {
    fn start(keys: &[&IssuerKey]) -> Self {
        let state = Arc::new(Mutex::new(Served {
            body: jwks(keys),
            status: 200,
            jwks_requests: 0,
            discovery_requests: 0,
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = state.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                use axum::routing::get;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let base = format!("http://{}", listener.local_addr().unwrap());
                let jwks_state = shared.clone();
                let discovery_state = shared;
                let discovery_base = base.clone();
                let app = axum::Router::new()
                    .route(
                        "/jwks.json",
                        get(move || {
                            let state = jwks_state.clone();
                            async move {
                                let mut served = state.lock().unwrap();
                                served.jwks_requests += 1;
                                (
                                    axum::http::StatusCode::from_u16(served.status).unwrap(),
                                    [
                                        ("cache-control", "public, max-age=3600"),
                                        ("content-type", "application/json"),
                                    ],
                                    served.body.clone(),
                                )
                            }
                        }),
                    )
                    .route(
                        "/.well-known/openid-configuration",
                        get(move || {
                            let state = discovery_state.clone();
                            let base = discovery_base.clone();
                            async move {
                                state.lock().unwrap().discovery_requests += 1;
                                axum::Json(json!({
                                    "issuer": base,
                                    "jwks_uri": format!("{base}/jwks.json"),
                                }))
                            }
                        }),
                    );
                tx.send(base).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        let base = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Self { base, state }
    }

    fn serve(&self, body: String) {
        self.state.lock().unwrap().body = body;
    }

    fn status(&self, status: u16) {
        self.state.lock().unwrap().status = status;
    }

    fn jwks_requests(&self) -> usize {
        self.state.lock().unwrap().jwks_requests
    }

    fn discovery_requests(&self) -> usize {
        self.state.lock().unwrap().discovery_requests
    }
}

fn jwks(keys: &[&IssuerKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

/// The example deployment plus the issuer `corp` at `issuer`, with `keys` (the lines that say
/// where its keys are, and how they are fetched).
fn config_with_issuer(dir: &std::path::Path, issuer: &str, keys: &str) -> std::path::PathBuf {
    let table = format!(
        "\n[[issuers]]\nid = \"corp\"\nissuer = \"{issuer}\"\naudience = \"{TRUST_DOMAIN}\"\n\
         algorithms = [\"ES256\"]\n{keys}\n"
    );
    example_config(dir, |text| text + &table)
}

/// An identity for `release-bot` from the test issuer, signed by `key` and naming `kid`.
fn identity(issuer: &str, key: &IssuerKey, kid: &str) -> String {
    // A fresh `jti` each time: a token Handoff verified once is cached until it expires.
    let claims = json!({
        "iss": issuer, "sub": "release-bot", "aud": TRUST_DOMAIN,
        "iat": now(), "exp": now() + 600,
        "jti": format!("{:x}", rand_u64()),
    });
    sign(&key.signer, Some(kid), Some("JWT"), &claims)
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    u64::from_le_bytes(bytes)
}

async fn open(server: &Server, identity: &str) -> (u16, Value) {
    server
        .open_task(
            identity,
            json!({ "intent": "ship it", "purpose": "release", "user": "alice" }),
        )
        .await
}

/// Opens a task with a fresh identity from `make` until one is accepted, within 10 seconds.
async fn accepted_within_bound(server: &Server, make: impl Fn() -> String, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = open(server, &make()).await;
        if status == 201 {
            return;
        }
        assert_eq!(status, 401, "{what}: {body}");
        assert!(Instant::now() < deadline, "{what}: never accepted: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fetch_count(server: &Server, outcome: &str) -> u64 {
    let text = server
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let needle =
        format!("handoff_issuer_jwks_fetches_total{{issuer=\"corp\",outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&needle))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test]
async fn an_issuer_given_by_url_rotates_its_key_without_a_restart_and_forged_kids_fetch_nothing() {
    let key1 = IssuerKey::generate("key-1");
    let key2 = IssuerKey::generate("key-2");
    let jwks_server = JwksServer::start(&[&key1]);
    let issuer = jwks_server.base.clone();
    let dir = temp_dir();
    // One refetch an hour at most: within this test, exactly one may be triggered by tokens.
    let config = config_with_issuer(
        dir.path(),
        &issuer,
        &format!(
            "jwks_url = \"{issuer}/jwks.json\"\ndanger_allow_http = true\n\
             min_refetch_interval = \"1h\""
        ),
    );
    let server = Server::start_with(&dir.path().join("data"), Some(&config));
    assert_eq!(jwks_server.jwks_requests(), 1, "fetched once at start");
    let (status, body) = open(&server, &identity(&issuer, &key1, &key1.kid)).await;
    assert_eq!(status, 201, "key 1 is trusted: {body}");

    // The issuer rotates to key 2 alone.
    jwks_server.serve(jwks(&[&key2]));
    let (status, body) = open(&server, &identity(&issuer, &key2, &key2.kid)).await;
    assert_eq!(
        status, 401,
        "refused now, refetched in the background: {body}"
    );
    assert_eq!(body["error"], "invalid_client");
    accepted_within_bound(
        &server,
        || identity(&issuer, &key2, &key2.kid),
        "a token under the new key",
    )
    .await;
    assert_eq!(
        jwks_server.jwks_requests(),
        2,
        "one refetch for the new kid"
    );
    // Key 1 left the issuer's set, and so Handoff's.
    let (status, _) = open(&server, &identity(&issuer, &key1, &key1.kid)).await;
    assert_eq!(status, 401, "the retired key is no longer trusted");

    // A flood of forged kids: every token refused, and no further fetch within the interval.
    for _ in 0..50 {
        let forged_kid = format!("forged-{:x}", rand_u64());
        let (status, body) = open(&server, &identity(&issuer, &key2, &forged_kid)).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_client");
    }
    // The bound: 1 fetch at start + 1 refetch per min_refetch_interval (one hour, longer than
    // this test) = 2, whatever the number of unknown kids.
    assert_eq!(
        jwks_server.jwks_requests(),
        2,
        "forged kids made Handoff fetch again"
    );
    assert_eq!(fetch_count(&server, "ok").await, 2);
    // Key 2 still works after the flood.
    let (status, _) = open(&server, &identity(&issuer, &key2, &key2.kid)).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn oidc_discovery_finds_the_issuers_jwks() {
    let key = IssuerKey::generate("disc-1");
    let jwks_server = JwksServer::start(&[&key]);
    let issuer = jwks_server.base.clone();
    let dir = temp_dir();
    // The server declares max-age=3600; max_refresh clamps it to one second.
    let config = config_with_issuer(
        dir.path(),
        &issuer,
        "discovery = true\ndanger_allow_http = true\nmin_refresh = \"1s\"\nmax_refresh = \"1s\"",
    );
    let server = Server::start_with(&dir.path().join("data"), Some(&config));
    assert_eq!(jwks_server.discovery_requests(), 1);
    assert_eq!(jwks_server.jwks_requests(), 1);
    let (status, body) = open(&server, &identity(&issuer, &key, &key.kid)).await;
    assert_eq!(status, 201, "{body}");
    // Refreshed in the background, with no token asking: discovery again, then the key set.
    let deadline = Instant::now() + Duration::from_secs(10);
    while jwks_server.jwks_requests() < 3 {
        assert!(Instant::now() < deadline, "no background refresh");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(jwks_server.discovery_requests() >= 3);
}

#[tokio::test]
async fn a_reload_keeps_the_fetched_keys_and_refuses_to_change_an_issuer_given_by_url() {
    let key = IssuerKey::generate("reload-1");
    let jwks_server = JwksServer::start(&[&key]);
    let issuer = jwks_server.base.clone();
    let dir = temp_dir();
    let keys = format!("jwks_url = \"{issuer}/jwks.json\"\ndanger_allow_http = true");
    let config = config_with_issuer(dir.path(), &issuer, &keys);
    let server = Server::start_with(&dir.path().join("data"), Some(&config));
    let (status, body) = server.admin("reload", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = open(&server, &identity(&issuer, &key, &key.kid)).await;
    assert_eq!(
        status, 201,
        "the reloaded service reads the same fetched keys: {body}"
    );
    assert_eq!(jwks_server.jwks_requests(), 1, "a reload fetches nothing");

    config_with_issuer(
        dir.path(),
        &issuer,
        &format!("{keys}\nmin_refetch_interval = \"5m\""),
    );
    let (status, body) = server.admin("reload", json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["problems"][0].as_str().unwrap().contains(
            "`issuers.corp (an issuer given by jwks_url or discovery)` cannot change while serving"
        ),
        "{body}"
    );
    let (status, _) = open(&server, &identity(&issuer, &key, &key.kid)).await;
    assert_eq!(status, 201, "the old deployment keeps serving");
}

#[tokio::test]
async fn an_optional_issuer_that_is_down_starts_refused_then_is_trusted_and_bad_content_keeps_the_old_keys()
 {
    let key = IssuerKey::generate("opt-1");
    let jwks_server = JwksServer::start(&[&key]);
    jwks_server.status(503);
    let issuer = jwks_server.base.clone();
    let dir = temp_dir();
    let config = config_with_issuer(
        dir.path(),
        &issuer,
        &format!(
            "jwks_url = \"{issuer}/jwks.json\"\ndanger_allow_http = true\noptional = true\n\
             min_refetch_interval = \"1s\""
        ),
    );
    let server = Server::start_with(&dir.path().join("data"), Some(&config));
    let (status, body) = open(&server, &identity(&issuer, &key, &key.kid)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("issuer_keys_unavailable"),
        "{body}"
    );
    jwks_server.status(200);
    accepted_within_bound(
        &server,
        || identity(&issuer, &key, &key.kid),
        "once the issuer answers",
    )
    .await;

    // The issuer now serves a key set with no usable key: the old keys stay.
    jwks_server
        .serve(json!({ "keys": [{ "kty": "EC", "crv": "P-256", "kid": "broken" }] }).to_string());
    let before = jwks_server.jwks_requests();
    let deadline = Instant::now() + Duration::from_secs(10);
    while jwks_server.jwks_requests() == before {
        let (status, _) = open(&server, &identity(&issuer, &key, "rotated-maybe")).await;
        assert_eq!(status, 401);
        assert!(Instant::now() < deadline, "no refetch for an unknown kid");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while fetch_count(&server, "invalid").await == 0 {
        assert!(Instant::now() < deadline, "the bad fetch was never counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = open(&server, &identity(&issuer, &key, &key.kid)).await;
    assert_eq!(status, 201, "the previous key set is kept: {body}");
}

#[test]
fn serve_refuses_to_start_without_a_required_issuers_keys() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let dir = temp_dir();
    let issuer = format!("http://{address}");
    let config = config_with_issuer(
        dir.path(),
        &issuer,
        &format!("jwks_url = \"{issuer}/jwks.json\"\ndanger_allow_http = true"),
    );
    let mut command = std::process::Command::new(crate::harness::binary());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn");
    let output = bounded::output(command, bounded::START_TIMEOUT).unwrap();
    assert!(!output.status.success());
    let problems = stderr(&output);
    assert!(
        problems.contains("issuers.corp: the issuer's keys cannot be fetched"),
        "{problems}"
    );
    assert!(problems.contains("optional = true"), "{problems}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("listening"),
        "it never served"
    );
}

#[test]
fn check_refuses_plain_http_and_ambiguous_key_sources_without_fetching() {
    let dir = temp_dir();
    // Nothing listens here: `check` fetches nothing, so this passes or fails on the settings.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let url = format!("jwks_url = \"{issuer}/jwks.json\"");

    let config = config_with_issuer(dir.path(), &issuer, &url);
    let output = cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains("is plain http"),
        "{}",
        stderr(&output)
    );

    let config = config_with_issuer(dir.path(), &issuer, "discovery = true");
    let output = cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains("is plain http"),
        "{}",
        stderr(&output)
    );

    let config = config_with_issuer(
        dir.path(),
        &issuer,
        &format!("{url}\ndiscovery = true\ndanger_allow_http = true"),
    );
    let output = cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains("give exactly one of jwks_file, jwks_url and discovery"),
        "{}",
        stderr(&output)
    );

    let config = config_with_issuer(
        dir.path(),
        &issuer,
        &format!("{url}\ndanger_allow_http = true\nmin_refresh = \"2h\"\nmax_refresh = \"1h\""),
    );
    let output = cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains("min_refresh (7200s) is longer than max_refresh (3600s)"),
        "{}",
        stderr(&output)
    );

    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let config = config_with_issuer(
        dir.path(),
        &issuer,
        &format!(
            "{url}\ndanger_allow_http = true\nca_file = \"{}\"",
            ca.display()
        ),
    );
    let output = cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains("ca_file holds no PEM certificate"),
        "{}",
        stderr(&output)
    );

    let config = config_with_issuer(
        dir.path(),
        &issuer,
        &format!("{url}\ndanger_allow_http = true\noptional = true"),
    );
    let output = cli(&["check", "--config", config.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
}

/// An HTTPS JWKS server (a fresh self-signed certificate for `localhost`) on its own runtime
/// thread, serving `body`; its URL, its certificate (PEM) and its request count.
fn tls_jwks_server(body: String) -> (String, String, Arc<Mutex<usize>>) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = certified.cert.pem();
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let requests = Arc::new(Mutex::new(0_usize));
    let counted = requests.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                let body = body.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to serve.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |_request| {
                        *counted.lock().unwrap() += 1;
                        let body = body.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .header("cache-control", "max-age=600")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    let port = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    (format!("https://localhost:{port}"), pem, requests)
}

#[tokio::test]
async fn https_keys_verify_against_the_ca_file_and_an_untrusted_certificate_stops_the_start() {
    let key = IssuerKey::generate("tls-1");
    let (base, pem, requests) = tls_jwks_server(jwks(&[&key]));
    let dir = temp_dir();
    let issuer = "https://idp.example.org";
    // No ca_file: the self-signed certificate chains to no trusted root, so no keys, no start.
    let untrusted = config_with_issuer(
        dir.path(),
        issuer,
        &format!("jwks_url = \"{base}/jwks.json\""),
    );
    let mut command = std::process::Command::new(crate::harness::binary());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&untrusted)
        .env("RUST_LOG", "warn");
    let output = bounded::output(command, bounded::START_TIMEOUT).unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("issuers.corp: the issuer's keys cannot be fetched"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        *requests.lock().unwrap(),
        0,
        "no request went over the untrusted TLS"
    );

    let ca = dir.path().join("idp-ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    let trusted = config_with_issuer(
        dir.path(),
        issuer,
        &format!(
            "jwks_url = \"{base}/jwks.json\"\nca_file = \"{}\"",
            ca.display()
        ),
    );
    let output = cli(&["check", "--config", trusted.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let server = Server::start_with(&dir.path().join("data"), Some(&trusted));
    assert_eq!(*requests.lock().unwrap(), 1);
    let (status, body) = open(&server, &identity(issuer, &key, &key.kid)).await;
    assert_eq!(status, 201, "{body}");
}
