//! The audit log in OCSF (Open Cybersecurity Schema Framework, schema [`OCSF_VERSION`]) for a
//! SIEM: one record, one event. A pure mapping (no I/O); `handoff audit export --format ocsf`
//! writes its output as JSON lines. Agents' requests and their containment map to API Activity
//! (class 6003) with the Security Control profile (the decision as disposition); reloads and key
//! rotations to Application Lifecycle (6002). `docs/audit-format.md` gives the mapping field by
//! field; every member of the record's event is kept as is under `unmapped.handoff`.

use crate::audit::{AuditEvent, EventKind, Outcome, SealedRecord};
use serde_json::{Value, json};

/// The released OCSF schema version the events follow (`metadata.version`).
pub const OCSF_VERSION: &str = "1.4.0";
/// `metadata.product.name` and `vendor_name`.
pub const PRODUCT: &str = "Handoff";
/// Application Activity.
pub const CATEGORY_APPLICATION: u32 = 6;
/// API Activity: every record about an agent's request or its containment.
pub const CLASS_API_ACTIVITY: u32 = 6003;
/// Application Lifecycle: Handoff's own reloads and key rotations.
pub const CLASS_APPLICATION_LIFECYCLE: u32 = 6002;

/// Why a record cannot be mapped.
#[derive(Debug, thiserror::Error)]
pub enum OcsfError {
    #[error("record {seq} cannot be read: {reason}")]
    Unreadable { seq: u64, reason: String },
}

/// One OCSF event for `record`, made by `version` of Handoff (`metadata.product.version`).
pub fn event(record: &SealedRecord, version: &str) -> Result<Value, OcsfError> {
    let event = record.event().map_err(|reason| OcsfError::Unreadable {
        seq: record.seq,
        reason,
    })?;
    Ok(map(record, &event, version))
}

/// The class, activity and its caption of one record.
struct Activity {
    class_uid: u32,
    class_name: &'static str,
    id: u32,
    name: String,
}

fn api(id: u32, name: &str) -> Activity {
    Activity {
        class_uid: CLASS_API_ACTIVITY,
        class_name: "API Activity",
        id,
        name: name.to_owned(),
    }
}

fn lifecycle_update() -> Activity {
    Activity {
        class_uid: CLASS_APPLICATION_LIFECYCLE,
        class_name: "Application Lifecycle",
        id: 8,
        name: "Update".to_owned(),
    }
}

/// API Activity's activity for a forwarded call: its HTTP method as CRUD; a tool call is Other.
fn use_activity(event: &AuditEvent) -> Activity {
    let method = event
        .usage
        .as_ref()
        .and_then(|u| u.call.split_whitespace().next())
        .unwrap_or_default();
    match method {
        "POST" => api(1, "Create"),
        "GET" | "HEAD" => api(2, "Read"),
        "PUT" | "PATCH" => api(3, "Update"),
        "DELETE" => api(4, "Delete"),
        _ if method.starts_with("tool:") => api(99, "Tool Call"),
        other => api(99, other),
    }
}

fn activity(kind: Option<EventKind>, event: &AuditEvent) -> Activity {
    match kind {
        Some(EventKind::TaskOpen | EventKind::Credential | EventKind::Delegate) => api(1, "Create"),
        Some(EventKind::ApprovalRequest | EventKind::Evidence) => api(1, "Create"),
        Some(EventKind::TaskEnd | EventKind::ApprovalDecision | EventKind::ApprovalEscalate) => {
            api(3, "Update")
        }
        Some(EventKind::Revoke) => {
            if event
                .target
                .as_deref()
                .is_some_and(|t| t.starts_with("freeze:") || t.starts_with("unfreeze:"))
            {
                api(3, "Update")
            } else {
                api(4, "Delete")
            }
        }
        Some(EventKind::Exchange) => api(99, "Token Exchange"),
        Some(EventKind::Notify) => api(99, "Notify"),
        Some(EventKind::Use) => use_activity(event),
        Some(EventKind::Reload | EventKind::KeyRotation) => lifecycle_update(),
        None => api(0, "Unknown"),
    }
}

