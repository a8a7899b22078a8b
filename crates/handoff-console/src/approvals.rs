//! The approver's pages: the inbox (pending approvals of the person's groups, most urgent
//! first), one request with everything needed to decide it, approve / deny with a reason, and a
//! live stream of changes. Each reads and decides through core's approvals calls with the
//! signed-in person as the viewer and approver, so what the HTTP API would refuse is refused
//! here too (groups, separation of duties, a closed or expired approval, a revoked task).

use crate::ConsoleState;
use crate::error::ConsoleError;
use crate::session::{changing, no_store, session};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use handoff_core::Handoff;
use handoff_core::approval::{Approval, ApprovalStatus, Viewer};
use handoff_core::audit::EventKind;
use handoff_core::time::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::time::Duration;

/// How often a live stream looks at the store for a change (there is no event bus across
/// nodes: each open console page costs one approvals read this often).
pub const POLL: Duration = Duration::from_secs(1);
/// A live stream ends after this long; the browser's `EventSource` reconnects by itself (so a
/// stream never outlives its session by long, and a draining server is not held up for long).
pub const MAX_STREAM: Duration = Duration::from_secs(300);
/// Most decided approvals the inbox lists beside the pending ones.
pub const MAX_RECENT: usize = 20;

fn seconds_until(now: Timestamp, at: Timestamp) -> i64 {
    (at.seconds() - now.seconds()).max(0)
}

/// One approval as the console shows it, with the time left before escalation and expiry.
fn approval_json(handoff: &Handoff, approval: &Approval, status: ApprovalStatus) -> Value {
    let now = handoff.now();
    let config = handoff.config();
    let system = config.systems.get(&approval.system);
    let escalate_at = approval.created_at.plus(config.approvals.escalate_after);
    json!({
        "id": approval.id,
        "status": status.as_str(),
        "task": approval.task.as_str(),
        "agent": approval.agent.as_str(),
        "user": approval.user.as_str(),
        "system": approval.system.as_str(),
        "system_description": system.and_then(|s| s.description.clone()),
        "risk": approval.risk,
        "actions": approval.actions,
        "resource": approval.resource,
        "authorization_details": approval.details,
        "request_hash": approval.request_hash,
        "approver_group": approval.group,
        "created_at": approval.created_at.rfc3339(),
        "expires_at": approval.expires_at.rfc3339(),
        "escalate_at": escalate_at.rfc3339(),
        "seconds_to_expiry": seconds_until(now, approval.expires_at),
        "seconds_to_escalation": seconds_until(now, escalate_at),
        "escalated": approval.escalated,
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at.map(|t| t.rfc3339()),
        "reason": approval.reason,
    })
}

/// `GET /console/api/approvals`: the pending approvals of the person's groups, the one to
/// expire first on top, and the most recently decided ones.
pub async fn inbox(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    let session = session(&state, &headers)?;
    let handoff = state.handoff();
    let viewer = Viewer::Person(session.person);
    let mut all = handoff.list_approvals(&viewer, None, None).await?;
    let (mut pending, mut decided): (Vec<_>, Vec<_>) = all
        .drain(..)
        .partition(|a| a.status == ApprovalStatus::Pending);
    pending.sort_by(|a, b| {
        a.expires_at
            .cmp(&b.expires_at)
            .then(b.created_at.cmp(&a.created_at))
    });
    decided.sort_by(|a, b| {
        b.decided_at
            .unwrap_or(b.expires_at)
            .cmp(&a.decided_at.unwrap_or(a.expires_at))
    });
    decided.truncate(MAX_RECENT);
    Ok(no_store(
        Json(json!({
            "now": handoff.now().rfc3339(),
            "pending": pending.iter().map(|a| approval_json(&handoff, a, a.status)).collect::<Vec<_>>(),
            "recent": decided.iter().map(|a| approval_json(&handoff, a, a.status)).collect::<Vec<_>>(),
        }))
        .into_response(),
    ))
}

