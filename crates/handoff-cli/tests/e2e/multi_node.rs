//! Several `handoff serve` processes on one PostgreSQL schema, as one deployment behind a load
//! balancer: requests spread round-robin over three nodes on loopback ports. Each test creates
//! its own schema (dropped at the end) in the test database (`HANDOFF_TEST_POSTGRES`, else
//! `postgres://root@127.0.0.1:5432/test`), and its nodes share one data directory (the operator
//! credential, the checkpoint and development-issuer keys) while the signing keys live in the
//! database, sealed with a key-encryption key.

use crate::harness::{
    Exchanger, Server, ci_evidence_key, cli, now, sign, stderr, stdout, temp_dir,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The issuer every node shares (the load balancer's URL).
const PUBLIC_URL: &str = "http://handoff.nodes.test";
const TRUST_DOMAIN: &str = "https://handoff.local";
const KEK: &str = "5f4dcc3b5aa765d61d8327deb882cf99b5bd1b9a3c4e0f1e2d3c4b5a69788796";
/// How long a test waits for something another node did to show (far above the stated bounds).
const DEADLINE: Duration = Duration::from_secs(30);

fn base_url() -> String {
    std::env::var("HANDOFF_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

fn psql(sql: &str) -> String {
    let output = Command::new("psql")
        .arg(base_url())
        .args(["-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "psql {sql}: {}", stderr(&output));
    stdout(&output)
}

/// A schema of its own, dropped with everything in it when the guard goes.
struct Schema {
    name: String,
}

impl Schema {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("handoff_e2e_{}_{nanos}", std::process::id());
        psql(&format!("CREATE SCHEMA {name}"));
        Self { name }
    }

    /// The store URL, reaching PostgreSQL at `address` (`host:port`) if given.
    fn url(&self, address: Option<&str>) -> String {
        let mut url = base_url();
        if let Some(address) = address {
            let (scheme, rest) = url.split_once("://").unwrap();
            let (authority, path) = rest.split_once('/').unwrap();
            let user = authority
                .rsplit_once('@')
                .map(|(user, _)| format!("{user}@"));
            url = format!("{scheme}://{}{address}/{path}", user.unwrap_or_default());
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-c%20search_path%3D{}", self.name)
    }

    /// The `jti` of every token record in the chain.
    fn recorded_jtis(&self) -> std::collections::BTreeSet<String> {
        psql(&format!(
            "SELECT jti FROM {}.audit WHERE jti IS NOT NULL",
            self.name
        ))
        .lines()
        .map(str::to_owned)
        .collect()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(base_url())
            .args([
                "-qc",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One deployment: a schema, the shared data directory, the key-encryption key, the nodes.
struct Cluster {
    nodes: Vec<Server>,
    kek: PathBuf,
    dir: tempfile::TempDir,
    schema: Schema,
}

impl Cluster {
    fn start(count: usize) -> Self {
        let schema = Schema::new();
        let dir = temp_dir();
        let kek = dir.path().join("kek.hex");
        std::fs::write(&kek, format!("{KEK}\n")).unwrap();
        let data = dir.path().join("data");
        let mut cluster = Self {
            nodes: Vec::new(),
            kek,
            dir,
            schema,
        };
        for _ in 0..count {
            let url = cluster.schema.url(None);
            let node = cluster.node(&data, &url);
            cluster.nodes.push(node);
        }
        cluster
    }

    /// One more node on the deployment's data directory, reaching the store at `url`.
    fn node(&self, data: &Path, url: &str) -> Server {
        let kek = self.kek.to_str().unwrap();
        Server::start_logged(
            data,
            None,
            &[("HANDOFF_KEY_ENCRYPTION_KEY_FILE", kek)],
            &["--store", url, "--public-url", PUBLIC_URL],
            Stdio::null(),
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn node_at(&self, i: usize) -> &Server {
        &self.nodes[i % self.nodes.len()]
    }

    /// `handoff audit verify` over the database.
    fn verify(&self) -> String {
        let output = cli(&[
            "audit",
            "verify",
            "--store",
            &self.schema.url(None),
            "--data-dir",
            self.data().to_str().unwrap(),
        ]);
        assert!(
            output.status.success(),
            "{}{}",
            stdout(&output),
            stderr(&output)
        );
        stdout(&output)
    }
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// Asks again for the payment `approval` holds.
async fn poll_approval(node: &Server, payer: &str, txn: &str, approval: &str) -> (u16, Value) {
    node.exchange(
        payer,
        txn,
        "payments",
        "create",
        &[("authorization_details", LARGE), ("approval_id", approval)],
    )
    .await
}

const LARGE: &str =
    r#"[{"type":"payments","amount":250000,"currency":"EUR","creditor":"ACME GmbH"}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_serve_one_deployment_round_robin_exchange_approval_and_evidence() {
    let cluster = Cluster::start(3);
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);

    // A task opened through A is exchanged through B; C's JWKS verifies the token and C's
    // introspection (with a credential registered through A) calls it active.
    let agent = a.identity("release-agent");
    let (task, txn) = a.task(&agent, "release", &["ci"]).await;
    let (status, body) = b.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    c.verify_access_token_from(&token, "https://ci.example.com", PUBLIC_URL)
        .await;
    let (status, credential) = a.admin("credentials", json!({ "system": "ci" })).await;
    assert_eq!(status, 200, "{credential}");
    let secret = credential["client_secret"].as_str().unwrap();
    let (status, answer) = c.introspect("ci", secret, &token).await;
    assert_eq!(status, 200);
    assert_eq!(answer["active"], true, "{answer}");

    // Evidence posted to A counts on B and C: exactly the tested commit deploys.
    let evidence = sign(
        &ci_evidence_key(),
        Some("ci-dev-1"),
        Some("JWT"),
        &json!({
            "iss": "ci", "aud": TRUST_DOMAIN, "iat": now(), "jti": "ev-nodes-1",
            "task": task, "kind": "tests_passed", "data": { "commit": "abc123" },
        }),
    );
    let response = a
        .client
        .post(format!("{}/v1/evidence", a.base))
        .header("content-type", "application/jwt")
        .body(evidence.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let deploy = |commit: &str| {
        json!([{ "type": "ci", "commit": commit, "environment": "production" }]).to_string()
    };
    let (status, body) = b
        .exchange(
            &agent,
            &txn,
            "ci",
            "deploy",
            &[("authorization_details", &deploy("abc123"))],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = c
        .exchange(
            &agent,
            &txn,
            "ci",
            "deploy",
            &[("authorization_details", &deploy("def456"))],
        )
        .await;
    assert_eq!(status, 403, "{body}");
    // The same evidence again, through another node, is a replay.
    let replay = c
        .client
        .post(format!("{}/v1/evidence", c.base))
        .header("content-type", "application/jwt")
        .body(evidence)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status().as_u16(), 409);

    // An approval opened through A, decided through B, released through C, once.
    let payer = a.identity("payments-agent");
    let (_, pay_txn) = a.task(&payer, "payments", &["payments"]).await;
    let (status, body) = a
        .exchange(
            &payer,
            &pay_txn,
            "payments",
            "create",
            &[("authorization_details", LARGE)],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "authorization_pending");
    let approval = body["approval_id"].as_str().unwrap().to_owned();
    let bob = b.approver("bob", &["payments-owners"]);
    let (status, decided) = b
        .approvals(
            &bob,
            "POST",
            &format!("/{approval}/approve"),
            Some(json!({ "reason": "invoice checked" })),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    let started = tokio::time::Instant::now();
    let released = loop {
        let (status, body) = poll_approval(c, &payer, &pay_txn, &approval).await;
        if status == 200 {
            break body;
        }
        // Polls closer together than the approval's interval are told to slow down.
        assert!(
            body["error"] == "slow_down" || body["error"] == "authorization_pending",
            "{body}"
        );
        assert!(started.elapsed() < DEADLINE, "never released: {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let released = released["access_token"].as_str().unwrap().to_owned();
    a.verify_access_token_from(&released, "https://payments.example.com", PUBLIC_URL)
        .await;
    // Single use across nodes: A and B get nothing more from it.
    for node in [a, b] {
        loop {
            let (status, body) = poll_approval(node, &payer, &pay_txn, &approval).await;
            if body["error"] == "slow_down" {
                assert!(started.elapsed() < DEADLINE * 2, "{body}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            assert_eq!(
                (status, &body["reason"]),
                (403, &json!("approval_used")),
                "{body}"
            );
            break;
        }
    }

    let report = cluster.verify();
    assert!(report.contains("audit chain intact"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_exchanges_spread_over_three_nodes_cannot_overspend_a_budget() {
    let cluster = Cluster::start(3);
    let payer = cluster.nodes[0].identity("payments-agent");
    let (_, txn) = cluster.nodes[0]
        .task(&payer, "payments", &["payments"])
        .await;
    // payments allows at most two live tokens per task; fire eighteen at once over the nodes.
    let attempts: Vec<_> = (0..18)
        .map(|i| {
            let exchange = cluster
                .node_at(i)
                .exchanger(&payer, &txn, "payments", "read");
            tokio::spawn(async move { exchange.send().await })
        })
        .collect();
    let mut permitted = 0;
    for attempt in attempts {
        let (status, body) = attempt.await.unwrap();
        match status {
            200 => permitted += 1,
            403 => assert_eq!(body["reason"], "budget_live_tokens", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(permitted, 2, "exactly the budget, on whichever nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_or_freeze_through_one_node_denies_on_every_other_node() {
    let cluster = Cluster::start(3);
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let agent = a.identity("release-bot");
    let (task, txn) = a.task(&agent, "release", &["ci"]).await;
    for node in [b, c] {
        let (status, body) = node.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
        assert_eq!(status, 200, "{body}");
    }
    // A token minted through B, revoked (RFC 7009) through A: inactive on C.
    let (status, body) = b.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (_, credential) = a.admin("credentials", json!({ "system": "ci" })).await;
    let secret = credential["client_secret"].as_str().unwrap().to_owned();
    let revoked = a
        .client
        .post(format!("{}/oauth/revoke", a.base))
        .basic_auth("ci", Some(&secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    wait_until("the token revoked through A is inactive on C", || async {
        let (_, answer) = c.introspect("ci", &secret, &token).await;
        answer["active"] == false
    })
    .await;

    // The task revoked through A: B and C deny its next exchange.
    let (status, body) = a
        .admin(
            "revoke",
            json!({ "kind": "task", "id": task, "reason": "agent misbehaved" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for node in [b, c] {
        wait_until("the revoked task is denied on every node", || async {
            let (status, body) = node.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
            assert_ne!(status, 200, "a revoked task got a token: {body}");
            status == 403 && body["reason"] == "task_revoked"
        })
        .await;
    }

    // A system frozen through C: A and B deny exchanges for it, for a fresh task too.
    let (_, txn) = b.task(&agent, "release", &["ci"]).await;
    let (status, body) = c
        .admin("freeze", json!({ "system": "ci", "reason": "incident 42" }))
        .await;
    assert_eq!(status, 200, "{body}");
    for node in [a, b] {
        wait_until("the frozen system is denied on every node", || async {
            let (status, body) = node.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
            assert_ne!(status, 200, "a frozen system got a token: {body}");
            status == 403 && body["reason"] == "system_frozen"
        })
        .await;
    }

    // The revocation feed reads the same from every node.
    let mut feeds = Vec::new();
    for node in [a, b, c] {
        let response = node
            .client
            .get(format!("{}/v1/revocations", node.base))
            .basic_auth("ci", Some(&secret))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        feeds.push(response.json::<Value>().await.unwrap());
    }
    assert_eq!(
        feeds[0]["entries"].as_array().unwrap().len(),
        3,
        "{feeds:?}"
    );
    assert!(feeds.iter().all(|f| *f == feeds[0]), "{feeds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delegation_made_through_one_node_is_used_attenuated_and_revoked_through_the_others() {
    let cluster = Cluster::start(3);
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let agent = a.identity("release-agent");
    let worker = a.identity("test-worker");
    let (task, txn) = a.task(&agent, "release", &["ci"]).await;
    // Delegated through B, used through C: the token names the whole actor chain.
    let (status, delegated) =
        crate::delegation::delegate(b, &agent, &txn, "test-worker", &["ci:run_tests"], None).await;
    assert_eq!(status, 201, "{delegated}");
    let child = delegated["txn_token"].as_str().unwrap().to_owned();
    let (status, body) = c.exchange(&worker, &child, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let minted = claims(body["access_token"].as_str().unwrap());
    assert_eq!(minted["act"]["sub"], "test-worker");
    assert_eq!(minted["act"]["act"]["sub"], "release-agent");
    // Never beyond the delegation, on any node.
    let (status, body) = a.exchange(&worker, &child, "ci", "deploy", &[]).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("outside_delegation")),
        "{body}"
    );
    // The delegate's tests, run through C, are the task's history on A.
    let (status, body) = a.exchange(&agent, &txn, "ci", "deploy", &[]).await;
    assert_eq!(status, 200, "{body}");
    // Revoked through A: the very next exchange through B or C is refused.
    let (status, body) = a
        .admin(
            "revoke",
            json!({ "kind": "delegation", "id": delegated["delegation_id"], "reason": "done" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for node in [b, c] {
        let (status, body) = node.exchange(&worker, &child, "ci", "run_tests", &[]).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (403, Some("delegation_revoked")),
            "{body}"
        );
    }
    // Any node tells the whole story: the delegate's steps and the delegation's revocation
    // under the delegation.
    let response = b
        .client
        .get(format!("{}/v1/tasks/{task}/trace", b.base))
        .bearer_auth(b.operator_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let trace: Value = response.json().await.unwrap();
    let node = &trace["delegations"][0];
    assert_eq!(node["id"], delegated["delegation_id"], "{trace:#}");
    let reasons: Vec<&str> = node["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["event"]["reason"].as_str().unwrap_or("granted"))
        .collect();
    assert_eq!(
        reasons,
        [
            "granted",
            "outside_delegation",
            "delegation_revoked",
            "delegation_revoked",
            "delegation_revoked"
        ],
        "{trace:#}"
    );
    // Offline, against the database: the same tree, and the task's records by query.
    let url = cluster.schema.url(None);
    let data = cluster.data();
    let offline = cli(&[
        "trace",
        &task,
        "--json",
        "--store",
        &url,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(offline.status.success(), "{}", stderr(&offline));
    let from_db: Value = serde_json::from_str(&stdout(&offline)).unwrap();
    assert_eq!(from_db, trace);
    let query = cli(&[
        "audit",
        "query",
        "--task",
        &task,
        "--reason",
        "delegation_revoked",
        "--json",
        "--store",
        &url,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(query.status.success(), "{}", stderr(&query));
    // The revocation's record and the two refusals after it.
    assert_eq!(stdout(&query).lines().count(), 3, "{}", stdout(&query));
    // The SIEM export reads the database too: one OCSF event per record of the chain.
    let export = cli(&[
        "audit",
        "export",
        "--format",
        "ocsf",
        "--store",
        &url,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{}", stderr(&export));
    let events: Vec<Value> = stdout(&export)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let chain = psql(&format!(
        "SELECT count(*) FROM {}.audit",
        cluster.schema.name
    ));
    assert_eq!(events.len().to_string(), chain.trim());
    assert!(
        events.iter().all(|e| e["metadata"]["version"] == "1.4.0"),
        "{events:?}"
    );
    cluster.verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_that_changes_the_store_is_refused_naming_it() {
    let schema = Schema::new();
    let dir = temp_dir();
    let kek = dir.path().join("kek.hex");
    std::fs::write(&kek, KEK).unwrap();
    // Here the store and the key-encryption key come from the config file, not flags.
    let store = |url: &str| {
        format!(
            "\n[store]\nurl = \"{url}\"\nkey_encryption_key_file = \"{}\"\n",
            kek.display()
        )
    };
    let first = store(&schema.url(None));
    let config = crate::harness::example_config(dir.path(), |text| format!("{text}{first}"));
    let node = Server::start_with(&dir.path().join("data"), Some(&config));
    assert!(
        !dir.path().join("data/handoff.db").exists(),
        "no SQLite store"
    );
    let other = store(&format!("{}&application_name=other", schema.url(None)));
    crate::harness::example_config(dir.path(), |text| format!("{text}{other}"));
    let (status, body) = node.admin("reload", json!({})).await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(body.to_string().contains("store.url"), "{body}");
    // The node still serves on the store it started with.
    let agent = node.identity("release-bot");
    let (_, txn) = node.task(&agent, "release", &["ci"]).await;
    let (status, body) = node.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let rows = psql(&format!("SELECT count(*) FROM {}.tasks", schema.name));
    assert_eq!(rows.trim(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_verifies_every_node_s_tokens_and_sees_a_rotation_made_on_another() {
    let cluster = Cluster::start(3);
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let agent = a.identity("release-bot");
    let (_, txn) = b.task(&agent, "release", &["ci"]).await;
    // One deployment identity: the same JWKS everywhere, and a transaction token from B is good
    // on A and C.
    let jwks: Vec<Value> = {
        let mut all = Vec::new();
        for node in [a, b, c] {
            all.push(serde_json::to_value(node.jwks().await).unwrap());
        }
        all
    };
    assert!(jwks.iter().all(|j| *j == jwks[0]), "{jwks:?}");
    let (status, body) = a.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let before = body["access_token"].as_str().unwrap().to_owned();
    c.verify_access_token_from(&before, "https://ci.example.com", PUBLIC_URL)
        .await;

    // A rotation through A: B and C publish the new key and sign with it within the bound.
    let (status, rotated) = a.admin("keys/rotate", json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, kid(&before));
    for node in [b, c] {
        wait_until("every node signs with the rotated key", || async {
            let (status, body) = node.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
            assert_eq!(status, 200, "{body}");
            kid(body["access_token"].as_str().unwrap()) == new_kid
        })
        .await;
    }
    let (_, body) = c.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    let after = body["access_token"].as_str().unwrap().to_owned();
    for node in [a, b] {
        node.verify_access_token_from(&after, "https://ci.example.com", PUBLIC_URL)
            .await;
        // The token signed before the rotation still verifies everywhere.
        node.verify_access_token_from(&before, "https://ci.example.com", PUBLIC_URL)
            .await;
    }
    // Both keys are in the database (sealed: `key_sealing`'s own tests show no clear text).
    let stored = psql(&format!(
        "SELECT count(*) FROM {}.signing_keys",
        cluster.schema.name
    ));
    assert_eq!(stored.trim(), "2");

    // A node given another key-encryption key cannot open them and does not start.
    let wrong = cluster.dir.path().join("wrong.hex");
    std::fs::write(&wrong, KEK.replace('5', "6")).unwrap();
    let output = Command::new(crate::harness::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(cluster.data())
        .args(["--store", &cluster.schema.url(None)])
        .env("HANDOFF_KEY_ENCRYPTION_KEY_FILE", &wrong)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot be opened with this key-encryption key"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_under_load_loses_no_acknowledged_token_and_the_others_keep_serving() {
    let mut cluster = Cluster::start(3);
    let agent = cluster.nodes[0].identity("release-bot");
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(tokio::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for i in 0..6 {
        let (_, txn) = cluster.node_at(i).task(&agent, "release", &["ci"]).await;
        let exchangers: Vec<Exchanger> = (0..3)
            .map(|n| {
                cluster
                    .node_at(n)
                    .exchanger(&agent, &txn, "ci", "run_tests")
            })
            .collect();
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        clients.push(tokio::spawn(async move {
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // The killed node refuses connections; the client moves on to the next.
                let Ok((status, body)) = exchangers[n % 3].try_send().await else {
                    tokio::task::yield_now().await;
                    continue;
                };
                if status == 200 {
                    acknowledged.lock().await.push(token_id(&body));
                }
            }
        }));
    }
    wait_until("the nodes are under load", || async {
        acknowledged.lock().await.len() >= 60
    })
    .await;
    // SIGKILL: no drain, no flush.
    let killed = cluster.nodes.remove(1);
    killed.stop();
    let at_kill = acknowledged.lock().await.len();
    wait_until("the surviving nodes keep serving", || async {
        acknowledged.lock().await.len() >= at_kill + 60
    })
    .await;
    end_load_and_check_the_chain(&cluster, &stop, clients, &acknowledged).await;
}

/// Stops the load, joins its clients, and checks the chain verifies and every acknowledged token
/// (by `jti`) has its record: nothing was handed out that the store does not hold.
async fn end_load_and_check_the_chain(
    cluster: &Cluster,
    stop: &AtomicBool,
    clients: Vec<tokio::task::JoinHandle<()>>,
    acknowledged: &tokio::sync::Mutex<Vec<String>>,
) {
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let report = cluster.verify();
    assert!(report.contains("audit chain intact"), "{report}");
    let recorded = cluster.schema.recorded_jtis();
    let acknowledged = acknowledged.lock().await;
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|jti| !recorded.contains(*jti))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged tokens have no record: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
}

/// The `jti` of the access token an exchange answered with.
fn token_id(body: &Value) -> String {
    claims(body["access_token"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A TCP proxy in front of PostgreSQL that a test can cut (every connection dropped, new ones
/// closed at once) and restore.
struct Proxy {
    address: String,
    open: Arc<AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let open = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (gate, held) = (open.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !gate.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                held.lock().unwrap().push(task.abort_handle());
            }
        });
        Self {
            address,
            open,
            connections,
        }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// PostgreSQL's `host:port` in the test URL.
fn upstream() -> String {
    let url = base_url();
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split(['/', '?']).next().unwrap();
    authority.rsplit('@').next().unwrap().to_owned()
}

async fn ready(node: &Server) -> u16 {
    node.client
        .get(format!("{}/readyz", node.base))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_fails_closed_and_the_node_recovers_without_a_restart() {
    let mut cluster = Cluster::start(1);
    let proxy = Proxy::start(upstream()).await;
    let through = cluster.node(&cluster.data(), &cluster.schema.url(Some(&proxy.address)));
    cluster.nodes.push(through);
    let (direct, cut) = (&cluster.nodes[0], &cluster.nodes[1]);
    let agent = direct.identity("release-bot");
    let (_, txn) = direct.task(&agent, "release", &["ci"]).await;
    let (status, body) = cut.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ready(cut).await, 200);

    proxy.cut();
    for _ in 0..3 {
        let (status, body) = cut.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        assert!(body.get("access_token").is_none(), "{body}");
    }
    assert_eq!(ready(cut).await, 503);
    // The node that still reaches the database keeps serving.
    let (status, body) = direct.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");

    proxy.restore();
    wait_until("the cut node serves again by itself", || async {
        let (status, body) = cut.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
        assert!(status == 200 || status == 503, "{status} {body}");
        status == 200
    })
    .await;
    assert_eq!(ready(cut).await, 200);
    let report = cluster.verify();
    assert!(report.contains("audit chain intact"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_cut_mid_commit_leave_no_token_without_its_record_and_no_record_without_its_facts()
 {
    let mut cluster = Cluster::start(1);
    let proxy = Proxy::start(upstream()).await;
    let through = cluster.node(&cluster.data(), &cluster.schema.url(Some(&proxy.address)));
    cluster.nodes.push(through);
    let agent = cluster.nodes[0].identity("release-bot");
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(tokio::sync::Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (task, txn) = cluster.nodes[0].task(&agent, "release", &["ci"]).await;
        tasks.push(task);
        // Every exchange goes through the node whose connections get cut.
        let exchanger = cluster.nodes[1].exchanger(&agent, &txn, "ci", "run_tests");
        let (stop, acknowledged, refused) = (stop.clone(), acknowledged.clone(), refused.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = exchanger.send().await;
                match status {
                    200 => acknowledged.lock().await.push(token_id(&body)),
                    503 => {
                        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
                        assert!(body.get("access_token").is_none(), "{body}");
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("a cut connection gave {other}: {body}"),
                }
            }
        }));
    }
    wait_until("the node is under load", || async {
        acknowledged.lock().await.len() >= 40
    })
    .await;
    // Every connection to the database is cut with commits in flight, then comes back.
    proxy.cut();
    wait_until("the node refuses while cut off", || async {
        refused.load(Ordering::Relaxed) >= 8
    })
    .await;
    proxy.restore();
    let at_restore = acknowledged.lock().await.len();
    wait_until("the node serves again under load", || async {
        acknowledged.lock().await.len() >= at_restore + 40
    })
    .await;
    // No token handed out without its record.
    end_load_and_check_the_chain(&cluster, &stop, clients, &acknowledged).await;
    // No record without its facts: each task's facts count exactly its recorded grants.
    let schema = &cluster.schema.name;
    for task in &tasks {
        let granted: u64 = psql(&format!(
            "SELECT count(*) FROM {schema}.audit WHERE task = '{task}' \
             AND body LIKE '%\"kind\":\"exchange\"%' AND body LIKE '%\"outcome\":\"permit\"%'"
        ))
        .trim()
        .parse()
        .unwrap();
        let facts: Value = serde_json::from_str(
            psql(&format!(
                "SELECT facts FROM {schema}.tasks WHERE id = '{task}'"
            ))
            .trim(),
        )
        .unwrap();
        assert_eq!(facts["exchanges"], granted, "task {task}: {facts}");
    }
}

#[test]
fn check_reports_a_store_url_that_is_not_postgresql() {
    let dir = temp_dir();
    let config = crate::harness::example_config(dir.path(), |text| {
        format!("{text}\n[store]\nurl = \"mysql://db/handoff\"\n")
    });
    let output = cli(&["check", "--config", config.to_str().unwrap()]);
    assert!(!output.status.success());
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        said.contains("store.url must be a PostgreSQL URL"),
        "{said}"
    );
    // And `serve --store` refuses one before it starts.
    let output = Command::new(crate::harness::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--store", "db.internal"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--store must be a PostgreSQL URL"),
        "{}",
        stderr(&output)
    );
}

/// Polls `done` until it holds, failing after [`DEADLINE`].
async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = tokio::time::Instant::now();
    while !done().await {
        assert!(started.elapsed() < DEADLINE, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `handoff store copy` with the key-encryption key in the environment.
fn store_copy(from: &Path, to: &str, kek: &Path) -> std::process::Output {
    Command::new(crate::harness::binary())
        .args(["store", "copy", "--from"])
        .arg(from)
        .args(["--to", to])
        .env("HANDOFF_KEY_ENCRYPTION_KEY_FILE", kek)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `audit verify`'s summary line (`audit chain intact: N record(s), head H`).
fn chain_summary(args: &[&str]) -> String {
    let mut all = vec!["audit", "verify"];
    all.extend_from_slice(args);
    let output = cli(&all);
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output).lines().next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_copy_moves_a_sqlite_deployment_to_postgresql_with_its_chain_and_keys() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let kek = dir.path().join("kek.hex");
    std::fs::write(&kek, KEK).unwrap();
    let mut single = Server::start_logged(
        &data,
        None,
        &[],
        &["--public-url", PUBLIC_URL],
        Stdio::null(),
    );
    let agent = single.identity("release-bot");
    let (_, txn) = single.task(&agent, "release", &["ci"]).await;
    let (status, body) = single.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let before = body["access_token"].as_str().unwrap().to_owned();
    // A rotated key, a revoked task, a frozen system: all must move.
    let (status, _) = single.admin("keys/rotate", json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = single.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    let after = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(kid(&before), kid(&after));
    let (revoked, revoked_txn) = single.task(&agent, "release", &["ci"]).await;
    let (status, _) = single
        .admin(
            "revoke",
            json!({ "kind": "task", "id": revoked, "reason": "moved" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = single
        .admin("freeze", json!({ "system": "payments", "reason": "moved" }))
        .await;
    assert_eq!(status, 200);
    assert!(
        single.terminate(Duration::from_secs(20)).is_some(),
        "stopped"
    );
    let sqlite = chain_summary(&["--data-dir", data.to_str().unwrap()]);

    let schema = Schema::new();
    let output = store_copy(&data, &schema.url(None), &kek);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("2 signing key(s)"),
        "{}",
        stdout(&output)
    );
    // The same chain, to the same head, verifies in PostgreSQL (checkpoints included).
    let copied = chain_summary(&[
        "--store",
        &schema.url(None),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(copied, sqlite);
    // The served policy sets moved too: a decision made before the move replays on the copy.
    let url = schema.url(None);
    let store_args = [
        "--store",
        url.as_str(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let mut args = vec![
        "audit",
        "query",
        "--decision",
        "permit",
        "--system",
        "ci",
        "--json",
    ];
    args.extend(store_args);
    let permits = stdout(&cli(&args));
    let first: Value = serde_json::from_str(permits.lines().next().unwrap()).unwrap();
    let seq = first["seq"].as_u64().unwrap().to_string();
    let mut args = vec!["audit", "replay", seq.as_str()];
    args.extend(store_args);
    let replayed = cli(&args);
    assert!(
        replayed.status.success(),
        "{}{}",
        stdout(&replayed),
        stderr(&replayed)
    );
    // A second copy into a store that holds something is refused, and changes nothing.
    let again = store_copy(&data, &schema.url(None), &kek);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));

    // A node on the copy: tokens minted before the move verify on its JWKS, the old task token
    // still exchanges, the revocation and the freeze still hold, and the chain grows from there.
    let node = Server::start_logged(
        &data,
        None,
        &[("HANDOFF_KEY_ENCRYPTION_KEY_FILE", kek.to_str().unwrap())],
        &["--store", &schema.url(None), "--public-url", PUBLIC_URL],
        Stdio::null(),
    );
    for token in [&before, &after] {
        node.verify_access_token_from(token, "https://ci.example.com", PUBLIC_URL)
            .await;
    }
    let (status, body) = node.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(kid(body["access_token"].as_str().unwrap()), kid(&after));
    let (status, body) = node
        .exchange(&agent, &revoked_txn, "ci", "run_tests", &[])
        .await;
    assert_eq!(
        (status, &body["reason"]),
        (403, &json!("task_revoked")),
        "{body}"
    );
    let payer = node.identity("payments-agent");
    let (_, pay_txn) = node.task(&payer, "payments", &["payments"]).await;
    let (status, body) = node
        .exchange(&payer, &pay_txn, "payments", "read", &[])
        .await;
    assert_eq!(
        (status, &body["reason"]),
        (403, &json!("system_frozen")),
        "{body}"
    );
    drop(node);
    let grown = chain_summary(&[
        "--store",
        &schema.url(None),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(grown.starts_with("audit chain intact"), "{grown}");
}
