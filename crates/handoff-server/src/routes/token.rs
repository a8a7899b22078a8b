//! The token endpoint: RFC 8693 token exchange, for access tokens (one per handoff) and for
//! Transaction Tokens (opening a task).

use super::form::FormParams;
use super::no_store::token_response;
use super::tasks::{OpenBody, opened_json};
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use handoff_core::Handoff;
use handoff_core::exchange::{ExchangeRequest, Rejected};
use handoff_core::token::{GRANT_TOKEN_EXCHANGE, TYPE_ACCESS_TOKEN, TYPE_JWT, TYPE_TXN_TOKEN};
use handoff_http::ExchangeFacts;
use serde_json::json;
use std::sync::Arc;

pub async fn token(
    State(handoff): State<Arc<Handoff>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = FormParams::parse(&headers, &body)?;
    let response = match TokenRequest::parse(&params)? {
        TokenRequest::Txn(request) => txn_token(&handoff, request).await?,
        TokenRequest::Access(request) => return Ok(access_token(&handoff, request).await),
    };
    Ok(token_response(StatusCode::OK, response))
}

/// What a token request's form asks for, read without touching any state.
pub enum TokenRequest<'a> {
    /// A handoff: an access token for one system.
    Access(ExchangeRequest),
    /// Opening a task: a Transaction Token.
    Txn(TxnRequest<'a>),
}

/// A Transaction Token request's parameters; `request_details` is parsed once the agent is known.
pub struct TxnRequest<'a> {
    pub subject_token: &'a str,
    pub audience: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub request_details: Option<&'a str>,
}

impl<'a> TokenRequest<'a> {
    /// Reads an RFC 8693 token exchange form (or a Transaction Token request).
    pub fn parse(params: &'a FormParams) -> Result<Self, ApiError> {
        match params.required("grant_type")? {
            GRANT_TOKEN_EXCHANGE => {}
            other => {
                return Err(ApiError::UnsupportedGrantType(format!(
                    "grant type `{}` is not supported",
                    other.chars().take(100).collect::<String>()
                )));
            }
        }
        match params.optional("requested_token_type") {
            Some(TYPE_TXN_TOKEN) => Ok(Self::Txn(TxnRequest::parse(params)?)),
            None | Some(TYPE_ACCESS_TOKEN) => Ok(Self::Access(exchange_request(params)?)),
            Some(_) => Err(ApiError::invalid_request(
                "requested_token_type must be an access token or a txn_token".to_owned(),
            )),
        }
    }
}

fn expect_type(params: &FormParams, name: &str, expected: &str) -> Result<(), ApiError> {
    match params.optional(name) {
        Some(found) if found == expected => Ok(()),
        _ => Err(ApiError::invalid_request(format!(
            "`{name}` must be `{expected}`"
        ))),
    }
}

fn exchange_request(params: &FormParams) -> Result<ExchangeRequest, ApiError> {
    let subject_token = params.required("subject_token")?;
    expect_type(params, "subject_token_type", TYPE_TXN_TOKEN)?;
    let actor_token = params.required("actor_token")?;
    expect_type(params, "actor_token_type", TYPE_JWT)?;
    let audience = params.required("audience")?;
    let scope: Vec<String> = params
        .required("scope")?
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let authorization_details = params
        .optional("authorization_details")
        .map(handoff_core::json::from_str_unique)
        .transpose()
        .map_err(|e| {
            // A member named twice is not a JSON syntax error, and is said as such.
            let reason = if e.is_data() {
                format!("authorization_details is refused: {e}")
            } else {
                "authorization_details is not valid JSON".to_owned()
            };
            ApiError::invalid_authorization_details(reason)
        })?;
    let requested_lifetime = params
        .optional("requested_lifetime")
        .map(str::parse::<u32>)
        .transpose()
        .map_err(|_| {
            ApiError::invalid_request("requested_lifetime must be a number of seconds".to_owned())
        })?;
    Ok(ExchangeRequest {
        subject_token: subject_token.to_owned(),
        actor_token: actor_token.to_owned(),
        audience: audience.to_owned(),
        scope,
        resource: params.optional("resource").map(str::to_owned),
        authorization_details,
        requested_lifetime,
        approval_id: params.optional("approval_id").map(str::to_owned),
    })
}

