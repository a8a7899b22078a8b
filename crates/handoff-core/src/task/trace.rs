//! A task's whole story as a tree: the task (intent, user, agent), every record about it in
//! order, each gateway use under the grant whose token it used, and each delegation as a node
//! under the delegation (or the task) it descends from, holding what its delegate did. What
//! `handoff trace`, `GET /v1/tasks/{id}/trace` and the console's task view show; built from the
//! chain alone, so what it shows is what the chain proves.

use crate::audit::{AuditEvent, EventKind, SealedRecord};
use crate::delegation::Delegation;
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::ids::TaskId;
use crate::store::{Store, StoreError};
use crate::task::Task;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A task and everything recorded about it, as a tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskTrace {
    pub task: TaskHeader,
    /// What the task's own agent did, and what was done to the task, in chain order.
    pub steps: Vec<Step>,
    /// The delegations made by the task's agent, each with its delegate's steps and the
    /// delegations it made in turn.
    pub delegations: Vec<DelegationNode>,
    /// Records that could not be read (named by sequence number): a trace never hides one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<u64>,
    /// The task's oldest records left out when it has more than were asked for (the newest are
    /// kept): a trace says so rather than hiding them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub records_left_out: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Most records `GET /v1/tasks/{id}/trace` and `handoff trace` read of one task (the newest).
pub const MAX_TRACE_RECORDS: usize = 10_000;

/// Who the task acts for, why, and by whom.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskHeader {
    pub id: String,
    pub agent: String,
    pub agent_issuer: String,
    pub user: String,
    pub purpose: String,
    pub intent: String,
    pub plan: Vec<String>,
    pub state: String,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "crate::time::rfc3339")]
    pub expires_at: Timestamp,
}

/// One record: when, its sequence number in the chain, and the record itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub seq: u64,
    #[serde(with = "crate::time::rfc3339")]
    pub at: Timestamp,
    pub event: AuditEvent,
    /// The gateway's uses of the token this step minted, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<Step>,
}

/// A delegation, what its delegate did under it, and the delegations it made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DelegationNode {
    pub id: String,
    pub delegate: String,
    /// From the delegate back to the task's agent.
    pub actors: Vec<String>,
    pub depth: u32,
    pub actions: Vec<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "crate::time::rfc3339")]
    pub expires_at: Timestamp,
    pub steps: Vec<Step>,
    pub delegations: Vec<DelegationNode>,
}

impl TaskTrace {
    /// The tree of `task`'s `records` (in chain order) and `delegations`. A record made under a
    /// delegation, or revoking it, goes to that delegation's node; the record that made a
    /// delegation stays with the one who made it; a use goes under the step that minted its token
    /// (or stands alone when that step is not among the records).
    pub fn build(task: &Task, records: &[SealedRecord], delegations: &[Delegation]) -> Self {
        // Where each delegation hangs: its parent is the one before it in its chain.
        let known: HashMap<&str, &Delegation> =
            delegations.iter().map(|d| (d.id.as_str(), d)).collect();
        let parent_of = |id: &str| -> Option<String> {
            let chain = &known.get(id)?.chain;
            let position = chain.iter().position(|c| c == id)?;
            chain.get(position.checked_sub(1)?).cloned()
        };
        // Steps by owner: `None` is the task itself.
        let mut steps: BTreeMap<Option<String>, Vec<Step>> = BTreeMap::new();
        let mut unreadable = Vec::new();
        // Which owner and position minted each token, for the uses that follow.
        let mut minted: HashMap<String, (Option<String>, usize)> = HashMap::new();
        for record in records {
            let Ok(event) = record.event() else {
                unreadable.push(record.seq);
                continue;
            };
            // A delegation's revocation is part of its story: it goes under the delegation.
            let revoked = (event.kind == Some(EventKind::Revoke))
                .then(|| event.target.as_deref()?.strip_prefix("delegation:"))
                .flatten();
            let delegation = event
                .delegation
                .as_deref()
                .or(revoked)
                .filter(|d| known.contains_key(d));
            let owner = match (event.kind, delegation) {
                (Some(EventKind::Delegate), Some(id)) => parent_of(id),
                (_, Some(id)) => Some(id.to_owned()),
                (_, None) => None,
            };
            let step = Step {
                seq: record.seq,
                at: record.at,
                event,
                uses: Vec::new(),
            };
            let jti = step.event.token.as_ref().map(|t| t.jti.clone());
            if step.event.kind == Some(EventKind::Use)
                && let Some((owner, index)) = jti.as_ref().and_then(|j| minted.get(j))
                && let Some(grant) = steps.get_mut(owner).and_then(|s| s.get_mut(*index))
            {
                grant.uses.push(step);
                continue;
            }
            let list = steps.entry(owner.clone()).or_default();
            if let Some(jti) = jti
                && step.event.kind != Some(EventKind::Use)
            {
                minted.insert(jti, (owner, list.len()));
            }
            list.push(step);
        }
        let mut children: BTreeMap<Option<String>, Vec<&Delegation>> = BTreeMap::new();
        for delegation in delegations {
            children
                .entry(parent_of(&delegation.id))
                .or_default()
                .push(delegation);
        }
        for list in children.values_mut() {
            list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        }
        let root = nodes(None, &children, &mut steps, 0);
        Self {
            task: TaskHeader::of(task),
            steps: steps.remove(&None).unwrap_or_default(),
            delegations: root,
            unreadable,
            records_left_out: 0,
        }
    }

