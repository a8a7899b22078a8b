//! TLS to upstreams: the platform's trusted roots, plus the private CAs systems name in
//! `gateway.ca_file`. One client configuration serves every upstream call (HTTP routes, MCP
//! servers and OAuth token endpoints).

use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::sync::Arc;

/// A TLS client configuration trusting the platform's roots and every PEM certificate in
/// `extra_pems`.
pub fn client_config(extra_pems: &[&str]) -> Result<ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    // Roots the platform cannot parse are skipped; an empty platform store still works with
    // `ca_file`.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for pem in extra_pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("ca_file: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file: a certificate is unusable: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A `reqwest` client speaking TLS with `config`.
pub fn reqwest_client(config: &ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(config.clone())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
