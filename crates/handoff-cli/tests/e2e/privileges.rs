//! `handoff report privileges`: per agent and purpose, what policy may allow against what was
//! requested, granted and used through the gateway; an unused grant, a used one and a recurring
//! denial are named.

use crate::gateway::{call, gateway_config, git_token, start, upstream};
use crate::harness::{Server, cli, stderr, stdout, temp_dir};
use serde_json::Value;
use std::path::Path;

fn report(server: &Server, config: &Path, extra: &[&str]) -> (Value, String) {
    let base = [
        "report",
        "privileges",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ];
    let mut json_args = base.to_vec();
    json_args.extend_from_slice(extra);
    json_args.push("--json");
    let json = cli(&json_args);
    assert!(json.status.success(), "{}", stderr(&json));
    let mut text_args = base.to_vec();
    text_args.extend_from_slice(extra);
    let text = cli(&text_args);
    assert!(text.status.success(), "{}", stderr(&text));
    (serde_json::from_str(&stdout(&json)).unwrap(), stdout(&text))
}

async fn jti(server: &Server, token: &str) -> String {
    let claims = server
        .verify_access_token(token, "https://git.example.com")
        .await;
    claims["jti"].as_str().unwrap().to_owned()
}

fn jtis(grants: &Value) -> Vec<&str> {
    grants
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["jti"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_report_names_an_unused_grant_a_used_one_and_a_recurring_denial() {
    let dir = temp_dir();
    let (upstream_url, _seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let server = start(dir.path(), &config);
    let agent = server.identity("release-bot");

    // A token used through the gateway...
    let (_, read) = git_token(&server, &agent, "read", "repo:acme/app").await;
    let (status, body) = call(
        &server.base,
        reqwest::Method::GET,
        "/git/repos/acme/app",
        Some(&read),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // ...one never used, and the same merge refused twice (the task opened the change).
    let (task, txn) = server.task(&agent, "release", &["git"]).await;
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
    let unused = body["access_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (status, body) = server.exchange(&agent, &txn, "git", "merge", &[]).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["reason"], "forbidden");
    }
    let (read_jti, unused_jti) = (jti(&server, &read).await, jti(&server, &unused).await);
    // The gateway records the use once the answer's body has ended: awaited with a bound.
    let mut found = None;
    for _ in 0..200 {
        let (json, text) = report(&server, &config, &[]);
        if json["scopes"][0]["used_grants"]
            .as_array()
            .is_some_and(|g| !g.is_empty())
        {
            found = Some((json, text));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (json, text) = found.expect("the use is recorded");
    let scopes = json["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 1, "{json:#}");
    let scope = &scopes[0];
    assert_eq!(scope["agent"], "release-bot");
    assert_eq!(scope["purpose"], "release");
    assert_eq!(jtis(&scope["used_grants"]), [read_jti.as_str()]);
    assert_eq!(scope["used_grants"][0]["uses"], 1);
    assert_eq!(jtis(&scope["unused_grants"]), [unused_jti.as_str()]);
    assert_eq!(scope["unused_grants"][0]["task"], task.as_str());
    assert_eq!(scope["used"]["git:read"], 1);
    assert_eq!(scope["requested"]["git:merge"], 2);
    // What policy may allow a release task: git and the release CI actions, never payments
    // (forbidden outside payments tasks) nor the CRM (support only).
    let allowed: Vec<&str> = scope["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for action in [
        "git:read",
        "git:push",
        "git:open_pr",
        "git:merge",
        "ci:run_tests",
        "ci:deploy",
    ] {
        assert!(allowed.contains(&action), "{action} in {allowed:?}");
    }
    for action in ["payments:create", "payments:read", "crm:read_customer"] {
        assert!(!allowed.contains(&action), "{action} in {allowed:?}");
    }
    let never: Vec<&str> = scope["never_requested"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        never.contains(&"git:push") && !never.contains(&"git:read"),
        "{never:?}"
    );
    let denials = json["recurring_denials"].as_array().unwrap();
    assert_eq!(denials.len(), 1, "{json:#}");
    assert_eq!(denials[0]["agent"], "release-bot");
    assert_eq!(denials[0]["system"], "git");
    assert_eq!(denials[0]["action"], "git:merge");
    assert_eq!(denials[0]["reason"], "forbidden");
    assert_eq!(denials[0]["count"], 2);

    // The text names the same.
    assert!(
        text.contains("unused grants (candidates to remove): 1"),
        "{text}"
    );
    assert!(
        text.contains(&format!("token {unused_jti} for git:open_pr")),
        "{text}"
    );
    assert!(
        text.contains(&format!("token {read_jti} for git:read")),
        "{text}"
    );
    assert!(text.contains("git:merge on git: forbidden x2"), "{text}");

    // --since past every record: nothing seen.
    let later = (handoff_core::clock::Clock::now(&handoff_core::clock::SystemClock).millis()
        + 60_000)
        .to_string();
    let (json, _) = report(&server, &config, &["--since", &later]);
    assert_eq!(json["scopes"], serde_json::json!([]), "{json:#}");
    assert_eq!(json["recurring_denials"], serde_json::json!([]));
}
