//! The audit chain verifies, and names the first record that was edited, removed or swapped.

use crate::harness::{Server, cli, example_config, stdout, temp_dir};
use handoff_core::checkpoint::{CHECKPOINT_TYP, CHECKPOINT_USE};
use rusqlite::Connection;
use serde_json::{Value, json};
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
    let trace: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let permit = &trace["steps"][2]["event"];
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

// --- Signed checkpoints: the log proves its end. ---

/// A server whose checkpoints are also appended to `witness` in `dir`.
fn witnessed_server(dir: &Path) -> (Server, std::path::PathBuf) {
    let witness = dir.join("witness.jws");
    let config = example_config(dir, |text| {
        format!(
            "{text}\n[audit]\ncheckpoint_file = \"{}\"\n",
            witness.display()
        )
    });
    (
        Server::start_with(&dir.join("data"), Some(&config)),
        witness,
    )
}

async fn checkpoint_now(server: &Server) -> Value {
    let response = server
        .client
        .post(format!("{}/v1/audit/checkpoints", server.base))
        .bearer_auth(server.operator_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

fn verify_against(dir: &Path, file: &Path) -> (bool, String) {
    let output = cli(&[
        "audit",
        "verify",
        "--data-dir",
        dir.to_str().unwrap(),
        "--against",
        file.to_str().unwrap(),
    ]);
    (output.status.success(), stdout(&output))
}

#[tokio::test]
async fn deleting_the_newest_records_is_detected_against_a_checkpoint() {
    let dir = temp_dir();
    let (server, witness) = witnessed_server(dir.path());
    let data = dir.path().join("data");
    some_history(&server).await;
    let made = checkpoint_now(&server).await;
    assert_eq!(made["seq"], 5, "{made}");
    // Only operators may ask for one.
    let anonymous = server
        .client
        .post(format!("{}/v1/audit/checkpoints", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    server.stop();
    // The witness holds what the store holds: the checkpoint made at start and the one asked for.
    let witnessed = std::fs::read_to_string(&witness).unwrap();
    assert!(
        witnessed.lines().any(|l| l == made["checkpoint"]),
        "{witnessed}"
    );
    let (ok, out) = verify_against(&data, &witness);
    assert!(ok, "{out}");
    assert!(out.contains("only grew"), "{out}");

    // Someone removes the newest records, and the stored checkpoints that would give them away.
    let conn = db(&data);
    conn.execute_batch("DELETE FROM audit WHERE seq >= 4; DELETE FROM checkpoints;")
        .unwrap();
    let (ok, out) = verify(&data);
    assert!(ok, "the chain alone cannot tell: {out}");
    let (ok, out) = verify_against(&data, &witness);
    assert!(!ok, "{out}");
    assert!(
        out.contains("covers record 5, but the log ends at record 3"),
        "{out}"
    );
}

#[tokio::test]
async fn a_truncation_is_detected_by_the_stored_checkpoints() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    some_history(&server).await;
    checkpoint_now(&server).await;
    server.stop();
    db(dir.path())
        .execute("DELETE FROM audit WHERE seq = 5", [])
        .unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("records were removed from its end"), "{out}");
}

#[tokio::test]
async fn a_rewritten_history_is_detected_by_its_checkpoints() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    some_history(&server).await;
    server.stop();
    // `handoff audit checkpoint` signs one from the command line.
    let output = cli(&[
        "audit",
        "checkpoint",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        crate::harness::stderr(&output)
    );
    let held = dir.path().join("held.jws");
    std::fs::write(&held, stdout(&output)).unwrap();

    // Rewrite record 2 (a deny becomes a permit) and re-seal the chain from there: every hash
    // and link is consistent again.
    let conn = db(dir.path());
    let records: Vec<(i64, i64, String)> = conn
        .prepare("SELECT seq, at, body FROM audit ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut prev: String = conn
        .query_row("SELECT hash FROM audit WHERE seq = 1", [], |r| r.get(0))
        .unwrap();
    for (seq, at, body) in records.into_iter().skip(1) {
        let record = handoff_core::audit::SealedRecord {
            seq: seq as u64,
            at: handoff_core::time::Timestamp::from_millis(at),
            task: None,
            body,
            prev_hash: String::new(),
            hash: String::new(),
        };
        let mut event = record.event().unwrap();
        if seq == 2 {
            event.outcome = Some(handoff_core::audit::Outcome::Permit);
        }
        let sealed = handoff_core::audit::seal(record.seq, record.at, &prev, event).unwrap();
        conn.execute(
            "UPDATE audit SET body = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
            rusqlite::params![sealed.body, sealed.prev_hash, sealed.hash, seq],
        )
        .unwrap();
        prev = sealed.hash;
    }
    conn.execute("DELETE FROM checkpoints", []).unwrap();
    let (ok, out) = verify(dir.path());
    assert!(ok, "the re-sealed chain links up: {out}");
    let (ok, out) = verify_against(dir.path(), &held);
    assert!(!ok, "{out}");
    assert!(
        out.contains("record 5 does not have the head it signed"),
        "{out}"
    );
}

/// Replaces the claims of a compact JWS, keeping its header and signature.
fn with_claims(jws: &str, edit: impl Fn(&mut Value)) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jws.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    edit(&mut claims);
    let claims = b64.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{claims}.{}", parts[0], parts[2])
}

#[tokio::test]
async fn a_forged_checkpoint_is_refused() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    some_history(&server).await;
    let made = checkpoint_now(&server).await;
    let jwks = server.jwks().await;
    server.stop();
    let genuine = made["checkpoint"].as_str().unwrap().to_owned();

    // The checkpoint key is published for checkpoints only, apart from the token keys.
    let checkpoint_keys: Vec<_> = jwks
        .keys
        .iter()
        .filter(|k| {
            matches!(&k.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Other(u)) if u == CHECKPOINT_USE)
        })
        .collect();
    assert_eq!(checkpoint_keys.len(), 1, "{jwks:?}");
    let header = jsonwebtoken::decode_header(&genuine).unwrap();
    assert_eq!(header.typ.as_deref(), Some(CHECKPOINT_TYP));
    assert_eq!(header.kid, checkpoint_keys[0].common.key_id);

    // Another key's checkpoint (its own kid), and the genuine one with its claims changed.
    let other = handoff_core::keys::SigningKey::from_pkcs8_for(
        handoff_core::config::SigningAlgorithm::EdDsa,
        &handoff_core::keys::generate_pkcs8(handoff_core::config::SigningAlgorithm::EdDsa).unwrap(),
        CHECKPOINT_USE,
    )
    .unwrap();
    let claims = {
        use base64::Engine as _;
        let part = genuine.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    };
    let wrong_key = other.sign_jwt(CHECKPOINT_TYP, &claims).unwrap();
    let mut wrong_key_same_kid = wrong_key.split('.').map(str::to_owned).collect::<Vec<_>>();
    wrong_key_same_kid[0] = genuine.split('.').next().unwrap().to_owned();
    let wrong_key_same_kid = wrong_key_same_kid.join(".");
    let edited = with_claims(&genuine, |c| c["seq"] = json!(3));
    for (forged, why) in [
        (&wrong_key, "not signed by a known checkpoint key"),
        (&wrong_key_same_kid, "signature does not verify"),
        (&edited, "signature does not verify"),
    ] {
        let file = dir.path().join("forged.jws");
        std::fs::write(&file, format!("{genuine}\n{forged}\n")).unwrap();
        let (ok, out) = verify_against(dir.path(), &file);
        assert!(!ok, "{out}");
        assert!(out.contains("line 2") && out.contains(why), "{out}");
    }
    // One slipped into the store is refused the same way.
    db(dir.path())
        .execute(
            "INSERT INTO checkpoints (seq, head, at, jws) SELECT seq, head, at, ?1 FROM checkpoints LIMIT 1",
            [&edited],
        )
        .unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("signature does not verify"), "{out}");
}

