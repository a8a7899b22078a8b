//! Identity is proved on every request: bad identity tokens of every kind get 401.

use crate::harness::{Server, TRUST_DOMAIN, now, sign, temp_dir};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn dev_issuer() -> String {
    format!("{TRUST_DOMAIN}/dev-issuer")
}

#[tokio::test]
async fn refuses_forged_expired_wrong_issuer_none_hmac_and_tampered_identities() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let good = server.identity("release-bot");
    let (_, txn) = server.task(&good, "release", &["ci"]).await;
    let kid = server.dev_issuer_kid();
    let key = server.dev_issuer_key();
    let claims = |iss: &str, exp: i64| json!({ "iss": iss, "sub": "release-bot", "aud": TRUST_DOMAIN, "iat": now(), "exp": exp });

    // Signed by a key the issuer never had, under the issuer's kid.
    let forger = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let forged = sign(
        &EncodingKey::from_ec_der(forger.as_ref()),
        Some(&kid),
        Some("JWT"),
        &claims(&dev_issuer(), now() + 600),
    );
    let expired = sign(
        &key,
        Some(&kid),
        Some("JWT"),
        &claims(&dev_issuer(), now() - 3600),
    );
    let wrong_issuer = sign(
        &key,
        Some(&kid),
        Some("JWT"),
        &claims("https://evil.example", now() + 600),
    );
    let wrong_audience = sign(
        &key,
        Some(&kid),
        Some("JWT"),
        &json!({ "iss": dev_issuer(), "sub": "release-bot", "aud": "https://elsewhere", "exp": now() + 600 }),
    );
    let no_exp = sign(
        &key,
        Some(&kid),
        Some("JWT"),
        &json!({ "iss": dev_issuer(), "sub": "release-bot", "aud": TRUST_DOMAIN }),
    );
    let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
    let alg_none = format!(
        "{}.{}.",
        b64(json!({ "alg": "none", "typ": "JWT" })),
        b64(claims(&dev_issuer(), now() + 600))
    );
    // HMAC keyed with the issuer's public key, the classic algorithm confusion.
    let jwks = server.jwks().await;
    let public = serde_json::to_vec(&jwks.keys[0]).unwrap();
    let mut hmac_header = Header::new(Algorithm::HS256);
    hmac_header.kid = Some(kid.clone());
    let hmac = jsonwebtoken::encode(
        &hmac_header,
        &claims(&dev_issuer(), now() + 600),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    // A valid token whose payload was changed after signing.
    let parts: Vec<&str> = good.split('.').collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["sub"] = json!("payments-agent");
    let tampered = format!("{}.{}.{}", parts[0], b64(payload), parts[2]);
    // Remote key material in the header is never fetched or trusted.
    let mut jku_header = Header::new(Algorithm::ES256);
    jku_header.kid = Some(kid.clone());
    jku_header.jku = Some("https://evil.example/jwks.json".to_owned());
    let jku = jsonwebtoken::encode(&jku_header, &claims(&dev_issuer(), now() + 600), &key).unwrap();

    let cases = [
        ("forged", forged),
        ("expired", expired),
        ("wrong issuer", wrong_issuer),
        ("wrong audience", wrong_audience),
        ("no exp", no_exp),
        ("alg none", alg_none),
        ("hmac confusion", hmac),
        ("tampered", tampered),
        ("jku header", jku),
        ("garbage", "garbage".to_owned()),
    ];
    for (name, token) in cases {
        let (status, body) = server.exchange(&token, &txn, "ci", "run_tests", &[]).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["error"], "invalid_client", "{name}");
        let (status, _) = server
            .open_task(
                &token,
                json!({ "intent": "x", "purpose": "release", "user": "alice" }),
            )
            .await;
        assert_eq!(status, 401, "{name} cannot open a task");
    }
    // The genuine identity still works.
    let (status, _) = server.exchange(&good, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn handoff_tokens_are_never_accepted_as_identities() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let (_, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    let access_token = body["access_token"].as_str().unwrap();
    for (name, token) in [("access token", access_token), ("txn token", txn.as_str())] {
        let (status, body) = server.exchange(token, &txn, "ci", "run_tests", &[]).await;
        assert_eq!(status, 401, "{name}: {body}");
    }
    // Nor is an identity or an access token accepted as the task token.
    for (name, token) in [("identity", agent.as_str()), ("access token", access_token)] {
        let (status, body) = server.exchange(&agent, token, "ci", "run_tests", &[]).await;
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (401, "invalid_grant"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn another_agents_task_token_is_refused() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let owner = server.identity("release-bot");
    let intruder = server.identity("other-bot");
    let (_, txn) = server.task(&owner, "release", &["ci"]).await;
    let (status, body) = server
        .exchange(&intruder, &txn, "ci", "run_tests", &[])
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason"], "not_task_agent");
}

#[tokio::test]
async fn a_configured_issuer_with_a_jwks_file_is_trusted_for_spiffe_svids() {
    use std::io::Write as _;
    let dir = temp_dir();
    // An external workload identity issuer (a SPIRE-like JWT-SVID issuer) with its own key.
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
    )
    .unwrap();
    use aws_lc_rs::signature::KeyPair as _;
    let point = pair.public_key().as_ref();
    let jwks = json!({ "keys": [{ "kty": "EC", "crv": "P-256", "kid": "spire-1", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]) }] });
    std::fs::write(dir.path().join("spire-jwks.json"), jwks.to_string()).unwrap();
    let config = crate::harness::example_text().replace("[dev_issuer]\nenabled = true\n", "");
    let mut file = std::fs::File::create(dir.path().join("handoff.toml")).unwrap();
    write!(
        file,
        "{config}\n[[issuers]]\nid = \"spire\"\nissuer = \"https://spire.example.org\"\njwks_file = \"spire-jwks.json\"\naudience = \"{TRUST_DOMAIN}\"\nalgorithms = [\"ES256\"]\n"
    )
    .unwrap();
    drop(file);
    let server = Server::start_with(
        &dir.path().join("data"),
        Some(&dir.path().join("handoff.toml")),
    );
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let svid = sign(
        &key,
        Some("spire-1"),
        None,
        &json!({ "iss": "https://spire.example.org", "sub": "spiffe://example.org/ns/ci/sa/release-bot", "aud": [TRUST_DOMAIN], "exp": now() + 300 }),
    );
    let (_, txn) = server.task(&svid, "release", &["ci"]).await;
    let (status, body) = server.exchange(&svid, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let claims = server
        .verify_access_token(
            body["access_token"].as_str().unwrap(),
            "https://ci.example.com",
        )
        .await;
    assert_eq!(
        claims["act"]["sub"],
        "spiffe://example.org/ns/ci/sa/release-bot"
    );
    assert_eq!(claims["act"]["iss"], "https://spire.example.org");
    // The dev issuer is not trusted by this deployment, and an HMAC token is refused outright.
    let output = crate::harness::cli(&[
        "identity",
        "issue",
        "--agent",
        "x",
        "--config",
        dir.path().join("handoff.toml").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(64));
    let hmac = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({ "iss": "https://spire.example.org", "sub": "x", "aud": TRUST_DOMAIN, "exp": now() + 300 }),
        &EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    let (status, _) = server.exchange(&hmac, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 401);
}
