//! The Cedar schema, generated from the system registry so policies are checked against what the
//! deployment really offers: one Cedar action per system action, one action group per label.

use crate::config::{Config, DetailType, SystemConfig};
use serde_json::{Map, Value, json};

/// The Cedar action an agent needs to open a task; its resource is the task's `Purpose`.
pub const OPEN_TASK_ACTION: &str = "open_task";

/// The schema as Cedar's JSON schema format.
pub fn schema_json(config: &Config) -> Value {
    let mut actions = Map::new();
    actions.insert(
        OPEN_TASK_ACTION.to_owned(),
        json!({
            "appliesTo": {
                "principalTypes": ["Agent"],
                "resourceTypes": ["Purpose"],
                "context": open_task_context(),
            }
        }),
    );
    for system in config.systems.values() {
        let context = exchange_context(config, system);
        for action in system.actions.values() {
            for label in &action.labels {
                actions.entry(label.clone()).or_insert_with(|| json!({}));
            }
            let member_of: Vec<Value> = action
                .labels
                .iter()
                .map(|label| json!({ "id": label }))
                .collect();
            actions.insert(
                action.name.as_str().to_owned(),
                json!({
                    "memberOf": member_of,
                    "appliesTo": {
                        "principalTypes": ["Agent"],
                        "resourceTypes": ["System"],
                        "context": context,
                    }
                }),
            );
        }
    }
    json!({
        "": {
            "entityTypes": {
                "Agent": {},
                "User": {},
                "Purpose": {},
                "System": {
                    "shape": record([
                        ("risk", string(), true),
                        ("owner", string(), true),
                    ]),
                },
            },
            "actions": actions,
        }
    })
}

fn string() -> Value {
    json!({ "type": "String" })
}

fn long() -> Value {
    json!({ "type": "Long" })
}

fn string_set() -> Value {
    json!({ "type": "Set", "element": { "type": "String" } })
}

fn record<const N: usize>(fields: [(&str, Value, bool); N]) -> Value {
    let mut attributes = Map::new();
    for (name, mut kind, required) in fields {
        if let Value::Object(map) = &mut kind {
            map.insert("required".to_owned(), Value::Bool(required));
        }
        attributes.insert(name.to_owned(), kind);
    }
    json!({ "type": "Record", "attributes": attributes })
}

fn open_task_context() -> Value {
    record([
        ("intent", string(), true),
        ("purpose", string(), true),
        ("user", string(), true),
        ("plan", string_set(), true),
        ("lifetime_seconds", long(), true),
    ])
}

/// The task's facts as policy sees them; documented in `docs/policy-context.md`.
fn task_record() -> Value {
    record([
        ("id", string(), true),
        ("purpose", string(), true),
        ("intent", string(), true),
        ("user", string(), true),
        ("agent", string(), true),
        ("plan", string_set(), true),
        ("age_seconds", long(), true),
        ("granted", string_set(), true),
        ("systems", string_set(), true),
        ("labels", string_set(), true),
        ("exchanges", long(), true),
    ])
}

/// A record with one optional `Long` per action of the deployment, keyed `system:action`.
fn per_action_longs(config: &Config) -> Value {
    let mut attributes = Map::new();
    for system in config.systems.values() {
        for action in system.actions.values() {
            attributes.insert(
                action.name.to_string(),
                json!({ "type": "Long", "required": false }),
            );
        }
    }
    json!({ "type": "Record", "attributes": attributes })
}

/// `task.evidence`: one optional record per kind a system may report, keyed `system:kind`, with
/// its count, when last reported, and the set of values each declared field carried.
fn evidence_record(config: &Config) -> Value {
    let mut attributes = Map::new();
    for system in config.systems.values() {
        let Some(evidence) = &system.evidence else {
            continue;
        };
        for (kind, fields) in &evidence.kinds {
            let mut shape = Map::new();
            shape.insert("count".to_owned(), long());
            shape.insert("last_at".to_owned(), long());
            for field in fields {
                shape.insert(field.clone(), string_set());
            }
            attributes.insert(
                format!("{}:{kind}", system.id),
                json!({ "type": "Record", "attributes": shape, "required": false }),
            );
        }
    }
    json!({ "type": "Record", "attributes": attributes, "required": true })
}

/// `counters`: every declared windowed counter's current value.
fn counters_record(config: &Config) -> Value {
    let mut attributes = Map::new();
    for name in config.counters.keys() {
        attributes.insert(name.clone(), long());
    }
    json!({ "type": "Record", "attributes": attributes })
}

fn exchange_context(config: &Config, system: &SystemConfig) -> Value {
    let mut details = Map::new();
    for (field, kind) in &system.details {
        let kind = match kind {
            DetailType::String => string(),
            DetailType::Long => long(),
            DetailType::Bool => json!({ "type": "Boolean" }),
        };
        let mut kind = kind;
        if let Value::Object(map) = &mut kind {
            map.insert("required".to_owned(), Value::Bool(false));
        }
        details.insert(field.clone(), kind);
    }
    let mut task = task_record();
    if let Some(Value::Object(attributes)) = task.get_mut("attributes") {
        for (name, required) in [("counts", true), ("last", true), ("last_at", true)] {
            let mut kind = per_action_longs(config);
            if let Value::Object(map) = &mut kind {
                map.insert("required".to_owned(), Value::Bool(required));
            }
            attributes.insert(name.to_owned(), kind);
        }
        attributes.insert("evidence".to_owned(), evidence_record(config));
    }
    record([
        ("task", task, true),
        (
            "request",
            record([
                ("scope", string_set(), true),
                ("lifetime_seconds", long(), true),
                ("resource", string(), false),
                (
                    "details",
                    json!({ "type": "Record", "attributes": details }),
                    true,
                ),
            ]),
            true,
        ),
        ("counters", counters_record(config), true),
        (
            "delegation",
            record([("depth", long(), true), ("delegator", string(), true)]),
            false,
        ),
    ])
}
