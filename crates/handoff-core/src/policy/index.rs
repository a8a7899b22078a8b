//! The policy set split by request scope. A request names one action and one resource, both from
//! finite sets the config declares (each system's actions on that system; `open_task` on each
//! purpose), so for each such pair the engine keeps the policies whose scope can match it and
//! evaluates only those. A policy whose scope cannot match contributes nothing to Cedar's answer
//! (its scope is false before its condition is evaluated: it is neither satisfied nor in error),
//! so the decision, the determining policies and the errors are those of the whole set. A pair
//! the index does not hold (none in practice) is evaluated against the whole set.
//!
//! A policy is left out only when its action or resource constraint cannot hold for the pair, as
//! Cedar's `==`, `in` and `is` decide it over the engine's own entities (the systems and the
//! schema's action groups); the principal is not looked at (agents are not known in advance).

use super::reads::Reads;
use cedar_policy::{ActionConstraint, Entities, EntityUid, Policy, PolicySet, ResourceConstraint};
use std::collections::HashMap;

/// The policies that can apply, by action, then resource (looked up by reference: no id is
/// copied on the request path).
pub(super) struct ScopeIndex {
    sets: HashMap<EntityUid, HashMap<EntityUid, Scoped>>,
}

/// The policies one pair evaluates, and what of the context they can read.
pub(super) struct Scoped {
    pub(super) policies: PolicySet,
    pub(super) reads: Reads,
}

impl ScopeIndex {
    /// Splits `policies` for every pair in `pairs`.
    pub(super) fn build(
        policies: &PolicySet,
        entities: &Entities,
        pairs: impl IntoIterator<Item = (EntityUid, EntityUid)>,
    ) -> Result<Self, String> {
        // Each policy's scope is read once, then tested against every pair.
        let scoped: Vec<(&Policy, ActionConstraint, ResourceConstraint)> = policies
            .policies()
            .map(|p| (p, p.action_constraint(), p.resource_constraint()))
            .collect();
        let mut sets: HashMap<EntityUid, HashMap<EntityUid, Scoped>> = HashMap::new();
        for (action, resource) in pairs {
            let mut set = PolicySet::new();
            for (policy, on_action, on_resource) in &scoped {
                if may_apply(on_action, on_resource, &action, &resource, entities) {
                    set.add((*policy).clone()).map_err(|e| e.to_string())?;
                }
            }
            let reads = Reads::of(&set);
            sets.entry(action).or_default().insert(
                resource,
                Scoped {
                    policies: set,
                    reads,
                },
            );
        }
        Ok(Self { sets })
    }

    /// The policies to evaluate for `action` on `resource`, if the index holds the pair.
    pub(super) fn get(&self, action: &EntityUid, resource: &EntityUid) -> Option<&Scoped> {
        self.sets.get(action)?.get(resource)
    }

    /// The largest number of policies any pair evaluates.
    pub(super) fn widest(&self) -> usize {
        self.sets
            .values()
            .flat_map(HashMap::values)
            .map(|s| s.policies.policies().count())
            .max()
            .unwrap_or(0)
    }
}

/// `member in group`, as Cedar decides it: the same entity, or one of its ancestors.
fn is_in(entities: &Entities, member: &EntityUid, group: &EntityUid) -> bool {
    member == group || entities.is_ancestor_of(group, member)
}

/// Whether a policy's action and resource constraints can both hold for the pair.
fn may_apply(
    on_action: &ActionConstraint,
    on_resource: &ResourceConstraint,
    action: &EntityUid,
    resource: &EntityUid,
    entities: &Entities,
) -> bool {
    let action_matches = match on_action {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => uid == action,
        ActionConstraint::In(groups) => groups.iter().any(|g| is_in(entities, action, g)),
    };
    let resource_matches = match on_resource {
        ResourceConstraint::Any => true,
        ResourceConstraint::Eq(uid) => uid == resource,
        ResourceConstraint::In(group) => is_in(entities, resource, group),
        ResourceConstraint::Is(kind) => resource.type_name() == kind,
        ResourceConstraint::IsIn(kind, group) => {
            resource.type_name() == kind && is_in(entities, resource, group)
        }
    };
    action_matches && resource_matches
}
