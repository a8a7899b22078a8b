//! Finds every unknown key in one pass, with its line, before serde sees the document.
//!
//! Serde stops at the first unknown field; `handoff check` must report them all at once, so the
//! document is walked against the known shape first and unknown keys are reported and removed.

use super::{Problem, line_of};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// What a table in the config may hold.
#[derive(Clone, Copy)]
pub(super) enum Shape {
    /// Fixed keys, each with the shape of its value.
    Fields(&'static [(&'static str, Shape)]),
    /// Any key the user names (a system id, an action), each value of one shape.
    MapOf(&'static Shape),
    /// An array of tables of one shape.
    ArrayOf(&'static Shape),
    /// A scalar or a list of scalars: nothing below to check.
    Leaf,
}

const TOKENS: Shape = Shape::Fields(&[
    ("default_lifetime", Shape::Leaf),
    ("max_lifetime", Shape::Leaf),
    ("algorithm", Shape::Leaf),
    ("rotate_every", Shape::Leaf),
]);
const DEV_ISSUER: Shape = Shape::Fields(&[("enabled", Shape::Leaf)]);
const ISSUER: Shape = Shape::Fields(&[
    ("id", Shape::Leaf),
    ("issuer", Shape::Leaf),
    ("jwks_file", Shape::Leaf),
    ("jwks_url", Shape::Leaf),
    ("discovery", Shape::Leaf),
    ("optional", Shape::Leaf),
    ("min_refresh", Shape::Leaf),
    ("max_refresh", Shape::Leaf),
    ("min_refetch_interval", Shape::Leaf),
    ("danger_allow_http", Shape::Leaf),
    ("ca_file", Shape::Leaf),
    ("audience", Shape::Leaf),
    ("agent_claim", Shape::Leaf),
    ("algorithms", Shape::Leaf),
    ("typ", Shape::Leaf),
    ("leeway_seconds", Shape::Leaf),
    ("iat_leeway_seconds", Shape::Leaf),
    ("groups_claim", Shape::Leaf),
]);
const SYSTEM: Shape = Shape::Fields(&[
    ("audience", Shape::Leaf),
    ("description", Shape::Leaf),
    ("owner", Shape::Leaf),
    ("escalation", Shape::Leaf),
    ("risk", Shape::Leaf),
    ("max_token_lifetime", Shape::Leaf),
    ("actions", Shape::MapOf(&Shape::Leaf)),
    ("details", Shape::MapOf(&Shape::Leaf)),
    ("require_approval", Shape::Leaf),
    ("user_may_approve", Shape::Leaf),
    ("gateway", super::gateway::raw::GATEWAY_SHAPE),
    ("evidence", EVIDENCE),
]);
const EVIDENCE: Shape = Shape::Fields(&[
    ("jwks_file", Shape::Leaf),
    ("hmac_secret_env", Shape::Leaf),
    ("max_age", Shape::Leaf),
    ("kinds", Shape::MapOf(&Shape::Leaf)),
]);
const COUNTER: Shape = Shape::Fields(&[
    ("actions", Shape::Leaf),
    ("window", Shape::Leaf),
    ("per", Shape::Leaf),
    ("sum", Shape::Leaf),
]);
const DELEGATION: Shape = Shape::Fields(&[("max_depth", Shape::Leaf)]);
const PURPOSE: Shape = Shape::Fields(&[
    ("description", Shape::Leaf),
    ("lifetime", Shape::Leaf),
    ("max_exchanges", Shape::Leaf),
    ("max_systems", Shape::Leaf),
    ("max_writes", Shape::Leaf),
    ("max_live_tokens", Shape::Leaf),
    ("off_plan", Shape::Leaf),
]);
const ROOT: Shape = Shape::Fields(&[
    ("trust_domain", Shape::Leaf),
    ("policies", Shape::Leaf),
    ("tokens", TOKENS),
    ("dev_issuer", DEV_ISSUER),
    ("issuers", Shape::ArrayOf(&ISSUER)),
    ("systems", Shape::MapOf(&SYSTEM)),
    ("purposes", Shape::MapOf(&PURPOSE)),
    ("notifications", NOTIFICATIONS),
    ("approvals", APPROVALS),
    ("approver_issuers", Shape::ArrayOf(&ISSUER)),
    ("counters", Shape::MapOf(&COUNTER)),
    ("delegation", DELEGATION),
    ("server", super::server::SERVER_SHAPE),
    ("audit", super::audit::AUDIT_SHAPE),
    ("console", super::console::CONSOLE_SHAPE),
    ("store", super::store::STORE_SHAPE),
]);
const APPROVALS: Shape = Shape::Fields(&[
    ("ttl", Shape::Leaf),
    ("poll_interval_seconds", Shape::Leaf),
    ("escalate_after", Shape::Leaf),
]);
const NOTIFICATIONS: Shape = Shape::Fields(&[
    ("webhook_url", Shape::Leaf),
    ("format", Shape::Leaf),
    ("secret_env", Shape::Leaf),
]);

/// Removes unknown keys from `root`, returning a problem for each.
pub fn strip_unknown_keys(file: &str, text: &str, root: &mut DeTable<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    walk_table(file, text, root, ROOT, "", &mut problems);
    problems
}

fn walk_table(
    file: &str,
    text: &str,
    table: &mut DeTable<'_>,
    shape: Shape,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    match shape {
        Shape::Fields(fields) => {
            let entries = std::mem::replace(table, DeTable::new());
            for (key, mut value) in entries {
                let name: &str = key.get_ref();
                let Some((_, child)) = fields.iter().find(|(known, _)| *known == name) else {
                    let known: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
                    problems.push(Problem::at(
                        file,
                        line_of(text, key.span().start),
                        format!(
                            "unknown key `{}`; expected one of: {}",
                            join(path, name),
                            known.join(", ")
                        ),
                    ));
                    continue;
                };
                walk_value(file, text, &mut value, *child, &join(path, name), problems);
                table.insert(key, value);
            }
        }
        Shape::MapOf(child) => {
            for (key, value) in table.iter_mut() {
                walk_value(
                    file,
                    text,
                    value,
                    *child,
                    &join(path, key.get_ref()),
                    problems,
                );
            }
        }
        Shape::ArrayOf(_) | Shape::Leaf => {}
    }
}

fn walk_value(
    file: &str,
    text: &str,
    value: &mut Spanned<DeValue<'_>>,
    shape: Shape,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    match (value.get_mut(), shape) {
        (DeValue::Table(table), Shape::Fields(_) | Shape::MapOf(_)) => {
            walk_table(file, text, table, shape, path, problems);
        }
        (DeValue::Array(items), Shape::ArrayOf(child)) => {
            for (index, item) in items.iter_mut().enumerate() {
                walk_value(
                    file,
                    text,
                    item,
                    *child,
                    &format!("{path}[{index}]"),
                    problems,
                );
            }
        }
        // Type mismatches are left for serde, which names the expected type.
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
