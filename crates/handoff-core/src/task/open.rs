//! Opening a task: the request checked (intent, user, purpose, plan, lifetime), the purpose's
//! policy asked, and the task stored with its Transaction Token minted, only then answered.

use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::identity::VerifiedIdentity;
use crate::ids::{DecisionId, Purpose, TaskId, UserId};
use crate::limits::{MAX_INTENT_CHARS, MAX_PLAN_ITEMS};
use crate::policy::{DenyReason, OpenDecision};
use crate::refusal::Refused;
use crate::store::{Rejection, StoreError, TaskWrite, Write};
use crate::task::{Task, TaskState, task_event};
use crate::text::{check_identifier, non_empty, truncate};
use crate::time::Ttl;
use crate::token::mint_txn_token_verified;
use std::collections::BTreeSet;

/// Opening a task, as the agent asks.
#[derive(Clone, Debug, Default)]
pub struct OpenTaskRequest {
    pub intent: String,
    pub purpose: String,
    pub user: String,
    pub plan: Vec<String>,
    pub lifetime_seconds: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct OpenedTask {
    pub task: Task,
    pub txn_token: String,
    pub decision_id: DecisionId,
}

impl Handoff {
    /// Opens a task for an authenticated agent, if policy allows.
    pub async fn open_task(
        &self,
        identity: &VerifiedIdentity,
        request: OpenTaskRequest,
    ) -> Result<OpenedTask, ServiceError> {
        let outcome = self.open_task_checked(identity, &request).await;
        let about = || AuditEvent {
            kind: Some(EventKind::TaskOpen),
            user: non_empty(&request.user),
            intent: non_empty(&truncate(&request.intent, MAX_INTENT_CHARS)),
            purpose: non_empty(&request.purpose),
            ..AuditEvent::default()
        };
        let outcome = outcome.map_err(|error| Refused::new(error, about()));
        self.recorded(identity, outcome).await
    }

    async fn open_task_checked(
        &self,
        identity: &VerifiedIdentity,
        request: &OpenTaskRequest,
    ) -> Result<OpenedTask, ServiceError> {
        let config = self.config();
        // Kept verbatim; only an intent of nothing but whitespace is refused.
        let intent = request.intent.as_str();
        if intent.trim().is_empty() {
            return Err(ServiceError::InvalidRequest(
                "`intent` is required".to_owned(),
            ));
        }
        if intent.chars().count() > MAX_INTENT_CHARS {
            return Err(ServiceError::InvalidRequest(format!(
                "`intent` is longer than {MAX_INTENT_CHARS} characters"
            )));
        }
        check_identifier("user", &request.user)?;
        let purpose = config
            .purposes
            .get(&Purpose::new(request.purpose.as_str()))
            .ok_or_else(|| {
                ServiceError::InvalidScope(format!(
                    "purpose `{}` is not declared",
                    truncate(&request.purpose, 64)
                ))
            })?;
        if request.plan.len() > MAX_PLAN_ITEMS {
            return Err(ServiceError::InvalidRequest(format!(
                "a plan names at most {MAX_PLAN_ITEMS} systems"
            )));
        }
        let mut plan = BTreeSet::new();
        for system in &request.plan {
            let known = config.system_for_audience(system).ok_or_else(|| {
                ServiceError::InvalidTarget(format!(
                    "plan names unknown system `{}`",
                    truncate(system, 64)
                ))
            })?;
            plan.insert(known.id.clone());
        }
        let lifetime = match request.lifetime_seconds {
            Some(0) => {
                return Err(ServiceError::InvalidRequest(
                    "`lifetime` must be positive".to_owned(),
                ));
            }
            Some(seconds) => Ttl::from_seconds(seconds.min(purpose.lifetime.seconds())),
            None => purpose.lifetime,
        };
        let decision_id = DecisionId::new(self.id("dec")?);
        let plan_names: Vec<String> = plan.iter().map(ToString::to_string).collect();
        let context = crate::policy::context_for_open(
            intent,
            purpose.id.as_str(),
            &request.user,
            &plan_names,
            lifetime.seconds(),
        );
        let policies =
            match self
                .policy_engine()
                .decide_open(identity.agent(), &purpose.id, context)
            {
                OpenDecision::Allow { policies } => policies,
                OpenDecision::Deny {
                    reason,
                    policies,
                    description,
                } => {
                    return Err(ServiceError::Denied(crate::policy::Denial {
                        decision_id,
                        reason,
                        description,
                        policies,
                    }));
                }
            };
        let agent_revoked = || {
            ServiceError::denied(
                &decision_id,
                DenyReason::AgentRevoked,
                "the agent is revoked",
            )
        };
        if self.store().is_agent_revoked(identity.agent()).await? {
            return Err(agent_revoked());
        }
        let now = self.now();
        let task = Task {
            id: TaskId::new(self.ordered_id("task", now)?),
            agent_issuer: identity.issuer().to_owned(),
            agent: identity.agent().clone(),
            user: UserId::new(request.user.clone()),
            purpose: purpose.id.clone(),
            intent: intent.to_owned(),
            plan,
            created_at: now,
            expires_at: now.plus(lifetime),
            state: TaskState::Open,
        };
        let keys = self.keys();
        let (txn_token, verified) =
            mint_txn_token_verified(&keys, config.issuer(), &config.trust_domain, &task)?;
        let event = AuditEvent {
            kind: Some(EventKind::TaskOpen),
            decision_id: Some(decision_id.to_string()),
            outcome: Some(Outcome::Permit),
            policies,
            policy_set: Some(self.policy_engine().hash().to_owned()),
            kid: Some(keys.active().kid().to_owned()),
            ..task_event(&task)
        };
        let write = Write::new(now, event, TaskWrite::Insert(Box::new(task.clone())));
        match self.store().write(write).await {
            Ok(_) => {}
            // Checked inside the insert's transaction, so a concurrent agent revocation wins.
            Err(StoreError::Rejected(Rejection::AgentRevoked)) => return Err(agent_revoked()),
            Err(e) => return Err(e.into()),
        }
        // Recorded: its token is known as verified from its first use (a task token is
        // checked once, then recognised by hash; `caller.rs`).
        self.remember_task_token(&txn_token, verified);
        Ok(OpenedTask {
            task,
            txn_token,
            decision_id,
        })
    }
}
