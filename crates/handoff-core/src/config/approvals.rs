//! `[approvals]`: how long an approval waits, how often it is polled, when it escalates.

use super::ApprovalSettings;
use super::check::Ctx;
use super::raw::RawApprovals;
use crate::time::Ttl;

pub(super) fn validate_approvals(ctx: &mut Ctx<'_>, raw: &RawApprovals) -> ApprovalSettings {
    ApprovalSettings {
        ttl: raw
            .ttl
            .as_ref()
            .and_then(|t| ctx.ttl(t, "approvals.ttl"))
            .unwrap_or(Ttl::from_seconds(600)),
        poll_interval_seconds: raw.poll_interval_seconds.unwrap_or(5).max(1),
        escalate_after: raw
            .escalate_after
            .as_ref()
            .and_then(|t| ctx.ttl(t, "approvals.escalate_after"))
            .unwrap_or(Ttl::from_seconds(300)),
    }
}
