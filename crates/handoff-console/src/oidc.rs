//! Signing in through the organisation's OpenID Connect provider (`[console.oidc]`): the
//! authorization code flow with PKCE (S256), a `state` bound to the browser by a `SameSite=Lax`
//! cookie, and a `nonce` bound into the ID token. The ID token is verified against the
//! provider's JWKS (signature, issuer, audience = client id, expiry, nonce); its user and groups
//! claims become the person, who then has a session like a sign-in link's.
//!
//! Discovery (`<issuer>/.well-known/openid-configuration`) is read at each sign-in; its
//! `issuer` must be the configured one.

use crate::ConsoleState;
use crate::session::no_store;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use handoff_core::config::OidcSettings;
use handoff_core::identity::VerifiedPerson;
use handoff_core::time::{Timestamp, Ttl};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// The cookie binding a sign-in in progress to the browser that started it.
pub const STATE_COOKIE: &str = "handoff_console_oidc";
/// How long a started sign-in may take at the provider.
pub const PENDING_LIFETIME: Ttl = Ttl::from_seconds(600);
/// Each call to the provider must answer within this.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// ID token signature algorithms accepted (never `none`, never HMAC with a public client).
const ALGORITHMS: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A sign-in the provider has not answered yet.
#[derive(Clone, Debug)]
pub struct Pending {
    verifier: String,
    nonce: String,
    token_endpoint: String,
    jwks_uri: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Debug)]
struct Failure(String);

fn client() -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .timeout(PROVIDER_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Failure(format!("cannot build the HTTP client: {e}")))
}

async fn discover(settings: &OidcSettings) -> Result<Discovery, Failure> {
    let url = format!("{}/.well-known/openid-configuration", settings.issuer);
    let discovery: Discovery = client()?
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| Failure(format!("discovery at `{url}` failed: {e}")))?
        .json()
        .await
        .map_err(|e| Failure(format!("discovery at `{url}` is not usable: {e}")))?;
    if discovery.issuer.trim_end_matches('/') != settings.issuer {
        return Err(Failure(format!(
            "discovery names the issuer `{}`, not `{}`",
            discovery.issuer, settings.issuer
        )));
    }
    Ok(discovery)
}

fn callback_url(state: &ConsoleState) -> String {
    format!(
        "{}/console/oidc/callback",
        state.handoff().config().issuer().trim_end_matches('/')
    )
}

fn failed(why: &str) -> Response {
    tracing::warn!(why, "console OpenID Connect sign-in failed");
    no_store(
        (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, "/console/#sign-in-failed")],
        )
            .into_response(),
    )
}

/// `GET /console/oidc/start`: off to the provider, with PKCE, a state and a nonce.
pub async fn start(State(state): State<ConsoleState>) -> Response {
    let handoff = state.handoff();
    let Some(settings) = handoff.config().console.oidc.clone() else {
        return failed("no [console.oidc] is configured");
    };
    let discovery = match discover(&settings).await {
        Ok(discovery) => discovery,
        Err(Failure(why)) => return failed(&why),
    };
    let secrets = (|| {
        Ok::<_, handoff_core::ServiceError>((
            handoff.new_secret("state")?,
            handoff.new_secret("nonce")?,
            format!(
                "{}{}",
                handoff.new_secret("pkce")?,
                handoff.new_secret("v")?
            ),
        ))
    })();
    let Ok((login, nonce, verifier)) = secrets else {
        return failed("no randomness");
    };
    let challenge = URL_SAFE_NO_PAD.encode(handoff_core::hash::sha256(verifier.as_bytes()));
    let now = handoff.now();
    let pending = Pending {
        verifier,
        nonce: nonce.clone(),
        token_endpoint: discovery.token_endpoint,
        jwks_uri: discovery.jwks_uri,
        expires_at: now.plus(PENDING_LIFETIME),
    };
    if state.sessions.add_pending(&login, pending, now).is_err() {
        return failed("too many sign-ins in progress");
    }
    let query = [
        ("response_type", "code"),
        ("client_id", settings.client_id.as_str()),
        ("redirect_uri", callback_url(&state).as_str()),
        ("scope", "openid profile"),
        ("state", login.as_str()),
        ("nonce", nonce.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let separator = if discovery.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!("{}{separator}{query}", discovery.authorization_endpoint);
    let Ok(location) = HeaderValue::from_str(&location) else {
        return failed("the authorization endpoint is not a usable URL");
    };
    let cookie = format!(
        "{STATE_COOKIE}={login}; Path=/console/oidc; HttpOnly; SameSite=Lax; Max-Age={}{}",
        PENDING_LIFETIME.seconds(),
        crate::session::secure_attribute(&handoff)
    );
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    no_store(response)
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: String,
}

/// `GET /console/oidc/callback?code=...&state=...`: the code exchanged (with the PKCE
/// verifier), the ID token verified, a session opened.
pub async fn callback(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let handoff = state.handoff();
    let Some(settings) = handoff.config().console.oidc.clone() else {
        return failed("no [console.oidc] is configured");
    };
    if let Some(error) = &query.error {
        return failed(&format!("the provider refused: {error}"));
    }
    let (Some(code), Some(login)) = (query.code.as_deref(), query.state.as_deref()) else {
        return failed("the callback has no code or state");
    };
    // The state must be the one this browser started (its cookie), and still pending.
    if crate::session::cookie_named(&headers, STATE_COOKIE) != Some(login) {
        return failed("the state is not this browser's");
    }
    let now = handoff.now();
    let Some(pending) = state.sessions.take_pending(login, now) else {
        return failed("the sign-in is unknown, used or expired");
    };
    let person = match redeem(&state, &settings, &pending, code, now).await {
        Ok(person) => person,
        Err(Failure(why)) => return failed(&why),
    };
    let mut response = match crate::session::open_session(&state, person, now) {
        Ok(response) => response,
        Err(error) => return failed(&format!("{error:?}")),
    };
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "handoff_console_oidc=; Path=/console/oidc; HttpOnly; SameSite=Lax; Max-Age=0",
        ),
    );
    response
}

