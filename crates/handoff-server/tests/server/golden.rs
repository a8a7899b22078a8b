//! Golden files for the formats others depend on: audit records (their JSON line) and the claims
//! of access tokens and Transaction Tokens. The kit's clock and randomness are fixed, so only the
//! signing key's `kid` and the content hashes of the example's policies (which change with the
//! example) are redacted. A drift fails the test; review a deliberate change with
//! `cargo insta review` (CI never writes snapshots: `INSTA_UPDATE=no` in scripts/test).

use crate::harness::Harness;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// Replaces the values of `fields` (at any depth) with a placeholder.
fn redact(mut value: Value, fields: &[&str]) -> Value {
    fn walk(value: &mut Value, fields: &[&str]) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map.iter_mut() {
                    if fields.contains(&key.as_str()) && !inner.is_null() {
                        *inner = Value::String(format!("[{key}]"));
                    } else {
                        walk(inner, fields);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, fields)),
            _ => {}
        }
    }
    walk(&mut value, fields);
    value
}

/// The (header, claims) of a compact JWS, unverified: only their shape is under test here.
fn parts(token: &str) -> (Value, Value) {
    let mut segments = token.split('.');
    let mut decode = || {
        let segment = segments.next().unwrap();
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    };
    let header = decode();
    (header, decode())
}

/// Opens a release task and exchanges it once; returns (task id, txn token, access token).
async fn one_handoff(harness: &Harness) -> (String, String, String) {
    let agent = harness.identity("release-bot");
    let (task, txn) = harness.task(&agent, "release", &["ci", "git"]).await;
    let answer = harness
        .exchange(
            &agent,
            &txn,
            "ci",
            "run_tests",
            &[(
                "authorization_details",
                r#"[{"type":"ci","commit":"4f2a9c1","environment":"staging"}]"#,
            )],
        )
        .await;
    assert_eq!(answer.status.as_u16(), 200, "{}", answer.body);
    let token = answer.body["access_token"].as_str().unwrap().to_owned();
    (task, txn, token)
}

#[tokio::test]
async fn access_token_claims_match_the_golden_file() {
    let harness = Harness::example();
    let (_, _, token) = one_handoff(&harness).await;
    let (header, claims) = parts(&token);
    insta::assert_json_snapshot!("access_token_header", redact(header, &["kid"]));
    insta::assert_json_snapshot!("access_token_claims", claims);
}

#[tokio::test]
async fn transaction_token_claims_match_the_golden_file() {
    let harness = Harness::example();
    let (_, txn, _) = one_handoff(&harness).await;
    let (header, claims) = parts(&txn);
    insta::assert_json_snapshot!("txn_token_header", redact(header, &["kid"]));
    insta::assert_json_snapshot!("txn_token_claims", claims);
}

#[tokio::test]
async fn audit_records_match_the_golden_file() {
    let harness = Harness::example();
    let (task, _, _) = one_handoff(&harness).await;
    let records = harness
        .kit
        .store
        .inner()
        .task_records(&handoff_core::ids::TaskId::new(&task))
        .await
        .unwrap();
    assert_eq!(records.len(), 2, "the task's open and its exchange");
    let lines: Vec<Value> = records
        .iter()
        .map(|record| {
            // The JSON line exactly as sealed; its hash and `prev` follow from the redacted
            // policy-set hash, so they are redacted with it.
            let line: Value = serde_json::from_str(&record.body).unwrap();
            redact(line, &["prev", "policy_set", "kid"])
        })
        .collect();
    insta::assert_json_snapshot!("audit_records", lines);
}
