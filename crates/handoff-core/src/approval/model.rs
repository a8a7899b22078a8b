//! Human approval gates: a permit that needs a person waits as an approval bound to the canonical
//! hash of one exact request. It can be approved once, by a member of the owning group who is
//! neither the agent nor (by default) the user, and released once, before it expires.
//! The data model follows the OpenID AuthZEN access request and approval profile's statuses.

use crate::hash::sha256_hex;
use crate::ids::{AgentId, SystemId, TaskId, UserId};
use crate::notify::{Notice, NoticeKind};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Where an approval stands. Anything but `Approved` releases nothing; an unknown stored status
/// does not parse, so it can never be mistaken for approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "approved" => Some(Self::Approved),
            "denied" => Some(Self::Denied),
            "expired" => Some(Self::Expired),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// One approval request and its fate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Approval {
    pub id: String,
    pub task: TaskId,
    pub agent: AgentId,
    pub user: UserId,
    pub system: SystemId,
    pub actions: Vec<String>,
    pub resource: Option<String>,
    pub details: Option<Value>,
    /// SHA-256 of the canonical request; a poll must hash to the same value.
    pub request_hash: String,
    /// The group whose members may decide.
    pub group: String,
    pub risk: String,
    pub status: ApprovalStatus,
    pub created_at: Timestamp,
    /// Nobody deciding by then expires it; once approved, it must be used by then, and the token
    /// minted from it expires no later.
    pub expires_at: Timestamp,
    pub decided_by: Option<String>,
    pub decided_at: Option<Timestamp>,
    pub reason: Option<String>,
    /// The `jti` of the one token minted from it.
    pub consumed_by: Option<String>,
    pub escalated: bool,
}

impl Approval {
    /// A notice of `kind` about this approval, to its group with `escalation` as the contact.
    pub fn notice(
        &self,
        kind: NoticeKind,
        escalation: Option<String>,
        description: String,
    ) -> Notice {
        Notice {
            kind,
            system: Some(self.system.to_string()),
            owner: Some(self.group.clone()),
            escalation,
            task: Some(self.task.to_string()),
            agent: Some(self.agent.to_string()),
            user: Some(self.user.to_string()),
            intent: None,
            reason: kind.as_str().to_owned(),
            description,
            decision_id: None,
            approval_id: Some(self.id.clone()),
        }
    }

    /// The status as of `now`: a pending or unused approved approval past its time is expired.
    pub fn status_at(&self, now: Timestamp) -> ApprovalStatus {
        match self.status {
            ApprovalStatus::Pending | ApprovalStatus::Approved if now >= self.expires_at => {
                ApprovalStatus::Expired
            }
            status => status,
        }
    }
}

/// Serialises `value` with object keys sorted at every depth (as RFC 8785 does), so the same
/// request always hashes the same whatever order its fields arrived in. (`serde_json` keeps
/// insertion order when another crate enables its `preserve_order` feature, so its own output is
/// not canonical.)
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(item) = map.get(key) {
                    write_canonical(item, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The canonical hash of one exact request.
/// The agent is not part of it: the task binds its agent, and a delegate acting in the task may
/// use an approval for exactly the request it was granted for.
pub fn request_hash(
    task: &TaskId,
    system: &SystemId,
    actions: &[String],
    resource: Option<&str>,
    details: Option<&Value>,
) -> String {
    let mut actions = actions.to_vec();
    actions.sort();
    let canonical = json!({
        "task": task.as_str(),
        "system": system.as_str(),
        "actions": actions,
        "resource": resource,
        "authorization_details": details,
    });
    sha256_hex(canonical_json(&canonical).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_key_order_and_action_order_but_not_values() {
        let (task, system) = (TaskId::new("t"), SystemId::new("s"));
        let one: Value =
            serde_json::from_str(r#"[{"type":"p","amount":5,"currency":"EUR"}]"#).unwrap();
        let two: Value =
            serde_json::from_str(r#"[{"currency":"EUR","amount":5,"type":"p"}]"#).unwrap();
        let more: Value =
            serde_json::from_str(r#"[{"currency":"EUR","amount":6,"type":"p"}]"#).unwrap();
        let actions = ["p:b".to_owned(), "p:a".to_owned()];
        let reversed = ["p:a".to_owned(), "p:b".to_owned()];
        let h1 = request_hash(&task, &system, &actions, None, Some(&one));
        assert_eq!(
            h1,
            request_hash(&task, &system, &reversed, None, Some(&two))
        );
        assert_ne!(
            h1,
            request_hash(&task, &system, &actions, None, Some(&more))
        );
        assert_ne!(
            h1,
            request_hash(&task, &system, &actions, Some("r"), Some(&one))
        );
        assert_ne!(
            h1,
            request_hash(&TaskId::new("u"), &system, &actions, None, Some(&one))
        );
    }
}
