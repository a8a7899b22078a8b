//! Handing part of a task to another workload: a child Transaction Token for the delegate, and
//! the delegation a task token carries. (A delegate's every exchange is checked against what it
//! was handed in [`crate::exchange::admission`].)

use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::delegation::Delegation;
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::identity::VerifiedIdentity;
use crate::ids::{ActionName, AgentId, DecisionId};
use crate::limits::{MAX_NAME_CHARS, MAX_SCOPE_ITEMS};
use crate::policy::DenyReason;
use crate::refusal::Refused;
use crate::store::{Effect, TaskWrite, Write};
use crate::task::{TaskSnapshot, task_event};
use crate::text::{check_identifier, truncate};
use crate::time::Ttl;
use crate::token::{VerifiedTxn, mint_delegated_txn_token};
use std::collections::BTreeSet;

/// A delegation, as the delegating workload asks for it.
#[derive(Clone, Debug, Default)]
pub struct DelegateRequest {
    /// The delegator's workload identity.
    pub actor_token: String,
    /// The delegator's Transaction Token (the task's, or its own child token).
    pub subject_token: String,
    /// The delegate's workload id (`sub`, or the issuer's agent claim).
    pub delegate: String,
    /// The issuer that vouches for the delegate; the delegator's when absent.
    pub delegate_issuer: Option<String>,
    /// `system:action` items: a subset of what the delegator holds.
    pub scope: Vec<String>,
    pub lifetime_seconds: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct Delegated {
    pub delegation: Delegation,
    pub txn_token: String,
}

impl Handoff {
    /// The delegation a task token carries, as the store holds it now.
    pub(crate) async fn delegation_of(
        &self,
        txn: &VerifiedTxn,
    ) -> Result<Option<Delegation>, ServiceError> {
        let Some(id) = txn.delegation() else {
            return Ok(None);
        };
        let delegation = self.store().delegation(id).await?.ok_or_else(|| {
            ServiceError::InvalidGrant("the task token names an unknown delegation".to_owned())
        })?;
        if &delegation.task != txn.task() || delegation.delegate.as_str() != txn.claims().req_wl {
            return Err(ServiceError::InvalidGrant(
                "the task token does not match its delegation".to_owned(),
            ));
        }
        Ok(Some(delegation))
    }

    /// Hands part of a task to another workload: a child Transaction Token for the delegate,
    /// never more than the delegator holds, never outliving it, at most `max_depth` deep.
    pub async fn delegate(&self, request: DelegateRequest) -> Result<Delegated, ServiceError> {
        let identity = self.authenticate(&request.actor_token)?;
        let outcome = self.delegate_as(&identity, &request).await;
        self.recorded(&identity, outcome).await
    }

    /// Resolves the task the delegator acts in, then delegates; a refusal names as much of the
    /// request as was known.
    async fn delegate_as(
        &self,
        identity: &VerifiedIdentity,
        request: &DelegateRequest,
    ) -> Result<Delegated, Refused> {
        let mut about = AuditEvent {
            kind: Some(EventKind::Delegate),
            actions: request
                .scope
                .iter()
                .take(MAX_SCOPE_ITEMS)
                .cloned()
                .collect(),
            ..AuditEvent::default()
        };
        let txn = self
            .verify_task_token(&request.subject_token)
            .map_err(|error| Refused::new(error, about.clone()))?;
        about.task = Some(txn.task().to_string());
        let (parent, snapshot) = self
            .delegation_task(&txn, request)
            .await
            .map_err(|error| Refused::new(error, about.clone()))?;
        let about = AuditEvent {
            kind: Some(EventKind::Delegate),
            actions: about.actions,
            ..task_event(&snapshot.task)
        };
        let decision_id = DecisionId::new(
            self.id("dec")
                .map_err(|error| Refused::new(error, about.clone()))?,
        );
        let about = AuditEvent {
            decision_id: Some(decision_id.to_string()),
            ..about
        };
        let delegated = self
            .delegate_checked(identity, request, parent, &snapshot, &decision_id, &about)
            .await;
        delegated.map_err(|error| Refused::new(error, about))
    }

    /// The delegate's name checked, and the task and parent delegation the token names.
    async fn delegation_task(
        &self,
        txn: &VerifiedTxn,
        request: &DelegateRequest,
    ) -> Result<(Option<Delegation>, TaskSnapshot), ServiceError> {
        check_identifier("delegate", &request.delegate)?;
        if let Some(issuer) = &request.delegate_issuer {
            check_identifier("delegate_issuer", issuer)?;
        }
        let parent = self.delegation_of(txn).await?;
        let snapshot = self.store().task(txn.task()).await?.ok_or_else(|| {
            ServiceError::InvalidGrant("the task token names an unknown task".to_owned())
        })?;
        Ok((parent, snapshot))
    }

