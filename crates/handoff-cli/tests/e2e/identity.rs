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

/// The body of a DER element that starts at `at`: (content start, content end).
fn der_element(der: &[u8], at: usize) -> (usize, usize) {
    let first = der[at + 1];
    if first < 0x80 {
        (at + 2, at + 2 + usize::from(first))
    } else {
        let count = usize::from(first & 0x7f);
        let length = der[at + 2..at + 2 + count]
            .iter()
            .fold(0usize, |n, b| (n << 8) | usize::from(*b));
        (at + 2 + count, at + 2 + count + length)
    }
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (what the JWT library signs with).
fn pkcs1_of_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let (body, _) = der_element(pkcs8, 0);
    let (_, version_end) = der_element(pkcs8, body);
    let (_, algorithm_end) = der_element(pkcs8, version_end);
    assert_eq!(pkcs8[algorithm_end], 0x04, "an OCTET STRING holds the key");
    let (start, end) = der_element(pkcs8, algorithm_end);
    pkcs8[start..end].to_vec()
}

#[tokio::test]
async fn eddsa_and_rs256_issuers_are_trusted_and_an_agent_claim_names_the_agent() {
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::signature::KeyPair as _;
    let dir = temp_dir();
    let random = aws_lc_rs::rand::SystemRandom::new();
    // An Ed25519 issuer and an RSA issuer, each with its own JWKS file and no algorithm list, so
    // the default allow-list is what admits EdDSA and RS256.
    let ed_pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&random).unwrap();
    let ed_pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).unwrap();
    let ed_jwks = json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA",
        "x": URL_SAFE_NO_PAD.encode(ed_pair.public_key().as_ref()) }] });
    let rsa_pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let rsa_pkcs8 = rsa_pair.as_der().unwrap();
    let rsa_public = rsa_pair.public_key();
    let rsa_jwks = json!({ "keys": [{ "kty": "RSA", "kid": "rsa-1", "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(rsa_public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(rsa_public.exponent().big_endian_without_leading_zero()) }] });
    std::fs::write(dir.path().join("ed-jwks.json"), ed_jwks.to_string()).unwrap();
    std::fs::write(dir.path().join("rsa-jwks.json"), rsa_jwks.to_string()).unwrap();
    let config = crate::harness::example_text().replace("[dev_issuer]\nenabled = true\n", "");
    std::fs::write(
        dir.path().join("handoff.toml"),
        format!(
            "{config}\n[[issuers]]\nid = \"ed\"\nissuer = \"https://ed.example.org\"\njwks_file = \"ed-jwks.json\"\naudience = \"{TRUST_DOMAIN}\"\n\n[[issuers]]\nid = \"rsa\"\nissuer = \"https://rsa.example.org\"\njwks_file = \"rsa-jwks.json\"\naudience = \"{TRUST_DOMAIN}\"\nagent_claim = \"client_id\"\n"
        ),
    )
    .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        Some(&dir.path().join("handoff.toml")),
    );
    let ed_key = EncodingKey::from_ed_der(ed_pkcs8.as_ref());
    let rsa_key = EncodingKey::from_rsa_der(&pkcs1_of_pkcs8(rsa_pkcs8.as_ref()));
    let signed = |alg: Algorithm, kid: &str, key: &EncodingKey, claims: serde_json::Value| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };
    let ed_claims = || json!({ "iss": "https://ed.example.org", "sub": "release-bot", "aud": TRUST_DOMAIN, "exp": now() + 300 });
    // The RSA issuer names its workloads by `client_id`; `sub` is an opaque service number.
    let rsa_claims = || json!({ "iss": "https://rsa.example.org", "sub": "svc-4711", "client_id": "release-bot", "aud": TRUST_DOMAIN, "exp": now() + 300 });
    let ed_identity = signed(Algorithm::EdDSA, "ed-1", &ed_key, ed_claims());
    let rsa_identity = signed(Algorithm::RS256, "rsa-1", &rsa_key, rsa_claims());

    for (name, identity, issuer) in [
        ("EdDSA", &ed_identity, "https://ed.example.org"),
        ("RS256", &rsa_identity, "https://rsa.example.org"),
    ] {
        let (status, task) = server
            .open_task(
                identity,
                json!({ "intent": "ship it", "purpose": "release", "user": "alice", "plan": ["ci"] }),
            )
            .await;
        assert_eq!(status, 201, "{name}: {task}");
        let txn = task["txn_token"].as_str().unwrap();
        let (status, body) = server.exchange(identity, txn, "ci", "run_tests", &[]).await;
        assert_eq!(status, 200, "{name}: {body}");
        let claims = server
            .verify_access_token(
                body["access_token"].as_str().unwrap(),
                "https://ci.example.com",
            )
            .await;
        // The exchange records the agent the issuer's agent claim names, not `sub`.
        assert_eq!(claims["act"]["sub"], "release-bot", "{name}: {claims}");
        assert_eq!(claims["act"]["iss"], issuer, "{name}");
        let output = crate::harness::cli(&[
            "trace",
            task["task_id"].as_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ]);
        let trace = crate::harness::stdout(&output);
        assert!(trace.contains("release-bot"), "{name}: {trace}");
        assert!(!trace.contains("svc-4711"), "{name}: {trace}");
    }

    // Signed by another key of the same type, under the trusted kid: refused.
    let other_ed = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&random).unwrap();
    let other_rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let forged_ed = signed(
        Algorithm::EdDSA,
        "ed-1",
        &EncodingKey::from_ed_der(other_ed.as_ref()),
        ed_claims(),
    );
    let forged_rsa = signed(
        Algorithm::RS256,
        "rsa-1",
        &EncodingKey::from_rsa_der(&pkcs1_of_pkcs8(other_rsa.as_der().unwrap().as_ref())),
        rsa_claims(),
    );
    // An RSA-signed token claiming the Ed25519 issuer: its key is not that issuer's.
    let crossed = signed(Algorithm::RS256, "ed-1", &rsa_key, ed_claims());
    // An RS256 token that names its agent only in `sub`, from the issuer that reads `client_id`.
    let no_agent_claim = signed(
        Algorithm::RS256,
        "rsa-1",
        &rsa_key,
        json!({ "iss": "https://rsa.example.org", "sub": "release-bot", "aud": TRUST_DOMAIN, "exp": now() + 300 }),
    );
    for (name, token) in [
        ("forged EdDSA", forged_ed),
        ("forged RS256", forged_rsa),
        ("RSA key for the Ed25519 issuer", crossed),
        ("no agent claim", no_agent_claim),
    ] {
        let (status, body) = server
            .open_task(
                &token,
                json!({ "intent": "x", "purpose": "release", "user": "alice", "plan": ["ci"] }),
            )
            .await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["error"], "invalid_client", "{name}: {body}");
    }
}
