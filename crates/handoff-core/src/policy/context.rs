//! The Cedar context of a request, built directly as Cedar values (no JSON round trip on the hot
//! path). Its shape is the one [`super::schema`] declares; a test validates one against the other.

use crate::config::{DetailType, SystemConfig};
use crate::task::{Task, TaskFacts};
use crate::time::Timestamp;
use cedar_policy::{Context, RestrictedExpression};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One authorization-details field as policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetailValue {
    String(String),
    Long(i64),
    Bool(bool),
}

/// Why a request's authorization details (RFC 9396) were refused; the message names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DetailsError {
    #[error("authorization_details must be a JSON array")]
    NotArray,
    #[error("each authorization_details entry must be an object")]
    NotObject,
    #[error("each authorization_details entry needs a string `type`")]
    NoType,
    #[error("authorization_details type `{kind}` is not `{system}`, the system asked for")]
    OtherType { kind: String, system: String },
    #[error("`{system}` declares no authorization_details fields; `{field}` is not one")]
    NoFieldsDeclared { system: String, field: String },
    #[error("`{field}` is not an authorization_details field of `{system}` (declared: {declared})")]
    Undeclared {
        field: String,
        system: String,
        declared: String,
    },
    #[error("authorization_details `{0}` appears in more than one entry")]
    Repeated(String),
    #[error("authorization_details `{field}` contains the invisible character U+{code:04X}")]
    Invisible { field: String, code: u32 },
    #[error("authorization_details `{0}` must be a whole number")]
    NotWhole(String),
    #[error("authorization_details `{0}` must be a string")]
    NotString(String),
    #[error("authorization_details `{0}` must be true or false")]
    NotBool(String),
}

/// Checks `details` is an RFC 9396 array of objects of the system's own type (§5: any other
/// type is refused), each naming only fields the system declares (`[systems.ID.details]`), none
/// of them in two entries, and picks out those fields. A declared field of the wrong JSON type is
/// an error too. So what the token carries is exactly what policy decided on: nothing undeclared
/// rides along, and no second copy of a field says something else to whoever reads the token.
/// A system that declares no fields takes no details beyond `{"type": SYSTEM}`.
pub fn project_details(
    system: &SystemConfig,
    details: &Value,
) -> Result<BTreeMap<String, DetailValue>, DetailsError> {
    let Value::Array(items) = details else {
        return Err(DetailsError::NotArray);
    };
    let mut seen = BTreeSet::new();
    for item in items {
        let Value::Object(object) = item else {
            return Err(DetailsError::NotObject);
        };
        match object.get("type") {
            Some(Value::String(kind)) if kind == system.id.as_str() => {}
            Some(Value::String(kind)) => {
                return Err(DetailsError::OtherType {
                    kind: shown(kind),
                    system: system.id.to_string(),
                });
            }
            _ => {
                return Err(DetailsError::NoType);
            }
        }
        for field in object.keys().filter(|k| k.as_str() != "type") {
            if !system.details.contains_key(field) {
                let declared: Vec<&str> = system.details.keys().map(String::as_str).collect();
                return Err(if declared.is_empty() {
                    DetailsError::NoFieldsDeclared {
                        system: system.id.to_string(),
                        field: shown(field),
                    }
                } else {
                    DetailsError::Undeclared {
                        field: shown(field),
                        system: system.id.to_string(),
                        declared: declared.join(", "),
                    }
                });
            }
            if !seen.insert(field.as_str()) {
                return Err(DetailsError::Repeated(field.clone()));
            }
        }
    }
    let mut projected = BTreeMap::new();
    for (field, kind) in &system.details {
        let Some(value) = items.iter().find_map(|item| item.get(field)) else {
            continue;
        };
        let value = match (kind, value) {
            (DetailType::String, Value::String(s)) => {
                if let Some(c) = crate::text::invisible_char(s) {
                    return Err(DetailsError::Invisible {
                        field: field.clone(),
                        code: u32::from(c),
                    });
                }
                DetailValue::String(s.clone())
            }
            (DetailType::Long, Value::Number(n)) => match n.as_i64() {
                Some(i) => DetailValue::Long(i),
                None => return Err(DetailsError::NotWhole(field.clone())),
            },
            (DetailType::Bool, Value::Bool(b)) => DetailValue::Bool(*b),
            (DetailType::String, _) => return Err(DetailsError::NotString(field.clone())),
            (DetailType::Long, _) => return Err(DetailsError::NotWhole(field.clone())),
            (DetailType::Bool, _) => return Err(DetailsError::NotBool(field.clone())),
        };
        projected.insert(field.clone(), value);
    }
    Ok(projected)
}

