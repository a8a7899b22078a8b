//! Admission: what a request must pass before policy is asked (the task is open and the caller's,
//! or a delegate's within its delegation; the system is not frozen; the plan and the purpose's
//! budgets leave room), decided in one place for the exchange, a delegation and a listing of
//! what a caller can reach, so they never disagree.

use super::request::Resolved;
use crate::config::{ActionConfig, SystemConfig};
use crate::delegation::Delegation;
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::identity::VerifiedIdentity;
use crate::ids::{ActionName, DecisionId};
use crate::limits::MAX_SCOPE_ITEMS;
use crate::notify::{Notice, NoticeKind};
use crate::policy::DenyReason;
use crate::task::{TaskSnapshot, TaskState};
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// Most actions one reachability question may name.
pub const MAX_REACH_ITEMS: usize = 4 * MAX_SCOPE_ITEMS;

/// The notice a containment breach sends the system's owner; other refusals send none.
fn breach_notice(reason: DenyReason) -> Option<NoticeKind> {
    match reason {
        DenyReason::OutsidePlan => Some(NoticeKind::OutsidePlan),
        DenyReason::BudgetExchanges
        | DenyReason::BudgetSystems
        | DenyReason::BudgetWrites
        | DenyReason::BudgetLiveTokens => Some(NoticeKind::BudgetExceeded),
        _ => None,
    }
}

/// The task must be this agent's, open and unexpired.
/// `delegated`: the actor is a delegate, checked against its delegation instead.
fn check_task(
    snapshot: &TaskSnapshot,
    identity: &VerifiedIdentity,
    delegated: bool,
    decision_id: &DecisionId,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let deny = |reason, description| Err(ServiceError::denied(decision_id, reason, description));
    let task = &snapshot.task;
    if !delegated && (&task.agent != identity.agent() || task.agent_issuer != identity.issuer()) {
        return deny(
            DenyReason::NotTaskAgent,
            "the actor is not the task's agent",
        );
    }
    match task.state {
        TaskState::Open => {}
        TaskState::Ended => return deny(DenyReason::TaskEnded, "the task has ended"),
        TaskState::Revoked => return deny(DenyReason::TaskRevoked, "the task was revoked"),
    }
    if now >= task.expires_at {
        return deny(DenyReason::TaskExpired, "the task has expired");
    }
    Ok(())
}

impl Handoff {
    /// An exchange's admission: the caller may act in the task, and the requested actions are
    /// within its reach. A breach of the plan or a budget tells the system's owner.
    pub(super) async fn admit(
        &self,
        identity: &VerifiedIdentity,
        resolved: &Resolved<'_>,
        snapshot: &TaskSnapshot,
        frozen: bool,
        decision_id: &DecisionId,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let delegation = resolved.delegation.as_ref();
        self.admit_caller(snapshot, identity, delegation, decision_id, now)
            .await?;
        let admitted = self.admit_actions(
            snapshot,
            delegation,
            resolved.system,
            frozen,
            &resolved.actions,
            decision_id,
            now,
        );
        if let Err(ServiceError::Denied(denial)) = &admitted
            && let Some(kind) = breach_notice(denial.reason)
        {
            let (task, system) = (&snapshot.task, resolved.system);
            self.notifier().notify(Notice {
                kind,
                system: Some(system.id.to_string()),
                owner: Some(system.owner.clone()),
                escalation: Some(system.escalation.clone()),
                task: Some(task.id.to_string()),
                agent: Some(task.agent.to_string()),
                user: Some(task.user.to_string()),
                intent: Some(task.intent.clone()),
                reason: denial.reason.as_str().to_owned(),
                description: denial.description.clone(),
                decision_id: Some(denial.decision_id.to_string()),
                approval_id: None,
            });
        }
        admitted
    }

    /// The caller may act in the task at all: the task is open and unexpired, and the caller is
    /// its agent, or the delegate `delegation` names (unexpired, nothing above it revoked, the
    /// delegate not revoked).
    pub(crate) async fn admit_caller(
        &self,
        snapshot: &TaskSnapshot,
        identity: &VerifiedIdentity,
        delegation: Option<&Delegation>,
        decision_id: &DecisionId,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        check_task(snapshot, identity, delegation.is_some(), decision_id, now)?;
        if let Some(delegation) = delegation {
            self.check_delegation(delegation, identity, decision_id, now)
                .await?;
        }
        Ok(())
    }

