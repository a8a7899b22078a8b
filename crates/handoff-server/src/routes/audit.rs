//! The audit log for operators: signed checkpoints on demand, and incident queries.

use super::auth;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use handoff_core::audit::Outcome;
use handoff_core::audit_query::{self, AuditQuery, DEFAULT_QUERY_LIMIT, MAX_QUERY_LIMIT};
use handoff_core::time::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /v1/audit/checkpoints`: sign a checkpoint of the chain's head now (operators only).
pub async fn checkpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let handoff = state.handoff();
    auth::operator(&handoff, &headers)?;
    let checkpoint = handoff.checkpoint().await?;
    Ok(no_store(
        Json(json!({
            "seq": checkpoint.seq,
            "head": checkpoint.head,
            "at": checkpoint.at.rfc3339(),
            "checkpoint": checkpoint.jws,
        }))
        .into_response(),
    ))
}

/// The filters of `GET /v1/audit/records`, as written in the query string.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    agent: Option<String>,
    user: Option<String>,
    system: Option<String>,
    action: Option<String>,
    task: Option<String>,
    decision: Option<String>,
    reason: Option<String>,
    policy: Option<String>,
    since: Option<String>,
    until: Option<String>,
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

impl RecordsQuery {
    fn parse(self) -> Result<(AuditQuery, u64, usize), ApiError> {
        let time = |value: Option<String>, what: &str| {
            value
                .map(|v| Timestamp::parse(&v))
                .transpose()
                .map_err(|e| ApiError::invalid_request(format!("{what}: {e}")))
        };
        let decision = match self.decision.as_deref() {
            None => None,
            Some("permit") => Some(Outcome::Permit),
            Some("deny") => Some(Outcome::Deny),
            Some(_) => {
                return Err(ApiError::invalid_request(
                    "decision must be `permit` or `deny`",
                ));
            }
        };
        let limit = self.limit.unwrap_or(DEFAULT_QUERY_LIMIT);
        if !(1..=MAX_QUERY_LIMIT).contains(&limit) {
            return Err(ApiError::invalid_request(format!(
                "limit must be between 1 and {MAX_QUERY_LIMIT}"
            )));
        }
        let query = AuditQuery {
            since: time(self.since, "since")?,
            until: time(self.until, "until")?,
            agent: self.agent,
            user: self.user,
            system: self.system,
            action: self.action,
            task: self.task,
            decision,
            reason: self.reason,
            policy: self.policy,
        };
        Ok((query, self.after, limit))
    }
}

/// `GET /v1/audit/records`: the records matching every filter given, a page at a time
/// (operators only). `next` is the `after` of the next page; `null` when the log's end was
/// reached.
pub async fn records(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<RecordsQuery>,
) -> Result<Response, ApiError> {
    let handoff = state.handoff();
    auth::operator(&handoff, &headers)?;
    let (query, after, limit) = query.parse()?;
    let page = audit_query::query(handoff.store().as_ref(), &query, after, limit)
        .await
        .map_err(handoff_core::ServiceError::from)?;
    let records: Vec<Value> = page
        .records
        .iter()
        .map(|(record, event)| {
            json!({
                "seq": record.seq,
                "at": record.at.rfc3339(),
                "hash": record.hash,
                "event": event,
            })
        })
        .collect();
    Ok(no_store(
        Json(json!({ "records": records, "next": page.next })).into_response(),
    ))
}

/// Where a page of `GET /v1/admin/audit/chain` or `/checkpoints` starts, and how long it is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

/// The longest page of the chain or of the checkpoints.
pub const MAX_EXPORT_PAGE: usize = 1000;

impl PageQuery {
    fn limit(&self) -> Result<usize, ApiError> {
        let limit = self.limit.unwrap_or(MAX_EXPORT_PAGE);
        if (1..=MAX_EXPORT_PAGE).contains(&limit) {
            Ok(limit)
        } else {
            Err(ApiError::invalid_request(format!(
                "limit must be between 1 and {MAX_EXPORT_PAGE}"
            )))
        }
    }
}

/// `GET /v1/admin/audit/chain` (operators): the stored records after `after`, exactly as sealed
/// (`body` is the hashed text), for a verifier that trusts nothing the server concludes:
/// `handoff audit verify --server` walks the chain itself. `next` is the `after` of the next
/// page, `null` at the end.
pub async fn chain(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let handoff = state.handoff();
    auth::operator(&handoff, &headers)?;
    let limit = page.limit()?;
    let records = handoff
        .store()
        .audit_page(page.after, limit)
        .await
        .map_err(handoff_core::ServiceError::from)?;
    let next = (records.len() == limit)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    Ok(no_store(
        Json(json!({ "records": records, "next": next })).into_response(),
    ))
}

/// `GET /v1/admin/audit/checkpoints` (operators): the stored checkpoints, oldest first, `after`
/// counting those already read. Their signatures are checked by the client against the
/// `handoff-checkpoint` key of the JWKS.
pub async fn checkpoints(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let handoff = state.handoff();
    auth::operator(&handoff, &headers)?;
    let limit = page.limit()?;
    let checkpoints = handoff
        .store()
        .checkpoints(page.after, limit)
        .await
        .map_err(handoff_core::ServiceError::from)?;
    let next = (checkpoints.len() == limit).then(|| page.after + limit as u64);
    let checkpoints: Vec<Value> = checkpoints
        .iter()
        .map(|c| {
            json!({
                "seq": c.seq,
                "head": c.head,
                "at": c.at.rfc3339(),
                "checkpoint": c.jws,
            })
        })
        .collect();
    Ok(no_store(
        Json(json!({ "checkpoints": checkpoints, "next": next })).into_response(),
    ))
}
