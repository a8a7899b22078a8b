//! The embedded gateway fails closed: with Handoff's store down, a call with a valid token is
//! refused with 503 and never reaches the upstream (which would answer 502 here: nothing
//! listens at the example's upstream address).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use axum::body::Body;
use axum::http::{Request, header};
use handoff_core::testing::Kit;
use http_body_util::BodyExt as _;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt as _;

/// `examples/gateway` over a scratch store, its credentials from files instead of the
/// environment; the router `handoff serve` serves (API and embedded gateway).
fn example() -> (Kit, axum::Router) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway");
    let config = std::fs::read_to_string(root.join("handoff.toml"))
        .unwrap()
        .replace(
            "value_env = \"GIT_API_TOKEN\"",
            "value_file = \"git-token\"",
        )
        .replace(
            "value_env = \"PAYMENTS_API_KEY\"",
            "value_file = \"payments-key\"",
        );
    let mut files = vec![
        ("git-token".to_owned(), "upstream-secret".to_owned()),
        ("payments-key".to_owned(), "upstream-key".to_owned()),
    ];
    for entry in std::fs::read_dir(root.join("policies")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.push((
            format!("policies/{name}"),
            std::fs::read_to_string(&path).unwrap(),
        ));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let kit = handoff_store_sqlite::testing::scratch_kit(&config, &files).unwrap();
    let gateway = handoff_gateway::Gateway::embedded(kit.handoff.clone()).unwrap();
    let app =
        handoff_server::app(kit.handoff.clone()).merge(handoff_gateway::router(Arc::new(gateway)));
    (kit, app)
}

async fn send(app: &axum::Router, request: Request<Body>) -> (u16, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, NON_ALPHANUMERIC),
                utf8_percent_encode(v, NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A git read token for `repo:acme/app`, exchanged through the real token endpoint.
async fn git_token(kit: &Kit, app: &axum::Router) -> String {
    let identity = kit.identity("release-bot").unwrap();
    let open = Request::post("/v1/tasks")
        .header(header::AUTHORIZATION, format!("Bearer {identity}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({ "intent": "read the repo", "purpose": "release", "user": "alice", "plan": ["git"] })
                .to_string(),
        ))
        .unwrap();
    let (status, opened) = send(app, open).await;
    assert_eq!(status, 201, "{opened}");
    let txn = opened["txn_token"].as_str().unwrap();
    let exchange = Request::post("/oauth/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", txn),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:txn_token",
            ),
            ("actor_token", &identity),
            ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("audience", "git"),
            ("scope", "read"),
            ("resource", "repo:acme/app"),
        ])))
        .unwrap();
    let (status, issued) = send(app, exchange).await;
    assert_eq!(status, 200, "{issued}");
    issued["access_token"].as_str().unwrap().to_owned()
}

fn call(token: &str) -> Request<Body> {
    Request::get("/gateway/git/repos/acme/app")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn the_embedded_gateway_answers_503_and_forwards_nothing_while_the_store_is_down() {
    let (kit, app) = example();
    let token = git_token(&kit, &app).await;
    // Up: the call is authorized and forwarded; nothing listens upstream, so 502.
    let (status, body) = send(&app, call(&token)).await;
    assert_eq!(status, 502, "{body}");
    let writes = kit.store.writes();
    kit.store.fail_all(true);
    let (status, body) = send(&app, call(&token)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(kit.store.writes(), writes, "nothing was recorded");
}
