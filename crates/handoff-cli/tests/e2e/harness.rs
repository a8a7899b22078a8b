//! Starting the binary, issuing identities and calling the token endpoint.

use crate::bounded;
use handoff_core::clock::FakeClock;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const TRUST_DOMAIN: &str = "https://handoff.local";
pub const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const TXN: &str = "urn:ietf:params:oauth:token-type:txn_token";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_handoff")
}

/// Runs `handoff ARGS...` to completion; a call that hangs fails after `CLI_TIMEOUT`.
pub fn cli(args: &[&str]) -> Output {
    let mut command = Command::new(binary());
    command.args(args);
    bounded::output(command, bounded::CLI_TIMEOUT).unwrap_or_else(|hung| panic!("{hung}"))
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A running `handoff serve` on an ephemeral loopback port; killed on drop. Or, from
/// [`Server::in_process`], the same router served by this test process on a fake clock.
pub struct Server {
    child: Option<Child>,
    in_process: Option<InProcess>,
    pub base: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
}

/// A server running in this process: its clock, and the switch that stops it.
struct InProcess {
    clock: FakeClock,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, None)
    }

    pub fn start_with(data_dir: &Path, config: Option<&Path>) -> Self {
        Self::start_env(data_dir, config, &[])
    }

    pub fn start_env(data_dir: &Path, config: Option<&Path>, env: &[(&str, &str)]) -> Self {
        Self::start_logged(data_dir, config, env, &[], Stdio::null())
    }

    /// `handoff serve --listen LISTEN`, for a test that must know its address before it starts.
    pub fn start_listen(
        data_dir: &Path,
        config: Option<&Path>,
        env: &[(&str, &str)],
        listen: &str,
    ) -> Self {
        Self::start_full(data_dir, config, env, listen, &[], Stdio::null())
    }

    /// [`Server::start_env`] with more `serve` arguments and its log (stderr) sent to `log`.
    pub fn start_logged(
        data_dir: &Path,
        config: Option<&Path>,
        env: &[(&str, &str)],
        args: &[&str],
        log: Stdio,
    ) -> Self {
        Self::start_full(data_dir, config, env, "127.0.0.1:0", args, log)
    }

    fn start_full(
        data_dir: &Path,
        config: Option<&Path>,
        env: &[(&str, &str)],
        listen: &str,
        args: &[&str],
        log: Stdio,
    ) -> Self {
        let mut command = Command::new(binary());
        command.envs(env.iter().copied());
        command
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(args);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("handoff serve starts");
        // Bounded: a server that never prints its address fails the test; stdout keeps draining.
        let first = bounded::first_line(&mut child, bounded::START_TIMEOUT)
            .unwrap_or_else(|hung| panic!("handoff serve: {hung}"));
        let base = first
            .trim()
            .strip_prefix("handoff listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
            .to_owned();
        Self {
            child: Some(child),
            in_process: None,
            base,
            data_dir: data_dir.to_path_buf(),
            client: client(),
        }
    }

    /// Serves what `handoff serve --data-dir DIR [--config FILE]` serves (the cli library's
    /// `build_with_clock` and `serve_on`), on a loopback port, on its own runtime thread, with a
    /// fake clock that starts at the wall clock's now and moves only with [`Server::advance`].
    /// Real HTTP, the real data directory (the CLI's commands work against it), no process.
    pub fn in_process(data_dir: &Path, config: Option<&Path>) -> Self {
        let clock = FakeClock::starting_now();
        let mut deployment = handoff_cli::deployment::load(config).expect("the deployment loads");
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let dir = data_dir.to_path_buf();
        let service_clock = clock.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let data = handoff_cli::data_dir::DataDir::open(&dir).expect("the data directory");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let address = listener.local_addr().unwrap();
                handoff_cli::commands::serve::apply_serve_flags(
                    &mut deployment.config,
                    None,
                    None,
                    address,
                )
                .expect("the public URL");
                let handoff = handoff_cli::commands::serve::build_with_clock(
                    deployment,
                    &data,
                    true,
                    std::sync::Arc::new(service_clock),
                )
                .expect("the service builds");
                address_tx.send(address).unwrap();
                handoff_cli::commands::serve::serve_on(listener, handoff, async {
                    let _ = stopped.await;
                })
                .await
                .expect("the server runs");
            });
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        });
        let address = address_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the in-process server binds");
        Self {
            child: None,
            in_process: Some(InProcess {
                clock,
                stop: Some(stop),
            }),
            base: format!("http://{address}"),
            data_dir: data_dir.to_path_buf(),
            client: client(),
        }
    }

    /// Moves an in-process server's clock forward: what would expire in `by` has expired.
    pub fn advance(&self, by: std::time::Duration) {
        self.in_process
            .as_ref()
            .expect("only an in-process server has a fake clock")
            .clock
            .advance(by);
    }

    /// A development approver token for `user` in `groups`.
    pub fn approver(&self, user: &str, groups: &[&str]) -> String {
        let mut args = vec![
            "approver",
            "issue",
            "--user",
            user,
            "--data-dir",
            self.data_dir.to_str().unwrap(),
        ];
        for group in groups {
            args.extend(["--group", group]);
        }
        let output = cli(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output).trim().to_owned()
    }

    /// Calls the approvals API as `token`.
    pub async fn approvals(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}/v1/approvals{path}", self.base);
        let request = match method {
            "GET" => self.client.get(url),
            _ => self.client.post(url).json(&body.unwrap_or(Value::Null)),
        };
        let response = request.bearer_auth(token).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Registers an introspection credential for `system` through the CLI.
    pub fn system_secret(&self, system: &str) -> String {
        let output = cli(&[
            "credentials",
            "issue",
            "--system",
            system,
            "--data-dir",
            self.data_dir.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output).trim().to_owned()
    }

    /// The operator credential the server created in its data directory.
    pub fn operator_secret(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("keys/operator-secret"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// RFC 7662 introspection as `system`.
    pub async fn introspect(&self, system: &str, secret: &str, token: &str) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/oauth/introspect", self.base))
            .basic_auth(system, Some(secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// An operator call to the admin API.
    pub async fn admin(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/v1/admin/{path}", self.base))
            .bearer_auth(self.operator_secret())
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// The `handoff serve` process id (to signal it); none for an in-process server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(mut self) {
        self.halt();
    }

    /// Sends SIGTERM to the served process and waits at most `bound` for it to exit: its exit
    /// status, or `None` if it was still running then (it is killed).
    pub fn terminate(&mut self, bound: std::time::Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut().expect("a served process");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM was delivered");
        let started = std::time::Instant::now();
        while started.elapsed() < bound {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    fn halt(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(stop) = self.in_process.as_mut().and_then(|p| p.stop.take()) {
            let _ = stop.send(());
        }
    }

    /// A development identity for `agent` from this server's data directory.
    pub fn identity(&self, agent: &str) -> String {
        let output = cli(&[
            "identity",
            "issue",
            "--agent",
            agent,
            "--data-dir",
            self.data_dir.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output).trim().to_owned()
    }

    /// The dev issuer's private key, for crafting identities the CLI would never issue.
    pub fn dev_issuer_key(&self) -> EncodingKey {
        let der = std::fs::read(self.data_dir.join("keys/dev-issuer-ES256.p8")).unwrap();
        EncodingKey::from_ec_der(&der)
    }

    pub fn dev_issuer_kid(&self) -> String {
        let token = self.identity("kid-probe");
        decode_header(&token).unwrap().kid.unwrap()
    }

    pub async fn open_task(&self, identity: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/v1/tasks", self.base))
            .bearer_auth(identity)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Opens a task and returns its (id, transaction token).
    pub async fn task(&self, identity: &str, purpose: &str, plan: &[&str]) -> (String, String) {
        let (status, body) = self
            .open_task(identity, json!({ "intent": format!("test a {purpose} task"), "purpose": purpose, "user": "alice", "plan": plan }))
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["task_id"].as_str().unwrap().to_owned(),
            body["txn_token"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn token_form(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/oauth/token", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// An RFC 8693 exchange for `scope` on `audience`, with extra form fields.
    pub async fn exchange(
        &self,
        identity: &str,
        txn: &str,
        audience: &str,
        scope: &str,
        extra: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut form = exchange_form(identity, txn, audience, scope);
        form.extend_from_slice(extra);
        self.token_form(&form).await
    }

    /// The same exchange, owned, so concurrent tasks can each send it.
    pub fn exchanger(&self, identity: &str, txn: &str, audience: &str, scope: &str) -> Exchanger {
        Exchanger {
            client: self.client.clone(),
            url: format!("{}/oauth/token", self.base),
            fields: [identity, txn, audience, scope].map(str::to_owned),
        }
    }

    pub async fn jwks(&self) -> JwkSet {
        self.client
            .get(format!("{}/.well-known/jwks.json", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Verifies an access token as a resource server would: JWKS, `typ`, issuer, one audience.
    pub async fn verify_access_token(&self, token: &str, audience: &str) -> Value {
        self.verify_access_token_from(token, audience, &self.base)
            .await
    }

    /// [`Server::verify_access_token`] for a token whose issuer is `issuer` (a public URL).
    pub async fn verify_access_token_from(
        &self,
        token: &str,
        audience: &str,
        issuer: &str,
    ) -> Value {
        let header = decode_header(token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let jwks = self.jwks().await;
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("the kid is in the JWKS");
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[audience]);
        // Handoff's issuer is the origin it is served at.
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        decode::<Value>(token, &key, &validation)
            .expect("the token verifies")
            .claims
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Signs `claims` with `key` as an ES256 JWT with the given header fields.
pub fn sign(key: &EncodingKey, kid: Option<&str>, typ: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    header.typ = typ.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The bundled example config's text, its relative paths made absolute so it works from any folder.
pub fn example_text() -> String {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    std::fs::read_to_string(example.join("handoff.toml"))
        .unwrap()
        .replace(
            "policies = \"policies\"",
            &format!("policies = \"{}\"", example.join("policies").display()),
        )
        .replace(
            "jwks_file = \"evidence/",
            &format!("jwks_file = \"{}/", example.join("evidence").display()),
        )
}

/// A copy of the bundled example config in `dir`, changed by `tweak`, using the example's policies.
pub fn example_config(dir: &Path, tweak: impl Fn(String) -> String) -> PathBuf {
    let path = dir.join("handoff.toml");
    std::fs::write(&path, tweak(example_text())).unwrap();
    path
}

/// A webhook receiver on a loopback port; returns its URL and what it received.
pub async fn webhook_receiver() -> (String, std::sync::Arc<tokio::sync::Mutex<Vec<Value>>>) {
    use axum::routing::post;
    let received = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<Value>::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: String| {
            let sink = sink.clone();
            async move {
                sink.lock().await.push(serde_json::from_str(&body).unwrap());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// Waits until `received` holds a notice with `reason`, or fails after 10 seconds.
pub async fn wait_for_notice(received: &tokio::sync::Mutex<Vec<Value>>, reason: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(found) = received.lock().await.iter().find(|n| n["reason"] == reason) {
            return found.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `{reason}` notice arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until `handoff trace TASK` shows every one of `needles` (records written in the
/// background, such as webhook deliveries), or fails after 10 seconds.
pub async fn wait_for_trace(server: &Server, task: &str, needles: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let output = cli(&[
            "trace",
            task,
            "--data-dir",
            server.data_dir.to_str().unwrap(),
        ]);
        let trace = stdout(&output);
        if needles.iter().all(|n| trace.contains(n)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the trace never showed {needles:?}: {trace}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The example CI's dev-only evidence signing key.
pub fn ci_evidence_key() -> EncodingKey {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/quickstart/evidence/ci-dev-signing-key.pem");
    EncodingKey::from_ec_pem(&std::fs::read(path).unwrap()).unwrap()
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The tests' HTTP client. The server closes a keep-alive connection idle for
/// `header_read_timeout` (10 s by default); a pooled connection reused at that moment fails with
/// an incomplete message, so pooled connections are dropped well before (as docs/security.md
/// advises every client).
/// Every record of the log as (seq, at in ms, event), from `handoff audit export`.
pub fn whole_log(server: &Server) -> Vec<(u64, i64, Value)> {
    let output = cli(&[
        "audit",
        "export",
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            let body: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
            (
                record["seq"].as_u64().unwrap(),
                record["at"].as_i64().unwrap(),
                body["event"].clone(),
            )
        })
        .collect()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(4))
        // No request of the suite waits this long; a server that stops answering fails the test.
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

/// The form of an RFC 8693 exchange: `identity` as actor, `txn` as subject.
pub fn exchange_form<'a>(
    identity: &'a str,
    txn: &'a str,
    audience: &'a str,
    scope: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", EXCHANGE),
        ("subject_token", txn),
        ("subject_token_type", TXN),
        ("actor_token", identity),
        ("actor_token_type", JWT),
        ("audience", audience),
        ("scope", scope),
    ]
}

/// One exchange request that can be sent again and again, from any task.
#[derive(Clone)]
pub struct Exchanger {
    client: reqwest::Client,
    url: String,
    /// identity, txn, audience, scope
    fields: [String; 4],
}

impl Exchanger {
    /// Sends it; `Err` when the server cannot be reached or stops mid-answer.
    pub async fn try_send(&self) -> Result<(u16, Value), reqwest::Error> {
        let [identity, txn, audience, scope] = &self.fields;
        let response = self
            .client
            .post(&self.url)
            .form(&exchange_form(identity, txn, audience, scope))
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    pub async fn send(&self) -> (u16, Value) {
        self.try_send().await.expect("the server answers")
    }
}

/// The Python the tests run (`HANDOFF_TEST_PYTHON`, else scripts/test's venv) if it can
/// `import MODULES`, or `None` after saying why `what` is skipped. With
/// `HANDOFF_TEST_REQUIRE_PYTHON=1` (scripts/test) a missing one fails the test instead.
pub fn python_with(modules: &str, needs: &str, what: &str) -> Option<PathBuf> {
    let candidate = std::env::var_os("HANDOFF_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/mcp-venv/bin/python")
        });
    let mut probe = Command::new(&candidate);
    probe.args(["-c", &format!("import {modules}")]);
    let works = candidate.exists()
        && bounded::output(probe, bounded::CLI_TIMEOUT).is_ok_and(|o| o.status.success());
    if works {
        return Some(candidate);
    }
    let why = format!(
        "no Python with {needs} at {}: run scripts/test (or set HANDOFF_TEST_PYTHON)",
        candidate.display()
    );
    assert!(
        std::env::var("HANDOFF_TEST_REQUIRE_PYTHON").as_deref() != Ok("1"),
        "{why}"
    );
    eprintln!("skipping {what}: {why}");
    None
}