/// A caller's name for an error message: at most 64 characters, control characters escaped.
fn shown(text: &str) -> String {
    text.chars()
        .take(64)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

/// The request part of an exchange's context.
pub struct RequestFacts<'a> {
    pub scope: &'a [String],
    pub lifetime_seconds: u32,
    pub resource: Option<&'a str>,
    pub details: &'a BTreeMap<String, DetailValue>,
    /// Every declared windowed counter's value before this request.
    pub counters: &'a BTreeMap<String, i64>,
    /// When a delegate asks: its depth and who delegated to it.
    pub delegation: Option<(u32, &'a str)>,
}

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> RestrictedExpression {
    RestrictedExpression::new_set(
        items
            .into_iter()
            .map(|s| RestrictedExpression::new_string(s.to_owned())),
    )
}

fn long(value: impl TryInto<i64>) -> RestrictedExpression {
    RestrictedExpression::new_long(value.try_into().unwrap_or(i64::MAX))
}

/// A record keyed by granted action (`"ci:run_tests"`), one entry per action granted so far:
/// bounded by the deployment's actions, not by the length of the history.
fn per_action(
    facts: &TaskFacts,
    value: impl Fn(&crate::task::GrantCount) -> RestrictedExpression,
) -> Result<RestrictedExpression, String> {
    RestrictedExpression::new_record(
        facts
            .granted
            .iter()
            .map(|(name, grant)| (name.to_string(), value(grant))),
    )
    .map_err(|e| e.to_string())
}

/// Needs of the context, by record and field: whether some policy can read `record.field`.
type Needs<'a> = &'a dyn Fn(&str, &str) -> bool;

/// One record's fields, each built only when some policy can read it.
struct Fields<'a> {
    record: &'static str,
    needs: Needs<'a>,
    built: Vec<(String, RestrictedExpression)>,
}

impl<'a> Fields<'a> {
    fn new(record: &'static str, needs: Needs<'a>) -> Self {
        Self {
            record,
            needs,
            built: Vec::new(),
        }
    }

    fn add(&mut self, name: &str, value: impl FnOnce() -> RestrictedExpression) {
        if (self.needs)(self.record, name) {
            self.built.push((name.to_owned(), value()));
        }
    }

    fn try_add(
        &mut self,
        name: &str,
        value: impl FnOnce() -> Result<RestrictedExpression, String>,
    ) -> Result<(), String> {
        if (self.needs)(self.record, name) {
            self.built.push((name.to_owned(), value()?));
        }
        Ok(())
    }

    fn record(self) -> Result<RestrictedExpression, String> {
        RestrictedExpression::new_record(self.built).map_err(|e| e.to_string())
    }
}

fn task_expression(
    task: &Task,
    facts: &TaskFacts,
    now: Timestamp,
    needs: Needs<'_>,
) -> Result<RestrictedExpression, String> {
    let age = (now.seconds() - task.created_at.seconds()).max(0);
    let mut fields = Fields::new("task", needs);
    fields.add("id", || {
        RestrictedExpression::new_string(task.id.to_string())
    });
    fields.add("purpose", || {
        RestrictedExpression::new_string(task.purpose.to_string())
    });
    fields.add("intent", || {
        RestrictedExpression::new_string(task.intent.clone())
    });
    fields.add("user", || {
        RestrictedExpression::new_string(task.user.to_string())
    });
    fields.add("agent", || {
        RestrictedExpression::new_string(task.agent.to_string())
    });
    fields.add("plan", || strings(task.plan.iter().map(|s| s.as_str())));
    fields.add("age_seconds", || long(age));
    fields.add("granted", || {
        strings(facts.granted.keys().map(|a| a.as_str()))
    });
    fields.add("systems", || {
        strings(facts.systems.iter().map(|s| s.as_str()))
    });
    fields.add("labels", || {
        strings(facts.labels.iter().map(String::as_str))
    });
    fields.add("exchanges", || long(facts.exchanges));
    fields.try_add("counts", || per_action(facts, |g| long(g.count)))?;
    fields.try_add("last", || per_action(facts, |g| long(g.seq)))?;
    fields.try_add("last_at", || per_action(facts, |g| long(g.last.seconds())))?;
    fields.try_add("evidence", || evidence_expression(facts))?;
    fields.record()
}

