//! What of an exchange's context a set of policies can read, found once at load by walking each
//! policy's conditions (Cedar's JSON policy format), so a decision builds only those parts.
//!
//! The context has four records (`task`, `request`, `counters`, `delegation`), each of named
//! fields. A condition reads a field through `context.<record>.<field>` (then anything further)
//! or tests it with `context.<record> has <field>`; that field is kept. A record used any other
//! way (`context.task == ..`, passed whole) is kept whole, and `context` used any other way keeps
//! everything. A field no policy of the set names can change no evaluation of that set: its
//! absence is seen only through a read or a `has`, and both are counted here. So the decision,
//! its determining policies and its errors are those of the whole context; the scope index's
//! equivalence test (`tests/policy_index.rs`) checks that over generated policies that read
//! every field.

use cedar_policy::PolicySet;
use serde_json::Value;
use std::collections::BTreeSet;

/// The parts of the exchange context some policy of a set can read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Reads {
    /// `context` is used as a whole: every part is kept.
    everything: bool,
    /// Records used as a whole: every field of them is kept.
    whole: BTreeSet<String>,
    /// `(record, field)` pairs read or tested: a handful, scanned on every decision (a map by
    /// record measured no cheaper).
    fields: BTreeSet<(String, String)>,
}

/// Every part of the context: what the engine without its index builds.
pub(super) static EVERYTHING: Reads = Reads {
    everything: true,
    whole: BTreeSet::new(),
    fields: BTreeSet::new(),
};

impl Reads {
    /// What the policies of `set` can read.
    pub(super) fn of(set: &PolicySet) -> Self {
        let mut reads = Self::default();
        for policy in set.policies() {
            match policy.to_json() {
                Ok(json) => {
                    for condition in json
                        .get("conditions")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        reads.walk(condition.get("body").unwrap_or(&Value::Null));
                    }
                }
                // Unreadable: assume it reads anything.
                Err(_) => reads.everything = true,
            }
        }
        reads
    }

    /// Whether some policy can read `record.field`.
    pub(super) fn needs(&self, record: &str, field: &str) -> bool {
        self.everything
            || self.whole.contains(record)
            || self
                .fields
                .iter()
                .any(|(r, f)| r.as_str() == record && f.as_str() == field)
    }

    /// One expression node: `{operator: payload}` (Cedar's JSON policy format).
    fn walk(&mut self, expression: &Value) {
        let Value::Object(node) = expression else {
            return;
        };
        for (operator, payload) in node {
            match operator.as_str() {
                // A literal holds no expression.
                "Value" => {}
                "Var" => {
                    if payload.as_str() == Some("context") {
                        // `context` used other than through `.record`: keep everything.
                        self.everything = true;
                    }
                }
                "." | "has" => self.access(payload),
                // Any other operator (`==`, `&&`, `Record`, `Set`, `like`, `if-then-else`, a
                // function call): its operands are the values of its payload, or the items of
                // an array there. A record literal's field names are never read as operators.
                _ => match payload {
                    Value::Object(operands) => operands.values().for_each(|v| self.operand(v)),
                    Value::Array(operands) => operands.iter().for_each(|v| self.walk(v)),
                    _ => {}
                },
            }
        }
    }

    /// An operand: one expression, or an array of them (a call's arguments, a set's elements).
    fn operand(&mut self, operand: &Value) {
        match operand {
            Value::Array(items) => items.iter().for_each(|item| self.walk(item)),
            _ => self.walk(operand),
        }
    }

    /// `left.attr` or `left has attr`.
    fn access(&mut self, payload: &Value) {
        let left = payload.get("left").unwrap_or(&Value::Null);
        let attr = payload.get("attr").and_then(Value::as_str);
        if let (Some(record), Some(attr)) = (context_record(left), attr) {
            // `context.record.attr` or `context.record has attr`.
            self.fields.insert((record.to_owned(), attr.to_owned()));
            return;
        }
        if let (true, Some(attr)) = (is_context(left), attr) {
            // `context.record` not read further: the record is used whole. (`context has
            // record` keeps it too: its presence is its value.)
            self.whole.insert(attr.to_owned());
            return;
        }
        self.walk(left);
    }
}

/// `{"Var": "context"}`.
fn is_context(expression: &Value) -> bool {
    expression.get("Var").and_then(Value::as_str) == Some("context")
}

/// `context.record`: the record's name.
fn context_record(expression: &Value) -> Option<&str> {
    let access = expression.get(".")?;
    is_context(access.get("left")?)
        .then(|| access.get("attr")?.as_str())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn reads(text: &str) -> Reads {
        Reads::of(&PolicySet::from_str(text).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn a_field_read_or_tested_is_kept_and_nothing_else() {
        let reads = reads(
            r#"permit (principal, action, resource) when {
                context.task.purpose == "release" && context.request.details has amount
                && context.task.counts["ci:run_tests"] > 0
            };"#,
        );
        assert!(reads.needs("task", "purpose"));
        assert!(reads.needs("task", "counts"));
        assert!(reads.needs("request", "details"));
        assert!(!reads.needs("task", "intent"));
        assert!(!reads.needs("request", "scope"));
        assert!(!reads.needs("counters", "spend_today"));
    }

    #[test]
    fn a_record_or_the_context_used_whole_keeps_all_of_it() {
        let record =
            reads(r#"permit (principal, action, resource) when { context.task == context.task };"#);
        assert!(record.needs("task", "intent"));
        assert!(!record.needs("request", "scope"));
        let presence =
            reads(r#"permit (principal, action, resource) when { context has delegation };"#);
        assert!(presence.needs("delegation", "depth"));
        let everything =
            reads(r#"permit (principal, action, resource) when { context == context };"#);
        assert!(everything.needs("request", "scope"));
        assert!(reads("permit (principal, action, resource);") == Reads::default());
    }

    #[test]
    fn a_read_inside_a_record_literal_is_counted_whatever_its_field_names() {
        let reads = reads(
            r#"permit (principal, action, resource) when {
                {"Value": context.task.intent, "Var": context.request.scope} == {"Value": "work", "Var": ["a"]}
                && [context.task.user].contains("alice")
                && ip(context.task.agent).isLoopback()
            };"#,
        );
        assert!(reads.needs("task", "intent"));
        assert!(reads.needs("request", "scope"));
        assert!(reads.needs("task", "user"));
        assert!(reads.needs("task", "agent"));
        assert!(!reads.needs("task", "purpose"));
    }

    #[test]
    fn a_string_that_looks_like_a_read_is_not_one() {
        let reads = reads(
            r#"permit (principal, action, resource) when { principal.id == "context.task.intent" };"#,
        );
        assert!(!reads.needs("task", "intent"));
    }
}
