//! The operator's pages: a task's timeline (every record about it, in order, each delegation's
//! nested under it), and revoke / freeze / unfreeze with a reason. Only members of
//! `[console] operator_group` are operators here; each action goes through core's `revoke` as
//! the operator `console:<user>`, recorded like any other revocation.

use crate::ConsoleState;
use crate::error::ConsoleError;
use crate::session::{Session, changing, is_operator, no_store, session};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use handoff_core::ServiceError;
use handoff_core::audit::EventKind;
use handoff_core::containment::{Operator, RevocationKind};
use handoff_core::ids::TaskId;
use handoff_core::task::TaskState;
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// Most records a task's timeline shows (the newest are kept).
pub const MAX_TIMELINE: usize = 1000;
/// The live lists read at most this many of the newest audit records for task openings (there
/// is no index of open tasks: a task opened before them is not listed, and the answer says so).
pub const LIVE_SCAN: u64 = 50_000;
/// Most live tasks listed.
pub const MAX_LIVE_TASKS: usize = 500;

fn operator(state: &ConsoleState, session: Session) -> Result<(Session, Operator), ConsoleError> {
    if !is_operator(&state.handoff(), &session.person) {
        return Err(ConsoleError::forbidden(
            "only members of the console's operator group ([console] operator_group) may do this",
        ));
    }
    let operator = Operator::local(format!("console:{}", session.person.user()));
    Ok((session, operator))
}

/// `GET /console/api/tasks/{id}` (operators): the task as core's trace tree (its steps in
/// order, each use under its grant, each delegation under its parent with its delegate's steps),
/// over the task's newest [`MAX_TIMELINE`] records.
pub async fn task(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    operator(&state, session(&state, &headers)?)?;
    handoff_core::text::check_identifier("task", &id)?;
    let trace = state
        .handoff()
        .task_trace(&TaskId::new(id.as_str()), MAX_TIMELINE)
        .await?;
    Ok(no_store(Json(trace).into_response()))
}

/// `GET /console/api/live` (operators): the open tasks among those opened in the newest
/// [`LIVE_SCAN`] records, and per agent its open tasks and live tokens (minted, unexpired).
pub async fn live(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    operator(&state, session(&state, &headers)?)?;
    let handoff = state.handoff();
    let store = handoff.store();
    let now = handoff.now();
    let head = store
        .audit_head()
        .await
        .map_err(ServiceError::from)?
        .map_or(0, |r| r.seq);
    let start = head.saturating_sub(LIVE_SCAN);
    let mut cursor = start;
    let mut opened: Vec<TaskId> = Vec::new();
    while cursor < head {
        let page = store
            .audit_page(cursor, 1000)
            .await
            .map_err(ServiceError::from)?;
        let Some(last) = page.last().map(|r| r.seq) else {
            break;
        };
        for record in &page {
            if let Ok(event) = record.event()
                && event.kind == Some(EventKind::TaskOpen)
                && let Some(task) = event.task
            {
                opened.push(TaskId::new(task));
            }
        }
        cursor = last;
    }
    // Newest first.
    opened.reverse();
    let mut tasks = Vec::new();
    let mut agents: BTreeMap<(String, String), (u64, u64, BTreeSet<String>)> = BTreeMap::new();
    let mut more = false;
    for id in &opened {
        let Some(snapshot) = store.task(id).await.map_err(ServiceError::from)? else {
            continue;
        };
        let t = &snapshot.task;
        if t.state != TaskState::Open || t.expires_at <= now {
            continue;
        }
        if tasks.len() >= MAX_LIVE_TASKS {
            more = true;
            break;
        }
        let live_tokens = snapshot.facts.live_tokens(now.seconds());
        let entry = agents
            .entry((t.agent.to_string(), t.agent_issuer.clone()))
            .or_default();
        entry.0 += 1;
        entry.1 += live_tokens;
        entry.2.insert(t.user.to_string());
        tasks.push(json!({
            "id": t.id.as_str(),
            "agent": t.agent.as_str(),
            "user": t.user.as_str(),
            "purpose": t.purpose.to_string(),
            "intent": t.intent,
            "created_at": t.created_at.rfc3339(),
            "expires_at": t.expires_at.rfc3339(),
            "live_tokens": live_tokens,
        }));
    }
    Ok(no_store(
        Json(json!({
            "tasks": tasks,
            "agents": agents.iter().map(|((agent, issuer), (open, live, users))| json!({
                "agent": agent,
                "issuer": issuer,
                "users": users,
                "live_tasks": open,
                "live_tokens": live,
            })).collect::<Vec<_>>(),
            "scanned_from_seq": start,
            "complete": start == 0 && !more,
        }))
        .into_response(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    kind: String,
    id: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeBody {
    system: String,
    reason: String,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, ConsoleError> {
    serde_json::from_slice(body)
        .map_err(|e| ConsoleError::invalid_request(format!("the body must be {shape}: {e}")))
}

async fn apply(
    state: &ConsoleState,
    headers: &HeaderMap,
    kind: RevocationKind,
    subject: &str,
    reason: &str,
) -> Result<Response, ConsoleError> {
    let (_, operator) = operator(state, changing(state, headers)?)?;
    let report = state
        .handoff()
        .revoke(&operator, kind, subject, reason)
        .await?;
    Ok(no_store(
        Json(json!({
            "kind": report.kind,
            "id": report.subject,
            "tasks": report.tasks.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            "by": operator.name(),
        }))
        .into_response(),
    ))
}

/// `POST /console/api/revoke` (operators) with `{"kind": "task"|"token"|"agent"|"delegation",
/// "id": ..., "reason": ...}`.
pub async fn revoke(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let body: RevokeBody = parse(&body, "{\"kind\": ..., \"id\": ..., \"reason\": ...}")?;
    let kind = match body.kind.as_str() {
        "token" => RevocationKind::Token,
        "task" => RevocationKind::Task,
        "agent" => RevocationKind::Agent,
        "delegation" => RevocationKind::Delegation,
        _ => {
            return Err(ConsoleError::invalid_request(
                "`kind` must be token, task, agent or delegation",
            ));
        }
    };
    apply(&state, &headers, kind, &body.id, &body.reason).await
}

/// `POST /console/api/freeze` (operators) with `{"system": ..., "reason": ...}`.
pub async fn freeze(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let body: FreezeBody = parse(&body, "{\"system\": ..., \"reason\": ...}")?;
    apply(
        &state,
        &headers,
        RevocationKind::Freeze,
        &body.system,
        &body.reason,
    )
    .await
}

/// `POST /console/api/unfreeze` (operators) with `{"system": ..., "reason": ...}`.
pub async fn unfreeze(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let body: FreezeBody = parse(&body, "{\"system\": ..., \"reason\": ...}")?;
    apply(
        &state,
        &headers,
        RevocationKind::Unfreeze,
        &body.system,
        &body.reason,
    )
    .await
}