#[tokio::test]
async fn a_checkpoint_is_never_a_token() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let agent = server.identity("release-bot");
    server.task(&agent, "release", &["ci"]).await;
    let made = checkpoint_now(&server).await;
    let checkpoint = made["checkpoint"].as_str().unwrap();
    // As the task token of an exchange, and as an access token at introspection.
    let (status, body) = server
        .token_form(&crate::harness::exchange_form(
            &agent,
            checkpoint,
            "ci",
            "run_tests",
        ))
        .await;
    assert_eq!(status, 401, "{body}");
    let secret = server.system_secret("ci");
    let (status, body) = server.introspect("ci", &secret, checkpoint).await;
    assert_eq!(status, 200);
    assert_eq!(body["active"], false, "{body}");
}

/// `handoff audit verify` through `server` (from another folder, no data directory), with
/// `token` as the operator credential.
fn verify_remote(server: &Server, token: &str) -> std::process::Output {
    let elsewhere = temp_dir();
    let mut command = std::process::Command::new(crate::harness::binary());
    command
        .current_dir(elsewhere.path())
        .args(["audit", "verify", "--server", &server.base])
        .env("HANDOFF_OPERATOR_TOKEN", token)
        .env_remove("HANDOFF_DATA_DIR");
    crate::bounded::output(command, crate::bounded::CLI_TIMEOUT).unwrap()
}

#[tokio::test]
async fn audit_verify_through_the_server_checks_the_records_itself() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    some_history(&server).await;
    checkpoint_now(&server).await;
    let output = verify_remote(&server, &server.operator_secret());
    let remote = stdout(&output);
    assert!(output.status.success(), "{remote}");
    // The same verdict, word for word, as on the data directory.
    let (ok, local) = verify(dir.path());
    assert!(ok, "{local}");
    assert_eq!(remote, local);
    assert!(
        remote.contains("audit chain intact: 5 record(s)"),
        "{remote}"
    );
    assert!(
        remote.contains("2 stored checkpoint(s) verified"),
        "{remote}"
    );

    // Only an operator may read the chain.
    let output = verify_remote(&server, "not-the-operator-secret");
    assert!(!output.status.success());
    assert!(
        crate::harness::stderr(&output).contains("invalid_client")
            || crate::harness::stderr(&output).contains("refused"),
        "{}",
        crate::harness::stderr(&output)
    );

    // A record edited under the running server: the client names it, from what it was served.
    db(dir.path())
        .execute(
            "UPDATE audit SET body = replace(body, '\"deny\"', '\"permit\"') WHERE seq = 2",
            [],
        )
        .unwrap();
    let output = verify_remote(&server, &server.operator_secret());
    assert_eq!(output.status.code(), Some(65), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("record 2 was altered"),
        "{}",
        stdout(&output)
    );
}