    async fn delegate_checked(
        &self,
        identity: &VerifiedIdentity,
        request: &DelegateRequest,
        parent: Option<Delegation>,
        snapshot: &TaskSnapshot,
        decision_id: &DecisionId,
        about: &AuditEvent,
    ) -> Result<Delegated, ServiceError> {
        let task = &snapshot.task;
        let now = self.now();
        // The delegator is the task's agent, or the delegate its child token names.
        self.admit_caller(snapshot, identity, parent.as_ref(), decision_id, now)
            .await?;
        let depth = parent.as_ref().map_or(0, |p| p.depth).saturating_add(1);
        let max_depth = self.config().delegation.max_depth;
        if depth > max_depth {
            return Err(ServiceError::denied(
                decision_id,
                DenyReason::DelegationDepth,
                format!("delegation depth {depth} exceeds the configured maximum of {max_depth}"),
            ));
        }
        // Work is handed to another workload: never to the delegator itself, nor back up the
        // chain (the task's agent, a delegate above), which would only relabel who acts.
        let above = match &parent {
            Some(parent) => parent.actors.clone(),
            None => vec![task.agent.to_string()],
        };
        if let Some(actor) = above
            .iter()
            .chain(std::iter::once(&identity.agent().to_string()))
            .find(|actor| actor.eq_ignore_ascii_case(&request.delegate))
        {
            return Err(ServiceError::denied(
                decision_id,
                DenyReason::SelfDelegation,
                format!("`{actor}` already acts in this task; delegate to another workload"),
            ));
        }
        let actions = self.delegated_actions(&request.scope)?;
        // Nothing the task could not reach itself: every system in its plan.
        let Some(purpose) = self.config().purposes.get(&task.purpose) else {
            return Err(ServiceError::denied(
                decision_id,
                DenyReason::PolicyError,
                format!("purpose `{}` is no longer declared", task.purpose),
            ));
        };
        for action in &actions {
            if let Some((system, _)) = self.config().action(action.as_str()) {
                crate::budget::check_plan(purpose, task, system).map_err(
                    |(reason, description)| ServiceError::denied(decision_id, reason, description),
                )?;
            }
        }
        if let Some(parent) = &parent
            && let Some(extra) = actions.iter().find(|a| !parent.actions.contains(*a))
        {
            return Err(ServiceError::denied(
                decision_id,
                DenyReason::OutsideDelegation,
                format!("`{extra}` was not delegated to the delegator"),
            ));
        }
        // Never outlives what it descends from: the task, and the parent delegation.
        let mut expires_at = task.expires_at;
        if let Some(parent) = &parent {
            expires_at = expires_at.min(parent.expires_at);
        }
        if let Some(seconds) = request.lifetime_seconds {
            expires_at = expires_at.min(now.plus(Ttl::from_seconds(seconds.max(1))));
        }
        let id = self.id("del")?;
        let mut chain = parent.as_ref().map_or_else(Vec::new, |p| p.chain.clone());
        chain.push(id.clone());
        let mut actors = vec![request.delegate.clone()];
        match &parent {
            Some(parent) => actors.extend(parent.actors.iter().cloned()),
            None => actors.push(task.agent.to_string()),
        }
        let delegation = Delegation {
            id: id.clone(),
            task: task.id.clone(),
            chain,
            actors,
            delegate_issuer: request
                .delegate_issuer
                .clone()
                .unwrap_or_else(|| identity.issuer().to_owned()),
            delegate: AgentId::new(request.delegate.as_str()),
            actions,
            depth,
            created_at: now,
            expires_at,
        };
        let config = self.config();
        let keys = self.keys();
        let txn_token = mint_delegated_txn_token(
            &keys,
            config.issuer(),
            &config.trust_domain,
            task,
            &delegation,
        )?;
        let record = AuditEvent {
            outcome: Some(Outcome::Permit),
            agent: Some(identity.agent().to_string()),
            agent_issuer: Some(identity.issuer().to_owned()),
            actions: delegation.actions.iter().map(ToString::to_string).collect(),
            target: Some(format!("agent:{}", delegation.delegate)),
            delegation: Some(id),
            kid: Some(keys.active().kid().to_owned()),
            description: Some(format!(
                "delegated to `{}` (depth {depth}) until {}",
                delegation.delegate, delegation.expires_at
            )),
            ..about.clone()
        };
        let mut write = Write::new(now, record, TaskWrite::None);
        write
            .effects
            .push(Effect::InsertDelegation(Box::new(delegation.clone())));
        self.store().write(write).await?;
        Ok(Delegated {
            delegation,
            txn_token,
        })
    }

    /// `system:action` items naming declared actions, at least one and not too many.
    fn delegated_actions(&self, scope: &[String]) -> Result<BTreeSet<ActionName>, ServiceError> {
        if scope.is_empty() || scope.len() > MAX_SCOPE_ITEMS {
            return Err(ServiceError::InvalidScope(format!(
                "`scope` must name 1 to {MAX_SCOPE_ITEMS} `system:action` items"
            )));
        }
        let mut actions = BTreeSet::new();
        for item in scope {
            let (_, action) = self.config().action(item).ok_or_else(|| {
                ServiceError::InvalidScope(format!(
                    "`{}` is not a declared `system:action`",
                    truncate(item, MAX_NAME_CHARS)
                ))
            })?;
            actions.insert(action.name.clone());
        }
        Ok(actions)
    }
}
