//! What a handler tells the request log and the metrics about the request it answered: response
//! extensions the listener reads after the handler ran. Identifiers and codes only, never a
//! token, secret or key.

/// One token exchange (a handoff): its decision and what it was for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExchangeFacts {
    pub decision_id: Option<String>,
    pub agent: Option<String>,
    pub task: Option<String>,
    /// The system the exchange was for, when the audience named a registered one.
    pub system: Option<String>,
    pub actions: Vec<String>,
    /// `permit`, `deny`, `pending` (an approval is awaited) or `error`.
    pub outcome: &'static str,
    /// The stable reason code of a refusal (`no_permit`, `invalid_grant`, ...).
    pub reason: Option<&'static str>,
}

/// One call the gateway relayed to a system's upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardFacts {
    pub system: String,
    /// The upstream's status, or `None` when it could not be reached.
    pub upstream_status: Option<u16>,
}

/// One MCP tool call through the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCallFacts {
    /// A tool the deployment declares (never a name only the caller made up).
    pub tool: String,
}
