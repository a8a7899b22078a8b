//! Signing in as a person: one-time sign-in links (made by an operator through
//! `POST /console/api/admin/sign-in-links`, what `handoff approver login` calls), and the
//! sessions they open. Links and sessions live in this process only, each kept under the SHA-256
//! of its secret (a memory dump holds no usable link or cookie); a restart signs everyone out.
//!
//! The session cookie is `HttpOnly`, `SameSite=Strict`, `Path=/console`, `Secure` when the
//! public URL is https, and lives `[console] session_lifetime`. Every state-changing request
//! must carry the session's CSRF token in `x-handoff-csrf` (compared server-side with the one
//! the session holds) and an `Origin` equal to the public URL's.

use crate::ConsoleState;
use crate::error::ConsoleError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use handoff_core::Handoff;
use handoff_core::hash::sha256_hex;
use handoff_core::identity::VerifiedPerson;
use handoff_core::time::Timestamp;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// The session cookie's name.
pub const COOKIE: &str = "handoff_console";
/// The header every state-changing request carries the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-handoff-csrf";
/// Who vouches for a person signed in with a one-time link (records name `bob (console-link)`).
pub const LINK_ISSUER: &str = "console-link";
/// Most sign-in links and sessions kept at once (the oldest expired ones go first; past this,
/// new ones are refused rather than old ones dropped).
pub const MAX_ENTRIES: usize = 10_000;
/// Most groups one sign-in link may name.
pub const MAX_GROUPS: usize = 32;

struct Link {
    person: VerifiedPerson,
    expires_at: Timestamp,
}

/// A signed-in person.
#[derive(Clone, Debug)]
pub struct Session {
    pub person: VerifiedPerson,
    csrf: String,
    pub expires_at: Timestamp,
}

/// The console's sign-in links and sessions, by the SHA-256 of their secrets.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    links: HashMap<String, Link>,
    sessions: HashMap<String, Session>,
    pending: HashMap<String, crate::oidc::Pending>,
}

impl Sessions {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut inner)
    }

    fn add_link(&self, secret: &str, link: Link, now: Timestamp) -> Result<(), ConsoleError> {
        self.with(|inner| {
            inner.links.retain(|_, l| l.expires_at > now);
            if inner.links.len() >= MAX_ENTRIES {
                return Err(ConsoleError::invalid_request(
                    "too many unused sign-in links; try again when some expire",
                ));
            }
            inner.links.insert(sha256_hex(secret.as_bytes()), link);
            Ok(())
        })
    }

    /// Takes the link (once: a used, expired or unknown link signs nobody in).
    fn take_link(&self, secret: &str, now: Timestamp) -> Option<VerifiedPerson> {
        let link = self.with(|inner| inner.links.remove(&sha256_hex(secret.as_bytes())))?;
        (link.expires_at > now).then_some(link.person)
    }

    fn open(&self, id: &str, session: Session, now: Timestamp) -> Result<(), ConsoleError> {
        self.with(|inner| {
            inner.sessions.retain(|_, s| s.expires_at > now);
            if inner.sessions.len() >= MAX_ENTRIES {
                return Err(ConsoleError::invalid_request(
                    "too many open console sessions; try again later",
                ));
            }
            inner.sessions.insert(sha256_hex(id.as_bytes()), session);
            Ok(())
        })
    }

    /// Keeps an OpenID Connect sign-in in progress under the SHA-256 of its `state`.
    pub(crate) fn add_pending(
        &self,
        state: &str,
        pending: crate::oidc::Pending,
        now: Timestamp,
    ) -> Result<(), ConsoleError> {
        self.with(|inner| {
            inner.pending.retain(|_, p| p.expires_at > now);
            if inner.pending.len() >= MAX_ENTRIES {
                return Err(ConsoleError::invalid_request(
                    "too many sign-ins in progress; try again later",
                ));
            }
            inner.pending.insert(sha256_hex(state.as_bytes()), pending);
            Ok(())
        })
    }

    /// Takes the sign-in `state` names (once).
    pub(crate) fn take_pending(&self, state: &str, now: Timestamp) -> Option<crate::oidc::Pending> {
        let pending = self.with(|inner| inner.pending.remove(&sha256_hex(state.as_bytes())))?;
        (pending.expires_at > now).then_some(pending)
    }

    fn get(&self, id: &str, now: Timestamp) -> Option<Session> {
        self.with(|inner| inner.sessions.get(&sha256_hex(id.as_bytes())).cloned())
            .filter(|s| s.expires_at > now)
    }

    fn close(&self, id: &str) {
        self.with(|inner| inner.sessions.remove(&sha256_hex(id.as_bytes())));
    }
}