/// A deny decided by policy (as opposed to containment, a revocation or bad input).
fn policy_denial(reason: Option<&str>) -> bool {
    matches!(reason, Some("no_permit" | "forbidden"))
}

/// `disposition_id` and its caption (OCSF 1.4.0 dictionary), when the record carries a decision.
fn disposition(kind: Option<EventKind>, event: &AuditEvent) -> Option<(u32, &'static str)> {
    let reason = event.reason.as_deref();
    match (kind, event.outcome) {
        (Some(EventKind::ApprovalRequest), _) => Some((14, "Delayed")),
        (Some(EventKind::ApprovalEscalate), _) => Some((19, "Alert")),
        (Some(EventKind::ApprovalDecision), Some(Outcome::Permit)) => Some((8, "Approved")),
        (Some(EventKind::ApprovalDecision), Some(Outcome::Deny)) => Some((25, "Rejected")),
        (Some(EventKind::Revoke), _) if reason == Some("system_unfrozen") => Some((1, "Allowed")),
        (Some(EventKind::Revoke), _) => Some((24, "Access Revoked")),
        (Some(EventKind::Evidence), Some(Outcome::Deny)) => Some((25, "Rejected")),
        (_, Some(Outcome::Permit)) => Some((1, "Allowed")),
        (_, Some(Outcome::Deny)) if policy_denial(reason) => Some((26, "Unauthorized")),
        (_, Some(Outcome::Deny)) => Some((2, "Blocked")),
        (_, None) => None,
    }
}

/// The Security Control profile's `action_id` (and caption) that goes with a disposition.
fn control_action(disposition: u32) -> (u32, &'static str) {
    match disposition {
        1 | 8 => (1, "Allowed"),
        2 | 24 | 25 | 26 => (2, "Denied"),
        14 => (4, "Modified"),
        _ => (3, "Observed"),
    }
}

/// `severity_id` and its caption: a deny or a revocation is Medium, a request waiting for a person
/// or escalated Low, everything else Informational.
fn severity(kind: Option<EventKind>, event: &AuditEvent) -> (u32, &'static str) {
    match (kind, event.outcome) {
        (Some(EventKind::Revoke), _) => (3, "Medium"),
        (_, Some(Outcome::Deny)) => (3, "Medium"),
        (Some(EventKind::ApprovalRequest | EventKind::ApprovalEscalate), _) => (2, "Low"),
        _ => (1, "Informational"),
    }
}

/// Who acted: the agent (a workload), else the recorded actor (an operator, a system, Handoff).
fn actor(event: &AuditEvent) -> Value {
    let session = event.task.as_ref().map(|task| json!({ "uid": task }));
    match (&event.agent, &event.actor) {
        (Some(agent), _) => json!({
            "user": { "uid": agent, "name": agent, "type_id": 99, "type": "Agent" },
            "session": session,
            "invoked_by": event.actor,
        }),
        (None, Some(actor)) if actor == "handoff" => json!({
            "app_name": PRODUCT,
            "session": session,
        }),
        (None, Some(actor)) => {
            let person = actor.starts_with("operator") || actor.starts_with("cli:");
            let (type_id, caption) = if person { (2, "Admin") } else { (3, "System") };
            json!({
                "user": { "uid": actor, "name": actor, "type_id": type_id, "type": caption },
                "session": session,
            })
        }
        (None, None) => json!({ "app_name": PRODUCT, "session": session }),
    }
}

fn observable(name: &str, type_id: u32, caption: &str, value: &str) -> Value {
    json!({ "name": name, "type_id": type_id, "type": caption, "value": value })
}

/// What a SIEM indexes: the agent and the person (User Name), the system, task, decision,
/// reason and each determining policy (Other).
fn observables(event: &AuditEvent) -> Vec<Value> {
    let mut found = Vec::new();
    if let Some(agent) = &event.agent {
        found.push(observable("actor.user.name", 4, "User Name", agent));
    }
    if let Some(user) = &event.user {
        found.push(observable("unmapped.handoff.user", 4, "User Name", user));
    }
    let other = [
        ("dst_endpoint.svc_name", event.system.as_ref()),
        ("actor.session.uid", event.task.as_ref()),
        ("api.request.uid", event.decision_id.as_ref()),
        ("status_code", event.reason.as_ref()),
    ];
    for (name, value) in other {
        if let Some(value) = value {
            found.push(observable(name, 99, "Other", value));
        }
    }
    for policy in &event.policies {
        found.push(observable("unmapped.handoff.policies", 99, "Other", policy));
    }
    found
}

