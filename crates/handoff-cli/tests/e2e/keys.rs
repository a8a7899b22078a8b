//! Rotating Handoff's own signing key over real HTTP: `handoff keys rotate` through the running
//! server makes a new key active at once (the algorithm may change); tokens signed before keep
//! verifying with PyJWT against the JWKS served after the rotation and keep introspecting
//! active, until every token the old key signed has expired, when the old key leaves the JWKS.
//! The rotation is recorded (who, old kid, new kid), every exchange record names its kid, the
//! key survives a restart and a live reload keeps it.

use crate::harness::{Server, binary, cli, example_config, python_with, stderr, stdout, temp_dir};
use jsonwebtoken::decode_header;
use serde_json::{Value, json};
use std::path::Path;

/// Verifies `token` with PyJWT against `jwks` (a JWKS document) for `audience` and `issuer`;
/// the claims, or what PyJWT said.
fn pyjwt_verify(
    python: &Path,
    jwks: &Value,
    token: &str,
    audience: &str,
    issuer: &str,
) -> Result<Value, String> {
    const SCRIPT: &str = r#"
import json, sys
import jwt
jwks, token, audience, issuer = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
kid = jwt.get_unverified_header(token)["kid"]
keys = [k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == kid]
if not keys:
    sys.exit("kid %s is not in the JWKS" % kid)
claims = jwt.decode(token, keys[0].key, algorithms=[keys[0].algorithm_name], audience=audience,
                    issuer=issuer, options={"require": ["exp", "iss", "aud"]})
print(json.dumps(claims))
"#;
    let mut command = std::process::Command::new(python);
    command
        .args(["-c", SCRIPT, &jwks.to_string(), token, audience, issuer])
        .stdin(std::process::Stdio::null());
    let output = crate::bounded::output(command, crate::bounded::CLI_TIMEOUT).unwrap();
    if output.status.success() {
        Ok(serde_json::from_str(stdout(&output).trim()).unwrap())
    } else {
        Err(stderr(&output))
    }
}