    /// A delegate acts only as itself, within its delegation's lifetime, and only while no
    /// delegation in its chain, nor any actor in it (the delegate, a delegate between, the
    /// task's agent), was revoked. (Which actions it may ask
    /// for is checked per request, in [`Handoff::admit_actions`].)
    async fn check_delegation(
        &self,
        delegation: &Delegation,
        identity: &VerifiedIdentity,
        decision_id: &DecisionId,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        if identity.agent() != &delegation.delegate
            || identity.issuer() != delegation.delegate_issuer
        {
            return Err(ServiceError::denied(
                decision_id,
                DenyReason::OutsideDelegation,
                "the actor is not the delegate this task token was issued to".to_owned(),
            ));
        }
        if now >= delegation.expires_at {
            return Err(ServiceError::denied(
                decision_id,
                DenyReason::DelegationExpired,
                format!("delegation `{}` has expired", delegation.id),
            ));
        }
        if self
            .store()
            .any_delegation_revoked(&delegation.chain)
            .await?
        {
            return Err(ServiceError::denied(
                decision_id,
                DenyReason::DelegationRevoked,
                format!("delegation `{}` or one above it was revoked", delegation.id),
            ));
        }
        // The delegate, any delegate between, and the task's agent: the same actors a token
        // minted here names, checked as [`Handoff::why_inactive`] checks that token.
        if let Some(agent) = self.first_revoked_agent(&delegation.actors).await? {
            return Err(ServiceError::denied(
                decision_id,
                DenyReason::AgentRevoked,
                format!(
                    "`{agent}`, an actor of delegation `{}`, was revoked",
                    delegation.id
                ),
            ));
        }
        Ok(())
    }

    /// `actions` on `system` are within the caller's reach: delegated (for a delegate), the
    /// system not `frozen` (as read with the task), inside the task's plan and the purpose's
    /// budgets. Sends no notice: the exchange tells the owner of a breach ([`breach_notice`]),
    /// a listing does not.
    #[expect(
        clippy::too_many_arguments,
        reason = "one admission's parts, each borrowed"
    )]
    fn admit_actions(
        &self,
        snapshot: &TaskSnapshot,
        delegation: Option<&Delegation>,
        system: &SystemConfig,
        frozen: bool,
        actions: &[ActionConfig],
        decision_id: &DecisionId,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        if let Some(delegation) = delegation
            && let Some(extra) = actions
                .iter()
                .find(|a| !delegation.actions.contains(&a.name))
        {
            return Err(ServiceError::denied(
                decision_id,
                DenyReason::OutsideDelegation,
                format!(
                    "`{}` was not delegated (delegated: {})",
                    extra.name,
                    join(&delegation.actions)
                ),
            ));
        }
        if frozen {
            return Err(ServiceError::denied(
                decision_id,
                DenyReason::SystemFrozen,
                format!("`{}` is frozen", system.id),
            ));
        }
        let task = &snapshot.task;
        let Some(purpose) = self.config().purposes.get(&task.purpose) else {
            return Err(ServiceError::denied(
                decision_id,
                DenyReason::PolicyError,
                format!("purpose `{}` is no longer declared", task.purpose),
            ));
        };
        crate::budget::check(
            purpose,
            task,
            &snapshot.facts,
            system,
            actions,
            now.seconds(),
        )
        .map_err(|(reason, description)| ServiceError::denied(decision_id, reason, description))
    }

    /// Which of `wanted` (`system:action` names) the caller could reach in the task its token
    /// names, each on its own: the exchange's admission checks, without policy (arguments are
    /// decided on each exchange). A caller that may not act in the task at all is refused as
    /// the exchange would refuse it; undeclared names are never reachable. Nothing is recorded:
    /// a listing grants nothing.
    pub async fn reachable_actions(
        &self,
        identity: &VerifiedIdentity,
        txn_token: &str,
        wanted: &[ActionName],
    ) -> Result<BTreeSet<ActionName>, ServiceError> {
        if wanted.len() > MAX_REACH_ITEMS {
            return Err(ServiceError::InvalidRequest(format!(
                "at most {MAX_REACH_ITEMS} actions can be asked about at once"
            )));
        }
        let txn = self.verify_task_token(txn_token)?;
        let delegation = self.delegation_of(&txn).await?;
        let snapshot = self.store().task(txn.task()).await?.ok_or_else(|| {
            ServiceError::InvalidGrant("the task token names an unknown task".to_owned())
        })?;
        let now = self.now();
        let decision_id = DecisionId::new(self.id("dec")?);
        self.admit_caller(&snapshot, identity, delegation.as_ref(), &decision_id, now)
            .await?;
        let mut reachable = BTreeSet::new();
        // Each system's freeze is read once per listing, however many of its actions are asked.
        let mut frozen_systems = BTreeMap::new();
        for name in wanted {
            let Some((system, action)) = self.config().action(name.as_str()) else {
                continue;
            };
            let frozen = match frozen_systems.get(&system.id) {
                Some(&frozen) => frozen,
                None => {
                    let frozen = self.store().is_frozen(&system.id).await?;
                    frozen_systems.insert(&system.id, frozen);
                    frozen
                }
            };
            match self.admit_actions(
                &snapshot,
                delegation.as_ref(),
                system,
                frozen,
                std::slice::from_ref(action),
                &decision_id,
                now,
            ) {
                Ok(()) => {
                    reachable.insert(action.name.clone());
                }
                Err(ServiceError::Denied(_)) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(reachable)
    }
}

fn join(actions: &BTreeSet<ActionName>) -> String {
    actions
        .iter()
        .map(ActionName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