fn message(kind: Option<EventKind>, event: &AuditEvent) -> String {
    let kind = kind.map_or("record", EventKind::as_str);
    let mut text = kind.to_owned();
    if !event.actions.is_empty() {
        text.push(' ');
        text.push_str(&event.actions.join(" "));
    }
    if let Some(system) = &event.system {
        text.push_str(" on ");
        text.push_str(system);
    }
    match event.outcome {
        Some(Outcome::Permit) => text.push_str(": permit"),
        Some(Outcome::Deny) => text.push_str(": deny"),
        None => {}
    }
    if let Some(description) = &event.description {
        text.push_str(" (");
        text.push_str(description);
        text.push(')');
    }
    text
}

fn map(record: &SealedRecord, event: &AuditEvent, version: &str) -> Value {
    let kind = event.kind;
    let activity = activity(kind, event);
    let (severity_id, severity_name) = severity(kind, event);
    let disposition = disposition(kind, event);
    let (status_id, status) = match event.outcome {
        Some(Outcome::Deny) => (2, "Failure"),
        _ => (1, "Success"),
    };
    let product = json!({ "name": PRODUCT, "vendor_name": PRODUCT, "version": version });
    let operation = match (kind, &event.usage) {
        (Some(EventKind::Use), Some(usage)) => usage.call.clone(),
        _ if !event.actions.is_empty() => event.actions.join(" "),
        _ => kind.map_or("record", EventKind::as_str).to_owned(),
    };
    let policy = (event.policy_set.is_some() || !event.policies.is_empty()).then(|| {
        json!({
            "uid": event.policy_set,
            "name": if event.policies.is_empty() {
                "policy set".to_owned()
            } else {
                event.policies.join(", ")
            },
            "is_applied": !event.policies.is_empty(),
        })
    });
    let caller = event
        .agent
        .as_deref()
        .or(event.actor.as_deref())
        .unwrap_or("handoff");
    let mut out = json!({
        "category_uid": CATEGORY_APPLICATION,
        "category_name": "Application Activity",
        "class_uid": activity.class_uid,
        "class_name": activity.class_name,
        "activity_id": activity.id,
        "activity_name": activity.name,
        "type_uid": u64::from(activity.class_uid) * 100 + u64::from(activity.id),
        "time": record.at.millis(),
        "timezone_offset": 0,
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": status_id,
        "status": status,
        "status_code": event.reason,
        "status_detail": event.description,
        "message": message(kind, event),
        "metadata": {
            "version": OCSF_VERSION,
            "product": product,
            "profiles": ["security_control"],
            "uid": record.hash,
            "sequence": record.seq,
            "log_name": "audit",
            "logged_time": record.at.millis(),
            "correlation_uid": event.task,
        },
        "actor": actor(event),
        "disposition_id": disposition.map(|d| d.0),
        "disposition": disposition.map(|d| d.1),
        "action_id": disposition.map(|d| control_action(d.0).0),
        "action": disposition.map(|d| control_action(d.0).1),
        "policy": policy,
        "observables": observables(event),
        "unmapped": {
            "handoff": event,
            "chain": { "seq": record.seq, "hash": record.hash, "prev": record.prev_hash },
        },
    });
    if activity.class_uid == CLASS_API_ACTIVITY {
        let service = event.system.as_ref().map(
            |system| json!({ "name": system, "uid": event.token.as_ref().map(|t| t.aud.clone()) }),
        );
        let response = event
            .usage
            .as_ref()
            .map(|usage| json!({ "code": usage.status }));
        let extra = json!({
            "api": {
                "operation": operation,
                "service": service,
                "request": event.decision_id.as_ref().map(|id| json!({ "uid": id })),
                "response": response,
            },
            "src_endpoint": { "name": caller },
            "dst_endpoint": {
                "svc_name": event.system.as_deref().unwrap_or("handoff"),
                "name": event.system.as_deref().unwrap_or("handoff"),
            },
        });
        merge(&mut out, extra);
    } else {
        merge(&mut out, json!({ "app": product_of(version) }));
    }
    compact(&mut out);
    out
}