async fn jwks(server: &Server) -> Value {
    server
        .client
        .get(format!("{}/.well-known/jwks.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The kids of the token keys (`use: sig`) the server publishes.
fn token_kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["use"] == "sig")
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn kid(token: &str) -> String {
    decode_header(token).unwrap().kid.unwrap()
}

/// Every record's event, in order, from the store (read-only).
fn events(data_dir: &Path) -> Vec<Value> {
    let db = rusqlite::Connection::open(data_dir.join("handoff.db")).unwrap();
    let mut stmt = db.prepare("SELECT body FROM audit ORDER BY seq").unwrap();
    let rows = stmt.query_map([], |row| row.get::<_, String>(0)).unwrap();
    rows.map(|body| serde_json::from_str::<Value>(&body.unwrap()).unwrap()["event"].clone())
        .collect()
}

/// `handoff ARGS` from another folder, through `server` as operator `alice-ops`.
fn remote_cli(server: &Server, args: &[&str]) -> std::process::Output {
    let elsewhere = temp_dir();
    let mut command = std::process::Command::new(binary());
    command
        .current_dir(elsewhere.path())
        .args(args)
        .env("HANDOFF_SERVER", &server.base)
        .env("HANDOFF_OPERATOR_TOKEN", server.operator_secret())
        .env("USER", "alice-ops");
    crate::bounded::output(command, crate::bounded::CLI_TIMEOUT).unwrap()
}

const CI: &str = "https://ci.example.com";

#[tokio::test]
async fn a_rotation_keeps_old_tokens_verifiable_until_they_expire_then_drops_the_old_key() {
    let Some(python) = python_with("jwt, cryptography", "PyJWT", "the key rotation test") else {
        return;
    };
    let dir = temp_dir();
    let server = Server::in_process(dir.path(), None);
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let before = body["access_token"].as_str().unwrap().to_owned();
    let old_kid = kid(&before);
    assert_eq!(
        decode_header(&before).unwrap().alg,
        jsonwebtoken::Algorithm::ES256
    );

    // Rotated through the server, from another folder, to another algorithm.
    let output = remote_cli(&server, &["keys", "rotate", "--algorithm", "EdDSA"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let said = stdout(&output);
    assert!(said.contains("rotated: signing key"), "{said}");
    assert!(said.contains(&old_kid), "{said}");

    // The JWKS served now holds both keys; the old token verifies against it with PyJWT and
    // still introspects active.
    let served = jwks(&server).await;
    let kids = token_kids(&served);
    assert_eq!(kids.len(), 2, "{served}");
    assert!(kids.contains(&old_kid), "{served}");
    let new_kid = kids.iter().find(|k| **k != old_kid).unwrap().clone();
    assert!(said.contains(&new_kid), "{said}");
    let claims = pyjwt_verify(&python, &served, &before, CI, &server.base).unwrap();
    assert_eq!(claims["scope"], "ci:run_tests");
    let secret = server.system_secret("ci");
    let (status, answer) = server.introspect("ci", &secret, &before).await;
    assert_eq!(
        (status, answer["active"].clone()),
        (200, json!(true)),
        "{answer}"
    );

    // The next token is signed with the new key (EdDSA) at once, and PyJWT verifies it too.
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let after = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(kid(&after), new_kid);
    assert_eq!(
        decode_header(&after).unwrap().alg,
        jsonwebtoken::Algorithm::EdDSA
    );
    pyjwt_verify(&python, &jwks(&server).await, &after, CI, &server.base).unwrap();

    // The rotation is a record naming who and both kids; each exchange names its kid.
    let recorded = events(dir.path());
    let rotations: Vec<&Value> = recorded
        .iter()
        .filter(|e| e["kind"] == "key_rotation")
        .collect();
    assert_eq!(rotations.len(), 1, "{recorded:?}");
    assert_eq!(rotations[0]["previous_kid"], old_kid.as_str());
    assert_eq!(rotations[0]["kid"], new_kid.as_str());
    assert!(
        rotations[0]["actor"]
            .as_str()
            .unwrap()
            .contains("alice-ops"),
        "{}",
        rotations[0]
    );
    let exchanges: Vec<&Value> = recorded
        .iter()
        .filter(|e| e["kind"] == "exchange")
        .collect();
    assert_eq!(exchanges.len(), 2, "{recorded:?}");
    assert_eq!(exchanges[0]["kid"], old_kid.as_str());
    assert_eq!(exchanges[1]["kid"], new_kid.as_str());

    // The key list and the new key are the owner's alone.
    use std::os::unix::fs::PermissionsExt as _;
    for name in [
        "signing.json".to_owned(),
        format!("signing-EdDSA-{new_kid}.p8"),
    ] {
        let mode = std::fs::metadata(dir.path().join("keys").join(&name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }

    // Once every token the old key signed could have expired (the example's longest-lived
    // tokens are an 8 h purpose's transaction tokens), the old key leaves the JWKS.
    server.advance(std::time::Duration::from_secs(7 * 3600));
    assert!(
        token_kids(&jwks(&server).await).contains(&old_kid),
        "gone too early"
    );
    server.advance(std::time::Duration::from_secs(2 * 3600));
    let served = jwks(&server).await;
    assert_eq!(token_kids(&served), vec![new_kid.clone()], "{served}");
    let (_, answer) = server.introspect("ci", &secret, &before).await;
    assert_eq!(answer["active"], false, "{answer}");

    // After a restart the rotated key is still the active one.
    drop(server);
    let server = Server::in_process(dir.path(), None);
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(kid(body["access_token"].as_str().unwrap()), new_kid);
}

#[tokio::test]
async fn a_live_reload_keeps_a_rotated_key_and_rotation_needs_the_operator() {
    let dir = temp_dir();
    let config = example_config(dir.path(), |text| text);
    let data = dir.path().join("data");
    let server = Server::start_with(&data, Some(&config));
    let before = token_kids(&jwks(&server).await);
    assert_eq!(before.len(), 1);

    let refused = server
        .client
        .post(format!("{}/v1/admin/keys/rotate", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let (status, body) = server
        .admin("keys/rotate", json!({ "algorithm": "HS256" }))
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_request")),
        "{body}"
    );
    assert_eq!(
        token_kids(&jwks(&server).await),
        before,
        "a refused rotation changes nothing"
    );

    let (status, body) = server.admin("keys/rotate", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["previous_kid"], before[0].as_str());
    assert_eq!(
        body["algorithm"], "ES256",
        "the active key's algorithm by default"
    );
    let new_kid = body["kid"].as_str().unwrap().to_owned();

    let (status, reloaded) = server.admin("reload", json!({})).await;
    assert_eq!(status, 200, "{reloaded}");
    let kids = token_kids(&jwks(&server).await);
    assert!(
        kids.contains(&new_kid) && kids.contains(&before[0]),
        "{kids:?}"
    );
    let agent = server.identity("release-bot");
    let (_, txn) = server.task(&agent, "release", &["ci"]).await;
    let (status, body) = server.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        kid(token),
        new_kid,
        "the reloaded service signs with the rotated key"
    );
    server.verify_access_token(token, CI).await;
}

#[tokio::test]
async fn serve_rotates_on_the_configured_schedule() {
    let dir = temp_dir();
    // A schedule no shorter than any token's lifetime (the config refuses shorter ones), so
    // every lifetime is made short.
    let config = example_config(dir.path(), short_lived_with_rotation("2s"));
    let data = dir.path().join("data");
    let server = Server::start_with(&data, Some(&config));
    let first = token_kids(&jwks(&server).await);
    // Waits (bounded) for the schedule; asserts nothing about how long it took.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let kids = loop {
        let kids = token_kids(&jwks(&server).await);
        if kids.len() >= 2 || std::time::Instant::now() > deadline {
            break kids;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(kids.len() >= 2 && kids.contains(&first[0]), "{kids:?}");
    let rotations: Vec<Value> = events(&data)
        .into_iter()
        .filter(|e| e["kind"] == "key_rotation")
        .collect();
    assert!(!rotations.is_empty());
    assert_eq!(rotations[0]["actor"], "handoff:schedule");
    assert_eq!(rotations[0]["previous_kid"], first[0].as_str());
}

/// The example with every token lifetime at most two seconds, and `rotate_every = EVERY`.
fn short_lived_with_rotation(every: &'static str) -> impl Fn(String) -> String {
    move |text: String| {
        let scheduled = text
            .replacen("default_lifetime = \"5m\"", "default_lifetime = \"1s\"", 1)
            .replacen(
                "max_lifetime = \"1h\"",
                &format!("max_lifetime = \"2s\"\nrotate_every = \"{every}\""),
                1,
            );
        assert_ne!(scheduled, text, "the example's [tokens] table moved");
        let mut out = String::new();
        for line in scheduled.lines() {
            if line.starts_with("lifetime = ") {
                out.push_str("lifetime = \"2s\"");
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    }
}

#[test]
fn a_rotation_schedule_shorter_than_the_longest_token_lifetime_is_refused() {
    let dir = temp_dir();
    // The example's purposes live up to 8h: a daily rotation is fine, an hourly one is not.
    let hourly = example_config(dir.path(), |text| {
        text.replacen(
            "max_lifetime = \"1h\"",
            "max_lifetime = \"1h\"\nrotate_every = \"1h\"",
            1,
        )
    });
    let output = cli(&["check", "--config", hourly.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64), "{}", stdout(&output));
    let problems = stderr(&output);
    assert!(
        problems.contains(
            "tokens.rotate_every (3600s) is shorter than the longest token lifetime (28800s, \
             purposes."
        ),
        "{problems}"
    );
    let daily = example_config(dir.path(), |text| {
        text.replacen(
            "max_lifetime = \"1h\"",
            "max_lifetime = \"1h\"\nrotate_every = \"1d\"",
            1,
        )
    });
    let output = cli(&["check", "--config", daily.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    // Shorter than the access tokens' own cap.
    let config = example_config(dir.path(), short_lived_with_rotation("1s"));
    let output = cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains("(2s, tokens.max_lifetime)")
            || stderr(&output).contains("(2s, purposes."),
        "{}",
        stderr(&output)
    );
}
