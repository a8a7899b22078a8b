//! `[delegation]`: how deep a chain of delegations may go.

use super::DelegationSettings;
use super::check::Ctx;
use super::raw::RawDelegation;

/// Delegation depth when the config names none: an agent may delegate, a delegate may not.
const DEFAULT_MAX_DEPTH: u32 = 1;
/// A delegation chain is carried in tokens and checked on every exchange; keep it short.
const MAX_DEPTH_LIMIT: u32 = 8;

pub(super) fn validate_delegation(ctx: &mut Ctx<'_>, raw: &RawDelegation) -> DelegationSettings {
    let max_depth = match &raw.max_depth {
        Some(depth) if *depth.get_ref() > MAX_DEPTH_LIMIT => {
            ctx.report(
                depth,
                format!("delegation.max_depth must be at most {MAX_DEPTH_LIMIT}"),
            );
            MAX_DEPTH_LIMIT
        }
        Some(depth) => *depth.get_ref(),
        None => DEFAULT_MAX_DEPTH,
    };
    DelegationSettings { max_depth }
}