/// A handoff; the answer carries [`ExchangeFacts`] for the request log and the metrics.
async fn access_token(handoff: &Handoff, request: ExchangeRequest) -> Response {
    // Kept for the facts of a refusal; a permit names its system itself.
    let audience = request.audience.clone();
    let actions = request.scope.clone();
    match handoff.exchange_known(request).await {
        Ok(issued) => {
            let facts = ExchangeFacts {
                decision_id: Some(issued.decision_id.to_string()),
                agent: Some(issued.agent.to_string()),
                task: Some(issued.task.to_string()),
                system: Some(issued.system.to_string()),
                actions,
                outcome: "permit",
                reason: None,
            };
            let mut response = token_response(
                StatusCode::OK,
                json!({
                    "access_token": issued.token.token,
                    "issued_token_type": TYPE_ACCESS_TOKEN,
                    "token_type": "Bearer",
                    "expires_in": issued.expires_in,
                    "scope": issued.token.scope,
                    "decision_id": issued.decision_id.as_str(),
                }),
            );
            response.extensions_mut().insert(facts);
            response
        }
        Err(Rejected { error, agent, task }) => {
            let facts = ExchangeFacts {
                decision_id: error.decision_id().map(str::to_owned),
                agent,
                task,
                system: handoff
                    .config()
                    .system_for_audience(&audience)
                    .map(|s| s.id.to_string()),
                actions,
                outcome: error.outcome(),
                reason: Some(error.code()),
            };
            let mut response = ApiError::from(error).into_response();
            response.extensions_mut().insert(facts);
            response
        }
    }
}

impl<'a> TxnRequest<'a> {
    fn parse(params: &'a FormParams) -> Result<Self, ApiError> {
        let subject_token = params.required("subject_token")?;
        expect_type(params, "subject_token_type", TYPE_JWT)?;
        Ok(Self {
            subject_token,
            audience: params.optional("audience"),
            scope: params.optional("scope"),
            // A missing one is refused by `details`, after the audience and identity checks.
            request_details: params.optional("request_details"),
        })
    }

    /// `request_details` as the body of `POST /v1/tasks`, with `scope` as its purpose.
    pub fn details(&self) -> Result<OpenBody, ApiError> {
        let details = self.request_details.ok_or_else(|| {
            ApiError::invalid_request("parameter `request_details` is required".to_owned())
        })?;
        let mut body: OpenBody = serde_json::from_str(details)
            .map_err(|e| ApiError::invalid_request(format!("request_details: {e}")))?;
        if let Some(scope) = self.scope {
            body.purpose = Some(scope.to_owned());
        }
        Ok(body)
    }
}

/// A Transaction Token request (draft-ietf-oauth-transaction-tokens): the agent's identity as
/// subject token, the purpose as scope, the task in `request_details`.
async fn txn_token(
    handoff: &Handoff,
    request: TxnRequest<'_>,
) -> Result<serde_json::Value, ApiError> {
    if request
        .audience
        .is_some_and(|a| a != handoff.config().trust_domain)
    {
        return Err(ApiError::invalid_target(
            "a txn_token's audience is the trust domain".to_owned(),
        ));
    }
    let identity = handoff.authenticate(request.subject_token)?;
    let body = request.details()?;
    let opened = handoff.open_task(&identity, body.into_request()).await?;
    let mut response = opened_json(handoff, &opened);
    response.insert("access_token".to_owned(), json!(opened.txn_token));
    response.insert("issued_token_type".to_owned(), json!(TYPE_TXN_TOKEN));
    response.insert("token_type".to_owned(), json!("N_A"));
    Ok(serde_json::Value::Object(response))
}
