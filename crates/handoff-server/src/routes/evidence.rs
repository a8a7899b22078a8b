//! `POST /v1/evidence`: a registered system reports an event about a task, signed either as a
//! JWT (`Content-Type: application/jwt`) or as an HMAC-signed JSON webhook
//! (`x-handoff-timestamp`, `x-handoff-signature: sha256=<hex>` over `timestamp.body`).

use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use handoff_core::Handoff;
use handoff_core::evidence::EvidenceSubmission;
use handoff_core::token::Unverified;
use serde_json::json;
use std::sync::Arc;

pub const SIGNATURE_HEADER: &str = "x-handoff-signature";
pub const TIMESTAMP_HEADER: &str = "x-handoff-timestamp";

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub async fn report(
    State(handoff): State<Arc<Handoff>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let content_type = header_text(&headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
    let submission = if content_type.starts_with("application/jwt") {
        let token = std::str::from_utf8(&body)
            .map_err(|_| ApiError::invalid_evidence("the JWT is not text".to_owned()))?;
        EvidenceSubmission::Jwt(Unverified::new(token))
    } else {
        match (
            header_text(&headers, TIMESTAMP_HEADER),
            header_text(&headers, SIGNATURE_HEADER),
        ) {
            (Some(timestamp), Some(signature)) => EvidenceSubmission::Hmac {
                timestamp,
                signature,
                body: &body,
            },
            _ => {
                return Err(ApiError::invalid_evidence(
                    "evidence must be signed: send a JWT as application/jwt, or JSON with \
                     x-handoff-timestamp and x-handoff-signature"
                        .to_owned(),
                ));
            }
        }
    };
    let recorded = handoff.report_evidence(submission).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": recorded.id,
            "system": recorded.system.as_str(),
            "task_id": recorded.task.as_str(),
            "kind": recorded.kind,
            "audit_seq": recorded.seq,
        })),
    ))
}
