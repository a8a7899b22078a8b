//! Live reload over real HTTP: a broken policy change is refused with every problem listed and
//! the old set keeps deciding; a good one decides the very next request; `handoff reload` (from
//! another folder, through the server) and `SIGHUP` both reload; every decision's record names
//! the set that decided it, and every reload is recorded with who, the old and the new hash.

use crate::harness::{Server, binary, example_text, stderr, stdout, temp_dir};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const FORBID_TESTS: &str = "@id(\"no-tests-today\")\n\
    forbid (principal, action == Action::\"ci:run_tests\", resource == System::\"ci\");\n";

/// The example deployment in `dir`, with its own copy of the policy folder to edit.
fn deployment(dir: &Path) -> std::path::PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/policies");
    let policies = dir.join("policies");
    std::fs::create_dir(&policies).unwrap();
    for entry in std::fs::read_dir(&example).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), policies.join(entry.file_name())).unwrap();
    }
    let text = example_text().replace(
        &format!("policies = \"{}\"", example.display()),
        "policies = \"policies\"",
    );
    assert!(text.contains("policies = \"policies\""), "{text}");
    let config = dir.join("handoff.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// Every record's event, in order, from the store (read-only).
fn events(server: &Server) -> Vec<Value> {
    let db = rusqlite::Connection::open(server.data_dir.join("handoff.db")).unwrap();
    let mut stmt = db.prepare("SELECT body FROM audit ORDER BY seq").unwrap();
    let rows = stmt.query_map([], |row| row.get::<_, String>(0)).unwrap();
    rows.map(|body| serde_json::from_str::<Value>(&body.unwrap()).unwrap()["event"].clone())
        .collect()
}

fn reloads(server: &Server) -> Vec<Value> {
    events(server)
        .into_iter()
        .filter(|e| e["kind"] == "reload")
        .collect()
}

async fn reload(server: &Server) -> (u16, Value) {
    let response = server
        .client
        .post(format!("{}/v1/admin/reload", server.base))
        .bearer_auth(server.operator_secret())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_broken_reload_is_refused_and_a_good_one_decides_the_next_request() {
    let dir = temp_dir();
    let config = deployment(dir.path());
    let server = Server::start_with(&dir.path().join("data"), Some(&config));
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let run_tests = || server.exchange(&agent, &txn, "ci", "run_tests", &[]);
    assert_eq!(run_tests().await.0, 200);
    let first_set = events(&server).last().unwrap()["policy_set"].clone();

    // Two broken files and a change that cannot be made live: refused, all three named.
    let policies = dir.path().join("policies");
    std::fs::write(policies.join("broken-a.cedar"), "permit (principal,;").unwrap();
    std::fs::write(policies.join("broken-b.cedar"), "forbid (nobody);").unwrap();
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{original}\n[server]\nheader_read_timeout = \"20s\"\n"),
    )
    .unwrap();
    let (status, body) = reload(&server).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_deployment")),
        "{body}"
    );
    let problems = body["problems"].to_string();
    assert!(
        problems.contains("broken-a.cedar") && problems.contains("broken-b.cedar"),
        "{body}"
    );
    std::fs::write(&config, &original).unwrap();
    std::fs::remove_file(policies.join("broken-b.cedar")).unwrap();
    std::fs::remove_file(policies.join("broken-a.cedar")).unwrap();
    // Only the fixed setting now: still refused, and named.
    std::fs::write(
        &config,
        format!("{original}\n[server]\nheader_read_timeout = \"20s\"\n"),
    )
    .unwrap();
    let (status, body) = reload(&server).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["problems"]
            .to_string()
            .contains("`server` cannot change while serving"),
        "{body}"
    );
    std::fs::write(&config, &original).unwrap();
    assert_eq!(
        run_tests().await.0,
        200,
        "the old policy set keeps deciding"
    );

    // A good change, through `handoff reload` run from another folder: the very next decision.
    std::fs::write(policies.join("freeze-tests.cedar"), FORBID_TESTS).unwrap();
    let elsewhere = temp_dir();
    let mut command = Command::new(binary());
    command
        .current_dir(elsewhere.path())
        .args(["reload", "--server", &server.base])
        .env("HANDOFF_OPERATOR_TOKEN", server.operator_secret());
    let output = crate::bounded::output(command, crate::bounded::CLI_TIMEOUT).unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("reloaded; policy set"),
        "{}",
        stdout(&output)
    );
    let (status, body) = run_tests().await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["policies"],
        serde_json::json!(["no-tests-today"]),
        "{body}"
    );
    let denied = events(&server).last().unwrap().clone();
    assert_ne!(denied["policy_set"], first_set, "{denied}");

    // SIGHUP: the forbid is gone again.
    std::fs::remove_file(policies.join("freeze-tests.cedar")).unwrap();
    let pid = server.pid().unwrap().to_string();
    let mut kill = Command::new("kill");
    kill.args(["-HUP", &pid]);
    assert!(
        crate::bounded::output(kill, crate::bounded::CLI_TIMEOUT)
            .unwrap()
            .status
            .success()
    );
    let mut allowed = false;
    for _ in 0..200 {
        if reloads(&server).len() == 4 {
            allowed = run_tests().await.0 == 200;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(allowed, "SIGHUP reloaded: {:?}", reloads(&server));

    let recorded = reloads(&server);
    let outcome = |r: &Value| {
        (
            r["outcome"].as_str().unwrap().to_owned(),
            r["actor"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        recorded.iter().map(outcome).collect::<Vec<_>>(),
        [
            ("deny".to_owned(), "operator".to_owned()),
            ("deny".to_owned(), "operator".to_owned()),
            ("permit".to_owned(), "operator".to_owned()),
            ("permit".to_owned(), "signal:SIGHUP".to_owned()),
        ]
    );
    assert_eq!(recorded[0]["previous_policy_set"], first_set);
    assert_eq!(recorded[2]["previous_policy_set"], first_set);
    assert_eq!(recorded[2]["policy_set"], denied["policy_set"]);
    assert_eq!(recorded[3]["previous_policy_set"], denied["policy_set"]);
    assert_eq!(
        recorded[3]["policy_set"], first_set,
        "the same files hash the same"
    );
    assert!(
        recorded[0]["description"]
            .as_str()
            .unwrap()
            .contains("broken-a.cedar"),
        "{}",
        recorded[0]
    );
}

#[tokio::test]
async fn a_reload_changing_the_audit_settings_is_refused_naming_them() {
    let dir = temp_dir();
    let config = deployment(dir.path());
    let server = Server::start_with(&dir.path().join("data"), Some(&config));
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{original}\n[audit]\ncheckpoint_interval = \"2m\"\n"),
    )
    .unwrap();
    let (status, body) = reload(&server).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_deployment")),
        "{body}"
    );
    assert!(
        body["problems"]
            .to_string()
            .contains("`audit` cannot change while serving; restart Handoff to apply it"),
        "{body}"
    );
    let refused = reloads(&server);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["outcome"], "deny");
    assert!(
        refused[0]["description"]
            .as_str()
            .unwrap()
            .contains("`audit`"),
        "{}",
        refused[0]
    );
}
