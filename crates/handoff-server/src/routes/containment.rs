//! Introspection (RFC 7662), revocation (RFC 7009), operator revocations and freezes, system
//! credentials, and the revocation feed (a cursor page and a server-sent-events stream).

use super::auth;
use super::form::FormParams;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use futures_util::stream::{self, Stream};
use handoff_core::containment::{Introspection, MAX_FEED_PAGE};
use handoff_core::containment::{RevocationEntry, RevocationKind};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;

/// How often a stream looks for revocations made by another process (the CLI, another node)
/// when nothing on this node woke it. Verifiers that stream honour a revocation within this.
pub const STREAM_POLL: Duration = Duration::from_secs(1);

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let handoff = state.handoff();
    let caller = auth::system_or_operator(&handoff, &headers).await?;
    let params = FormParams::parse(&headers, &body)?;
    let token = params.required("token")?;
    let answer = match handoff.introspect(&caller, token).await? {
        Introspection::Active(claims) => json!({
            "active": true,
            "iss": claims.iss,
            "aud": claims.aud,
            "sub": claims.sub,
            "client_id": claims.client_id,
            "scope": claims.scope,
            "exp": claims.exp,
            "iat": claims.iat,
            "jti": claims.jti,
            "txn": claims.txn,
            "act": claims.act,
            "token_type": "Bearer",
        }),
        Introspection::Inactive => json!({ "active": false }),
    };
    Ok(no_store(Json(answer).into_response()))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let handoff = state.handoff();
    let caller = auth::any_caller(&handoff, &headers).await?;
    let params = FormParams::parse(&headers, &body)?;
    let token = params.required("token")?;
    handoff.revoke_token(&caller, token).await?;
    // RFC 7009: answered 200 whether or not the token was one to revoke.
    metrics::counter!(crate::metrics::REVOCATIONS, "kind" => "oauth_revoke").increment(1);
    state.feed.notify_waiters();
    Ok(no_store(Json(json!({})).into_response()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    kind: String,
    id: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeBody {
    system: String,
    reason: String,
}

pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("the body does not parse: {e}")))
}

async fn apply(
    state: &AppState,
    headers: &HeaderMap,
    kind: RevocationKind,
    id: &str,
    reason: &str,
) -> Result<Response, ApiError> {
    let handoff = state.handoff();
    let operator = auth::operator(&handoff, headers)?;
    let report = handoff.revoke(&operator, kind, id, reason).await?;
    metrics::counter!(crate::metrics::REVOCATIONS, "kind" => kind.as_str()).increment(1);
    state.feed.notify_waiters();
    Ok(Json(json!({
        "kind": report.kind,
        "id": report.subject,
        "tasks": report.tasks.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
    }))
    .into_response())
}

impl RevokeBody {
    /// A `POST /v1/admin/revoke` body: what kind of thing to revoke, which one, and why.
    pub fn parse(body: &[u8]) -> Result<(RevocationKind, Self), ApiError> {
        let body: Self = json_body(body)?;
        let kind = match body.kind.as_str() {
            "token" => RevocationKind::Token,
            "task" => RevocationKind::Task,
            "agent" => RevocationKind::Agent,
            "delegation" => RevocationKind::Delegation,
            _ => {
                return Err(ApiError::invalid_request(
                    "`kind` must be token, task, agent or delegation".to_owned(),
                ));
            }
        };
        Ok((kind, body))
    }
}

pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (kind, body) = RevokeBody::parse(&body)?;
    apply(&state, &headers, kind, &body.id, &body.reason).await
}

pub async fn freeze(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    freezing(&state, &headers, RevocationKind::Freeze, &body).await
}

pub async fn unfreeze(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    freezing(&state, &headers, RevocationKind::Unfreeze, &body).await
}

/// A freeze or an unfreeze of the system the body names.
async fn freezing(
    state: &AppState,
    headers: &HeaderMap,
    kind: RevocationKind,
    body: &[u8],
) -> Result<Response, ApiError> {
    let body: FreezeBody = json_body(body)?;
    apply(state, headers, kind, &body.system, &body.reason).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    system: String,
}

pub async fn credential(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let handoff = state.handoff();
    let operator = auth::operator(&handoff, &headers)?;
    let body: CredentialBody = json_body(&body)?;
    let secret = handoff.register_credential(&operator, &body.system).await?;
    Ok(no_store(
        Json(json!({ "system": body.system, "client_secret": secret })).into_response(),
    ))
}

#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

fn entry_json(entry: &RevocationEntry) -> serde_json::Value {
    json!({ "seq": entry.seq, "kind": entry.kind, "id": entry.subject, "at": entry.at.rfc3339(), "reason": entry.reason })
}

pub async fn feed(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> Result<Response, ApiError> {
    let handoff = state.handoff();
    auth::system_or_operator(&handoff, &headers).await?;
    let limit = query.limit.unwrap_or(MAX_FEED_PAGE);
    let entries = handoff.revocation_feed(query.after, limit).await?;
    let next = entries.last().map_or(query.after, |e| e.seq);
    Ok(no_store(
        Json(
            json!({ "entries": entries.iter().map(entry_json).collect::<Vec<_>>(), "next": next }),
        )
        .into_response(),
    ))
}

pub async fn stream(
    State(state): State<AppState>,
    draining: Option<Extension<crate::Draining>>,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    auth::system_or_operator(&state.handoff(), &headers).await?;
    // A reconnecting EventSource resumes after the last id it saw.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(query.after);
    let subscribed = crate::metrics::Subscribed::new();
    let events = stream::unfold(
        (state, resume, Vec::<RevocationEntry>::new(), subscribed),
        |(state, mut cursor, mut pending, subscribed)| async move {
            loop {
                if !pending.is_empty() {
                    let entry = pending.remove(0);
                    cursor = entry.seq;
                    let event = Event::default()
                        .id(entry.seq.to_string())
                        .event("revocation")
                        .data(entry_json(&entry).to_string());
                    return Some((Ok(event), (state, cursor, pending, subscribed)));
                }
                match state.handoff().revocation_feed(cursor, MAX_FEED_PAGE).await {
                    Ok(entries) if !entries.is_empty() => pending = entries,
                    _ => {
                        let woken = state.feed.notified();
                        let _ = tokio::time::timeout(STREAM_POLL, woken).await;
                    }
                }
            }
        },
    );
    // The stream ends when the server starts shutting down (subscribers reconnect elsewhere).
    let stopped = async move {
        match draining {
            Some(Extension(draining)) => draining.started().await,
            None => std::future::pending().await,
        }
    };
    Ok(Sse::new(events.take_until(stopped)).keep_alive(KeepAlive::default()))
}
