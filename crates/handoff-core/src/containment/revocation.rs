//! Revocation and containment: what can be cut, and the feed verifiers that cannot call back use
//! to keep a local deny list.

use crate::task::TaskState;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// What an entry of the revocation feed cuts (or, for `unfreeze`, restores).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// One access token, by `jti`. Permanent.
    Token,
    /// A task: every token minted under it, and anything it would mint. Permanent.
    Task,
    /// An agent: its open tasks, and any task it would open. Permanent.
    Agent,
    /// A system: no new tokens for it, and its live tokens are inactive, until unfrozen.
    Freeze,
    Unfreeze,
    /// A delegation: its delegate's and every sub-delegate's tokens and exchanges. Permanent.
    Delegation,
}

impl RevocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Task => "task",
            Self::Agent => "agent",
            Self::Freeze => "freeze",
            Self::Unfreeze => "unfreeze",
            Self::Delegation => "delegation",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "token" => Some(Self::Token),
            "task" => Some(Self::Task),
            "agent" => Some(Self::Agent),
            "freeze" => Some(Self::Freeze),
            "unfreeze" => Some(Self::Unfreeze),
            "delegation" => Some(Self::Delegation),
            _ => None,
        }
    }
}

/// A revocation to apply: who did it and why travel with it into the feed and the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub kind: RevocationKind,
    /// The token's `jti`, the task id, the agent id or the system id.
    pub subject: String,
    pub reason: String,
    pub actor: String,
}

/// One entry of the feed, in the order revocations took effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEntry {
    pub seq: u64,
    pub kind: RevocationKind,
    #[serde(rename = "id")]
    pub subject: String,
    pub at: Timestamp,
    pub reason: String,
}

/// Everything a minted token's validity depends on besides its signature and expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenStatus {
    pub token_revoked: bool,
    /// `None` when the task is unknown.
    pub task_state: Option<TaskState>,
    pub system_frozen: bool,
}

impl TokenStatus {
    pub fn is_active(&self) -> bool {
        !self.token_revoked && self.task_state == Some(TaskState::Open) && !self.system_frozen
    }
}