/// `GET /console/api/approvals/{id}`: the request, the task's intent and history, the agent's
/// delegation chain and the policies that gated it.
pub async fn show(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let session = session(&state, &headers)?;
    let handoff = state.handoff();
    handoff_core::text::check_identifier("approval", &id)?;
    // Core decides whether this person may see it; nothing is read before it says yes.
    let view = handoff
        .approval_view(&Viewer::Person(session.person), &id)
        .await?;
    let task = view.approval.task.clone();
    let delegations = handoff
        .store()
        .task_delegations(&task)
        .await
        .map_err(handoff_core::ServiceError::from)?;
    let records = handoff
        .store()
        .task_records(&task)
        .await
        .map_err(handoff_core::ServiceError::from)?;
    let gating = records
        .iter()
        .filter_map(|r| r.event().ok())
        .find(|e| e.kind == Some(EventKind::ApprovalRequest) && e.approval.as_deref() == Some(&id))
        .map(|e| e.policies)
        .unwrap_or_default();
    let mut value = approval_json(&handoff, &view.approval, view.status);
    if let Value::Object(map) = &mut value {
        map.insert(
            "task_context".to_owned(),
            json!({
                "intent": view.intent,
                "purpose": view.purpose,
                "state": view.task_state,
                "history": view.history,
            }),
        );
        map.insert("gating_policies".to_owned(), json!(gating));
        map.insert(
            "delegations".to_owned(),
            json!(
                delegations
                    .iter()
                    .map(|d| json!({
                        "id": d.id,
                        "delegate": d.delegate.as_str(),
                        "actors": d.actors,
                        "depth": d.depth,
                        "actions": d.actions.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "expires_at": d.expires_at.rfc3339(),
                    }))
                    .collect::<Vec<_>>()
            ),
        );
    }
    Ok(no_store(Json(value).into_response()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
}

async fn decide(
    state: &ConsoleState,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
    approve: bool,
) -> Result<Response, ConsoleError> {
    let session = changing(state, headers)?;
    let body: ReasonBody = serde_json::from_slice(body).map_err(|e| {
        ConsoleError::invalid_request(format!("the body must be {{\"reason\": ...}}: {e}"))
    })?;
    let handoff = state.handoff();
    // Core checks the group, separation of duties, the task's state and that it is pending.
    let decided = handoff
        .decide_approval(&session.person, id, approve, &body.reason)
        .await?;
    Ok(no_store(
        Json(approval_json(&handoff, &decided, decided.status)).into_response(),
    ))
}

/// `POST /console/api/approvals/{id}/approve` with `{"reason": ...}`.
pub async fn approve(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    decide(&state, &headers, &id, &body, true).await
}

/// `POST /console/api/approvals/{id}/deny` with `{"reason": ...}`.
pub async fn deny(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    decide(&state, &headers, &id, &body, false).await
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    approval: Option<String>,
}

/// What the page shows, condensed: when it differs from the last look, the page reloads.
async fn fingerprint(
    handoff: &Handoff,
    viewer: &Viewer,
    approval: Option<&str>,
) -> Result<String, handoff_core::ServiceError> {
    match approval {
        Some(id) => {
            let view = handoff.approval_view(viewer, id).await?;
            Ok(format!(
                "{}|{}|{}|{}",
                view.status.as_str(),
                view.task_state,
                view.approval.decided_by.unwrap_or_default(),
                view.history.len()
            ))
        }
        None => Ok(handoff
            .list_approvals(viewer, None, None)
            .await?
            .iter()
            .map(|a| format!("{}:{}", a.id, a.status.as_str()))
            .collect::<Vec<_>>()
            .join(",")),
    }
}

/// `GET /console/api/events[?approval=ID]`: server-sent `change` events whenever what the page
/// shows changed (another owner decided, the request expired, the task was revoked). The store
/// is looked at every [`POLL`]; the stream ends after [`MAX_STREAM`] or when the session does.
pub async fn events(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ConsoleError> {
    session(&state, &headers)?;
    if let Some(id) = &query.approval {
        handoff_core::text::check_identifier("approval", id)?;
    }
    let started = tokio::time::Instant::now();
    let events = stream::unfold(
        (state, headers, query.approval, None::<String>),
        move |(state, headers, approval, mut last)| async move {
            loop {
                if started.elapsed() >= MAX_STREAM {
                    return None;
                }
                // A signed-out or expired session ends the stream.
                let person = session(&state, &headers).ok()?.person;
                let handoff = state.handoff();
                let seen = fingerprint(&handoff, &Viewer::Person(person), approval.as_deref())
                    .await
                    .unwrap_or_else(|e| format!("error:{}", e.error_code().as_str()));
                if last.as_deref() != Some(seen.as_str()) {
                    last = Some(seen);
                    let event = Event::default().event("change").data("{}");
                    return Some((Ok(event), (state, headers, approval, last)));
                }
                tokio::time::sleep(POLL).await;
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
