//! Authorization details (RFC 9396) are checked before anything is minted: every entry is of the
//! exchange's system's type, names only fields the system declares, no field twice, and no JSON
//! member twice; each refusal is 400 `invalid_authorization_details` and mints nothing.

use crate::harness::{Server, temp_dir};
use serde_json::Value;

fn refused(status: u16, body: &Value, case: &str) {
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_authorization_details")),
        "{case}: {body}"
    );
    assert!(body.get("access_token").is_none(), "{case}: {body}");
}

#[tokio::test]
async fn authorization_details_beyond_what_the_system_declares_are_refused() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-agent");
    let (_, txn) = server.task(&agent, "release", &["ci", "git"]).await;

    let cases = [
        (
            "a field ci does not declare",
            r#"[{"type":"ci","admin":true}]"#,
        ),
        (
            "another system's type, with ci's fields",
            r#"[{"type":"payments","commit":"abc"}]"#,
        ),
        ("another system's bare type", r#"[{"type":"payments"}]"#),
        (
            "another system's type",
            r#"[{"type":"payments","amount":1}]"#,
        ),
        (
            "an entry of another type beside ci's",
            r#"[{"type":"ci","commit":"abc"},{"type":"payments","amount":1}]"#,
        ),
        (
            "a field in two entries",
            r#"[{"type":"ci","commit":"abc"},{"type":"ci","commit":"def"}]"#,
        ),
        (
            "a member twice, the last one hostile",
            r#"[{"type":"ci","commit":"abc","commit":"def"}]"#,
        ),
        (
            "the type twice",
            r#"[{"type":"payments","type":"ci","commit":"abc"}]"#,
        ),
        (
            "a member twice, nested",
            r#"[{"type":"ci","commit":"abc","environment":{"a":1,"a":2}}]"#,
        ),
        ("not a list", r#"{"type":"ci"}"#),
        ("not JSON", "{not json"),
        (
            "a declared field of the wrong type",
            r#"[{"type":"ci","commit":42}]"#,
        ),
    ];
    // Every case is tried, and every one not refused is named.
    let mut accepted = Vec::new();
    for (case, details) in cases {
        let (status, body) = server
            .exchange(
                &agent,
                &txn,
                "ci",
                "run_tests",
                &[("authorization_details", details)],
            )
            .await;
        if (status, body["error"].as_str()) != (400, Some("invalid_authorization_details"))
            || body.get("access_token").is_some()
        {
            accepted.push(format!("{case}: {status}"));
        }
    }
    assert!(accepted.is_empty(), "not refused: {accepted:#?}");

    // git declares no detail fields: its own bare type is accepted, any field is refused.
    let (status, body) = server
        .exchange(
            &agent,
            &txn,
            "git",
            "read",
            &[(
                "authorization_details",
                r#"[{"type":"git","branch":"main"}]"#,
            )],
        )
        .await;
    refused(status, &body, "a field on a system that declares none");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("declares no authorization_details fields"),
        "{body}"
    );
    let (status, body) = server
        .exchange(
            &agent,
            &txn,
            "git",
            "read",
            &[("authorization_details", r#"[{"type":"git"}]"#)],
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Declared fields of ci's own type, split over two entries, mint; the token carries them.
    let details = r#"[{"type":"ci","commit":"abc"},{"type":"ci","environment":"staging"}]"#;
    let (status, body) = server
        .exchange(
            &agent,
            &txn,
            "ci",
            "run_tests",
            &[("authorization_details", details)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let claims = server
        .verify_access_token(
            body["access_token"].as_str().unwrap(),
            "https://ci.example.com",
        )
        .await;
    assert_eq!(
        claims["authorization_details"],
        serde_json::from_str::<Value>(details).unwrap()
    );
}
