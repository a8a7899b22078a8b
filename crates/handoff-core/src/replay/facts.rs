//! The facts a recorded decision saw, rebuilt from the task's records: each permitted exchange
//! and each accepted piece of evidence folded in chain order by the folds the exchange and the
//! evidence endpoint apply ([`crate::task::fold::fold_grant`], [`TaskFacts::record_evidence`]),
//! up to the point the record pins (`decided_on`: so many exchanges, so much evidence).

use crate::audit::{AuditEvent, DecidedOn, EventKind, Outcome, SealedRecord};
use crate::config::{ActionConfig, Config, SystemConfig};
use crate::counters::AgentFacts;
use crate::exchange::request::resolve_scope;
use crate::ids::SystemId;
use crate::policy::{DetailValue, project_details};
use crate::task::TaskFacts;
use crate::task::fold::{Granted, fold_grant};
use std::collections::BTreeMap;

/// The facts of the task whose records (in order) are `records`, as they stood when record
/// `seq` was decided on them.
pub fn rebuild(
    config: &Config,
    records: &[SealedRecord],
    seq: u64,
    decided_on: &DecidedOn,
) -> Result<TaskFacts, String> {
    let wanted = (decided_on.exchanges, decided_on.evidence);
    let mut facts = TaskFacts::default();
    for record in records.iter().take_while(|r| r.seq < seq) {
        if facts.position() == wanted {
            break;
        }
        fold(config, record, &mut facts)?;
    }
    let (exchanges, evidence) = facts.position();
    if (exchanges, evidence) != wanted {
        return Err(format!(
            "it was decided after {} permitted exchange(s) and {} piece(s) of evidence, but the \
             task's earlier records hold {exchanges} and {evidence}",
            wanted.0, wanted.1
        ));
    }
    Ok(facts)
}

/// The facts every record of a task folds to: what the store holds for it, unless the chain
/// and the task's facts disagree.
pub fn rebuild_all(config: &Config, records: &[SealedRecord]) -> Result<TaskFacts, String> {
    let mut facts = TaskFacts::default();
    for record in records {
        fold(config, record, &mut facts)?;
    }
    Ok(facts)
}

/// What a decision record asked for, resolved again under the current config as the exchange
/// resolved it: the system, the actions its scope names, the projected authorization details.
pub(super) struct RecordedRequest<'c> {
    pub(super) system: &'c SystemConfig,
    pub(super) actions: Vec<ActionConfig>,
    pub(super) details: BTreeMap<String, DetailValue>,
}

/// `event`'s request under `config` (the exchange's own `resolve_scope` and `project_details`),
/// or why it no longer resolves.
pub(super) fn recorded_request<'c>(
    config: &'c Config,
    event: &AuditEvent,
) -> Result<RecordedRequest<'c>, String> {
    let system_id = SystemId::new(event.system.as_deref().unwrap_or_default());
    let system = config
        .systems
        .get(&system_id)
        .ok_or_else(|| format!("system `{system_id}` is no longer declared"))?;
    let actions = resolve_scope(system, &event.actions).map_err(|e| e.to_string())?;
    let details = match &event.authorization_details {
        Some(details) => project_details(system, details).map_err(|e| e.to_string())?,
        None => BTreeMap::new(),
    };
    Ok(RecordedRequest {
        system,
        actions,
        details,
    })
}

/// Folds one record into `facts` if it changed them (a permitted exchange, accepted evidence).
fn fold(config: &Config, record: &SealedRecord, facts: &mut TaskFacts) -> Result<(), String> {
    let seq = record.seq;
    let event = record
        .event()
        .map_err(|e| format!("record {seq} cannot be read: {e}"))?;
    if event.outcome != Some(Outcome::Permit) {
        return Ok(());
    }
    match event.kind {
        Some(EventKind::Exchange) => {
            let RecordedRequest {
                system,
                actions,
                details,
            } = recorded_request(config, &event).map_err(|e| format!("record {seq}: {e}"))?;
            let token = event
                .token
                .as_ref()
                .ok_or_else(|| format!("record {seq} is a permit that names no token"))?;
            // Agent counters span tasks; the decision's record pins their values instead.
            let mut agent = AgentFacts::default();
            fold_grant(
                config,
                &Granted {
                    system: &system.id,
                    actions: &actions,
                    details: &details,
                    expires_at_seconds: token.exp,
                    at: record.at,
                },
                facts,
                &mut agent,
            );
        }
        Some(EventKind::Evidence) => {
            let evidence = event
                .evidence
                .as_ref()
                .ok_or_else(|| format!("record {seq} is evidence that names no statement"))?;
            let key = format!(
                "{}:{}",
                event.system.as_deref().unwrap_or_default(),
                evidence.kind
            );
            if !facts.record_evidence(&key, &evidence.fields, record.at) {
                return Err(format!(
                    "record {seq}: `{key}` holds too many distinct values"
                ));
            }
        }
        _ => {}
    }
    Ok(())
}
