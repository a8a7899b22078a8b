//! Crash test: the real binary SIGKILLed at seeded-random moments, during its very first start
//! and under load from several exchanging clients, then started again on the same data
//! directory. After every restart the server starts, the audit chain verifies, every exchange
//! acknowledged with a 200 (and every task acknowledged with a 201) before the kill is in the
//! audit log, the served JWKS is the one from the first start (the keys survived) and no key file
//! is empty. `HANDOFF_CRASH_SEED=N` replays a run; the seed is printed and named on failure.

use crate::harness::{Exchanger, Server, binary, cli, stdout, temp_dir};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

const CLIENTS: usize = 4;
const ROUNDS: usize = 5;
const FIRST_START_KILLS: usize = 8;

/// xorshift64*: enough to place kills, and replayable from the seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn seed() -> u64 {
    std::env::var("HANDOFF_CRASH_SEED").map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |s| s.parse().expect("HANDOFF_CRASH_SEED is a number"),
    )
}

/// What the server acknowledged before it was killed: decision ids and token ids.
#[derive(Default)]
struct Acknowledged {
    decisions: Vec<String>,
    jtis: Vec<String>,
    /// Exchanges refused with 503 `temporarily_unavailable` (failing closed under contention).
    unavailable: usize,
}

fn jti(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// One client: exchanges until told to stop or the server goes away, keeping every 200.
async fn client(
    exchange: Exchanger,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Acknowledged>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok((status, body)) = exchange.try_send().await else {
            break;
        };
        let mut acknowledged = acknowledged.lock().await;
        if status == 503 && body["error"] == "temporarily_unavailable" {
            acknowledged.unavailable += 1;
            continue;
        }
        assert_eq!(status, 200, "an exchange under load: {body}");
        acknowledged
            .decisions
            .push(body["decision_id"].as_str().unwrap().to_owned());
        acknowledged
            .jtis
            .push(jti(body["access_token"].as_str().unwrap()));
    }
}

/// Every audit record's body, as one text to search.
fn audit_text(dir: &Path) -> String {
    let db = rusqlite::Connection::open(dir.join("handoff.db")).unwrap();
    let mut statement = db.prepare("SELECT body FROM audit ORDER BY seq").unwrap();
    let bodies: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    bodies.join("\n")
}

/// A temporary file a secret is written through (`.handoff-secret-*.tmp`), not a key.
fn is_temporary(name: &str) -> bool {
    name.starts_with(".handoff-secret-") && name.ends_with(".tmp")
}

/// No key in `keys/` is empty (a key cut short by the kill would stop every later start). A
/// kill mid-write may leave a temporary file behind (empty, or holding part of the secret):
/// those are never read, and `after_start` says the server has removed them when it started.
fn no_empty_key(dir: &Path, seed: u64, when: &str, after_start: bool) {
    let Ok(entries) = std::fs::read_dir(dir.join("keys")) else {
        return;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_temporary(&name) {
            assert!(
                !after_start,
                "seed {seed}, {when}: the leftover `keys/{name}` is still there after a start"
            );
            continue;
        }
        assert!(
            entry.metadata().unwrap().len() > 0,
            "seed {seed}, {when}: `keys/{name}` is empty after the crash"
        );
    }
}

