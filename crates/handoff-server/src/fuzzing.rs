//! The request parsers the routes use, callable without a server, for the fuzz targets in
//! `crates/handoff-fuzz`. Not an API: nothing here is stable.

use crate::error::ApiError;
use crate::routes::approvals::reason;
use crate::routes::containment::{CredentialBody, FreezeBody, RevokeBody, json_body};
use crate::routes::delegations::delegate_request;
use crate::routes::form::FormParams;
use crate::routes::tasks::OpenBody;
use crate::routes::token::TokenRequest;
use axum::http::{HeaderMap, HeaderValue, header};
use std::collections::BTreeMap;

/// What a token endpoint form was read as.
#[derive(Debug)]
pub enum TokenForm {
    /// A handoff: the exchange request the service would be given.
    Access(handoff_core::exchange::ExchangeRequest),
    /// A Transaction Token request, with its `request_details` read as a task.
    Txn {
        subject_token: String,
        audience: Option<String>,
        details: Result<handoff_core::task::OpenTaskRequest, ApiError>,
    },
}

fn form_headers(content_type: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers
}

/// Reads a form body as every form route does: each parameter once, each valid UTF-8.
pub fn form_params(content_type: &[u8], body: &[u8]) -> Result<BTreeMap<String, String>, ApiError> {
    let params = FormParams::parse(&form_headers(content_type), body)?;
    Ok(params
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// Reads a `POST /oauth/token` form as the token endpoint does, up to the service call.
pub fn token_form(content_type: &[u8], body: &[u8]) -> Result<TokenForm, ApiError> {
    let params = FormParams::parse(&form_headers(content_type), body)?;
    Ok(match TokenRequest::parse(&params)? {
        TokenRequest::Access(request) => TokenForm::Access(request),
        TokenRequest::Txn(request) => TokenForm::Txn {
            subject_token: request.subject_token.to_owned(),
            audience: request.audience.map(str::to_owned),
            details: request.details().map(OpenBody::into_request),
        },
    })
}

/// The JSON request bodies of the HTTP API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonBody {
    /// `POST /v1/tasks`.
    OpenTask,
    /// `POST /v1/delegations`.
    Delegate,
    /// `POST /v1/admin/revoke`.
    Revoke,
    /// `POST /v1/admin/freeze` and `/unfreeze`.
    Freeze,
    /// `POST /v1/admin/credentials`.
    Credential,
    /// `POST /v1/approvals/{id}/approve`, `/deny` and `/cancel`.
    Reason,
}

impl JsonBody {
    pub const ALL: [Self; 6] = [
        Self::OpenTask,
        Self::Delegate,
        Self::Revoke,
        Self::Freeze,
        Self::Credential,
        Self::Reason,
    ];
}

/// Parses `body` as the route taking `kind` does; the parsed value in debug form.
pub fn json_request(kind: JsonBody, body: &[u8]) -> Result<String, ApiError> {
    Ok(match kind {
        JsonBody::OpenTask => format!("{:?}", OpenBody::parse(body)?.into_request()),
        JsonBody::Delegate => format!("{:?}", delegate_request(String::new(), body)?),
        JsonBody::Revoke => format!("{:?}", RevokeBody::parse(body)?),
        JsonBody::Freeze => format!("{:?}", json_body::<FreezeBody>(body)?),
        JsonBody::Credential => format!("{:?}", json_body::<CredentialBody>(body)?),
        JsonBody::Reason => reason(body)?,
    })
}
