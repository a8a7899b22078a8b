//! The kit behind every server test: the bundled example over a scratch store, and requests.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use handoff_core::testing::Kit;
use http_body_util::BodyExt as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use std::path::Path;
use tower::ServiceExt as _;

pub const TRUST_DOMAIN: &str = "https://handoff.local";
pub const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const TXN: &str = "urn:ietf:params:oauth:token-type:txn_token";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// A payment above what an agent may make alone: it waits for a payments owner.
pub const LARGE: &str =
    r#"[{"type":"payments","amount":250000,"currency":"EUR","creditor":"ACME GmbH"}]"#;

/// The files of `examples/quickstart`, as (path relative to the example, text).
pub fn example_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    let mut files = vec![
        (
            "handoff.toml".to_owned(),
            std::fs::read_to_string(root.join("handoff.toml")).unwrap(),
        ),
        (
            "evidence/ci-jwks.json".to_owned(),
            std::fs::read_to_string(root.join("evidence/ci-jwks.json")).unwrap(),
        ),
    ];
    for entry in std::fs::read_dir(root.join("policies")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.push((
            format!("policies/{name}"),
            std::fs::read_to_string(&path).unwrap(),
        ));
    }
    files
}

/// One answer: status, headers and the JSON body (`Null` when empty or not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> (u16, &str) {
        (
            self.status.as_u16(),
            self.body["error"].as_str().unwrap_or(""),
        )
    }
}

/// The example deployment served by `app` over a kit.
pub struct Harness {
    pub kit: Kit,
    pub app: Router,
}

impl Harness {
    pub fn example() -> Self {
        Self::example_with(|config| config)
    }

    /// The example with its `handoff.toml` changed by `tweak`.
    pub fn example_with(tweak: impl Fn(String) -> String) -> Self {
        let files = example_files();
        let config = tweak(files[0].1.clone());
        let rest: Vec<(&str, &str)> = files[1..]
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let kit = handoff_store_sqlite::testing::scratch_kit(&config, &rest).unwrap();
        let app = handoff_server::app(kit.handoff.clone());
        Self { kit, app }
    }

    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Answer {
        let mut request = Request::get(path);
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    pub async fn json(&self, path: &str, bearer: Option<&str>, body: Value) -> Answer {
        let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(request.body(Body::from(body.to_string())).unwrap())
            .await
    }

    pub async fn form(
        &self,
        path: &str,
        authorization: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Answer {
        let body = fields
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, NON_ALPHANUMERIC),
                    utf8_percent_encode(v, NON_ALPHANUMERIC)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let mut request =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    pub fn identity(&self, agent: &str) -> String {
        self.kit.identity(agent).unwrap()
    }

    pub fn operator(&self) -> String {
        self.kit.operator_secret().to_owned()
    }

    /// Opens a task through `POST /v1/tasks`.
    pub async fn open_task(&self, identity: &str, body: Value) -> Answer {
        self.json("/v1/tasks", Some(identity), body).await
    }

    /// Opens a task for `purpose` and returns its (id, transaction token).
    pub async fn task(&self, identity: &str, purpose: &str, plan: &[&str]) -> (String, String) {
        let answer = self
            .open_task(
                identity,
                json!({ "intent": format!("test a {purpose} task"), "purpose": purpose, "user": "alice", "plan": plan }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        (
            answer.body["task_id"].as_str().unwrap().to_owned(),
            answer.body["txn_token"].as_str().unwrap().to_owned(),
        )
    }

    /// An RFC 8693 exchange of `txn` (as `identity`) for `scope` on `audience`.
    pub async fn exchange(
        &self,
        identity: &str,
        txn: &str,
        audience: &str,
        scope: &str,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut form = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", txn),
            ("subject_token_type", TXN),
            ("actor_token", identity),
            ("actor_token_type", JWT),
            ("audience", audience),
            ("scope", scope),
        ];
        form.extend_from_slice(extra);
        self.form("/oauth/token", None, &form).await
    }

    /// Registers `system`'s introspection credential and returns its Basic header value.
    pub async fn system_basic(&self, system: &str) -> String {
        use base64::Engine as _;
        let answer = self
            .json(
                "/v1/admin/credentials",
                Some(&self.operator()),
                json!({ "system": system }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let secret = answer.body["client_secret"].as_str().unwrap();
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{system}:{secret}"))
        )
    }

    /// Verifies an access token as a resource server would, against the served JWKS, at the
    /// kit's (fake) time.
    pub async fn verify_access_token(&self, token: &str, audience: &str) -> Value {
        let header = decode_header(token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let jwks: JwkSet =
            serde_json::from_value(self.get("/.well-known/jwks.json", None).await.body).unwrap();
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[TRUST_DOMAIN]);
        // The token's times are the fake clock's: check them here, against it.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = decode::<Value>(token, &key, &validation).unwrap().claims;
        let now = self.kit.handoff.now().seconds();
        assert!(claims["exp"].as_i64().unwrap() > now, "{claims}");
        claims
    }

    /// How many records the audit chain holds (read past the kit's switch).
    pub async fn records(&self) -> usize {
        self.kit
            .store
            .inner()
            .audit_page(0, 100_000)
            .await
            .unwrap()
            .len()
    }
}
