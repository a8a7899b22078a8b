//! The decision on one attempt: the grant (lifetime clamped to the system, the deployment, the
//! task and the delegation), the request's facts (counters spanning the task and its agent),
//! the policy decision, and a gated permit taken through its approval.

use super::request::Resolved;
use crate::audit::DecidedOn;
use crate::config::{Config, SystemConfig};
use crate::counters::{self, AgentFacts};
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::identity::VerifiedIdentity;
use crate::ids::DecisionId;
use crate::policy::{Decision, Grant, Permit, RequestFacts};
use crate::task::TaskSnapshot;
use crate::time::{Timestamp, Ttl};
use std::collections::BTreeMap;

/// What an attempt was permitted, and what its commit must update alongside.
pub(super) struct Decided {
    pub(super) permit: Box<Permit>,
    /// The approval the permit was released through, consumed by the commit.
    pub(super) approval: Option<String>,
    pub(super) agent: AgentCounters,
}

/// The agent's facts, read only when some counter spans an agent's tasks.
pub(super) struct AgentCounters {
    pub(super) key: Option<String>,
    pub(super) facts: AgentFacts,
    pub(super) version: u64,
}

/// The token lifetime the policy context sees: the requested one (or the deployment's default),
/// within the system's and the deployment's caps.
pub(crate) fn lifetime_cap(config: &Config, system: &SystemConfig, requested: Option<u32>) -> u32 {
    requested
        .map_or(config.tokens.default_lifetime.seconds(), |s| s.max(1))
        .min(system.max_token_lifetime.seconds())
        .min(config.tokens.max_lifetime.seconds())
}

impl Handoff {
    /// What the decision sees besides the task and the request: the agent's counters (`agent`,
    /// read with the task only when some counter spans an agent's tasks), every counter's
    /// value and the token lifetime, pinned as the record's `decided_on`.
    pub(super) fn inputs(
        &self,
        resolved: &Resolved<'_>,
        snapshot: &TaskSnapshot,
        agent: Option<(AgentFacts, u64)>,
        now: Timestamp,
    ) -> (AgentCounters, DecidedOn) {
        let config = self.config();
        // Counters spanning tasks count the task's agent: delegating never resets a limit.
        let agent_key = agent.is_some().then(|| snapshot.task.agent_key());
        let (agent_facts, agent_version) = agent.unwrap_or_default();
        let counter_values = counters::values(config, &snapshot.facts, &agent_facts, now);
        let (exchanges, evidence) = snapshot.facts.position();
        let decided_on = DecidedOn {
            exchanges,
            evidence,
            lifetime_seconds: Some(lifetime_cap(
                config,
                resolved.system,
                resolved.request.requested_lifetime,
            )),
            counters: Some(counter_values),
        };
        let agent = AgentCounters {
            key: agent_key,
            facts: agent_facts,
            version: agent_version,
        };
        (agent, decided_on)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one attempt's parts, each borrowed"
    )]
    pub(super) async fn decide(
        &self,
        identity: &VerifiedIdentity,
        resolved: &Resolved<'_>,
        snapshot: &TaskSnapshot,
        decision_id: DecisionId,
        agent: AgentCounters,
        decided_on: &DecidedOn,
        now: Timestamp,
    ) -> Result<Decided, ServiceError> {
        let (system, request) = (resolved.system, resolved.request);
        let delegation = resolved.delegation.as_ref();
        let cap = decided_on.lifetime_seconds.unwrap_or(1);
        let mut expires_at = now
            .plus(Ttl::from_seconds(cap))
            .min(snapshot.task.expires_at);
        if let Some(delegation) = delegation {
            expires_at = expires_at.min(delegation.expires_at);
        }
        let grant = Grant {
            task: snapshot.task.id.clone(),
            agent: identity.agent().clone(),
            user: snapshot.task.user.clone(),
            system: system.id.clone(),
            audience: system.audience.clone(),
            actions: resolved.actions.clone(),
            resource: request.resource.clone(),
            details: request.authorization_details.clone(),
            issued_at: now,
            expires_at,
            delegation: delegation.cloned().map(Box::new),
        };
        let no_counters = BTreeMap::new();
        let facts = RequestFacts {
            scope: &resolved.scope,
            lifetime_seconds: cap,
            resource: request.resource.as_deref(),
            details: &resolved.details,
            counters: decided_on.counters.as_ref().unwrap_or(&no_counters),
            delegation: delegation.map(|d| (d.depth, d.actors.get(1).map_or("", String::as_str))),
        };
        let decision = self.policy_engine().decide(
            decision_id,
            &snapshot.task,
            &snapshot.facts,
            &facts,
            grant,
            now,
        );
        let (permit, approval) = match decision {
            Decision::Allow(permit) => (permit, None),
            Decision::Gate(gated) => {
                let (permit, approval) = self
                    .through_approval(
                        *gated,
                        request.approval_id.as_deref(),
                        &snapshot.task,
                        system,
                        decided_on,
                        now,
                    )
                    .await?;
                (Box::new(permit), Some(approval))
            }
            Decision::Deny(denial) => return Err(ServiceError::Denied(denial)),
        };
        Ok(Decided {
            permit,
            approval,
            agent,
        })
    }
}
