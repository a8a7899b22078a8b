//! One handoff, step by step: verify the agent, load the task, decide at request time, mint from
//! the permit, and append the record durably before answering. Every refusal after the caller was
//! authenticated is recorded too.

use crate::audit::{AuditEvent, EventKind, Outcome, TokenRecord};
use crate::cache::VerifiedCache;
use crate::clock::Clock;
use crate::config::{ActionConfig, Config, SystemConfig};
use crate::counters::{self, AgentFacts};
use crate::error::ServiceError;
use crate::identity::{IdentityVerifier, VerifiedIdentity};
use crate::ids::{DecisionId, Purpose, TaskId, TokenId, UserId};
use crate::keys::KeyRing;
use crate::notify::{NoNotifier, Notice, Notifier};
use crate::policy::{
    Decision, Denial, DenyReason, Grant, OpenDecision, PolicyEngine, RequestFacts, project_details,
};
use crate::random::{Randomness, new_id};
use crate::store::{Effect, Rejection};
use crate::store::{Store, StoreError, TaskWrite, Write};
use crate::task::{Task, TaskFacts, TaskSnapshot, TaskState};
use crate::text::check_identifier;
use crate::time::{Timestamp, Ttl};
use crate::token::VerifiedTxn;
use crate::token::{MintedToken, Unverified, mint_access_token, mint_txn_token, verify_txn_token};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Limits on request fields, so no input can grow a record without bound.
pub const MAX_INTENT_CHARS: usize = 4096;
pub const MAX_NAME_CHARS: usize = 256;
pub const MAX_SCOPE_ITEMS: usize = 32;
pub const MAX_PLAN_ITEMS: usize = 64;
/// Attempts to decide on fresh facts when a concurrent exchange changed the task first.
const CONFLICT_RETRIES: usize = 16;

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

/// An RFC 8693 exchange, parsed but not yet trusted.
#[derive(Clone, Debug, Default)]
pub struct ExchangeRequest {
    pub subject_token: String,
    pub actor_token: String,
    pub audience: String,
    pub scope: Vec<String>,
    pub resource: Option<String>,
    pub authorization_details: Option<serde_json::Value>,
    pub requested_lifetime: Option<u32>,
    /// The approval this exchange polls, or releases once approved.
    pub approval_id: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Issued {
    pub token: MintedToken,
    pub decision_id: DecisionId,
    pub expires_in: i64,
}

/// Handoff's core service: everything a request needs, injected.
pub struct Handoff {
    config: Arc<Config>,
    policies: Arc<PolicyEngine>,
    keys: Arc<KeyRing>,
    identities: IdentityVerifier,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Randomness>,
    /// SHA-256 (hex) of the operator credential; without one, no HTTP caller is an operator.
    operator_sha256: Option<String>,
    notifier: Arc<dyn Notifier>,
    /// Verifies people's tokens (approvers).
    approvers: Option<IdentityVerifier>,
    txn_cache: VerifiedCache<VerifiedTxn>,
    /// HMAC keys systems sign webhook evidence with, by system.
    evidence_secrets: std::collections::BTreeMap<crate::ids::SystemId, Vec<u8>>,
    /// Exchanges of one task take turns on this node (striped by task id): each decides on the
    /// facts the last one wrote instead of losing the write race and deciding again, so a busy
    /// task never runs out of retries. Other nodes still meet at the store's version check.
    task_turns: Box<[futures_util::lock::Mutex<()>]>,
}

/// Stripes of [`Handoff::task_turns`]: tasks that share one only wait for each other briefly.
const TASK_TURN_STRIPES: usize = 256;

/// What is known of a request when it is refused, for its audit record.
#[derive(Default)]
struct Refusal {
    task_id: Option<TaskId>,
    system: Option<String>,
    actions: Vec<String>,
    task: Option<Task>,
}

impl Handoff {
    pub fn new(
        config: Arc<Config>,
        policies: Arc<PolicyEngine>,
        keys: Arc<KeyRing>,
        identities: IdentityVerifier,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Randomness>,
    ) -> Self {
        Self {
            config,
            policies,
            keys,
            identities,
            store,
            clock,
            random,
            operator_sha256: None,
            notifier: Arc::new(NoNotifier),
            approvers: None,
            txn_cache: VerifiedCache::new(crate::cache::DEFAULT_LIMIT),
            evidence_secrets: std::collections::BTreeMap::new(),
            task_turns: (0..TASK_TURN_STRIPES)
                .map(|_| futures_util::lock::Mutex::new(()))
                .collect(),
        }
    }

