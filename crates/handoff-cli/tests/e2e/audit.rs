//! The audit chain verifies, and names the first record that was edited, removed or swapped.

use crate::harness::{Server, cli, stdout, temp_dir};
use rusqlite::Connection;
use std::path::Path;

async fn some_history(server: &Server) -> String {
    let agent = server.identity("release-bot");
    let (task, txn) = server.task(&agent, "release", &["ci"]).await;
    server.exchange(&agent, &txn, "ci", "deploy", &[]).await;
    server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    server.exchange(&agent, &txn, "ci", "deploy", &[]).await;
    server
        .exchange(&agent, &txn, "nowhere", "deploy", &[])
        .await;
    task
}

fn verify(dir: &Path) -> (bool, String) {
    let output = cli(&["audit", "verify", "--data-dir", dir.to_str().unwrap()]);
    (output.status.success(), stdout(&output))
}

fn db(dir: &Path) -> Connection {
    Connection::open(dir.join("handoff.db")).unwrap()
}

#[tokio::test]
async fn every_decision_is_recorded_and_the_trace_explains_it() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let task = some_history(&server).await;
    let (ok, out) = verify(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("intact: 5 record(s)"), "{out}");

    let output = cli(&["trace", &task, "--data-dir", dir.path().to_str().unwrap()]);
    let trace = stdout(&output);
    assert!(trace.contains("intent: \"test a release task\""), "{trace}");
    let lines: Vec<&str> = trace.lines().filter(|l| l.contains(" #")).collect();
    assert_eq!(lines.len(), 5, "{trace}");
    assert!(lines[0].contains("task_open") && lines[0].contains("PERMIT"));
    assert!(
        lines[1].contains("DENY")
            && lines[1].contains("ci:deploy")
            && lines[1].contains("no_permit")
    );
    assert!(
        lines[2].contains("PERMIT")
            && lines[2].contains("ci:run_tests")
            && lines[2].contains("token=tok_")
    );
    assert!(lines[3].contains("PERMIT") && lines[3].contains("[deploy-after-tests]"));
    assert!(lines[4].contains("DENY") && lines[4].contains("invalid_target"));

    // The records carry what the evidence needs, and never a token.
    let output = cli(&[
        "trace",
        &task,
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    let records: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let permit = &records[2]["event"];
    for field in [
        "decision_id",
        "agent",
        "user",
        "task",
        "intent",
        "system",
        "actions",
        "policies",
        "policy_set",
        "token",
    ] {
        assert!(permit.get(field).is_some(), "missing {field}: {permit}");
    }
    assert!(!stdout(&output).contains("eyJ"), "no JWT is ever stored");
}

#[tokio::test]
async fn an_edited_record_is_named() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    some_history(&server).await;
    server.stop();
    db(dir.path())
        .execute(
            "UPDATE audit SET body = replace(body, '\"deny\"', '\"permit\"') WHERE seq = 2",
            [],
        )
        .unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok);
    assert!(out.contains("record 2 was altered"), "{out}");
}

#[tokio::test]
async fn a_deleted_record_is_named() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    some_history(&server).await;
    server.stop();
    db(dir.path())
        .execute("DELETE FROM audit WHERE seq = 3", [])
        .unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok);
    assert!(out.contains("record 3 is missing"), "{out}");
}

#[tokio::test]
async fn swapped_records_are_named() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    some_history(&server).await;
    server.stop();
    let conn = db(dir.path());
    // Swap records 3 and 4 wholesale (body and hashes), keeping the sequence numbers in place.
    conn.execute_batch(
        "UPDATE audit SET seq = -3 WHERE seq = 3;
         UPDATE audit SET seq = 3 WHERE seq = 4;
         UPDATE audit SET seq = 4 WHERE seq = -3;",
    )
    .unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok);
    assert!(out.contains("record 3 is out of place"), "{out}");
}

#[tokio::test]
async fn a_rehashed_edit_is_still_caught_by_the_next_link() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    some_history(&server).await;
    server.stop();
    let conn = db(dir.path());
    let body: String = conn
        .query_row("SELECT body FROM audit WHERE seq = 2", [], |r| r.get(0))
        .unwrap();
    let edited = body.replace("\"deny\"", "\"permit\"");
    let hash = handoff_core::hash::sha256_hex(edited.as_bytes());
    conn.execute(
        "UPDATE audit SET body = ?1, hash = ?2 WHERE seq = 2",
        rusqlite::params![edited, hash],
    )
    .unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok);
    assert!(out.contains("record 3 does not follow record 2"), "{out}");
}
