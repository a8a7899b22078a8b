//! Delegation: a task's agent hands part of the task to another workload. The delegate acts on
//! the same task (its history, intent and budgets), never beyond the actions and lifetime it was
//! given, and every token it gets names the whole chain of actors.

use crate::ids::{ActionName, AgentId, TaskId};
use crate::time::Timestamp;
use crate::token::Actor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    pub id: String,
    pub task: TaskId,
    /// The delegations this one descends from, outermost first, then this one's own id:
    /// revoking any of them cuts this one.
    pub chain: Vec<String>,
    /// The actors from this delegate back to the task's agent: `[delegate, ..., agent]`.
    pub actors: Vec<String>,
    /// The issuer that must vouch for the delegate.
    pub delegate_issuer: String,
    pub delegate: AgentId,
    /// Never more than the delegator held.
    pub actions: BTreeSet<ActionName>,
    /// 1 for a delegation by the task's agent, 2 for one by its delegate, ...
    pub depth: u32,
    pub created_at: Timestamp,
    /// Never later than the task's, or the parent delegation's, expiry.
    pub expires_at: Timestamp,
}

impl Delegation {
    /// The actor chain as RFC 8693 §4.1 nests it, the acting delegate outermost:
    /// `{sub: delegate, iss, act: {sub: ..., act: {sub: agent}}}`. One builder for the child
    /// Transaction Token and every access token minted under the delegation.
    pub fn actor(&self, delegate_issuer: Option<&str>) -> Actor {
        let above = self.actors.iter().skip(1).rev().fold(None, |inner, sub| {
            Some(Box::new(Actor {
                sub: sub.clone(),
                iss: None,
                act: inner,
            }))
        });
        Actor {
            sub: self.delegate.to_string(),
            iss: delegate_issuer.map(str::to_owned),
            act: above,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actor_chain_nests_outward_from_the_delegate() {
        let delegation = Delegation {
            id: "del_1".into(),
            task: TaskId::new("task_1"),
            chain: vec!["del_1".into()],
            actors: vec!["worker".into(), "agent".into()],
            delegate_issuer: "iss".into(),
            delegate: AgentId::new("worker"),
            actions: BTreeSet::new(),
            depth: 1,
            created_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(0),
        };
        assert_eq!(
            serde_json::to_value(delegation.actor(None)).unwrap(),
            serde_json::json!({"sub": "worker", "act": {"sub": "agent"}})
        );
    }
}
