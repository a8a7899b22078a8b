//! What the policy set may permit an agent for a purpose, without a request: for each declared
//! (action, system) pair, the policies the scope index keeps for it are read statically. A pair
//! is reachable when some permit can apply (its principal scope can name the agent, and no
//! condition tests `context.task.purpose` against another purpose) and no forbid surely applies
//! (a forbid whose scope names the agent and whose every condition is a test of the purpose that
//! holds). Other conditions (facts, details, evidence, counters) are taken as satisfiable: the
//! answer is what policy *may* allow, an upper bound for a least-privilege report, never a
//! decision. Decisions stay `PolicyEngine::decide`'s.

use super::PolicyEngine;
use crate::config::Config;
use crate::ids::{AgentId, Purpose};
use cedar_policy::{Effect, EntityUid, Policy, PrincipalConstraint};
use serde_json::Value;
use std::collections::BTreeSet;

/// What a condition says about the purpose alone.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// It holds for this purpose whatever else is true.
    Holds,
    /// It fails for this purpose whatever else is true.
    Fails,
    /// It depends on something other than the purpose.
    Depends,
}

/// `left` of `left.name` (Cedar's JSON policy format: `{".": {"left": .., "attr": name}}`).
fn access<'a>(expression: &'a Value, name: &str) -> Option<&'a Value> {
    let access = expression.get(".")?;
    (access.get("attr")?.as_str()? == name).then_some(())?;
    access.get("left")
}

/// `context.task.purpose`.
fn is_purpose(expression: &Value) -> bool {
    access(expression, "purpose")
        .and_then(|task| access(task, "task"))
        .is_some_and(|context| context.get("Var").and_then(Value::as_str) == Some("context"))
}

/// `context.task.purpose == "literal"` (either way round): the literal.
fn purpose_literal(expression: &Value) -> Option<&str> {
    let equal = expression.get("==")?;
    let (left, right) = (equal.get("left")?, equal.get("right")?);
    let (purpose, literal) = if is_purpose(left) {
        (left, right)
    } else {
        (right, left)
    };
    if !is_purpose(purpose) {
        return None;
    }
    literal.get("Value")?.as_str()
}

/// What `expression` says for `purpose`, reading only `==` on the purpose, `&&`, `||` and `!`.
fn verdict(expression: &Value, purpose: &str) -> Verdict {
    if let Some(literal) = purpose_literal(expression) {
        return if literal == purpose {
            Verdict::Holds
        } else {
            Verdict::Fails
        };
    }
    let both = |op: &str| -> Option<(Verdict, Verdict)> {
        let pair = expression.get(op)?;
        Some((
            verdict(pair.get("left")?, purpose),
            verdict(pair.get("right")?, purpose),
        ))
    };
    if let Some((left, right)) = both("&&") {
        return match (left, right) {
            (Verdict::Fails, _) | (_, Verdict::Fails) => Verdict::Fails,
            (Verdict::Holds, Verdict::Holds) => Verdict::Holds,
            _ => Verdict::Depends,
        };
    }
    if let Some((left, right)) = both("||") {
        return match (left, right) {
            (Verdict::Holds, _) | (_, Verdict::Holds) => Verdict::Holds,
            (Verdict::Fails, Verdict::Fails) => Verdict::Fails,
            _ => Verdict::Depends,
        };
    }
    if let Some(inner) = expression.get("!").and_then(|n| n.get("arg")) {
        return match verdict(inner, purpose) {
            Verdict::Holds => Verdict::Fails,
            Verdict::Fails => Verdict::Holds,
            Verdict::Depends => Verdict::Depends,
        };
    }
    Verdict::Depends
}