/// The invariants after a restart: chain, keys, and (given) what was acknowledged.
async fn check(server: &Server, jwks: &Value, acknowledged: &Acknowledged, seed: u64, when: &str) {
    let dir = server.data_dir.as_path();
    let output = cli(&["audit", "verify", "--data-dir", dir.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "seed {seed}, {when}: the chain does not verify: {}",
        stdout(&output)
    );
    let served = serde_json::to_value(server.jwks().await).unwrap();
    assert_eq!(
        &served, jwks,
        "seed {seed}, {when}: the signing keys changed across the crash"
    );
    no_empty_key(dir, seed, when, true);
    let log = audit_text(dir);
    let lost: Vec<&String> = acknowledged
        .decisions
        .iter()
        .chain(&acknowledged.jtis)
        .filter(|id| !log.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "seed {seed}, {when}: {} acknowledged id(s) of {} are not in the audit log: {lost:?}",
        lost.len(),
        acknowledged.decisions.len() + acknowledged.jtis.len()
    );
}

/// How long a first start takes here, to the listening line, so the kills can land anywhere in it
/// (key generation, migrations, the listener) on a machine of any speed.
fn first_start_millis() -> u64 {
    let scratch = temp_dir();
    let started = std::time::Instant::now();
    let mut child = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(scratch.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let elapsed = started.elapsed().as_millis() as u64;
    child.kill().unwrap();
    child.wait().unwrap();
    elapsed.max(1)
}

/// Starts `handoff serve` on `dir` and SIGKILLs it `after` into its start, ready or not.
fn kill_during_start(dir: &Path, after: Duration) {
    let mut child = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Not waiting for anything: this is the moment of the crash.
    std::thread::sleep(after);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn sigkill_at_random_moments_loses_no_acknowledged_token_and_no_key() {
    let seed = seed();
    eprintln!("crash test seed {seed} (replay: HANDOFF_CRASH_SEED={seed})");
    let mut rng = Rng::new(seed);
    let dir = temp_dir();

    // Killed again and again during its very first start, on a fresh data directory.
    let start_ms = first_start_millis();
    eprintln!("a first start takes {start_ms} ms here");
    for _ in 0..FIRST_START_KILLS {
        kill_during_start(dir.path(), Duration::from_millis(rng.between(0, start_ms)));
    }
    no_empty_key(
        dir.path(),
        seed,
        "after the first-start kills, before starting",
        false,
    );
    let server = Server::start(dir.path());
    let jwks = serde_json::to_value(server.jwks().await).unwrap();
    let mut acknowledged = Acknowledged::default();
    check(
        &server,
        &jwks,
        &acknowledged,
        seed,
        "after the first-start kills",
    )
    .await;

    let mut server = Some(server);
    for round in 1..=ROUNDS {
        let running = server.take().unwrap();
        let identity = running.identity("release-agent");
        let (status, opened) = running
            .open_task(
                &identity,
                serde_json::json!({ "intent": "crash", "purpose": "release", "user": "alice", "plan": ["ci"] }),
            )
            .await;
        assert_eq!(status, 201, "seed {seed}, round {round}: {opened}");
        let txn = opened["txn_token"].as_str().unwrap().to_owned();
        let shared = Arc::new(Mutex::new(Acknowledged::default()));
        shared
            .lock()
            .await
            .decisions
            .push(opened["decision_id"].as_str().unwrap().to_owned());
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                tokio::spawn(client(
                    running.exchanger(&identity, &txn, "ci", "run_tests"),
                    stop.clone(),
                    shared.clone(),
                ))
            })
            .collect();
        // The crash: somewhere in the middle of the load.
        tokio::time::sleep(Duration::from_millis(rng.between(50, 400))).await;
        running.stop();
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.await.unwrap();
        }
        let mut round_acks = std::mem::take(&mut *shared.lock().await);
        eprintln!(
            "round {round}: {} exchange(s) acknowledged before the kill, {} refused with 503",
            round_acks.jtis.len(),
            round_acks.unavailable
        );
        acknowledged.decisions.append(&mut round_acks.decisions);
        acknowledged.jtis.append(&mut round_acks.jtis);

        // Some rounds also crash the restart itself before it is let up.
        if rng.between(0, 1) == 1 {
            kill_during_start(dir.path(), Duration::from_millis(rng.between(0, start_ms)));
        }
        no_empty_key(
            dir.path(),
            seed,
            &format!("after round {round}, before starting"),
            false,
        );
        let restarted = Server::start(dir.path());
        check(
            &restarted,
            &jwks,
            &acknowledged,
            seed,
            &format!("after round {round}"),
        )
        .await;
        server = Some(restarted);
    }
    assert!(
        acknowledged.jtis.len() >= ROUNDS,
        "seed {seed}: too few exchanges were acknowledged to prove anything"
    );
}