    /// Every step of the tree, depth first: the task's own, then each delegation's.
    pub fn len(&self) -> usize {
        fn count(steps: &[Step]) -> usize {
            steps.iter().map(|s| 1 + count(&s.uses)).sum()
        }
        fn under(nodes: &[DelegationNode]) -> usize {
            nodes
                .iter()
                .map(|n| count(&n.steps) + under(&n.delegations))
                .sum()
        }
        count(&self.steps) + under(&self.delegations)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Handoff {
    /// `task`'s trace over its newest `newest` records, from the store as it is now; an unknown
    /// task is `invalid_target`.
    pub async fn task_trace(
        &self,
        task: &TaskId,
        newest: usize,
    ) -> Result<TaskTrace, ServiceError> {
        read(self.store().as_ref(), task, newest)
            .await?
            .ok_or_else(|| ServiceError::InvalidTarget("no such task".to_owned()))
    }
}

/// `task`'s trace over its newest `newest` records in `store` (what offline commands read), or
/// `None` for an unknown task.
pub async fn read(
    store: &dyn Store,
    task: &TaskId,
    newest: usize,
) -> Result<Option<TaskTrace>, StoreError> {
    let Some(snapshot) = store.task(task).await? else {
        return Ok(None);
    };
    let records = store.task_records(task).await?;
    let delegations = store.task_delegations(task).await?;
    let skip = records.len().saturating_sub(newest);
    Ok(Some(TaskTrace {
        records_left_out: skip,
        ..TaskTrace::build(
            &snapshot.task,
            records.get(skip..).unwrap_or_default(),
            &delegations,
        )
    }))
}

/// Delegations nest no deeper than the config allows; this bounds the recursion regardless.
const MAX_DEPTH: usize = 64;

fn nodes(
    parent: Option<String>,
    children: &BTreeMap<Option<String>, Vec<&Delegation>>,
    steps: &mut BTreeMap<Option<String>, Vec<Step>>,
    depth: usize,
) -> Vec<DelegationNode> {
    if depth >= MAX_DEPTH {
        return Vec::new();
    }
    let Some(list) = children.get(&parent) else {
        return Vec::new();
    };
    list.iter()
        .map(|d| {
            let id = Some(d.id.clone());
            DelegationNode {
                id: d.id.clone(),
                delegate: d.delegate.to_string(),
                actors: d.actors.clone(),
                depth: d.depth,
                actions: d.actions.iter().map(ToString::to_string).collect(),
                created_at: d.created_at,
                expires_at: d.expires_at,
                steps: steps.remove(&id).unwrap_or_default(),
                delegations: nodes(id, children, steps, depth + 1),
            }
        })
        .collect()
}

impl TaskHeader {
    pub fn of(task: &Task) -> Self {
        Self {
            id: task.id.to_string(),
            agent: task.agent.to_string(),
            agent_issuer: task.agent_issuer.clone(),
            user: task.user.to_string(),
            purpose: task.purpose.to_string(),
            intent: task.intent.clone(),
            plan: task.plan.iter().map(ToString::to_string).collect(),
            state: task.state.as_str().to_owned(),
            created_at: task.created_at,
            expires_at: task.expires_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Outcome, TokenRecord, UsageRecord, seal};
    use crate::ids::{AgentId, TaskId, UserId};
    use crate::task::TaskState;

    fn task() -> Task {
        Task {
            id: TaskId::new("task_1"),
            agent_issuer: "iss".into(),
            agent: AgentId::new("agent"),
            user: UserId::new("alice"),
            purpose: crate::ids::Purpose::new("release"),
            intent: "ship it".into(),
            plan: Default::default(),
            created_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(60_000),
            state: TaskState::Open,
        }
    }

    fn delegation(id: &str, chain: &[&str], delegate: &str) -> Delegation {
        Delegation {
            id: id.into(),
            task: TaskId::new("task_1"),
            chain: chain.iter().map(|c| (*c).to_owned()).collect(),
            actors: vec![delegate.into(), "agent".into()],
            delegate_issuer: "iss".into(),
            delegate: AgentId::new(delegate),
            actions: Default::default(),
            depth: chain.len() as u32,
            created_at: Timestamp::from_millis(chain.len() as i64),
            expires_at: Timestamp::from_millis(60_000),
        }
    }

    fn record(seq: u64, event: AuditEvent) -> SealedRecord {
        let event = AuditEvent {
            task: Some("task_1".into()),
            ..event
        };
        seal(seq, Timestamp::from_millis(seq as i64), "", event).unwrap()
    }

    fn token(jti: &str) -> Option<TokenRecord> {
        Some(TokenRecord {
            jti: jti.into(),
            aud: "git".into(),
            scope: "git:push".into(),
            exp: 60,
        })
    }

    #[test]
    fn uses_go_under_their_grant_and_delegates_steps_under_their_delegation() {
        let delegations = [
            delegation("del_a", &["del_a"], "worker"),
            delegation("del_b", &["del_a", "del_b"], "helper"),
        ];
        let records = [
            record(
                1,
                AuditEvent {
                    kind: Some(EventKind::TaskOpen),
                    ..AuditEvent::default()
                },
            ),
            record(
                2,
                AuditEvent {
                    kind: Some(EventKind::Exchange),
                    outcome: Some(Outcome::Permit),
                    token: token("tok_1"),
                    ..AuditEvent::default()
                },
            ),
            record(
                3,
                AuditEvent {
                    kind: Some(EventKind::Delegate),
                    delegation: Some("del_a".into()),
                    ..AuditEvent::default()
                },
            ),
            record(
                4,
                AuditEvent {
                    kind: Some(EventKind::Delegate),
                    delegation: Some("del_b".into()),
                    ..AuditEvent::default()
                },
            ),
            record(
                5,
                AuditEvent {
                    kind: Some(EventKind::Exchange),
                    outcome: Some(Outcome::Deny),
                    delegation: Some("del_b".into()),
                    ..AuditEvent::default()
                },
            ),
            record(
                6,
                AuditEvent {
                    kind: Some(EventKind::Use),
                    token: token("tok_1"),
                    usage: Some(UsageRecord {
                        call: "POST /x".into(),
                        status: 200,
                        bytes_in: 0,
                        bytes_out: 0,
                        latency_us: 1,
                    }),
                    ..AuditEvent::default()
                },
            ),
            record(
                7,
                AuditEvent {
                    kind: Some(EventKind::Revoke),
                    target: Some("delegation:del_b".into()),
                    ..AuditEvent::default()
                },
            ),
        ];
        let trace = TaskTrace::build(&task(), &records, &delegations);
        let seqs = |steps: &[Step]| steps.iter().map(|s| s.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&trace.steps), [1, 2, 3]);
        assert_eq!(seqs(&trace.steps[1].uses), [6]);
        let a = &trace.delegations[0];
        assert_eq!((a.id.as_str(), seqs(&a.steps)), ("del_a", vec![4]));
        let b = &a.delegations[0];
        assert_eq!((b.id.as_str(), seqs(&b.steps)), ("del_b", vec![5, 7]));
        assert_eq!(trace.len(), records.len());
        // The JSON reads back as the same tree.
        let json = serde_json::to_string(&trace).unwrap();
        assert_eq!(serde_json::from_str::<TaskTrace>(&json).unwrap(), trace);
        assert!(
            json.contains("\"at\":\"1970-01-01T00:00:00.002Z\""),
            "{json}"
        );
    }
}