/// The value of the session cookie, if the request carries one.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    cookie_named(headers, COOKIE)
}

/// The value of the cookie `wanted`, if the request carries one.
pub(crate) fn cookie_named<'h>(headers: &'h HeaderMap, wanted: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// `; Secure` when the console is served over https (its public URL), else nothing.
pub(crate) fn secure_attribute(handoff: &Handoff) -> &'static str {
    if handoff.config().issuer().starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

/// The signed-in person of this request.
pub fn session(state: &ConsoleState, headers: &HeaderMap) -> Result<Session, ConsoleError> {
    let id = cookie(headers).ok_or_else(ConsoleError::signed_out)?;
    state
        .sessions
        .get(id, state.handoff().now())
        .ok_or_else(ConsoleError::signed_out)
}

/// The signed-in person of a state-changing request: the session, its CSRF token in
/// `x-handoff-csrf`, and an `Origin` that is the public URL's.
pub fn changing(state: &ConsoleState, headers: &HeaderMap) -> Result<Session, ConsoleError> {
    let handoff = state.handoff();
    let expected = origin(handoff.config().issuer());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin != Some(expected) {
        return Err(ConsoleError::forbidden(format!(
            "a console change must come from the console's own origin ({expected})"
        )));
    }
    let session = session(state, headers)?;
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !same_secret(sent, &session.csrf) {
        return Err(ConsoleError::forbidden(format!(
            "the `{CSRF_HEADER}` header must carry this session's token"
        )));
    }
    Ok(session)
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url.get(start..).and_then(|rest| rest.find('/')) {
        Some(end) => url.get(..start + end).unwrap_or(url),
        None => url,
    }
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(one: &str, other: &str) -> bool {
    one.len() == other.len()
        && one
            .bytes()
            .zip(other.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Whether this person is an operator in the console (a member of `[console] operator_group`).
pub fn is_operator(handoff: &Handoff, person: &VerifiedPerson) -> bool {
    handoff
        .config()
        .console
        .operator_group
        .as_deref()
        .is_some_and(|group| person.is_member(group))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    user: String,
    groups: Vec<String>,
}

/// `POST /console/api/admin/sign-in-links` (operator credential): a one-time sign-in link for
/// `user` in `groups`.
pub async fn create_link(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let handoff = state.handoff();
    let token = handoff_http::bearer(&headers).map_err(|_| {
        ConsoleError::Service(handoff_core::ServiceError::InvalidClient(
            "operator credentials are required".to_owned(),
        ))
    })?;
    handoff.authenticate_operator(token)?;
    let body: LinkBody = serde_json::from_slice(&body).map_err(|e| {
        ConsoleError::invalid_request(format!(
            "the body must be {{\"user\": ..., \"groups\": [...]}}: {e}"
        ))
    })?;
    handoff_core::text::check_identifier("user", &body.user)?;
    if body.groups.is_empty() || body.groups.len() > MAX_GROUPS {
        return Err(ConsoleError::invalid_request(format!(
            "`groups` must name 1 to {MAX_GROUPS} groups"
        )));
    }
    for group in &body.groups {
        handoff_core::text::check_identifier("groups", group)?;
    }
    let groups: Vec<String> = body.groups.iter().map(|g| g.trim().to_owned()).collect();
    let person = VerifiedPerson::signed_in(LINK_ISSUER, body.user.trim(), groups)
        .ok_or_else(|| ConsoleError::invalid_request("`user` or a group is not usable"))?;
    let now = handoff.now();
    let expires_at = now.plus(handoff.config().console.sign_in_link_lifetime);
    let secret = handoff.new_secret("signin")?;
    state.sessions.add_link(
        &secret,
        Link {
            person: person.clone(),
            expires_at,
        },
        now,
    )?;
    tracing::info!(user = person.user(), groups = ?person.groups(), "console sign-in link made");
    let url = format!(
        "{}/console/sign-in?link={secret}",
        handoff.config().issuer().trim_end_matches('/')
    );
    Ok(no_store(
        Json(json!({
            "url": url,
            "user": person.user(),
            "groups": person.groups(),
            "expires_at": expires_at.rfc3339(),
        }))
        .into_response(),
    ))
}

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    link: Option<String>,
}

/// `GET /console/sign-in?link=...`: uses the link (once) and opens a session; either way, back
/// to the console (which says whether it worked).
pub async fn sign_in(
    State(state): State<ConsoleState>,
    Query(query): Query<SignInQuery>,
) -> Response {
    let handoff = state.handoff();
    let now = handoff.now();
    let Some(person) = query
        .link
        .as_deref()
        .and_then(|link| state.sessions.take_link(link, now))
    else {
        return redirect("/console/#sign-in-failed", None);
    };
    match open_session(&state, person, now) {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(?error, "console sign-in failed");
            redirect("/console/#sign-in-failed", None)
        }
    }
}

/// Opens a session for `person` (signed in by a link or the OpenID provider): the redirect to
/// the console that sets its cookie.
pub(crate) fn open_session(
    state: &ConsoleState,
    person: VerifiedPerson,
    now: Timestamp,
) -> Result<Response, ConsoleError> {
    let handoff = state.handoff();
    let id = handoff.new_secret("session")?;
    let csrf = handoff.new_secret("csrf")?;
    let lifetime = handoff.config().console.session_lifetime;
    state.sessions.open(
        &id,
        Session {
            person: person.clone(),
            csrf,
            expires_at: now.plus(lifetime),
        },
        now,
    )?;
    tracing::info!(
        user = person.user(),
        issuer = person.issuer(),
        "console sign-in"
    );
    let cookie = format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        lifetime.seconds(),
        secure_attribute(&handoff)
    );
    Ok(redirect("/console/", Some(cookie)))
}

