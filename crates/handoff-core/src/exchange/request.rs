//! The exchange request, and what it resolves to once, before any decision: the task token
//! verified, the system named by the audience, the scope as the system's actions, the resource
//! and authorization details checked, and the delegation the token carries.

use crate::audit::{AuditEvent, DecidedOn, EventKind};
use crate::config::{ActionConfig, SystemConfig};
use crate::delegation::Delegation;
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::ids::{AgentId, DecisionId, SystemId, TaskId};
use crate::limits::{MAX_NAME_CHARS, MAX_SCOPE_ITEMS};
use crate::policy::{DetailValue, project_details};
use crate::refusal::Refused;
use crate::task::TaskSnapshot;
use crate::text::{check_identifier, truncate};
use crate::token::{MintedToken, VerifiedTxn};
use std::collections::BTreeMap;

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

/// The token an exchange mints, and the decision it was minted on.
#[derive(Clone, Debug)]
pub struct Issued {
    pub token: MintedToken,
    pub decision_id: DecisionId,
    pub expires_in: i64,
    /// Who it was minted for, under which task, for which system (for logs and metrics).
    pub agent: AgentId,
    pub task: TaskId,
    pub system: SystemId,
}

/// An exchange request resolved against the deployment; the same on every retry.
pub(super) struct Resolved<'a> {
    pub(super) request: &'a ExchangeRequest,
    pub(super) txn: std::sync::Arc<VerifiedTxn>,
    pub(super) system: &'a SystemConfig,
    pub(super) actions: Vec<ActionConfig>,
    /// The actions' names, as the scope of the record and the token.
    pub(super) scope: Vec<String>,
    pub(super) details: BTreeMap<String, DetailValue>,
    pub(super) delegation: Option<Delegation>,
}

impl Resolved<'_> {
    /// What a refusal record says of this request, with the task once it was loaded, and where
    /// its facts stood (`decided_on`: a decision's inputs, when it got that far).
    pub(super) fn refusal(
        &self,
        error: ServiceError,
        snapshot: Option<&TaskSnapshot>,
        decided_on: Option<DecidedOn>,
    ) -> Refused {
        let task = snapshot.map(|s| &s.task);
        let decided_on = decided_on.or_else(|| {
            snapshot.map(|s| {
                let (exchanges, evidence) = s.facts.position();
                DecidedOn {
                    exchanges,
                    evidence,
                    ..DecidedOn::default()
                }
            })
        });
        Refused::new(
            error,
            AuditEvent {
                task: Some(self.txn.task().to_string()),
                system: Some(self.system.id.to_string()),
                actions: self.scope.clone(),
                user: task.map(|t| t.user.to_string()),
                intent: task.map(|t| t.intent.clone()),
                purpose: task.map(|t| t.purpose.to_string()),
                // A delegate's refusal names its delegation, as its grants do.
                actor: self
                    .delegation
                    .as_ref()
                    .map(|d| format!("delegate:{}", d.delegate)),
                delegation: self.delegation.as_ref().map(|d| d.id.clone()),
                decided_on,
                ..refusal_event(self.request)
            },
        )
    }
}

/// What a refusal record says of a request nothing is known of yet.
fn refusal_event(request: &ExchangeRequest) -> AuditEvent {
    AuditEvent {
        kind: Some(EventKind::Exchange),
        resource: request
            .resource
            .as_ref()
            .map(|r| truncate(r, MAX_NAME_CHARS)),
        authorization_details: request.authorization_details.clone(),
        ..AuditEvent::default()
    }
}

impl Handoff {
    /// Resolves `request` once; a refusal names as much of the request as was known.
    pub(super) async fn resolve<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> Result<Resolved<'a>, Refused> {
        let mut about = refusal_event(request);
        let refuse = |about: &AuditEvent| {
            let about = about.clone();
            move |error| Refused::new(error, about)
        };
        let txn = self
            .verify_task_token(&request.subject_token)
            .map_err(refuse(&about))?;
        about.task = Some(txn.task().to_string());
        let system = self
            .config()
            .system_for_audience(&request.audience)
            .ok_or_else(|| {
                ServiceError::InvalidTarget(format!(
                    "`{}` is not a registered system",
                    truncate(&request.audience, 128)
                ))
            })
            .map_err(refuse(&about))?;
        about.system = Some(system.id.to_string());
        let actions = resolve_scope(system, &request.scope).map_err(refuse(&about))?;
        let scope: Vec<String> = actions.iter().map(|a| a.name.to_string()).collect();
        about.actions.clone_from(&scope);
        if let Some(resource) = &request.resource {
            check_identifier("resource", resource).map_err(refuse(&about))?;
        }
        let details = match &request.authorization_details {
            Some(details) => project_details(system, details)
                .map_err(|e| ServiceError::InvalidAuthorizationDetails(e.to_string()))
                .map_err(refuse(&about))?,
            None => BTreeMap::new(),
        };
        let delegation = self.delegation_of(&txn).await.map_err(refuse(&about))?;
        Ok(Resolved {
            request,
            txn,
            system,
            actions,
            scope,
            details,
            delegation,
        })
    }
}

/// Maps scope values (`push` or `git:push`) to the system's actions; unknown ones are refused.
pub(crate) fn resolve_scope(
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
    let not_offered = |item: &str| {
        ServiceError::InvalidScope(format!(
            "`{}` is not an action of `{}`",
            truncate(item, 64),
            system.id
        ))
    };
    let mut actions: Vec<ActionConfig> = Vec::with_capacity(scope.len());
    for item in scope {
        let short = match item.split_once(':') {
            Some((prefix, rest)) if prefix == system.id.as_str() => rest,
            Some(_) => return Err(not_offered(item)),
            None => item.as_str(),
        };
        let action = system.actions.get(short).ok_or_else(|| not_offered(item))?;
        if !actions.iter().any(|a| a.name == action.name) {
            actions.push(action.clone());
        }
    }
    Ok(actions)
}