    /// The turn exchanges of `task` take on this node.
    fn task_turn(&self, task: &TaskId) -> Option<&futures_util::lock::Mutex<()>> {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        task.hash(&mut hasher);
        let stripe = usize::try_from(hasher.finish() % TASK_TURN_STRIPES as u64).ok()?;
        self.task_turns.get(stripe)
    }

    /// The HMAC keys of systems that sign evidence as webhooks (`hmac_secret_env`).
    pub fn with_evidence_secrets(
        mut self,
        secrets: std::collections::BTreeMap<crate::ids::SystemId, Vec<u8>>,
    ) -> Self {
        self.evidence_secrets = secrets;
        self
    }

    pub(crate) fn evidence_secret(&self, system: &crate::ids::SystemId) -> Option<&[u8]> {
        self.evidence_secrets.get(system).map(Vec::as_slice)
    }

    /// Trusts `verifier` for approvers' tokens; without one, nobody can approve.
    pub fn with_approvers(mut self, verifier: IdentityVerifier) -> Self {
        self.approvers = Some(verifier);
        self
    }

    pub(crate) fn approvers(&self) -> Option<&IdentityVerifier> {
        self.approvers.as_ref()
    }

    pub(crate) fn policy_engine(&self) -> &PolicyEngine {
        &self.policies
    }

    /// Sends notices (plan deviations, budget breaches, revocations) to `notifier`.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    pub(crate) fn notifier(&self) -> &dyn Notifier {
        self.notifier.as_ref()
    }

    /// Accepts `Authorization: Bearer` callers presenting the secret whose SHA-256 (hex) this is
    /// as operators.
    pub fn with_operator_credential(mut self, sha256_hex: String) -> Self {
        self.operator_sha256 = Some(sha256_hex);
        self
    }

    pub(crate) fn operator_sha256(&self) -> Option<&str> {
        self.operator_sha256.as_deref()
    }