fn redirect(to: &'static str, cookie: Option<String>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    no_store(response)
}

/// `POST /console/api/sign-out`.
pub async fn sign_out(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    changing(&state, &headers)?;
    if let Some(id) = cookie(&headers) {
        state.sessions.close(id);
    }
    let mut response = no_store(Json(json!({ "signed_out": true })).into_response());
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "handoff_console=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    Ok(response)
}

/// `GET /console/api/sign-in-options`: how one may sign in (no session needed).
pub async fn sign_in_options(State(state): State<ConsoleState>) -> Response {
    no_store(Json(json!({ "oidc": crate::oidc::available(&state) })).into_response())
}

/// `GET /console/api/me`: who is signed in, their groups and roles, and the CSRF token the page
/// sends with every change.
pub async fn me(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    let session = session(&state, &headers)?;
    let handoff = state.handoff();
    Ok(no_store(
        Json(json!({
            "user": session.person.user(),
            "issuer": session.person.issuer(),
            "groups": session.person.groups(),
            "operator": is_operator(&handoff, &session.person),
            "csrf": session.csrf,
            "expires_at": session.expires_at.rfc3339(),
        }))
        .into_response(),
    ))
}

/// Marks an answer as never to be cached.
pub fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_of_a_url_is_its_scheme_host_and_port() {
        assert_eq!(
            origin("https://h.example:8443/base"),
            "https://h.example:8443"
        );
        assert_eq!(origin("http://127.0.0.1:9"), "http://127.0.0.1:9");
    }

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(same_secret("csrf_abc", "csrf_abc"));
        assert!(!same_secret("csrf_abc", "csrf_abd"));
        assert!(!same_secret("csrf_ab", "csrf_abc"));
        assert!(!same_secret("", "csrf_abc"));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; handoff_console=session_x; b=2"),
        );
        assert_eq!(cookie(&headers), Some("session_x"));
    }
}
