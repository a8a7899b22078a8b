//! Recording accepted evidence: checked against the system's declared kinds and the task, then
//! folded into the task's facts and appended with its provenance in one write.

use super::{MAX_FIELDS, MAX_SKEW_SECONDS, Recorded, Signed, refused};
use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::error::ServiceError;
use crate::handoff::Handoff;
use crate::ids::TaskId;
use crate::limits::{CONFLICT_RETRIES, MAX_NAME_CHARS};
use crate::store::{Effect, Rejection, StoreError, TaskWrite, Write};
use crate::task::{TaskState, task_event};
use crate::text::check_identifier;
use crate::time::{Timestamp, Ttl};
use serde_json::Value;
use std::collections::BTreeMap;

impl Handoff {
    pub(super) async fn record_evidence(
        &self,
        signed: Signed<'_>,
        now: Timestamp,
    ) -> Result<Recorded, ServiceError> {
        let Signed {
            system,
            config,
            statement,
            mut provenance,
        } = signed;
        let max_age = i64::from(config.max_age.seconds());
        let age = now.seconds() - provenance.signed_at;
        if age > max_age {
            return Err(refused(format!(
                "the evidence was signed {age} s ago; `{}` evidence is accepted for {max_age} s",
                system.id
            )));
        }
        if age < -i64::from(MAX_SKEW_SECONDS) {
            return Err(refused("the evidence is signed in the future"));
        }
        if statement.system != system.id.as_str() {
            return Err(refused("the evidence names another system than its signer"));
        }
        check_identifier("id", &statement.id)?;
        check_identifier("task", &statement.task)?;
        let declared = config.kinds.get(&statement.kind).ok_or_else(|| {
            ServiceError::InvalidRequest(format!(
                "`{}` does not report `{}` evidence",
                system.id,
                statement.kind.chars().take(64).collect::<String>()
            ))
        })?;
        if statement.data.len() > MAX_FIELDS {
            return Err(ServiceError::InvalidRequest(format!(
                "evidence carries at most {MAX_FIELDS} fields"
            )));
        }
        let mut fields = BTreeMap::new();
        for (name, value) in &statement.data {
            if !declared.contains(name) {
                return Err(ServiceError::InvalidRequest(format!(
                    "`{}:{}` evidence declares no field `{}`",
                    system.id,
                    statement.kind,
                    name.chars().take(64).collect::<String>()
                )));
            }
            let Value::String(text) = value else {
                return Err(ServiceError::InvalidRequest(format!(
                    "evidence field `{name}` must be a string"
                )));
            };
            check_identifier(name, text)?;
            fields.insert(name.clone(), text.clone());
        }
        provenance.id = statement.id.clone();
        provenance.kind = statement.kind.clone();
        provenance.fields = fields.clone();
        let task_id = TaskId::new(statement.task.as_str());
        let key = format!("{}:{}", system.id, statement.kind);
        // Remembered past the last moment it could still be accepted, so a replay always hits.
        let remember_until = Timestamp::from_seconds(provenance.signed_at)
            .plus(Ttl::from_seconds(config.max_age.seconds()))
            .plus(Ttl::from_seconds(MAX_SKEW_SECONDS));
        for _ in 0..CONFLICT_RETRIES {
            let snapshot = self.store().task(&task_id).await?.ok_or_else(|| {
                ServiceError::InvalidTarget(format!(
                    "task `{}` does not exist",
                    statement
                        .task
                        .chars()
                        .take(MAX_NAME_CHARS)
                        .collect::<String>()
                ))
            })?;
            if snapshot.task.state != TaskState::Open || now >= snapshot.task.expires_at {
                return Err(ServiceError::InvalidRequest(format!(
                    "task `{}` is no longer open",
                    snapshot.task.id
                )));
            }
            let mut facts = snapshot.facts.clone();
            if !facts.record_evidence(&key, &fields, now) {
                return Err(ServiceError::InvalidRequest(format!(
                    "`{key}` evidence holds too many distinct values for this task"
                )));
            }
            let event = AuditEvent {
                kind: Some(EventKind::Evidence),
                system: Some(system.id.to_string()),
                actor: Some(format!("system:{}", system.id)),
                outcome: Some(Outcome::Permit),
                evidence: Some(provenance.clone()),
                ..task_event(&snapshot.task)
            };
            let mut write = Write::new(
                now,
                event,
                TaskWrite::Update {
                    id: snapshot.task.id.clone(),
                    expected_version: snapshot.version,
                    facts: Some(Box::new(facts)),
                    state: None,
                },
            );
            write.effects.push(Effect::EvidenceSeen {
                system: system.id.clone(),
                id: statement.id.clone(),
                expires_at: remember_until,
            });
            match self.store().write(write).await {
                Ok(receipt) => {
                    return Ok(Recorded {
                        system: system.id.clone(),
                        task: snapshot.task.id,
                        id: statement.id,
                        kind: statement.kind,
                        seq: receipt.seq,
                    });
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::Rejected(Rejection::EvidenceReplayed)) => {
                    return Err(ServiceError::EvidenceReplayed(format!(
                        "evidence `{}` from `{}` was already received",
                        statement.id.chars().take(64).collect::<String>(),
                        system.id
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }
}
