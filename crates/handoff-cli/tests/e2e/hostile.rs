//! The hostile corpus (`tests/hostile/*.json`, one file per attack class) run against the real
//! binary over HTTP: every case must get its expected 4xx with its stable `error` code, never a
//! 5xx, never a token. Tokens are built here at run time from the case's mutation (fresh times,
//! the server's own dev issuer and keys, a real task), so the files only describe the attack.
//! After each class the server still answers, the unmutated controls still pass and the audit
//! chain verifies.

use crate::gateway::{GIT_SECRET, PAYMENTS_KEY, upstream};
use crate::harness::{
    EXCHANGE, JWT, Server, TRUST_DOMAIN, TXN, ci_evidence_key, cli, example_config, now, stdout,
    temp_dir,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One attack class: a file of `tests/hostile/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Class {
    class: String,
    description: String,
    /// The answer each door must give a token of each base, unless a case says otherwise.
    #[serde(default)]
    expect: BTreeMap<String, Vec<Door>>,
    cases: Vec<Case>,
}

/// One case: a mutated token presented at one or more doors, an HTTP request built from a
/// template, or raw bytes written to a socket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// A token mutation, presented at every door in `at`, else at every door the class
    /// expects for its base.
    token: Option<Mutation>,
    /// The same mutation applied to each of these bases in turn (instead of `token.base`).
    #[serde(default)]
    bases: Vec<String>,
    #[serde(default)]
    at: Vec<Door>,
    /// An HTTP request from a template.
    request: Option<Request>,
    /// Bytes written as they are to a fresh connection.
    raw: Option<Raw>,
    /// The answer to `request` or `raw`.
    status: Option<u16>,
    error: Option<String>,
    /// For `raw`: the connection is closed without any answer (or with `status`, if given).
    #[serde(default)]
    closed: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Door {
    door: String,
    status: u16,
    error: String,
}

/// How to build a hostile token from one of the server's own kinds of token.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mutation {
    /// `identity`, `approver`, `txn`, `access` or `evidence` (or see [`Case::bases`]).
    #[serde(default)]
    base: String,
    /// Merged over the base header; `null` removes a parameter. `"$attacker_jwk"` is the
    /// attacker's public key as a JWK, `"$kid"` the base's own `kid`.
    #[serde(default)]
    header: Map<String, Value>,
    /// Merged over the base claims; `null` removes a claim.
    #[serde(default)]
    claims: Map<String, Value>,
    /// Claims whose value is written as this JSON text (numbers no parser keeps, `1e400`).
    #[serde(default)]
    raw_claims: BTreeMap<String, String>,
    /// Members appended after the claims, so these names appear twice.
    #[serde(default)]
    duplicate_claims: Map<String, Value>,
    /// The header's JSON text as written, replacing the built one.
    raw_header: Option<String>,
    /// `issuer` (the base's own key, default), `attacker` (a fresh P-256 key), `hs256-public`
    /// (HMAC keyed with the issuer's public key: algorithm confusion), `hs256-empty`, `none`.
    #[serde(default)]
    signer: Option<String>,
    /// After signing: `strip` (empty signature), `drop` (two parts), `flip` (one byte changed),
    /// `extra-part` (a fourth part), `padded` (base64 `=` padding on every part), `tamper`
    /// (the payload changed after signing).
    signature: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    method: String,
    /// With placeholders (see [`expand`]).
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    /// The bytes to send at once, with placeholders.
    #[serde(default)]
    send: String,
    /// Then these, one byte every `dribble_ms` (a slow client).
    dribble: Option<String>,
    #[serde(default)]
    dribble_ms: u64,
    /// At most this many responses may come back on the connection (default 1): a second one
    /// means a smuggled request was served.
    max_responses: Option<usize>,
}

/// Everything a case may refer to: the server, real tokens of every kind and their keys.
struct World {
    server: Server,
    task: String,
    identity: String,
    txn: String,
    access: String,
    approver: String,
    system_secret: String,
    attacker: EncodingKey,
    attacker_jwk: Value,
    /// The served JWKS as text: the "secret" of an HS256 algorithm-confusion forgery.
    jwks_text: String,
    dev_kid: String,
    evidence_seq: std::sync::atomic::AtomicU32,
}

/// The example config with git behind the HTTP gateway, tickets behind the MCP gateway, and
/// short listener timeouts so the slow-client cases end quickly.
fn config(dir: &Path, upstream: &str) -> PathBuf {
    let extra = format!(
        r#"
[server]
header_read_timeout = "1s"
body_read_timeout = "1s"
max_header_bytes = 8192

[systems.git.gateway]
upstream = "{upstream}"
credential = {{ header = "authorization", prefix = "Bearer ", value_env = "GIT_UPSTREAM_TOKEN" }}

[[systems.git.gateway.routes]]
method = "GET"
path = "/repos/{{owner}}/{{repo}}"
action = "read"
resource = "repo:{{owner}}/{{repo}}"

[systems.tickets.gateway]
mcp = "{upstream}/mcp"

[[systems.tickets.gateway.tools]]
name = "close_ticket"
action = "close"
resource = "ticket:{{ticket}}"
"#
    );
    example_config(dir, |text| format!("{text}\n{extra}"))
}

impl World {
    async fn start(dir: &Path) -> Self {
        let (upstream_url, _seen) = upstream().await;
        let config = config(dir, &upstream_url);
        let mut server = Server::start_env(
            dir,
            Some(&config),
            &[
                ("GIT_UPSTREAM_TOKEN", GIT_SECRET),
                ("PAYMENTS_UPSTREAM_KEY", PAYMENTS_KEY),
            ],
        );
        // This server closes a connection idle for 1 s (`header_read_timeout`), sooner than the
        // shared client drops pooled ones: a case sent on a connection closing at that moment
        // fails with "error sending request". Each case gets a fresh connection instead.
        server.client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let identity = server.identity("release-agent");
        let (task, txn) = server.task(&identity, "release", &["ci", "git"]).await;
        let (status, body) = server
            .exchange(
                &identity,
                &txn,
                "git",
                "read",
                &[("resource", "repo:acme/app")],
            )
            .await;
        assert_eq!(status, 200, "the base access token: {body}");
        let access = body["access_token"].as_str().unwrap().to_owned();
        let approver = server.approver("bob", &["payments-owners"]);
        let jwks_text = server
            .client
            .get(format!("{}/.well-known/jwks.json", server.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let system_secret = server.system_secret("git");
        let dev_kid = server.dev_issuer_kid();
        let pair = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        let public = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pair.as_ref(),
        )
        .unwrap();
        let point = aws_lc_rs::signature::KeyPair::public_key(&public).as_ref();
        let attacker_jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": "attacker",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self {
            server,
            task,
            identity,
            txn,
            access,
            approver,
            system_secret,
            attacker: EncodingKey::from_ec_der(pair.as_ref()),
            attacker_jwk,
            evidence_seq: std::sync::atomic::AtomicU32::new(0),
            jwks_text,
            dev_kid,
        }
    }

    fn data_dir(&self) -> &Path {
        &self.server.data_dir
    }

    /// The base token of a kind: its header, its claims and the key it is signed with.
    fn base(&self, kind: &str) -> (Map<String, Value>, Map<String, Value>, EncodingKey) {
        let dev_kid = &self.dev_kid;
        let header = |typ: &str, kid: &str| {
            json!({ "alg": "ES256", "typ": typ, "kid": kid })
                .as_object()
                .unwrap()
                .clone()
        };
        let own = |token: &str| {
            let mut parts = token.split('.');
            let header: Map<String, Value> =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap())
                    .unwrap();
            let claims: Map<String, Value> =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap())
                    .unwrap();
            let der = std::fs::read(self.data_dir().join("keys/signing-ES256.p8")).unwrap();
            (header, claims, EncodingKey::from_ec_der(&der))
        };
        let dev_issuer = format!("{TRUST_DOMAIN}/dev-issuer");
        match kind {
            "identity" => (
                header("JWT", dev_kid),
                object(json!({
                    "iss": dev_issuer, "sub": "release-agent", "aud": TRUST_DOMAIN,
                    "iat": now(), "exp": now() + 600,
                })),
                self.server.dev_issuer_key(),
            ),
            "approver" => (
                header("JWT", dev_kid),
                object(json!({
                    "iss": dev_issuer, "sub": "bob", "aud": format!("{TRUST_DOMAIN}/approvals"),
                    "groups": ["payments-owners"], "iat": now(), "exp": now() + 600,
                })),
                self.server.dev_issuer_key(),
            ),
            "txn" => own(&self.txn),
            "access" => own(&self.access),
            "evidence" => {
                let n = self
                    .evidence_seq
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (
                    header("JWT", "ci-dev-1"),
                    object(json!({
                        "iss": "ci", "aud": TRUST_DOMAIN, "iat": now(),
                        "jti": format!("hostile-{n}-{}", now()), "task": self.task,
                        "kind": "tests_passed", "data": { "commit": "abc123" },
                    })),
                    ci_evidence_key(),
                )
            }
            other => panic!("unknown token base `{other}`"),
        }
    }

    fn build(&self, mutation: &Mutation) -> String {
        let (mut header, mut claims, key) = self.base(&mutation.base);
        let own_kid = header.get("kid").cloned().unwrap_or(Value::Null);
        for (name, value) in &mutation.header {
            let value = match value.as_str() {
                Some("$attacker_jwk") => self.attacker_jwk.clone(),
                Some("$kid") => own_kid.clone(),
                Some(text) => json!(String::from_utf8(self.expand(text, "")).unwrap()),
                None => value.clone(),
            };
            if value.is_null() {
                header.remove(name);
            } else {
                header.insert(name.clone(), value);
            }
        }
        for (name, value) in &mutation.claims {
            if value.is_null() {
                claims.remove(name);
            } else {
                claims.insert(name.clone(), value.clone());
            }
        }
        for name in mutation.raw_claims.keys() {
            claims.remove(name);
        }
        let mut payload = serde_json::to_string(&claims).unwrap();
        let mut extra = String::new();
        for (name, text) in &mutation.raw_claims {
            extra.push_str(&format!(",{}:{text}", json!(name)));
        }
        for (name, value) in &mutation.duplicate_claims {
            extra.push_str(&format!(",{}:{value}", json!(name)));
        }
        payload.insert_str(payload.len() - 1, &extra);
        let header_text = mutation.raw_header.as_ref().map_or_else(
            || serde_json::to_string(&header).unwrap(),
            |raw| raw.replace("$kid", own_kid.as_str().unwrap_or_default()),
        );
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header_text),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = match mutation.signer.as_deref().unwrap_or("issuer") {
            "issuer" => jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::ES256),
            "attacker" => {
                jsonwebtoken::crypto::sign(input.as_bytes(), &self.attacker, Algorithm::ES256)
            }
            "hs256-public" => jsonwebtoken::crypto::sign(
                input.as_bytes(),
                &EncodingKey::from_secret(self.jwks_text.as_bytes()),
                Algorithm::HS256,
            ),
            "hs256-empty" => jsonwebtoken::crypto::sign(
                input.as_bytes(),
                &EncodingKey::from_secret(b""),
                Algorithm::HS256,
            ),
            "none" => Ok(String::new()),
            other => panic!("unknown signer `{other}`"),
        }
        .unwrap();
        let token = format!("{input}.{signature}");
        match mutation.signature.as_deref() {
            None => token,
            Some("strip") => format!("{input}."),
            Some("drop") => input,
            Some("flip") => {
                let mut bytes = URL_SAFE_NO_PAD.decode(&signature).unwrap();
                bytes[0] ^= 0x01;
                format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))
            }
            Some("extra-part") => format!("{token}.{signature}"),
            Some("tamper") => {
                let (header_part, _) = input.split_once('.').unwrap();
                let mut changed = serde_json::to_string(&claims).unwrap();
                changed.insert(changed.len() - 1, ' ');
                format!(
                    "{header_part}.{}.{signature}",
                    URL_SAFE_NO_PAD.encode(changed)
                )
            }
            Some("padded") => token
                .split('.')
                .map(|part| {
                    let padding = (4 - part.len() % 4) % 4;
                    format!("{part}{}", "=".repeat(padding))
                })
                .collect::<Vec<_>>()
                .join("."),
            Some(other) => panic!("unknown signature change `{other}`"),
        }
    }

    /// Replaces `<<name>>` placeholders: `identity`, `txn`, `access`, `approver`, `operator`,
    /// `task`, `system_basic` (HTTP Basic for git), `hostile`, `EXCHANGE`, `TXN`, `JWT`,
    /// `repeat:N:TEXT` (TEXT N times) and `byte:HH` (one raw byte).
    fn expand(&self, template: &str, hostile: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find("<<") {
            out.extend_from_slice(&rest.as_bytes()[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find(">>")
                .unwrap_or_else(|| panic!("unclosed placeholder in {template:?}"));
            let name = &after[..end];
            rest = &after[end + 2..];
            let value: Vec<u8> = match name {
                "identity" => self.identity.clone().into_bytes(),
                "txn" => self.txn.clone().into_bytes(),
                "access" => self.access.clone().into_bytes(),
                "approver" => self.approver.clone().into_bytes(),
                "operator" => self.server.operator_secret().into_bytes(),
                "task" => self.task.clone().into_bytes(),
                "hostile" => hostile.as_bytes().to_vec(),
                "system_basic" => STANDARD
                    .encode(format!("git:{}", self.system_secret))
                    .into_bytes(),
                "EXCHANGE" => EXCHANGE.as_bytes().to_vec(),
                "TXN" => TXN.as_bytes().to_vec(),
                "JWT" => JWT.as_bytes().to_vec(),
                other => {
                    if let Some(hex) = other.strip_prefix("byte:") {
                        vec![u8::from_str_radix(hex, 16).unwrap()]
                    } else if let Some(spec) = other.strip_prefix("repeat:") {
                        let (count, text) = spec.split_once(':').unwrap();
                        text.repeat(count.parse().unwrap()).into_bytes()
                    } else {
                        panic!("unknown placeholder <<{other}>>")
                    }
                }
            };
            out.extend_from_slice(&value);
        }
        out.extend_from_slice(rest.as_bytes());
        out
    }

    /// The request a door makes with `token` in its hostile slot.
    fn door(&self, door: &str) -> Request {
        let form = "application/x-www-form-urlencoded".to_owned();
        let json_type = "application/json".to_owned();
        let bearer = |token: &str| format!("Bearer {token}");
        let (method, path, headers, body): (&str, String, Vec<(&str, String)>, String) = match door
        {
            "exchange.actor" => (
                "POST",
                "/oauth/token".into(),
                vec![("content-type", form)],
                "grant_type=<<EXCHANGE>>&subject_token=<<txn>>&subject_token_type=<<TXN>>\
                 &actor_token=<<hostile>>&actor_token_type=<<JWT>>&audience=ci&scope=run_tests"
                    .into(),
            ),
            "exchange.subject" => (
                "POST",
                "/oauth/token".into(),
                vec![("content-type", form)],
                "grant_type=<<EXCHANGE>>&subject_token=<<hostile>>&subject_token_type=<<TXN>>\
                 &actor_token=<<identity>>&actor_token_type=<<JWT>>&audience=ci&scope=run_tests"
                    .into(),
            ),
            "txn_grant" => (
                "POST",
                "/oauth/token".into(),
                vec![("content-type", form)],
                "grant_type=<<EXCHANGE>>&requested_token_type=<<TXN>>&subject_token=<<hostile>>\
                 &subject_token_type=<<JWT>>&scope=release&request_details=%7B%22intent%22%3A%22x\
                 %22%2C%22user%22%3A%22alice%22%2C%22plan%22%3A%5B%22ci%22%5D%7D"
                    .into(),
            ),
            "tasks" => (
                "POST",
                "/v1/tasks".into(),
                vec![
                    ("content-type", json_type),
                    ("authorization", bearer("<<hostile>>")),
                ],
                r#"{"intent":"x","purpose":"release","user":"alice","plan":["ci"]}"#.into(),
            ),
            "tasks.end" => (
                "POST",
                "/v1/tasks/<<task>>/end".into(),
                vec![("authorization", bearer("<<hostile>>"))],
                String::new(),
            ),
            "delegations.actor" => (
                "POST",
                "/v1/delegations".into(),
                vec![
                    ("content-type", json_type),
                    ("authorization", bearer("<<hostile>>")),
                ],
                r#"{"txn_token":"<<txn>>","delegate":"test-worker","scope":["ci:run_tests"]}"#
                    .into(),
            ),
            "delegations.subject" => (
                "POST",
                "/v1/delegations".into(),
                vec![
                    ("content-type", json_type),
                    ("authorization", bearer("<<identity>>")),
                ],
                r#"{"txn_token":"<<hostile>>","delegate":"test-worker","scope":["ci:run_tests"]}"#
                    .into(),
            ),
            "approvals" => (
                "GET",
                "/v1/approvals".into(),
                vec![("authorization", bearer("<<hostile>>"))],
                String::new(),
            ),
            "introspect" => (
                "POST",
                "/oauth/introspect".into(),
                vec![
                    ("content-type", form),
                    ("authorization", bearer("<<hostile>>")),
                ],
                "token=<<access>>".into(),
            ),
            "revoke" => (
                "POST",
                "/oauth/revoke".into(),
                vec![
                    ("content-type", form),
                    ("authorization", bearer("<<hostile>>")),
                ],
                "token=<<access>>".into(),
            ),
            "admin" => (
                "POST",
                "/v1/admin/freeze".into(),
                vec![
                    ("content-type", json_type),
                    ("authorization", bearer("<<hostile>>")),
                ],
                r#"{"system":"tickets","reason":"hostile corpus"}"#.into(),
            ),
            "evidence" => (
                "POST",
                "/v1/evidence".into(),
                vec![("content-type", "application/jwt".to_owned())],
                "<<hostile>>".into(),
            ),
            "gateway" => (
                "GET",
                "/gateway/git/repos/acme/app".into(),
                vec![("authorization", bearer("<<hostile>>"))],
                String::new(),
            ),
            "mcp" => (
                "POST",
                "/mcp".into(),
                vec![
                    ("content-type", json_type),
                    ("accept", "application/json, text/event-stream".to_owned()),
                    ("authorization", bearer("<<hostile>>")),
                ],
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.into(),
            ),
            other => panic!("unknown door `{other}`"),
        };
        Request {
            method: method.to_owned(),
            path,
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v))
                .collect(),
            body: Some(body),
        }
    }

    /// Sends `request`; a transport failure (the answer never read) is reported as its body.
    async fn send(&self, request: &Request, hostile: &str) -> (u16, String) {
        let path = String::from_utf8(self.expand(&request.path, hostile)).unwrap();
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
        let mut builder = self
            .server
            .client
            .request(method, format!("{}{path}", self.server.base));
        for (name, value) in &request.headers {
            builder = builder.header(name, self.expand(value, hostile));
        }
        if let Some(body) = &request.body {
            builder = builder.body(self.expand(body, hostile));
        }
        match builder.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(e) => (0, format!("no answer: {e}")),
        }
    }

    /// Writes `raw` to a fresh connection; returns everything that came back until the server
    /// closed it (or 10 s passed, which fails the case).
    async fn send_raw(&self, raw: &Raw) -> Result<Vec<u8>, String> {
        let mut stream = TcpStream::connect(self.server.base.trim_start_matches("http://"))
            .await
            .unwrap();
        // The server may answer and close before it has read everything.
        let _ = stream.write_all(&self.expand(&raw.send, "")).await;
        if let Some(dribble) = &raw.dribble {
            for byte in self.expand(dribble, "") {
                if stream.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(raw.dribble_ms)).await;
            }
        }
        let mut all = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        match read {
            Ok(()) => Ok(all),
            Err(_) => Err(format!(
                "the connection was still open after 10 s: {:?}",
                String::from_utf8_lossy(&all)
            )),
        }
    }
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

/// Names of fields that carry a credential: none may appear in any refusal.
const TOKEN_FIELDS: [&str; 4] = ["access_token", "txn_token", "token", "refresh_token"];

fn find_token_field(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => map.iter().find_map(|(name, value)| {
            if TOKEN_FIELDS.contains(&name.as_str()) {
                Some(name.clone())
            } else {
                find_token_field(value)
            }
        }),
        Value::Array(items) => items.iter().find_map(find_token_field),
        _ => None,
    }
}

/// Checks one answer; returns what is wrong with it.
fn judge(status: u16, body: &str, expected_status: u16, expected_error: &str) -> Option<String> {
    let mut wrong = Vec::new();
    if status >= 500 {
        wrong.push(format!("a {status}"));
    } else if !(400..500).contains(&status) {
        wrong.push(format!("not a refusal: {status}"));
    } else if status != expected_status {
        wrong.push(format!("status {status}, expected {expected_status}"));
    }
    match serde_json::from_str::<Value>(body) {
        Ok(json) => {
            if json["error"] != expected_error {
                wrong.push(format!(
                    "error {}, expected {expected_error:?}",
                    json["error"]
                ));
            }
            if let Some(field) = find_token_field(&json) {
                wrong.push(format!("the answer carries `{field}`"));
            }
        }
        Err(_) => wrong.push("the body is not JSON".to_owned()),
    }
    // A compact JWS (ours or the caller's) never comes back in a refusal.
    if body.contains("eyJ") {
        wrong.push("the body carries a JWT".to_owned());
    }
    (!wrong.is_empty()).then(|| format!("{}; body: {}", wrong.join(", "), truncate(body)))
}

fn truncate(text: &str) -> String {
    text.chars().take(300).collect()
}

/// Splits what came back on a connection into responses: (status, body) of each.
fn responses(bytes: &[u8]) -> Vec<(u16, String)> {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("HTTP/1.1 ") {
        rest = &rest[start..];
        let Some((head, after)) = rest.split_once("\r\n\r\n") else {
            found.push((parse_status(rest), String::new()));
            break;
        };
        let length = head
            .to_ascii_lowercase()
            .lines()
            .find_map(|l| {
                l.strip_prefix("content-length:")
                    .map(str::trim)
                    .map(str::to_owned)
            })
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
            .min(after.len());
        found.push((parse_status(head), after[..length].to_owned()));
        rest = &after[length..];
    }
    found
}

fn parse_status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

fn load(file: &str) -> Class {
    let path = corpus_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl World {
    /// Runs every case of `class`; returns the failures, each named `class/case @ door`.
    async fn run(&self, class: &Class) -> Vec<String> {
        let mut failures = Vec::new();
        for case in &class.cases {
            let name = format!("{}/{}", class.class, case.name);
            let kinds = [
                case.token.is_some(),
                case.request.is_some(),
                case.raw.is_some(),
            ];
            assert_eq!(
                kinds.iter().filter(|k| **k).count(),
                1,
                "{name}: a case is exactly one of token, request, raw"
            );
            if let Some(mutation) = &case.token {
                let bases = if case.bases.is_empty() {
                    vec![mutation.base.clone()]
                } else {
                    case.bases.clone()
                };
                for base in bases {
                    let doors = if case.at.is_empty() {
                        class.expect.get(&base).cloned().unwrap_or_default()
                    } else {
                        case.at.clone()
                    };
                    assert!(!doors.is_empty(), "{name}: no door for base `{base}`");
                    let mutation = Mutation {
                        base: base.clone(),
                        ..mutation.clone()
                    };
                    for door in doors {
                        let hostile = self.build(&mutation);
                        let (status, body) = self.send(&self.door(&door.door), &hostile).await;
                        if let Some(wrong) = judge(status, &body, door.status, &door.error) {
                            failures.push(format!("{name} ({base}) @ {}: {wrong}", door.door));
                        }
                    }
                }
            }
            if let Some(request) = &case.request {
                let (status, body) = self.send(request, "").await;
                let (expected, error) = expectation(&name, case);
                if let Some(wrong) = judge(status, &body, expected, &error) {
                    failures.push(format!("{name}: {wrong}"));
                }
            }
            if let Some(raw) = &case.raw {
                let answer = match self.send_raw(raw).await {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        failures.push(format!("{name}: {e}"));
                        continue;
                    }
                };
                let answers = responses(&answer);
                let max = raw.max_responses.unwrap_or(1);
                if answers.len() > max {
                    failures.push(format!(
                        "{name}: {} responses on one connection (a smuggled request was \
                         served): {:?}",
                        answers.len(),
                        truncate(&String::from_utf8_lossy(&answer))
                    ));
                    continue;
                }
                match (answers.first(), case.closed) {
                    (None, true) => {}
                    (None, false) => failures.push(format!(
                        "{name}: no response; got {:?}",
                        truncate(&String::from_utf8_lossy(&answer))
                    )),
                    (Some((status, body)), _) => {
                        if case.closed && case.status.is_none() {
                            failures.push(format!(
                                "{name}: expected the connection closed unanswered, got {status}"
                            ));
                            continue;
                        }
                        let (expected, error) = expectation(&name, case);
                        if let Some(wrong) = judge(*status, body, expected, &error) {
                            failures.push(format!("{name}: {wrong}"));
                        }
                    }
                }
            }
        }
        failures
    }

    /// The server still answers, the unmutated tokens still pass their doors (so the refusals
    /// were the mutations'), and the audit chain verifies.
    async fn still_sound(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let health = self
            .server
            .client
            .get(format!("{}/healthz", self.server.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if health != 200 {
            failures.push(format!("healthz answered {health}"));
        }
        let controls = [
            ("identity", "exchange.actor"),
            ("txn", "exchange.subject"),
            ("identity", "tasks"),
            ("identity", "delegations.actor"),
            ("txn", "delegations.subject"),
            ("approver", "approvals"),
            ("evidence", "evidence"),
            ("access", "gateway"),
            ("identity", "mcp"),
        ];
        for (base, door) in controls {
            let token = self.build(&Mutation {
                base: base.to_owned(),
                ..Mutation::default()
            });
            let (status, body) = self.send(&self.door(door), &token).await;
            if !(200..300).contains(&status) {
                failures.push(format!(
                    "control: an unmutated {base} at {door} got {status}: {}",
                    truncate(&body)
                ));
            }
        }
        let output = cli(&[
            "audit",
            "verify",
            "--data-dir",
            self.data_dir().to_str().unwrap(),
        ]);
        if !output.status.success() {
            failures.push(format!(
                "the audit chain does not verify: {}",
                stdout(&output)
            ));
        }
        failures
    }
}

fn expectation(name: &str, case: &Case) -> (u16, String) {
    (
        case.status
            .unwrap_or_else(|| panic!("{name}: the case names its status")),
        case.error
            .clone()
            .unwrap_or_else(|| panic!("{name}: the case names its error")),
    )
}

/// Runs one class file against a fresh server and fails naming every case that went wrong.
async fn run_class(file: &str) {
    let class = load(file);
    assert!(!class.description.is_empty(), "{file}: describe the class");
    let dir = temp_dir();
    let world = World::start(dir.path()).await;
    let mut failures = world.run(&class).await;
    failures.extend(world.still_sound().await);
    assert!(
        failures.is_empty(),
        "{} of {} case(s) of `{}` failed:\n  {}",
        failures.len(),
        class.cases.len(),
        class.class,
        failures.join("\n  ")
    );
}

/// Every class file, and the test that runs it.
macro_rules! classes {
    ($($test:ident => $file:literal),* $(,)?) => {
        const FILES: &[&str] = &[$($file),*];
        $(
            #[tokio::test]
            async fn $test() {
                run_class($file).await;
            }
        )*
    };
}

classes! {
    hostile_algorithm_confusion => "algorithm_confusion.json",
    hostile_key_headers => "key_headers.json",
    hostile_numeric_dates => "numeric_dates.json",
    hostile_token_type_confusion => "token_type_confusion.json",
    hostile_signature_stripping => "signature_stripping.json",
    hostile_duplicate_keys => "duplicate_keys.json",
    hostile_oversized_and_nested => "oversized_and_nested.json",
    hostile_invalid_utf8 => "invalid_utf8.json",
    hostile_repeated_parameters => "repeated_parameters.json",
    hostile_scope_and_audience_injection => "scope_and_audience_injection.json",
    hostile_request_smuggling => "request_smuggling.json",
    hostile_slow_clients => "slow_clients.json",
}

#[test]
fn every_hostile_file_is_run_by_a_test() {
    let mut on_disk: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FILES.iter().map(|f| (*f).to_owned()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "add the new file to `classes!` in hostile.rs"
    );
    for file in FILES {
        let class = load(file);
        assert_eq!(format!("{}.json", class.class), *file);
    }
}
