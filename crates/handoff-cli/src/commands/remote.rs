//! Operator commands through a running server: `--server URL` (or `HANDOFF_SERVER`) and the
//! operator credential (`HANDOFF_OPERATOR_TOKEN`, or `--operator-token-file`), sent as `Bearer`
//! to the HTTP admin API. Nothing is read from or written to a local data directory.

use anyhow::{Context as _, bail};
use serde_json::Value;
use std::path::Path;

/// A running server and the operator credential to call it with.
pub struct Remote {
    server: String,
    token: String,
}

impl Remote {
    /// The server at `server` with the credential from `token_file`, else `HANDOFF_OPERATOR_TOKEN`.
    pub fn new(server: &str, token_file: Option<&Path>) -> anyhow::Result<Self> {
        let token = match token_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read `{}`", path.display()))?,
            None => std::env::var("HANDOFF_OPERATOR_TOKEN").unwrap_or_default(),
        };
        let token = token.trim().to_owned();
        if token.is_empty() {
            bail!(
                "an operator credential is required: set HANDOFF_OPERATOR_TOKEN or give \
                 --operator-token-file (the server's <data-dir>/keys/operator-secret)"
            );
        }
        Ok(Self {
            server: server.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Calls `method path` with `body` (JSON) as the operator: the answer's status and JSON.
    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.server);
        let client = reqwest::Client::new();
        let mut request = client.request(method, &url).bearer_auth(&self.token);
        // Records name the person at the keyboard beside the operator credential.
        if let Ok(user) = std::env::var("USER")
            && !user.trim().is_empty()
        {
            request = request.header("handoff-operator", user);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        send(request)
    }
}

impl Remote {
    /// `GET path` as the operator, from inside a runtime: the answer's JSON as `T`, or an error
    /// naming the refusal.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.server);
        let response = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach `{}`", self.server))?;
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("the answer of `{url}` is not JSON"))?;
        if status != 200 {
            let text = |key: &str| {
                body.get(key)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            bail!(
                "`{url}` refused: {} ({})",
                text("error_description"),
                text("error")
            );
        }
        serde_json::from_value(body)
            .with_context(|| format!("the answer of `{url}` is not what Handoff serves"))
    }
}

/// Sends `request` and waits for it: the answer's status and JSON. Every CLI command that calls
/// a running server goes through here.
pub fn send(request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
    let (client, request) = request.build_split();
    let request = request.context("cannot reach the server: its URL is not valid")?;
    let url = request.url().to_string();
    let server = request.url().origin().ascii_serialization();
    super::runtime()?.block_on(async {
        let response = client
            .execute(request)
            .await
            .with_context(|| format!("cannot reach `{server}`"))?;
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("the answer of `{url}` is not JSON"))?;
        anyhow::Ok((status, body))
    })
}

/// Prints a refusal (`error: description (code)`, then any `problems`, one a line) to stderr.
pub fn print_refusal(body: &Value) {
    let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or("");
    eprintln!("error: {} ({})", text("error_description"), text("error"));
    for problem in body
        .get("problems")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        eprintln!("  {problem}");
    }
}
