//! What clients find Handoff by: keys, metadata, liveness, and a stable 404.

use crate::harness::{EXCHANGE, Harness, TRUST_DOMAIN};
use axum::http::{StatusCode, header};

#[tokio::test]
async fn the_jwks_serves_the_signing_key_and_may_be_cached() {
    let harness = Harness::example();
    let answer = harness.get("/.well-known/jwks.json", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let keys = answer.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{}", answer.body);
    assert_eq!(
        keys[0]["kid"].as_str().unwrap(),
        harness.kit.handoff.keys().active().kid()
    );
    assert_eq!(keys[0]["alg"], "ES256");
    assert!(keys[0].get("d").is_none(), "no private part: {}", keys[0]);
    assert_eq!(answer.headers[header::CACHE_CONTROL], "public, max-age=300");
}

#[tokio::test]
async fn the_metadata_names_every_endpoint_under_the_issuer() {
    let harness = Harness::example();
    let answer = harness
        .get("/.well-known/oauth-authorization-server", None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let metadata = &answer.body;
    assert_eq!(metadata["issuer"], TRUST_DOMAIN);
    for (field, path) in [
        ("token_endpoint", "/oauth/token"),
        ("jwks_uri", "/.well-known/jwks.json"),
        ("introspection_endpoint", "/oauth/introspect"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("handoff_tasks_endpoint", "/v1/tasks"),
        ("handoff_revocation_feed", "/v1/revocations"),
    ] {
        assert_eq!(metadata[field], format!("{TRUST_DOMAIN}{path}"), "{field}");
    }
    assert_eq!(metadata["grant_types_supported"][0], EXCHANGE);
    let scopes: Vec<&str> = metadata["scopes_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(scopes.contains(&"payments:create"), "{scopes:?}");
    assert!(scopes.contains(&"git:push"), "{scopes:?}");
}

#[tokio::test]
async fn healthz_answers_ok_even_when_the_store_is_down() {
    let harness = Harness::example();
    harness.kit.store.fail_all(true);
    let answer = harness.get("/healthz", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["status"], "ok");
}

#[tokio::test]
async fn readyz_turns_503_naming_the_store_while_it_is_down_and_back_to_200() {
    let harness = Harness::example();
    let answer = harness.get("/readyz", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["status"], "ready");
    for check in ["store", "keys", "policies"] {
        assert_eq!(answer.body["checks"][check], "ok", "{}", answer.body);
    }
    harness.kit.store.fail_all(true);
    let answer = harness.get("/readyz", None).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.body["failing"], "store", "{}", answer.body);
    assert!(answer.body["error"].is_string(), "{}", answer.body);
    assert_eq!(answer.body["checks"]["keys"], "ok");
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    harness.kit.store.fail_all(false);
    let answer = harness.get("/readyz", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404_with_a_stable_code() {
    let harness = Harness::example();
    for path in ["/nope", "/v1", "/oauth/token/extra", "/.well-known/other"] {
        let answer = harness.get(path, None).await;
        assert_eq!(answer.code(), (404, "not_found"), "{path}: {}", answer.body);
        assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    }
}