async fn redeem(
    state: &ConsoleState,
    settings: &OidcSettings,
    pending: &Pending,
    code: &str,
    now: Timestamp,
) -> Result<VerifiedPerson, Failure> {
    let redirect_uri = callback_url(state);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
        ("client_id", settings.client_id.as_str()),
        ("code_verifier", pending.verifier.as_str()),
    ];
    let client = client()?;
    let mut request = client.post(&pending.token_endpoint).form(&form);
    if let Some(secret) = &settings.client_secret {
        request = request.basic_auth(&settings.client_id, Some(secret.expose()));
    }
    let answer: TokenAnswer = request
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| Failure(format!("the token endpoint refused: {e}")))?
        .json()
        .await
        .map_err(|e| Failure(format!("the token endpoint's answer has no id_token: {e}")))?;
    let jwks: JwkSet = client
        .get(&pending.jwks_uri)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| Failure(format!("the provider's JWKS cannot be read: {e}")))?
        .json()
        .await
        .map_err(|e| Failure(format!("the provider's JWKS does not parse: {e}")))?;
    verify_id_token(settings, &jwks, &answer.id_token, &pending.nonce, now)
}

/// Verifies `token` as the provider's ID token for this sign-in: the person it names.
fn verify_id_token(
    settings: &OidcSettings,
    jwks: &JwkSet,
    token: &str,
    nonce: &str,
    now: Timestamp,
) -> Result<VerifiedPerson, Failure> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| Failure(format!("the ID token does not parse: {e}")))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(Failure(format!(
            "the ID token's algorithm {:?} is refused",
            header.alg
        )));
    }
    let jwk = jwks
        .keys
        .iter()
        .find(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .ok_or_else(|| Failure("no key of the provider's JWKS signed the ID token".to_owned()))?;
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|e| Failure(format!("the provider's key is not usable: {e}")))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[settings.issuer.as_str(), &format!("{}/", settings.issuer)]);
    validation.set_audience(&[settings.client_id.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    // Expiry is checked against the injected clock below, not the wall clock.
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|e| Failure(format!("the ID token is refused: {e}")))?
        .claims;
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp + 60 < now.seconds() {
        return Err(Failure("the ID token has expired".to_owned()));
    }
    if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(Failure(
            "the ID token's nonce is not this sign-in's".to_owned(),
        ));
    }
    let user = claims
        .get(&settings.user_claim)
        .and_then(Value::as_str)
        .ok_or_else(|| Failure(format!("the ID token has no `{}`", settings.user_claim)))?;
    let groups = match claims.get(&settings.groups_claim) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    VerifiedPerson::signed_in(&settings.issuer, user, groups)
        .ok_or_else(|| Failure("the ID token's user or a group is not usable".to_owned()))
}

/// What the sign-in page may offer.
pub fn available(state: &ConsoleState) -> bool {
    state.handoff().config().console.oidc.is_some()
}
