//! The gateway in front of an `https://` upstream: TLS verified against the platform's roots plus
//! the system's `ca_file`, the upstream credential injected, the agent's token never forwarded; an
//! upstream whose certificate chains to no trusted CA is never called.

use crate::gateway::{GIT_SECRET, Seen, start};
use crate::harness::{Server, example_config, temp_dir};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::Mutex;

/// An HTTPS API on a loopback port with a fresh self-signed certificate for `localhost`; returns
/// its URL, the certificate (PEM), what it received, and why each failed handshake failed.
async fn tls_upstream() -> (
    String,
    String,
    Arc<Mutex<Vec<Seen>>>,
    Arc<Mutex<Vec<String>>>,
) {
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let sink = seen.clone();
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let failed = failures.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let sink = sink.clone();
            let failed = failed.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake with an alert naming
                // why: nothing to serve.
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        failed.lock().await.push(e.to_string());
                        return;
                    }
                };
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            sink.lock().await.push(Seen {
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(n, v)| {
                                        (n.to_string(), v.to_str().unwrap_or("").to_owned())
                                    })
                                    .collect(),
                                body: String::from_utf8_lossy(&body).into_owned(),
                            });
                            let answer = json!({ "upstream": "tls", "path": parts.uri.path() });
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(201)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(answer.to_string())))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, pem, seen, failures)
}

fn config_for(dir: &Path, upstream: &str, ca_file: Option<&Path>) -> std::path::PathBuf {
    let ca = ca_file.map_or_else(String::new, |p| format!("ca_file = \"{}\"\n", p.display()));
    let extra = format!(
        r#"
[systems.git.gateway]
upstream = "{upstream}"
{ca}credential = {{ header = "authorization", prefix = "Bearer ", value_env = "GIT_UPSTREAM_TOKEN" }}

[[systems.git.gateway.routes]]
method = "POST"
path = "/repos/{{owner}}/{{repo}}/pulls"
action = "open_pr"
resource = "repo:{{owner}}/{{repo}}"
"#
    );
    example_config(dir, |text| format!("{text}\n{extra}"))
}

async fn open_pr(server: &Server) -> (u16, String, String) {
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["git"]).await;
    let (status, body) = server
        .exchange(
            &agent,
            &txn,
            "git",
            "open_pr",
            &[("resource", "repo:acme/app")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let response = reqwest::Client::new()
        .post(format!("{}/gateway/git/repos/acme/app/pulls", server.base))
        .bearer_auth(&token)
        .json(&json!({ "title": "Fix the build", "head": "fix", "base": "main" }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap(), token)
}

#[tokio::test]
async fn an_https_upstream_is_called_over_verified_tls_with_the_injected_credential() {
    let dir = temp_dir();
    let (url, pem, seen, failures) = tls_upstream().await;
    let ca = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let config = config_for(dir.path(), &url, Some(&ca));
    let server = start(&dir.path().join("data"), &config);
    let (status, body, token) = open_pr(&server).await;
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("\"upstream\":\"tls\""), "{body}");
    let seen = seen.lock().await.clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {GIT_SECRET}").as_str())
    );
    assert!(!seen[0].everything().contains(&token));
    assert!(failures.lock().await.is_empty());
}

#[tokio::test]
async fn an_upstream_whose_certificate_is_not_trusted_is_never_called() {
    let dir = temp_dir();
    let (url, _pem, seen, failures) = tls_upstream().await;
    let config = config_for(dir.path(), &url, None);
    let server = start(&dir.path().join("data"), &config);
    let (status, body, _) = open_pr(&server).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("upstream_unavailable"), "{body}");
    assert!(
        seen.lock().await.is_empty(),
        "no request crossed an unverified connection"
    );
    // The gateway did reach the upstream, and refused it for its certificate: the handshake
    // ended with the gateway's alert that the certificate chains to no trusted CA.
    let failures = failures.lock().await.clone();
    assert!(
        failures.iter().any(|f| f.contains("UnknownCA")),
        "the gateway refused the certificate: {failures:?}"
    );
}