    pub(crate) fn random(&self) -> &dyn Randomness {
        self.random.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) fn id(&self, prefix: &str) -> Result<String, ServiceError> {
        new_id(self.random.as_ref(), prefix).map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// Verifies an agent identity token.
    pub fn authenticate(&self, token: &str) -> Result<VerifiedIdentity, ServiceError> {
        if token.is_empty() {
            return Err(ServiceError::InvalidClient(
                "an agent identity token is required".to_owned(),
            ));
        }
        self.identities
            .verify(Unverified::new(token), self.clock.now())
            .map_err(|e| ServiceError::InvalidClient(format!("identity token refused: {e}")))
    }

    /// Opens a task for an authenticated agent, if policy allows.
    pub async fn open_task(
        &self,
        identity: &VerifiedIdentity,
        request: OpenTaskRequest,
    ) -> Result<OpenedTask, ServiceError> {
        let result = self.open_task_checked(identity, &request).await;
        match result {
            Err(error) if records_refusal(&error) => {
                let event = AuditEvent {
                    kind: Some(EventKind::TaskOpen),
                    user: non_empty(&request.user),
                    intent: non_empty(&truncate(&request.intent, MAX_INTENT_CHARS)),
                    purpose: non_empty(&request.purpose),
                    ..AuditEvent::default()
                };
                Err(self.record_refusal(identity, error, event).await)
            }
            other => other,
        }
    }

    async fn open_task_checked(
        &self,
        identity: &VerifiedIdentity,
        request: &OpenTaskRequest,
    ) -> Result<OpenedTask, ServiceError> {
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
        let purpose = self
            .config
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
            let known = self.config.system_for_audience(system).ok_or_else(|| {
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
        let policies = match self
            .policies
            .decide_open(identity.agent(), &purpose.id, context)
        {
            OpenDecision::Allow { policies } => policies,
            OpenDecision::Deny {
                reason,
                policies,
                description,
            } => {
                return Err(ServiceError::Denied(Denial {
                    decision_id,
                    reason,
                    description,
                    policies,
                }));
            }
        };
        if self.store.is_agent_revoked(identity.agent()).await? {
            return Err(ServiceError::Denied(Denial {
                decision_id,
                reason: DenyReason::AgentRevoked,
                description: "the agent is revoked".to_owned(),
                policies: Vec::new(),
            }));
        }
        let now = self.clock.now();
        let task = Task {
            id: TaskId::new(self.id("task")?),
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
        let txn_token = mint_txn_token(&self.keys, &self.config.trust_domain, &task)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let event = AuditEvent {
            kind: Some(EventKind::TaskOpen),
            decision_id: Some(decision_id.to_string()),
            outcome: Some(Outcome::Permit),
            policies,
            policy_set: Some(self.policies.hash().to_owned()),
            ..task_event(&task)
        };
        let write = Write::new(now, event, TaskWrite::Insert(Box::new(task.clone())));
        match self.store.write(write).await {
            Ok(_) => {}
            // Checked inside the insert's transaction, so a concurrent agent revocation wins.
            Err(StoreError::Rejected(Rejection::AgentRevoked)) => {
                return Err(ServiceError::Denied(Denial {
                    decision_id,
                    reason: DenyReason::AgentRevoked,
                    description: "the agent is revoked".to_owned(),
                    policies: Vec::new(),
                }));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(OpenedTask {
            task,
            txn_token,
            decision_id,
        })
    }

    /// Ends a task: nothing more is minted under it. Only the task's agent may end it.
    pub async fn end_task(
        &self,
        identity: &VerifiedIdentity,
        task_id: &TaskId,
    ) -> Result<Task, ServiceError> {
        let result = self.end_task_checked(identity, task_id).await;
        match result {
            Err(error) if records_refusal(&error) => {
                let event = AuditEvent {
                    kind: Some(EventKind::TaskEnd),
                    task: Some(truncate(task_id.as_str(), MAX_NAME_CHARS)),
                    ..AuditEvent::default()
                };
                Err(self.record_refusal(identity, error, event).await)
            }
            other => other,
        }
    }

    async fn end_task_checked(
        &self,
        identity: &VerifiedIdentity,
        task_id: &TaskId,
    ) -> Result<Task, ServiceError> {
        for _ in 0..CONFLICT_RETRIES {
            let snapshot = self
                .store
                .task(task_id)
                .await?
                .ok_or_else(|| ServiceError::InvalidGrant("unknown task".to_owned()))?;
            if &snapshot.task.agent != identity.agent()
                || snapshot.task.agent_issuer != identity.issuer()
            {
                return Err(ServiceError::InvalidGrant("unknown task".to_owned()));
            }
            if snapshot.task.state != TaskState::Open {
                return Ok(snapshot.task);
            }
            let mut task = snapshot.task.clone();
            task.state = TaskState::Ended;
            let event = AuditEvent {
                kind: Some(EventKind::TaskEnd),
                ..task_event(&task)
            };
            let write = Write {
                at: self.clock.now(),
                event,
                task: TaskWrite::Update {
                    id: task.id.clone(),
                    expected_version: snapshot.version,
                    facts: None,
                    state: Some(TaskState::Ended),
                },
                // The feed tells verifiers that cannot call back (a standalone gateway) that the
                // task's tokens are done: a `task` entry, its reason `ended`. The task stays
                // ended, not revoked (the entry's state change only applies to an open task).
                effects: vec![Effect::Revoke(crate::revocation::Revocation {
                    kind: crate::revocation::RevocationKind::Task,
                    subject: task.id.to_string(),
                    reason: "ended".to_owned(),
                    actor: identity.agent().to_string(),
                })],
                ..Default::default()
            };
            match self.store.write(write).await {
                Ok(_) => return Ok(task),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }

    /// One RFC 8693 exchange: the agent's identity as actor, the task's Transaction Token as
    /// subject, one system as audience.
    pub async fn exchange(&self, request: ExchangeRequest) -> Result<Issued, ServiceError> {
        let identity = self.authenticate(&request.actor_token)?;
        let mut known = Refusal::default();
        let result = self
            .exchange_authenticated(&identity, &request, &mut known)
            .await;
        match result {
            Err(error) if records_refusal(&error) => {
                let task = known.task.as_ref();
                let event = AuditEvent {
                    kind: Some(EventKind::Exchange),
                    user: task.map(|t| t.user.to_string()),
                    task: known.task_id.as_ref().map(ToString::to_string),
                    intent: task.map(|t| t.intent.clone()),
                    purpose: task.map(|t| t.purpose.to_string()),
                    system: known.system,
                    actions: known.actions,
                    resource: request
                        .resource
                        .as_ref()
                        .map(|r| truncate(r, MAX_NAME_CHARS)),
                    authorization_details: request.authorization_details.clone(),
                    ..AuditEvent::default()
                };
                Err(self.record_refusal(&identity, error, event).await)
            }
            other => other,
        }
    }

    /// The task token is Handoff's own: its signature is checked once, then recognised by hash
    /// until it expires. The task's state is read from the store on every use regardless.
    pub(crate) fn verify_task_token(&self, token: &str) -> Result<VerifiedTxn, ServiceError> {
        let now_seconds = self.clock.now().seconds();
        let key = VerifiedCache::<VerifiedTxn>::key(token);
        if let Some(txn) = self.txn_cache.get(&key, now_seconds) {
            return Ok(txn);
        }
        let txn = verify_txn_token(
            &self.keys,
            &self.config.trust_domain,
            Unverified::new(token),
            now_seconds,
        )
        .map_err(|e| ServiceError::InvalidGrant(format!("task token refused: {e}")))?;
        self.txn_cache.insert(key, txn.clone(), txn.claims().exp);
        Ok(txn)
    }

    async fn exchange_authenticated(
        &self,
        identity: &VerifiedIdentity,
        request: &ExchangeRequest,
        known: &mut Refusal,
    ) -> Result<Issued, ServiceError> {
        let txn = self.verify_task_token(&request.subject_token)?;
        known.task_id = Some(txn.task().clone());
        let system = self
            .config
            .system_for_audience(&request.audience)
            .ok_or_else(|| {
                ServiceError::InvalidTarget(format!(
                    "`{}` is not a registered system",
                    truncate(&request.audience, 128)
                ))
            })?;
        known.system = Some(system.id.to_string());
        let actions = resolve_scope(system, &request.scope)?;
        known.actions = actions.iter().map(|a| a.name.to_string()).collect();
        if let Some(resource) = &request.resource {
            check_identifier("resource", resource)?;
        }
        let details = match &request.authorization_details {
            Some(details) => project_details(system, details)
                .map_err(ServiceError::InvalidAuthorizationDetails)?,
            None => Default::default(),
        };
        let scope: Vec<String> = actions.iter().map(|a| a.name.to_string()).collect();
        let delegation = self.delegation_of(&txn).await?;
        let _turn = match self.task_turn(txn.task()) {
            Some(turn) => Some(turn.lock().await),
            None => None,
        };
        for _ in 0..CONFLICT_RETRIES {
            let snapshot = self.store.task(txn.task()).await?.ok_or_else(|| {
                ServiceError::InvalidGrant("the task token names an unknown task".to_owned())
            })?;
            known.task = Some(snapshot.task.clone());
            let now = self.clock.now();
            let decision_id = DecisionId::new(self.id("dec")?);
            self.admit_caller(&snapshot, identity, delegation.as_ref(), &decision_id, now)
                .await?;
            if let Err(refusal) = self
                .admit_actions(
                    &snapshot,
                    delegation.as_ref(),
                    system,
                    &actions,
                    &decision_id,
                    now,
                )
                .await
            {
                self.tell_owner_of_breach(&snapshot, system, &refusal);
                return Err(refusal);
            }
            // Counters spanning tasks count the task's agent: delegating never resets a limit.
            // Read (and keyed) only when some counter spans an agent's tasks.
            let agent_key = self.config.has_agent_counters().then(|| {
                counters::agent_key(&snapshot.task.agent_issuer, snapshot.task.agent.as_str())
            });
            let (mut agent_facts, agent_version) = match &agent_key {
                Some(key) => self.store.agent_facts(key).await?,
                None => (AgentFacts::default(), 0),
            };
            let counter_values = counters::values(&self.config, &snapshot.facts, &agent_facts, now);
            let requested = request
                .requested_lifetime
                .map_or(self.config.tokens.default_lifetime.seconds(), |s| s.max(1));
            let cap = requested
                .min(system.max_token_lifetime.seconds())
                .min(self.config.tokens.max_lifetime.seconds());
            let mut expires_at = now
                .plus(Ttl::from_seconds(cap))
                .min(snapshot.task.expires_at);
            if let Some(delegation) = &delegation {
                expires_at = expires_at.min(delegation.expires_at);
            }
            let grant = Grant {
                task: snapshot.task.id.clone(),
                agent: identity.agent().clone(),
                user: snapshot.task.user.clone(),
                system: system.id.clone(),
                audience: system.audience.clone(),
                actions: actions.clone(),
                resource: request.resource.clone(),
                details: request.authorization_details.clone(),
                issued_at: now,
                expires_at,
                delegation: delegation.clone().map(Box::new),
            };
            let facts = RequestFacts {
                scope: &scope,
                lifetime_seconds: cap,
                resource: request.resource.as_deref(),
                details: &details,
                counters: &counter_values,
                delegation: delegation
                    .as_ref()
                    .map(|d| (d.depth, d.actors.get(1).map_or("", String::as_str))),
            };
            let decision = self.policies.decide(
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
                            now,
                        )
                        .await?;
                    (Box::new(permit), Some(approval))
                }
                Decision::Deny(denial) => return Err(ServiceError::Denied(denial)),
            };
            let jti = TokenId::new(self.id("tok")?);
            let minted = mint_access_token(
                &self.keys,
                &self.config.trust_domain,
                identity.issuer(),
                &permit,
                jti,
            )
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
            let mut new_facts: TaskFacts = snapshot.facts.clone();
            new_facts.record_grant(&system.id, &actions, now);
            new_facts.record_token(
                minted.jti.as_str(),
                minted.expires_at.seconds(),
                now.seconds(),
            );
            let agent_changed = counters::record(
                &self.config,
                &actions,
                &details,
                &mut new_facts,
                &mut agent_facts,
                now,
            );
            let event = AuditEvent {
                kind: Some(EventKind::Exchange),
                decision_id: Some(permit.decision_id().to_string()),
                system: Some(system.id.to_string()),
                actions: scope.clone(),
                resource: request.resource.clone(),
                authorization_details: request.authorization_details.clone(),
                outcome: Some(Outcome::Permit),
                policies: permit.policies().to_vec(),
                policy_set: Some(self.policies.hash().to_owned()),
                token: Some(TokenRecord {
                    jti: minted.jti.to_string(),
                    aud: minted.audience.clone(),
                    scope: minted.scope.clone(),
                    exp: minted.expires_at.seconds(),
                }),
                agent_issuer: Some(identity.issuer().to_owned()),
                approval: approval.clone(),
                actor: delegation
                    .as_ref()
                    .map(|d| format!("delegate:{}", d.delegate)),
                delegation: delegation.as_ref().map(|d| d.id.clone()),
                ..task_event(&snapshot.task)
            };
            let mut effects: Vec<Effect> = approval
                .iter()
                .map(|id| Effect::ConsumeApproval {
                    id: id.clone(),
                    jti: minted.jti.to_string(),
                })
                .collect();
            if let (true, Some(key)) = (agent_changed, agent_key) {
                effects.push(Effect::AgentFacts {
                    key,
                    expected_version: agent_version,
                    facts: Box::new(agent_facts),
                });
            }
            let write = Write {
                at: now,
                event,
                task: TaskWrite::Update {
                    id: snapshot.task.id.clone(),
                    expected_version: snapshot.version,
                    facts: Some(Box::new(new_facts)),
                    state: None,
                },
                // A freeze that commits first wins: the token is never handed out.
                unless_frozen: Some(system.id.clone()),
                // An approval releases one token, used here atomically with the record; an agent's
                // counters change only if no other exchange changed them first.
                effects,
            };
            match self.store.write(write).await {
                Ok(_) => {
                    let expires_in = (minted.expires_at.seconds() - now.seconds()).max(0);
                    return Ok(Issued {
                        decision_id: permit.decision_id().clone(),
                        token: minted,
                        expires_in,
                    });
                }
                // Another exchange of this task committed first: decide again on its facts.
                Err(StoreError::Conflict) => continue,
                Err(StoreError::Rejected(Rejection::ApprovalUsed)) => {
                    return Err(ServiceError::Denied(Denial {
                        decision_id: permit.decision_id().clone(),
                        reason: DenyReason::ApprovalUsed,
                        description: "the approval was already used".to_owned(),
                        policies: Vec::new(),
                    }));
                }
                Err(StoreError::Rejected(Rejection::SystemFrozen)) => {
                    return Err(ServiceError::Denied(Denial {
                        decision_id: permit.decision_id().clone(),
                        reason: DenyReason::SystemFrozen,
                        description: format!("`{}` is frozen", system.id),
                        policies: Vec::new(),
                    }));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }
}

impl Handoff {
    /// A request outside the task's plan or past a budget tells the system's owner.
    fn tell_owner_of_breach(
        &self,
        snapshot: &TaskSnapshot,
        system: &SystemConfig,
        refusal: &ServiceError,
    ) {
        let ServiceError::Denied(denial) = refusal else {
            return;
        };
        let Some(kind) = crate::admission::breach_notice(denial.reason) else {
            return;
        };
        let task = &snapshot.task;
        self.notifier.notify(Notice {
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
}

impl Handoff {
    /// Records a refusal of an authenticated caller: `event` names what is specific to the
    /// request; who, the decision and why are filled in here. The refusal is returned, unless
    /// the record cannot be written (then the caller learns the store is unavailable).
    pub(crate) async fn record_refusal(
        &self,
        identity: &VerifiedIdentity,
        error: ServiceError,
        event: AuditEvent,
    ) -> ServiceError {
        let event = AuditEvent {
            decision_id: denial_id(&error),
            agent: event.agent.or_else(|| Some(identity.agent().to_string())),
            agent_issuer: Some(identity.issuer().to_owned()),
            outcome: Some(Outcome::Deny),
            reason: Some(error.code().to_owned()),
            description: Some(error.to_string()),
            policies: denial_policies(&error),
            policy_set: Some(self.policies.hash().to_owned()),
            ..event
        };
        match self
            .store
            .write(Write::new(self.clock.now(), event, TaskWrite::None))
            .await
        {
            Ok(_) => error,
            Err(store) => store.into(),
        }
    }
}

/// The task must be this agent's, open and unexpired.
/// `delegated`: the actor is a delegate, checked against its delegation instead.
pub(crate) fn check_task(
    snapshot: &TaskSnapshot,
    identity: &VerifiedIdentity,
    delegated: bool,
    decision_id: &DecisionId,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let deny = |reason: DenyReason, description: &str| {
        Err(ServiceError::Denied(Denial {
            decision_id: decision_id.clone(),
            reason,
            description: description.to_owned(),
            policies: Vec::new(),
        }))
    };
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

/// Maps scope values (`push` or `git:push`) to the system's actions; unknown ones are refused.
fn resolve_scope(
    system: &SystemConfig,
    scope: &[String],
) -> Result<Vec<ActionConfig>, ServiceError> {
    if scope.is_empty() {
        return Err(ServiceError::InvalidScope(
            "`scope` must name at least one action".to_owned(),
        ));
    }
    if scope.len() > MAX_SCOPE_ITEMS {
        return Err(ServiceError::InvalidScope(format!(
            "`scope` names more than {MAX_SCOPE_ITEMS} actions"
        )));
    }
    let mut actions: Vec<ActionConfig> = Vec::with_capacity(scope.len());
    for item in scope {
        let short = match item.split_once(':') {
            Some((prefix, rest)) if prefix == system.id.as_str() => rest,
            Some(_) => {
                return Err(ServiceError::InvalidScope(format!(
                    "`{}` is not an action of `{}`",
                    truncate(item, 64),
                    system.id
                )));
            }
            None => item.as_str(),
        };
        let action = system.actions.get(short).ok_or_else(|| {
            ServiceError::InvalidScope(format!(
                "`{}` is not an action of `{}`",
                truncate(item, 64),
                system.id
            ))
        })?;
        if !actions.iter().any(|a| a.name == action.name) {
            actions.push(action.clone());
        }
    }
    Ok(actions)
}

pub(crate) fn task_event(task: &Task) -> AuditEvent {
    AuditEvent {
        agent: Some(task.agent.to_string()),
        agent_issuer: Some(task.agent_issuer.clone()),
        user: Some(task.user.to_string()),
        task: Some(task.id.to_string()),
        intent: Some(task.intent.clone()),
        purpose: Some(task.purpose.to_string()),
        ..AuditEvent::default()
    }
}

/// Refusals worth a record: everything but store and internal faults (which cannot be recorded).
/// Waiting for approval is not a refusal: the approval request itself is recorded once.
fn records_refusal(error: &ServiceError) -> bool {
    !matches!(
        error,
        ServiceError::Unavailable(_)
            | ServiceError::Internal(_)
            | ServiceError::ApprovalPending { .. }
            | ServiceError::SlowDown { .. }
    )
}

fn denial_id(error: &ServiceError) -> Option<String> {
    match error {
        ServiceError::Denied(denial) => Some(denial.decision_id.to_string()),
        _ => None,
    }
}

fn denial_policies(error: &ServiceError) -> Vec<String> {
    match error {
        ServiceError::Denied(denial) => denial.policies.clone(),
        _ => Vec::new(),
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