/// All of a policy's `when` and `unless` conditions together, for `purpose`.
fn conditions(policy: &Policy, purpose: &str) -> Verdict {
    let Ok(json) = policy.to_json() else {
        return Verdict::Depends;
    };
    let mut all = Verdict::Holds;
    for condition in json
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(body) = condition.get("body") else {
            return Verdict::Depends;
        };
        let one = match (
            condition.get("kind").and_then(Value::as_str),
            verdict(body, purpose),
        ) {
            (Some("when"), v) => v,
            (Some("unless"), Verdict::Holds) => Verdict::Fails,
            (Some("unless"), Verdict::Fails) => Verdict::Holds,
            _ => Verdict::Depends,
        };
        all = match (all, one) {
            (Verdict::Fails, _) | (_, Verdict::Fails) => Verdict::Fails,
            (Verdict::Holds, Verdict::Holds) => Verdict::Holds,
            _ => Verdict::Depends,
        };
    }
    all
}

/// Whether the policy's principal scope can name `agent` (agents have no parents).
fn names(policy: &Policy, agent: &EntityUid) -> bool {
    match policy.principal_constraint() {
        PrincipalConstraint::Any => true,
        PrincipalConstraint::Eq(uid) | PrincipalConstraint::In(uid) => &uid == agent,
        PrincipalConstraint::Is(kind) => &kind == agent.type_name(),
        PrincipalConstraint::IsIn(kind, uid) => &kind == agent.type_name() && &uid == agent,
    }
}

impl PolicyEngine {
    /// The declared actions (`system:action`) policy may permit `agent` in a task of `purpose`.
    pub fn may_permit(
        &self,
        config: &Config,
        agent: &AgentId,
        purpose: &Purpose,
    ) -> BTreeSet<String> {
        let principal = super::uid(&self.agent_type, agent.as_str());
        let mut reachable = BTreeSet::new();
        for system in config.systems.values() {
            let Some(resource) = self.systems.get(system.id.as_str()) else {
                continue;
            };
            for action in system.actions.values() {
                let Some(action_uid) = self.actions.get(action.name.as_str()) else {
                    continue;
                };
                let (policies, _) = self.scoped(action_uid, resource);
                let mut permitted = false;
                let mut forbidden = false;
                for policy in policies.policies().filter(|p| names(p, &principal)) {
                    match (policy.effect(), conditions(policy, purpose.as_str())) {
                        (Effect::Permit, Verdict::Holds | Verdict::Depends) => permitted = true,
                        (Effect::Forbid, Verdict::Holds) => forbidden = true,
                        _ => {}
                    }
                }
                if permitted && !forbidden {
                    reachable.insert(action.name.to_string());
                }
            }
        }
        reachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn policy(text: &str) -> Policy {
        Policy::from_str(text).unwrap()
    }

    #[test]
    fn a_purpose_test_decides_a_condition_and_anything_else_leaves_it_open() {
        let only_release = policy(
            r#"permit (principal, action, resource) when { context.task.purpose == "release" && context.task.plan.contains("git") };"#,
        );
        assert!(conditions(&only_release, "release") == Verdict::Depends);
        assert!(conditions(&only_release, "support") == Verdict::Fails);
        let unless = policy(
            r#"forbid (principal, action, resource) unless { context.task.purpose == "payments" };"#,
        );
        assert!(conditions(&unless, "release") == Verdict::Holds);
        assert!(conditions(&unless, "payments") == Verdict::Fails);
        let negated = policy(
            r#"forbid (principal, action, resource) when { !("research" == context.task.purpose) };"#,
        );
        assert!(conditions(&negated, "release") == Verdict::Holds);
        assert!(conditions(&negated, "research") == Verdict::Fails);
        let open = policy(r#"permit (principal, action, resource);"#);
        assert!(conditions(&open, "release") == Verdict::Holds);
    }

    #[test]
    fn a_principal_scope_names_one_agent_or_any() {
        let agent = EntityUid::from_str(r#"Agent::"release-bot""#).unwrap();
        assert!(names(
            &policy(r#"permit (principal, action, resource);"#),
            &agent
        ));
        assert!(names(
            &policy(r#"permit (principal == Agent::"release-bot", action, resource);"#),
            &agent
        ));
        assert!(!names(
            &policy(r#"permit (principal == Agent::"other", action, resource);"#),
            &agent
        ));
    }
}