/// `task.evidence`: per `system:kind`, bounded by the kinds declared, not by how often reported.
fn evidence_expression(facts: &TaskFacts) -> Result<RestrictedExpression, String> {
    let kinds = facts
        .evidence
        .iter()
        .map(|(key, fact)| {
            let mut fields = vec![
                ("count".to_owned(), long(fact.count)),
                ("last_at".to_owned(), long(fact.last.seconds())),
            ];
            fields.extend(fact.values.iter().map(|(field, values)| {
                (field.clone(), strings(values.iter().map(String::as_str)))
            }));
            RestrictedExpression::new_record(fields)
                .map(|record| (key.clone(), record))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    RestrictedExpression::new_record(kinds).map_err(|e| e.to_string())
}

/// The context of one exchange: `{ task: {...}, request: {...}, counters: {...} }`, and
/// `delegation` when a delegate asks; every field the schema declares.
pub fn exchange_context(
    task: &Task,
    facts: &TaskFacts,
    request: &RequestFacts<'_>,
    now: Timestamp,
) -> Result<Context, String> {
    exchange_context_reading(task, facts, request, now, &|_, _| true)
}

/// The context of one exchange with only the fields `needs` names built (what the policies to
/// be evaluated can read, [`super::reads`]); the records themselves are always there.
pub(super) fn exchange_context_reading(
    task: &Task,
    facts: &TaskFacts,
    request: &RequestFacts<'_>,
    now: Timestamp,
    needs: Needs<'_>,
) -> Result<Context, String> {
    let mut request_fields = Fields::new("request", needs);
    request_fields.add("scope", || {
        strings(request.scope.iter().map(String::as_str))
    });
    request_fields.add("lifetime_seconds", || long(request.lifetime_seconds));
    if let Some(resource) = request.resource {
        request_fields.add("resource", || {
            RestrictedExpression::new_string(resource.to_owned())
        });
    }
    request_fields.try_add("details", || {
        RestrictedExpression::new_record(request.details.iter().map(|(k, v)| {
            let value = match v {
                DetailValue::String(s) => RestrictedExpression::new_string(s.clone()),
                DetailValue::Long(i) => RestrictedExpression::new_long(*i),
                DetailValue::Bool(b) => RestrictedExpression::new_bool(*b),
            };
            (k.clone(), value)
        }))
        .map_err(|e| e.to_string())
    })?;
    let mut counters = Fields::new("counters", needs);
    for (name, value) in request.counters {
        counters.add(name, || RestrictedExpression::new_long(*value));
    }
    let mut pairs = vec![
        ("task".to_owned(), task_expression(task, facts, now, needs)?),
        ("request".to_owned(), request_fields.record()?),
        ("counters".to_owned(), counters.record()?),
    ];
    if let Some((depth, delegator)) = request.delegation {
        let mut delegation = Fields::new("delegation", needs);
        delegation.add("depth", || long(depth));
        delegation.add("delegator", || {
            RestrictedExpression::new_string(delegator.to_owned())
        });
        pairs.push(("delegation".to_owned(), delegation.record()?));
    }
    Context::from_pairs(pairs).map_err(|e| e.to_string())
}

/// The context of opening a task.
pub fn open_task_context(
    intent: &str,
    purpose: &str,
    user: &str,
    plan: &[String],
    lifetime_seconds: u32,
) -> Result<Context, String> {
    Context::from_pairs([
        (
            "intent".to_owned(),
            RestrictedExpression::new_string(intent.to_owned()),
        ),
        (
            "purpose".to_owned(),
            RestrictedExpression::new_string(purpose.to_owned()),
        ),
        (
            "user".to_owned(),
            RestrictedExpression::new_string(user.to_owned()),
        ),
        ("plan".to_owned(), strings(plan.iter().map(String::as_str))),
        ("lifetime_seconds".to_owned(), long(lifetime_seconds)),
    ])
    .map_err(|e| e.to_string())
}