fn product_of(version: &str) -> Value {
    json!({ "name": PRODUCT, "vendor_name": PRODUCT, "version": version })
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

/// OCSF has no nulls: an attribute without a value is left out (inside `unmapped` too, where the
/// record's event already omits what it does not carry).
fn compact(value: &mut Value) {
    match value {
        Value::Object(members) => {
            members.retain(|_, v| !v.is_null());
            members.values_mut().for_each(compact);
        }
        Value::Array(items) => items.iter_mut().for_each(compact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{GENESIS, TokenRecord, seal};
    use crate::time::Timestamp;

    fn sealed(event: AuditEvent) -> SealedRecord {
        seal(7, Timestamp::from_millis(1_700_000_000_123), GENESIS, event).unwrap()
    }

    fn exchange(outcome: Outcome, reason: Option<&str>) -> AuditEvent {
        AuditEvent {
            kind: Some(EventKind::Exchange),
            decision_id: Some("dec_1".to_owned()),
            agent: Some("release-bot".to_owned()),
            user: Some("alice".to_owned()),
            task: Some("task_1".to_owned()),
            system: Some("git".to_owned()),
            actions: vec!["git:push".to_owned()],
            outcome: Some(outcome),
            reason: reason.map(str::to_owned),
            policies: vec!["git-write-when-planned".to_owned()],
            policy_set: Some("abc".to_owned()),
            token: Some(TokenRecord {
                jti: "tok_1".to_owned(),
                aud: "https://git.example.com".to_owned(),
                scope: "git:push".to_owned(),
                exp: 1,
            }),
            ..AuditEvent::default()
        }
    }

    #[test]
    fn a_permitted_exchange_is_an_allowed_api_activity() {
        let out = map(
            &sealed(exchange(Outcome::Permit, None)),
            &exchange(Outcome::Permit, None),
            "0.1.0",
        );
        assert_eq!(out["class_uid"], 6003);
        assert_eq!(out["type_uid"], 600_399);
        assert_eq!(out["disposition_id"], 1);
        assert_eq!(out["status_id"], 1);
        assert_eq!(out["time"], 1_700_000_000_123_i64);
        assert_eq!(out["actor"]["user"]["uid"], "release-bot");
        assert_eq!(out["dst_endpoint"]["svc_name"], "git");
        assert_eq!(out["api"]["service"]["uid"], "https://git.example.com");
        assert_eq!(out["api"]["request"]["uid"], "dec_1");
        assert_eq!(out["metadata"]["sequence"], 7);
        assert_eq!(out["metadata"]["version"], OCSF_VERSION);
        assert_eq!(
            out["unmapped"]["handoff"]["policies"][0],
            "git-write-when-planned"
        );
    }

    #[test]
    fn a_policy_deny_is_unauthorized_and_a_containment_deny_blocked() {
        let denied = exchange(Outcome::Deny, Some("forbidden"));
        let out = map(&sealed(denied.clone()), &denied, "0.1.0");
        assert_eq!(out["disposition_id"], 26);
        assert_eq!(out["status_id"], 2);
        assert_eq!(out["status_code"], "forbidden");
        assert_eq!(out["severity_id"], 3);
        let breach = exchange(Outcome::Deny, Some("budget_writes"));
        assert_eq!(
            map(&sealed(breach.clone()), &breach, "0.1.0")["disposition_id"],
            2
        );
    }

    #[test]
    fn a_key_rotation_is_an_application_lifecycle_update() {
        let rotation = AuditEvent {
            kind: Some(EventKind::KeyRotation),
            actor: Some("handoff".to_owned()),
            outcome: Some(Outcome::Permit),
            ..AuditEvent::default()
        };
        let out = map(&sealed(rotation.clone()), &rotation, "0.1.0");
        assert_eq!(out["class_uid"], 6002);
        assert_eq!(out["type_uid"], 600_208);
        assert_eq!(out["app"]["name"], PRODUCT);
        assert!(out.get("api").is_none());
    }
}
